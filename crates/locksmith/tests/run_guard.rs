//! `locksmith run` wrapping psql: a tool that committed part of its work
//! before it lost a lock race is not rerun (the rerun would repeat it), its
//! own exit code 3 is told apart from "gave up blocked", psql is made to
//! stop at a failed statement, a statement that failed on a lock is never
//! reported as applied even when the command exits 0, and a blocker on a
//! row is reported with its lock type, never as a relation named `transactionid`.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use locksmith_pg::Connection;
use locksmith_sandbox::incident::Incident;
use locksmith_sandbox::wait;
use serde_json::Value;

mod support;
use support::text;

const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";

/// `locksmith run ARGS -- psql -X -v ON_ERROR_STOP=1 URL -f FILE`, off the runtime's thread.
async fn run_psql(url: &str, args: &[&str], sql: &str) -> Output {
    run_psql_with(url, args, &["-v", "ON_ERROR_STOP=1"], sql).await
}

/// `locksmith run ARGS -- psql -X PSQL_ARGS URL -f FILE`, off the runtime's thread.
///
/// Under `--lock-timeout 30s` unless ARGS give one: these tests are about
/// races lost to a leaked session, and `run` (knowing psql's tables from its
/// plan) waits out a holder idle longer than the lock timeout instead of
/// racing it; how long the leaker has been idle when `run` first looks
/// depends on the machine's load, so the lock timeout keeps it young.
async fn run_psql_with(url: &str, args: &[&str], psql_args: &[&str], sql: &str) -> Output {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), sql).unwrap();
    let mut all: Vec<String> = vec!["run".into()];
    if !args.contains(&"--lock-timeout") {
        all.extend(["--lock-timeout".into(), "30s".into()]);
    }
    all.extend(args.iter().map(|a| a.to_string()));
    all.extend(["--", PSQL, "-X"].iter().map(|a| a.to_string()));
    all.extend(psql_args.iter().map(|a| a.to_string()));
    all.extend([url, "-f"].iter().map(|a| a.to_string()));
    all.push(file.path().to_str().unwrap().to_string());
    let url = url.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_locksmith"))
            .args(&all)
            .env("DATABASE_URL", &url)
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    drop(file);
    out
}

async fn exists(admin: &Connection, table: &str) -> bool {
    admin
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .unwrap()
        .get(0)
}

