//! A whole-table `UPDATE` never makes writers wait for all of it: under
//! `apply --online` it runs in key-range batches, each its own short
//! transaction, resumable after kill -9 without updating a row twice; without
//! `--online`, `--max-hold` stops it once writers have waited on its row
//! locks that long. What batches would change (`UPDATE … FROM`, a table
//! without a key) is refused before anything runs.

use std::time::{Duration, Instant};

use locksmith_sandbox::incident::Incident;
use locksmith_sandbox::traffic::{Query, Traffic, TrafficProfile, TrafficReport};
use serde_json::Value;

mod support;
use support::online::{
    assert_finished, assert_not_applied, folder, progress, spawn_online, staged,
};
use support::{dir_arg, locksmith, query_i64, text};

const ROWS: i64 = 300_000;

/// `accounts` with `ROWS` zero balances, and a migration that adds 1000 to
/// each: a few seconds of work (an `md5` of a long string per row), not
/// idempotent, so a row updated twice shows.
const SETUP: &str = "
    CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL DEFAULT 0);
    INSERT INTO accounts SELECT i, 0 FROM generate_series(1, 300000) AS i;
    ANALYZE accounts;";

const BUMP: &str =
    "UPDATE accounts SET balance = balance + 1000 + 0 * length(md5(repeat(id::text, 600)));\n";

/// The one migration file of these tests.
const FILE: &str = "1_bump.sql";

/// A writer adding 1 to one account at a time, spread over the whole table,
/// every request timed: what an application sees while the UPDATE runs.
fn writer(incident: &Incident) -> Traffic {
    Traffic::start(
        incident.admin.with_application_name("web-app"),
        TrafficProfile {
            rate: 40.0,
            pool_size: 8,
            queries: vec![Query {
                sql: "UPDATE accounts SET balance = balance + 1 WHERE id = $1 * 7919 % 300000 + 1"
                    .into(),
                share: 1.0,
            }],
            keys: 300_000,
            gateway_timeout: Duration::from_secs(30),
        },
    )
}

/// Runs `locksmith ARGS` while the writer writes; returns its output and
/// what the writer saw.
async fn under_writes(incident: &Incident, args: &[&str]) -> (std::process::Output, TrafficReport) {
    let traffic = writer(incident);
    locksmith_sandbox::wait::until(Duration::from_secs(30), "writes", || async {
        traffic.live().served >= 5
    })
    .await
    .unwrap();
    let url = incident.url.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        locksmith(&url, &args)
    })
    .await
    .unwrap();
    (out, traffic.stop().await)
}

/// The writes that committed: every request that did not fail.
fn committed(report: &TrafficReport) -> i64 {
    assert_eq!(report.errors, 0, "{:?}", report.first_errors);
    report.requests as i64
}

#[tokio::test]
async fn a_whole_table_update_runs_in_batches_and_writers_wait_one_batch_at_most() {
    let (incident, admin) = staged("batches_writers", SETUP).await;
    let dir = folder(FILE, BUMP);
    let started = Instant::now();
    let (out, writes) = under_writes(&incident, &["apply", dir_arg(dir.path()), "--online"]).await;
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        writes.max_stall_ms < 2_000,
        "a writer waited {} ms during a {took:?} batched UPDATE",
        writes.max_stall_ms
    );
    // Progress lines came from the batches, not one line per batch's attempt.
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("accounts: 300000 of ~"), "{said}");
    assert!(said.matches("attempt 1:").count() < 3, "{said}");
    // Every row got its 1000 exactly once, and no write of the writer was lost.
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM accounts WHERE balance < 1000").await,
        0
    );
    assert_eq!(
        query_i64(&admin, "SELECT sum(balance)::bigint FROM accounts").await,
        ROWS * 1000 + committed(&writes)
    );
    assert_finished(&admin, 1).await;
}