/// A session idle in transaction after `sql`, and its pid.
async fn idle(incident: &Incident, app: &str, sql: &str) -> (Connection, i32) {
    let client = incident
        .app
        .with_application_name(app)
        .connect()
        .await
        .unwrap();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    client.batch_execute(sql).await.unwrap();
    (client, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_committed_attempt_is_not_rerun() {
    let incident = Incident::stage_shared("run_partial").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    let (_leaker, _) = idle(
        &incident,
        "leaky-app",
        "BEGIN; SELECT * FROM academic_partners LIMIT 1",
    )
    .await;
    // psql without -1: the CREATE TABLE commits on its own before the ALTER loses.
    let sql = "CREATE TABLE side_effect (id int);\n\
               ALTER TABLE academic_partners ADD COLUMN later text;\n";
    let out = run_psql(
        &incident.url,
        &["--format", "json", "--deadline", "10s"],
        sql,
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(3),
        "psql's own code: {}",
        text(&out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "failed", "{report}");
    assert_eq!(report["attempts"], 1, "not rerun: {report}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("side_effect"), "{error}");
    assert!(error.contains("the command's own"), "{error}");
    assert!(exists(&admin, "side_effect").await);
}

/// A script whose third statement meets a leaked idle-in-transaction lock,
/// with a fourth after it; the first two commit on their own (no `-1`).
const THIRD_LOSES: &str = "CREATE TABLE first_step (id int);\n\
                           CREATE TABLE second_step (id int);\n\
                           ALTER TABLE academic_partners ADD COLUMN blocked_step text;\n\
                           CREATE TABLE after_the_failure (id int);\n";

/// psql run as users write it (no `ON_ERROR_STOP`) is made to stop at the
/// statement that lost its lock race: the fourth statement never runs, the
/// run is not "applied", and the report says what committed and that exit
/// code 3 is psql's own (`command_exit_code`), not locksmith's "gave up".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_without_on_error_stop_stops_at_the_lost_statement() {
    let incident = Incident::stage_shared("run_psql_stops").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    let (_leaker, _) = idle(
        &incident,
        "leaky-app",
        "BEGIN; SELECT * FROM academic_partners LIMIT 1",
    )
    .await;
    let out = run_psql_with(
        &incident.url,
        &["--format", "json", "--deadline", "10s"],
        &[],
        THIRD_LOSES,
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "psql's own: {}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "failed", "{report}");
    assert_eq!(report["command_exit_code"], 3, "{report}");
    assert_eq!(report["attempts"], 1, "not rerun: {report}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("the command's own, psql's"), "{error}");
    let committed = report["committed"].as_str().unwrap();
    assert!(committed.contains("first_step"), "{committed}");
    assert!(committed.contains("second_step"), "{committed}");
    assert!(exists(&admin, "second_step").await);
    assert!(
        !exists(&admin, "after_the_failure").await,
        "psql ran on past the failed statement: {}",
        text(&out)
    );
}

/// psql told to run on past errors (`-v ON_ERROR_STOP=0`) exits 0 after its
/// third statement failed on lock_timeout: locksmith still sees the failure,
/// never says "applied", exits 1 and names what was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_statement_is_never_applied_when_the_command_exits_0() {
    let incident = Incident::stage_shared("run_exit_0_lost").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    let (_leaker, _) = idle(
        &incident,
        "leaky-app",
        "BEGIN; SELECT * FROM academic_partners LIMIT 1",
    )
    .await;
    let out = run_psql_with(
        &incident.url,
        &["--deadline", "10s"],
        &["-v", "ON_ERROR_STOP=0"],
        THIRD_LOSES,
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(!stderr.contains("applied:"), "{stderr}");
    assert!(stderr.contains("NOT applied"), "{stderr}");
    assert!(stderr.contains("exited 0"), "{stderr}");
    assert!(stderr.contains("first_step"), "{stderr}");
    // It did run on: the report must not pretend otherwise.
    assert!(exists(&admin, "after_the_failure").await);
    let blocked_step: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_attribute
             WHERE attrelid = 'academic_partners'::regclass AND attname = 'blocked_step'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(blocked_step, 0);
}

/// The same exit 0 with nothing committed is a lost lock race like any
/// other: looked at again, and given up blocked (exit 3) naming the leak,
/// never "applied".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_statement_with_nothing_committed_is_not_applied_after_exit_0() {
    let incident = Incident::stage_shared("run_exit_0_retry").await.unwrap();
    let (_leaker, pid) = idle(
        &incident,
        "leaky-app",
        "BEGIN; SELECT * FROM academic_partners LIMIT 1",
    )
    .await;
    let out = run_psql_with(
        &incident.url,
        &["--format", "json", "--deadline", "3s"],
        &["-v", "ON_ERROR_STOP=0"],
        "ALTER TABLE academic_partners ADD COLUMN blocked_step text;\n",
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "blocked", "{report}");
    assert_eq!(report["command_exit_code"], 0, "{report}");
    assert!(report["committed"].is_null(), "{report}");
    let blockers = report["blockers"].as_array().unwrap();
    assert!(blockers.iter().any(|b| b["pid"] == pid), "{report}");
}

/// `psql -1` (no `ON_ERROR_STOP` of its own) rolls the whole script back
/// at the statement that lost: nothing committed, so it is a lost race
/// (given up blocked here, the leak never ends), never "applied".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_single_transaction_is_rolled_back_whole_and_not_applied() {
    let incident = Incident::stage_shared("run_psql_single").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    let (_leaker, pid) = idle(
        &incident,
        "leaky-app",
        "BEGIN; SELECT * FROM academic_partners LIMIT 1",
    )
    .await;
    let out = run_psql_with(
        &incident.url,
        &["--format", "json", "--deadline", "3s"],
        &["-1"],
        THIRD_LOSES,
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "blocked", "{report}");
    assert_eq!(report["command_exit_code"], 3, "psql stopped: {report}");
    let blockers = report["blockers"].as_array().unwrap();
    assert!(blockers.iter().any(|b| b["pid"] == pid), "{report}");
    for table in ["first_step", "second_step", "after_the_failure"] {
        assert!(!exists(&admin, table).await, "{table} committed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_lock_blocker_is_reported_with_its_lock_type() {
    let incident = Incident::stage_shared("run_row_lock").await.unwrap();
    let (_locker, pid) = idle(
        &incident,
        "row-locker",
        "BEGIN; SELECT * FROM academic_partners WHERE id = 9 FOR UPDATE",
    )
    .await;
    let out = run_psql(
        &incident.url,
        &[
            "--format",
            "json",
            "--max-attempts",
            "5",
            "--lock-timeout",
            "400ms",
        ],
        "UPDATE academic_partners SET informal_name = 'nine' WHERE id = 9;\n",
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "blocked", "{report}");
    let blocker = report["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} not named: {report}"));
    assert_eq!(blocker["application_name"], "row-locker");
    let lock_type = blocker["lock_type"].as_str().unwrap();
    assert!(["transactionid", "tuple"].contains(&lock_type), "{blocker}");
    assert!(
        blocker["relation"].is_null() || blocker["relation"] == "academic_partners",
        "{blocker}"
    );
}

/// Runs `tool_sql` through `run --max-hold 500ms` while, once `held` (a
/// count on the admin connection) is positive, the app sends `request`,
/// which waits for the tool's hold. Returns the report and how long the
/// request waited; asserts `run` stopped the tool (exit 3, `hold_exceeded`).
async fn stopped_holding(
    incident: &Incident,
    tool_sql: &'static str,
    held: &str,
    request: &str,
) -> (Value, Duration) {
    let url = incident.url.clone();
    let run = tokio::spawn(async move {
        run_psql(&url, &["--format", "json", "--max-hold", "500ms"], tool_sql).await
    });
    let admin = incident.admin.connect().await.unwrap();
    wait::until(wait::BOUND, "the tool to hold its lock", || async {
        admin.query_one(held, &[]).await.unwrap().get::<_, i64>(0) > 0
    })
    .await
    .unwrap();
    let app = incident.app.connect().await.unwrap();
    let asked = Instant::now();
    app.batch_execute(request).await.unwrap();
    let waited = asked.elapsed();
    let out = run.await.unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "hold_exceeded", "{report}");
    (report, waited)
}

/// `--max-hold` for a wrapped tool: a statement that holds a lock blocking
/// traffic past the budget while requests wait is stopped on the server,
/// and `run` says so (exit 3, status `hold_exceeded`) instead of rerunning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapped_statement_holding_past_max_hold_is_stopped() {
    let incident = Incident::stage_shared("run_max_hold").await.unwrap();
    let (report, waited) = stopped_holding(
        &incident,
        "BEGIN;\nLOCK TABLE academic_partners IN ACCESS EXCLUSIVE MODE;\nSELECT pg_sleep(60);\nCOMMIT;\n",
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
         WHERE l.granted AND l.mode = 'AccessExclusiveLock'
           AND a.application_name LIKE 'locksmith-run-%'
           AND l.relation = 'academic_partners'::regclass",
        "SELECT count(*) FROM academic_partners",
    )
    .await;
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("AccessExclusiveLock on academic_partners"),
        "{error}"
    );
    // Stopped after about the budget, not after the tool's 60 s.
    assert!(
        waited < Duration::from_secs(20),
        "the request waited {waited:?}"
    );
}

/// `--max-hold` counts row locks for a wrapped tool as it does for `apply`
/// (one hold bound in the one session watch): a statement whose row locks a
/// writer has waited on past the budget is stopped, though no table lock
/// shows it, and `run` says so (exit 3, `hold_exceeded`, "row locks").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapped_statement_whose_row_locks_writers_wait_on_past_max_hold_is_stopped() {
    let incident = Incident::stage_shared("run_max_hold_rows").await.unwrap();
    let (report, waited) = stopped_holding(
        &incident,
        "BEGIN;\nUPDATE academic_partners SET informal_name = 'seven' WHERE id = 7;\n\
         SELECT pg_sleep(60);\nCOMMIT;\n",
        "SELECT count(*) FROM pg_stat_activity
         WHERE application_name LIKE 'locksmith-run-%' AND backend_xid IS NOT NULL
           AND query LIKE '%pg_sleep%'",
        "UPDATE academic_partners SET informal_name = 'VII' WHERE id = 7",
    )
    .await;
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("held row locks"), "{error}");
    // The tool's update was rolled back; the writer's stands.
    let admin = incident.admin.connect().await.unwrap();
    let name: String = admin
        .query_one(
            "SELECT informal_name FROM academic_partners WHERE id = 7",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "VII");
    assert!(
        waited < Duration::from_secs(20),
        "the writer waited {waited:?}"
    );
}

/// psql's script is planned from its own `-f` before it runs, so its first
/// attempt is looked before like every later one: a leaker idle in its
/// transaction past the long-lived threshold is waited out, never raced,
/// and the ALTER never queues (nor traffic behind it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_is_planned_from_its_file_and_a_long_lived_leaker_is_never_raced() {
    let incident = Incident::stage_shared("run_psql_plan").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    let (_leaker, pid) = idle(
        &incident,
        "leaky-app",
        "BEGIN; SELECT * FROM academic_partners LIMIT 1",
    )
    .await;
    support::idle_past_long_lived(&admin, &[pid]).await;
    let out = run_psql(
        &incident.url,
        &[
            "--format",
            "json",
            "--lock-timeout",
            "200ms",
            "--deadline",
            "2s",
        ],
        "\\set x 1\nALTER TABLE academic_partners ADD COLUMN never_added text;\n",
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "gave up: {}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "blocked", "{report}");
    assert_eq!(report["attempts"], 0, "never raced: {report}");
    let blockers: Vec<i64> = report["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(blockers, [i64::from(pid)], "{report}");
    let planned = &report["plan"]["statements"][0];
    assert_eq!(planned["line"], 2, "the meta-command's line kept: {report}");
    assert_eq!(planned["locks"][0]["relation"], "academic_partners");
    assert_eq!(planned["locks"][0]["mode"], "AccessExclusiveLock");
    assert_eq!(planned["blockers"][0]["pid"], i64::from(pid));
    let column: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns
                            WHERE column_name = 'never_added')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!column, "nothing ran");
    let queued: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(queued, 0, "nothing left queued");
}