/// Without `--online`, the same UPDATE runs as written, and `--max-hold`
/// bounds what writers wait on its row locks: it is stopped and rolled back
/// once they have waited that long (before, it ran to its end and a writer
/// waited for all of it).
#[tokio::test]
async fn max_hold_stops_a_whole_table_update_that_makes_writers_wait() {
    let (incident, admin) = staged("batches_max_hold", SETUP).await;
    let dir = folder(FILE, BUMP);
    let (out, writes) = under_writes(
        &incident,
        &[
            "apply",
            dir_arg(dir.path()),
            "--max-hold",
            "1s",
            "--format",
            "json",
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "hold_exceeded");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("row locks on the rows it changed in accounts"),
        "{error}"
    );
    assert!(
        error.contains("apply --online runs it in batches"),
        "{error}"
    );
    assert!(
        writes.max_stall_ms < 2_500,
        "a writer waited {} ms with --max-hold 1s",
        writes.max_stall_ms
    );
    // Rolled back: only the writer's own writes are there.
    assert_eq!(
        query_i64(&admin, "SELECT sum(balance)::bigint FROM accounts").await,
        committed(&writes)
    );
    assert_not_applied(&admin).await;
}

/// kill -9 in the middle of the batches, then one rerun: it goes on after
/// the last committed batch, and no row gets its 1000 twice.
#[tokio::test]
async fn kill_9_mid_batches_then_one_rerun_updates_each_row_once() {
    let (incident, admin) = staged("batches_kill", SETUP).await;
    let dir = folder(FILE, BUMP);
    let mut child = spawn_online(&incident.url, dir.path(), &[]);
    let started = Instant::now();
    loop {
        let done = progress(
            &admin,
            "SELECT coalesce(max(rows_done), 0)::bigint FROM locksmith_online_steps WHERE NOT done",
        )
        .await;
        if done >= 20_000 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before the kill"
        );
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {done} rows done"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = query_i64(&admin, "SELECT count(*) FROM accounts WHERE balance = 1000").await;
    assert!(
        partial > 0 && partial < ROWS,
        "{partial} rows updated at the kill"
    );

    let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM accounts WHERE balance <> 1000"
        )
        .await,
        0
    );
    assert_finished(&admin, 1).await;
}

/// What batches would change, or cannot range over, is refused with why and
/// what to do, before anything runs.
#[tokio::test]
async fn an_update_batches_would_change_is_refused_before_anything_runs() {
    let (incident, admin) = staged("batches_refused", SETUP).await;
    admin
        .batch_execute(
            "CREATE TABLE ledger (account int, amount int); INSERT INTO ledger VALUES (1, 5)",
        )
        .await
        .unwrap();
    for (sql, why) in [
        (
            "UPDATE accounts SET balance = l.amount FROM ledger l WHERE l.account = accounts.id;\n",
            "UPDATE … FROM reads other rows",
        ),
        (
            "UPDATE ledger SET amount = amount + 1;\n",
            "has no single-column primary key",
        ),
    ] {
        let dir = folder(FILE, &format!("CREATE TABLE notes (id int);\n{sql}"));
        let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
        assert_eq!(out.status.code(), Some(2), "{sql}: {}", text(&out));
        let said = text(&out);
        assert!(said.contains("1_bump.sql:2:1"), "{said}");
        assert!(said.contains(why), "{said}");
        assert!(said.contains("without --online"), "{said}");
    }
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_class WHERE relname = 'notes'"
        )
        .await,
        0
    );
    assert_eq!(
        query_i64(&admin, "SELECT sum(amount)::bigint FROM ledger").await,
        5
    );
}

/// The dry run says the UPDATE runs in batches (human and JSON), and runs nothing.
#[tokio::test]
async fn the_dry_run_says_an_update_runs_in_batches() {
    let (incident, admin) = staged("batches_dry", SETUP).await;
    let dir = folder(FILE, BUMP);
    let out = locksmith(
        &incident.url,
        &["apply", dir_arg(dir.path()), "--online", "--dry-run"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("step 1 (in batches over the table's key, one transaction each)"),
        "{}",
        text(&out)
    );
    let out = locksmith(
        &incident.url,
        &[
            "apply",
            dir_arg(dir.path()),
            "--online",
            "--dry-run",
            "--format",
            "json",
        ],
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["migrations"][0]["online"][0]["batched"], true);
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM accounts WHERE balance <> 0").await,
        0
    );
}
