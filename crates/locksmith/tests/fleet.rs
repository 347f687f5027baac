//! `locksmith apply DIR --targets FILE` end to end, against real servers:
//! several databases on one or two throwaway clusters, each guarded on its
//! own; one target unreachable, refusing the password, blocked, or failing
//! never stops the others; a failing canary skips the rest; a bad line runs
//! nothing; Ctrl-C starts nothing new; kill -9 then a rerun finishes every
//! database, each migration once; a target behind PgBouncer.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use locksmith_pg::Connection;
use locksmith_sandbox::pooler::{PoolMode, Pooler};
use locksmith_sandbox::traffic::LeakedSessions;
use locksmith_sandbox::{shared, wait, Cluster};
use serde_json::Value;

mod support;
use support::{query_i64, text, write};

const NOTE: &str = "ALTER TABLE accounts ADD COLUMN note text;\n";
const AUDIT: &str = "CREATE TABLE audit (id int PRIMARY KEY, at timestamptz);\n";

/// A database of the fleet: its URL (with the password: never printed by
/// us) and a connection for checks.
struct Db {
    name: String,
    url: String,
    admin: Connection,
}

/// `n` fresh databases on `cluster`, each with the `accounts` table the
/// migrations alter.
async fn databases(cluster: &Cluster, hint: &str, n: usize) -> Vec<Db> {
    let mut dbs = Vec::with_capacity(n);
    for i in 0..n {
        let name = shared::unique_name(&format!("{hint}_{i}"));
        let settings = cluster.create_database(&name).await.unwrap();
        let admin = settings.connect().await.unwrap();
        admin
            .batch_execute("CREATE TABLE accounts (id int PRIMARY KEY)")
            .await
            .unwrap();
        dbs.push(Db {
            url: cluster.url(&name),
            name,
            admin,
        });
    }
    dbs
}

/// The two migrations, in a fresh folder.
fn migrations(second: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[("001_note.sql", NOTE), ("002_audit.sql", second)],
    );
    dir
}

/// A targets file listing `lines`.
fn targets(lines: &[String]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "# the fleet\n").unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
    file
}

/// How reports name `db`: its URL with the password hidden.
fn redacted(db: &Db) -> String {
    locksmith_pg::redact(&db.url)
}

fn urls(dbs: &[Db]) -> Vec<String> {
    dbs.iter().map(|d| d.url.clone()).collect()
}

/// `locksmith ARGS` with `stdin`, no `DATABASE_URL` (a fleet never falls back to it).
fn locksmith(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `apply DIR --targets FILE EXTRA… --format json`, its exit code and report.
fn apply_json(dir: &tempfile::TempDir, list: &str, extra: &[&str]) -> (Option<i32>, Value) {
    let mut args = vec![
        "apply",
        dir.path().to_str().unwrap(),
        "--targets",
        list,
        "--format",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = locksmith(&args, "");
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: not the JSON report: {}", text(&out)));
    (out.status.code(), report)
}

/// The report's entry for the target whose URL names database `name`.
fn entry<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["target"].as_str().unwrap().ends_with(&format!("/{name}")))
        .unwrap_or_else(|| panic!("no target {name} in {report:#}"))
}

fn status(report: &Value, db: &Db) -> String {
    entry(report, &db.name)["status"]
        .as_str()
        .unwrap()
        .to_string()
}

fn applied(report: &Value, db: &Db) -> Vec<String> {
    entry(report, &db.name)["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Migrations recorded in `db`'s history; 0 when it has no history table.
async fn recorded(db: &Db) -> i64 {
    if !touched(db).await {
        return 0;
    }
    query_i64(&db.admin, "SELECT count(*) FROM locksmith_migrations").await
}

/// Whether `db` has a history table at all (anything ran there).
async fn touched(db: &Db) -> bool {
    query_i64(
        &db.admin,
        "SELECT count(*) FROM pg_class WHERE relname = 'locksmith_migrations'",
    )
    .await
        > 0
}

#[tokio::test]
async fn every_database_is_applied_then_a_rerun_is_up_to_date() {
    let second = Cluster::start().unwrap();
    let mut dbs = databases(shared::cluster().unwrap(), "fleet_all", 3).await;
    dbs.extend(databases(&second, "fleet_all_b", 2).await);
    let dir = migrations(AUDIT);
    let list = targets(&urls(&dbs));

    let (code, report) = apply_json(&dir, list.path().to_str().unwrap(), &["--parallel", "2"]);
    assert_eq!(code, Some(0), "{report:#}");
    for db in &dbs {
        assert_eq!(status(&report, db), "applied", "{report:#}");
        assert_eq!(applied(&report, db), ["001_note", "002_audit"]);
        assert_eq!(recorded(db).await, 2);
        // The password never appears; the target is named with it redacted.
        let target = entry(&report, &db.name)["target"].as_str().unwrap();
        assert!(target.contains(":***@"), "{target}");
        assert!(entry(&report, &db.name)["duration_ms"].as_u64().is_some());
    }
    assert_eq!(report["summary"]["applied"], 5);
    assert_eq!(report["summary"]["failed"], 0);
    // In list order.
    let order: Vec<&str> = report["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert!(order[0].ends_with(&dbs[0].name) && order[4].ends_with(&dbs[4].name));

    // Again, the list on stdin, people's format: nothing pending anywhere.
    let list_text = urls(&dbs).join("\n");
    let out = locksmith(
        &["apply", dir.path().to_str().unwrap(), "--targets", "-"],
        &list_text,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("5 targets: 0 applied, 5 up to date"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains(shared_password()), "{}", text(&out));
    for db in &dbs {
        assert_eq!(recorded(db).await, 2);
    }
}

/// The sandbox superuser's password: it must never be printed.
fn shared_password() -> &'static str {
    locksmith_sandbox::cluster::SUPERUSER_PASSWORD
}

#[tokio::test]
async fn unreachable_and_wrong_password_targets_do_not_stop_the_others() {
    let cluster = shared::cluster().unwrap();
    let dbs = databases(cluster, "fleet_unreach", 3).await;
    // A port nobody listens on: bound, then closed.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut lines = vec![
        dbs[0].url.clone(),
        format!("postgresql://postgres:closed-secret@127.0.0.1:{closed}/nowhere"),
        format!(
            "host=127.0.0.1 port={} user=postgres password=wrong-secret dbname={}",
            cluster.port(),
            dbs[1].name
        ),
    ];
    lines.push(dbs[2].url.clone());
    let list = targets(&lines);
    let dir = migrations(AUDIT);

    let out = locksmith(
        &[
            "apply",
            dir.path().to_str().unwrap(),
            "--targets",
            list.path().to_str().unwrap(),
            "--format",
            "json",
            "--parallel",
            "1",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    for secret in ["closed-secret", "wrong-secret", shared_password()] {
        assert!(
            !text(&out).contains(secret),
            "{secret} printed: {}",
            text(&out)
        );
    }
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets[1]["status"], "unreachable", "{report:#}");
    assert!(
        targets[1]["target"]
            .as_str()
            .unwrap()
            .contains("postgres:***@127.0.0.1"),
        "{report:#}"
    );
    assert_eq!(targets[2]["status"], "unreachable", "{report:#}");
    assert!(
        targets[2]["error"]
            .as_str()
            .unwrap()
            .contains("password authentication failed"),
        "{report:#}"
    );
    assert_eq!(
        targets[2]["target"]
            .as_str()
            .unwrap()
            .matches("password=***")
            .count(),
        1
    );
    assert_eq!(status(&report, &dbs[0]), "applied");
    assert_eq!(status(&report, &dbs[2]), "applied");
    assert_eq!(report["summary"]["unreachable"], 2);
    assert_eq!(report["summary"]["applied"], 2);
    assert!(!touched(&dbs[1]).await, "the refused login ran nothing");
    assert_eq!(recorded(&dbs[0]).await, 2);
    assert_eq!(recorded(&dbs[2]).await, 2);

    // People's format: the unreachable ones first, passwords still hidden.
    let out = locksmith(
        &[
            "apply",
            dir.path().to_str().unwrap(),
            "--targets",
            list.path().to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    for secret in ["closed-secret", "wrong-secret", shared_password()] {
        assert!(
            !text(&out).contains(secret),
            "{secret} printed: {}",
            text(&out)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = stdout.lines().skip(1).take(4).collect();
    assert!(
        rows[0].contains("unreachable") && rows[1].contains("unreachable"),
        "{stdout}"
    );
    assert!(
        rows[2].contains("up to date") && rows[3].contains("up to date"),
        "{stdout}"
    );
}

#[tokio::test]
async fn a_blocked_target_gives_up_naming_its_blocker_and_the_others_apply() {
    let cluster = shared::cluster().unwrap();
    let dbs = databases(cluster, "fleet_blocked", 3).await;
    // The application left a transaction open on the middle database: it
    // holds ACCESS SHARE on accounts, which 001_note must lock exclusively.
    let leaked = LeakedSessions::open(&cluster.settings(&dbs[1].name, "leaky-app"), 1, "accounts")
        .await
        .unwrap();
    let list = targets(&urls(&dbs));
    let dir = migrations(AUDIT);

    // One at a time: the database after the blocked one starts only once it gave up.
    let (code, report) = apply_json(
        &dir,
        list.path().to_str().unwrap(),
        &["--deadline", "2s", "--parallel", "1"],
    );
    assert_eq!(code, Some(3), "{report:#}");
    let blocked = entry(&report, &dbs[1].name);
    assert_eq!(blocked["status"], "gave_up", "{report:#}");
    assert_eq!(
        blocked["blockers"][0]["pid"],
        leaked.pids()[0],
        "{report:#}"
    );
    assert_eq!(blocked["blockers"][0]["application_name"], "leaky-app");
    assert_eq!(blocked["blockers"][0]["state"], "idle in transaction");
    assert!(
        blocked["error"].as_str().unwrap().contains("001_note.sql"),
        "{report:#}"
    );
    assert_eq!(applied(&report, &dbs[1]), Vec::<String>::new());
    assert_eq!(recorded(&dbs[1]).await, 0);
    assert_eq!(
        query_i64(&dbs[1].admin, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'note'").await,
        0
    );
    for db in [&dbs[0], &dbs[2]] {
        assert_eq!(status(&report, db), "applied", "{report:#}");
        assert_eq!(recorded(db).await, 2);
    }
    assert_eq!(report["summary"]["gave_up"], 1);
    assert_eq!(
        leaked.alive(),
        1,
        "the application's session was left alone"
    );
}

#[tokio::test]
async fn a_failing_migration_rolls_back_on_its_target_only() {
    let cluster = shared::cluster().unwrap();
    let dbs = databases(cluster, "fleet_fail", 3).await;
    // Only this database already has the table 002 creates.
    dbs[1]
        .admin
        .batch_execute("CREATE TABLE audit (id int)")
        .await
        .unwrap();
    let list = targets(&urls(&dbs));
    // 002 also adds a column first: it must be rolled back with the CREATE.
    let dir = migrations(&format!(
        "ALTER TABLE accounts ADD COLUMN flag bool;\n{AUDIT}"
    ));

    let out = locksmith(
        &[
            "apply",
            dir.path().to_str().unwrap(),
            "--targets",
            list.path().to_str().unwrap(),
            "--parallel",
            "1",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first_row = stdout.lines().nth(1).unwrap();
    assert!(
        first_row.contains(&dbs[1].name) && first_row.contains("failed"),
        "failures first: {stdout}"
    );
    assert!(first_row.contains("already exists"), "{stdout}");
    assert!(
        stdout.contains("3 targets: 2 applied, 0 up to date, 0 gave up, 1 failed"),
        "{stdout}"
    );
    assert_eq!(recorded(&dbs[1]).await, 1, "001 applied, 002 rolled back");
    assert_eq!(
        query_i64(&dbs[1].admin, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'flag'").await,
        0,
        "the failed migration's first statement was rolled back"
    );
    for db in [&dbs[0], &dbs[2]] {
        assert_eq!(recorded(db).await, 2);
    }

    // The rerun tries only what is pending: 002 on the failed database.
    let (code, report) = apply_json(&dir, list.path().to_str().unwrap(), &[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(status(&report, &dbs[1]), "failed");
    assert_eq!(applied(&report, &dbs[1]), Vec::<String>::new());
    assert!(entry(&report, &dbs[1].name)["error"]
        .as_str()
        .unwrap()
        .contains("002_audit.sql"));
    assert_eq!(status(&report, &dbs[0]), "up_to_date");
    assert_eq!(status(&report, &dbs[2]), "up_to_date");
}

#[tokio::test]
async fn a_failing_canary_skips_the_rest() {
    let cluster = shared::cluster().unwrap();
    let dbs = databases(cluster, "fleet_canary", 4).await;
    dbs[0]
        .admin
        .batch_execute("CREATE TABLE audit (id int)")
        .await
        .unwrap();
    let list = targets(&urls(&dbs));
    let dir = migrations(AUDIT);

    let (code, report) = apply_json(
        &dir,
        list.path().to_str().unwrap(),
        &["--canary", "1", "--parallel", "4"],
    );
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(status(&report, &dbs[0]), "failed");
    for db in &dbs[1..] {
        let skipped = entry(&report, &db.name);
        assert_eq!(skipped["status"], "skipped", "{report:#}");
        assert!(
            skipped["error"]
                .as_str()
                .unwrap()
                .contains(&format!("canary target {} ended failed", redacted(&dbs[0]))),
            "{report:#}"
        );
        assert!(!touched(db).await, "{} was touched", db.name);
    }
    assert_eq!(report["summary"]["skipped"], 3);

    // A canary that applies lets the rest run.
    dbs[0]
        .admin
        .batch_execute("DROP TABLE audit")
        .await
        .unwrap();
    let (code, report) = apply_json(&dir, list.path().to_str().unwrap(), &["--canary", "2"]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["summary"]["applied"], 4);
    assert_eq!(status(&report, &dbs[0]), "applied");
    assert_eq!(applied(&report, &dbs[0]), ["002_audit"]);
}

#[tokio::test]
async fn a_bad_line_stops_everything_before_anything_runs() {
    let cluster = shared::cluster().unwrap();
    let dbs = databases(cluster, "fleet_badline", 1).await;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(
        file,
        "{}\n# a comment\nthe-primary-db password=hunter2x\n",
        dbs[0].url
    )
    .unwrap();
    let dir = migrations(AUDIT);
    let path = file.path().to_str().unwrap();
    let out = locksmith(
        &["apply", dir.path().to_str().unwrap(), "--targets", path],
        "",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains(&format!("{path}:3")), "{}", text(&out));
    assert!(!text(&out).contains("hunter2x"), "{}", text(&out));
    assert!(!touched(&dbs[0]).await, "nothing ran anywhere");

    let out = locksmith(
        &["apply", dir.path().to_str().unwrap(), "--targets", "-"],
        "\n\nnot a connection string\n",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("stdin:3"), "{}", text(&out));

    // --database-url names one database; --targets many: not both.
    let out = locksmith(
        &[
            "apply",
            dir.path().to_str().unwrap(),
            "--targets",
            path,
            "--database-url",
            &dbs[0].url,
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("cannot be used with"), "{}", text(&out));
}

/// Whether a session of `locksmith apply` is connected to `db`.
async fn runner_connected(db: &Db) -> bool {
    query_i64(
        &db.admin,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND application_name = 'locksmith apply'",
            db.name
        ),
    )
    .await
        > 0
}

#[tokio::test]
async fn ctrl_c_starts_no_new_target_and_rolls_back_the_running_one() {
    let cluster = shared::cluster().unwrap();
    let dbs = databases(cluster, "fleet_int", 4).await;
    let leaked = LeakedSessions::open(&cluster.settings(&dbs[1].name, "leaky-app"), 1, "accounts")
        .await
        .unwrap();
    let list = targets(&urls(&dbs));
    let dir = migrations(AUDIT);
    let child = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args([
            "apply",
            dir.path().to_str().unwrap(),
            "--targets",
            list.path().to_str().unwrap(),
            "--parallel",
            "1",
            "--format",
            "json",
        ])
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first database done, the second past its history checks (its
    // table made) and so at its migrations, where the leaked session holds it.
    wait::until(
        Duration::from_secs(60),
        "the fleet to reach the second database's migrations",
        || async { recorded(&dbs[0]).await == 2 && touched(&dbs[1]).await },
    )
    .await
    .unwrap();
    // SAFETY: kill(2) on our own child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status(&report, &dbs[0]), "applied");
    // Stopped in its first migration, rolled back, nothing applied there.
    let stopped = entry(&report, &dbs[1].name);
    assert_eq!(stopped["status"], "failed", "{report:#}");
    assert!(
        stopped["error"]
            .as_str()
            .unwrap()
            .contains("001_note.sql: interrupted"),
        "{report:#}"
    );
    assert_eq!(stopped["applied"], serde_json::json!([]));
    for db in &dbs[2..] {
        let skipped = entry(&report, &db.name);
        assert_eq!(skipped["status"], "skipped", "{report:#}");
        assert!(
            skipped["error"].as_str().unwrap().contains("interrupted"),
            "{report:#}"
        );
        assert!(!touched(db).await);
    }
    assert_eq!(recorded(&dbs[1]).await, 0);
    // No lock request of ours was left queued behind the leaked session.
    wait::until(
        wait::BOUND,
        "our sessions on the blocked database to end",
        || async { !runner_connected(&dbs[1]).await },
    )
    .await
    .unwrap();
    assert_eq!(leaked.alive(), 1);
}

#[tokio::test]
async fn kill_9_mid_fleet_then_a_rerun_finishes_every_database_once() {
    let cluster = shared::cluster().unwrap();
    let dbs = databases(cluster, "fleet_kill", 6).await;
    let list = targets(&urls(&dbs));
    // Each database takes a moment, so the kill lands with some done, some not.
    let dir = migrations(&format!("{AUDIT}SELECT pg_sleep(0.3);\n"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args([
            "apply",
            dir.path().to_str().unwrap(),
            "--targets",
            list.path().to_str().unwrap(),
            "--parallel",
            "2",
        ])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut any_recorded = || async {
        for db in &dbs {
            if recorded(db).await > 0 {
                return true;
            }
        }
        false
    };
    wait::until(
        Duration::from_secs(60),
        "a database to record a migration",
        &mut any_recorded,
    )
    .await
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let mut finished = 0;
    for db in &dbs {
        let n = recorded(db).await;
        assert!(n <= 2);
        finished += usize::from(n == 2);
    }
    assert!(
        finished < dbs.len(),
        "the kill landed after the fleet was done"
    );

    let (code, report) = apply_json(&dir, list.path().to_str().unwrap(), &[]);
    assert_eq!(code, Some(0), "{report:#}");
    for db in &dbs {
        assert!(status(&report, db) == "applied" || status(&report, db) == "up_to_date");
        assert_eq!(
            query_i64(
                &db.admin,
                "SELECT count(DISTINCT version) FROM locksmith_migrations"
            )
            .await,
            2
        );
        assert_eq!(recorded(db).await, 2, "each migration exactly once");
    }
}

#[tokio::test]
async fn a_target_behind_pgbouncer_is_applied_like_the_others() {
    let cluster = shared::cluster().unwrap();
    let dbs = databases(cluster, "fleet_pooled", 2).await;
    let pooler = Pooler::start(cluster, PoolMode::Transaction).unwrap_or_else(|e| panic!("{e}"));
    let lines = vec![dbs[0].url.clone(), pooler.url(&dbs[1].name)];
    let list = targets(&lines);
    let dir = migrations(AUDIT);

    let (code, report) = apply_json(&dir, list.path().to_str().unwrap(), &[]);
    assert_eq!(code, Some(0), "{report:#}");
    for db in &dbs {
        assert_eq!(status(&report, db), "applied", "{report:#}");
        assert_eq!(recorded(db).await, 2);
    }
    let (code, report) = apply_json(&dir, list.path().to_str().unwrap(), &[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["summary"]["up_to_date"], 2);
}

#[tokio::test]
async fn blockers_and_doctor_report_every_target_with_its_name() {
    let cluster = shared::cluster().unwrap();
    let dbs = databases(cluster, "fleet_diag", 3).await;
    // On the middle database: a session idle in transaction, and an ALTER
    // queued behind it (an outage in progress).
    let leaked = LeakedSessions::open(&cluster.settings(&dbs[1].name, "leaky-app"), 1, "accounts")
        .await
        .unwrap();
    let alter = cluster
        .settings(&dbs[1].name, "queued-ddl")
        .connect()
        .await
        .unwrap();
    let queued = tokio::spawn(async move {
        alter
            .batch_execute("ALTER TABLE accounts ADD COLUMN x int")
            .await
    });
    wait::until(wait::BOUND, "the ALTER to queue", || async {
        query_i64(
            &dbs[1].admin,
            "SELECT count(*) FROM pg_locks WHERE NOT granted",
        )
        .await
            > 0
    })
    .await
    .unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut lines = urls(&dbs);
    lines.push(format!(
        "postgresql://postgres:closed-secret@127.0.0.1:{closed}/nowhere"
    ));
    let list = targets(&lines);
    let path = list.path().to_str().unwrap();

    let out = locksmith(&["blockers", "--targets", path, "--format", "json"], "");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(!text(&out).contains(shared_password()) && !text(&out).contains("closed-secret"));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let blocked = entry(&report, &dbs[1].name);
    assert_eq!(
        blocked["blockers"][0]["pid"],
        leaked.pids()[0],
        "{report:#}"
    );
    for db in [&dbs[0], &dbs[2]] {
        assert_eq!(entry(&report, &db.name)["blockers"], serde_json::json!([]));
        // The same keys as a single `blockers` report.
        assert!(
            entry(&report, &db.name)["connections"].is_object(),
            "{report:#}"
        );
    }
    let unreachable = &report["targets"][3];
    assert!(
        unreachable["error"]
            .as_str()
            .unwrap()
            .contains("could not connect"),
        "{report:#}"
    );

    let out = locksmith(&["blockers", "--targets", path], "");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("/{}\n", dbs[1].name)), "{stdout}");
    assert!(stdout.contains("leaky-app"), "{stdout}");
    assert!(
        stdout.contains(
            "4 targets: 1 to look at (above), 1 could not be read, 2 with nothing to report"
        ),
        "{stdout}"
    );

    let out = locksmith(&["doctor", "--targets", path, "--format", "json"], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    for db in &dbs {
        let findings = entry(&report, &db.name)["findings"].as_array().unwrap();
        assert!(findings.iter().all(|f| f["id"].is_string()), "{report:#}");
    }
    // The sandbox leaves idle_in_transaction_session_timeout off: each
    // target says so, under its own name.
    for db in &dbs {
        let ids: Vec<&str> = entry(&report, &db.name)["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap())
            .collect();
        assert!(
            ids.contains(&"idle_in_transaction_session_timeout"),
            "{ids:?}"
        );
    }
    let out = locksmith(&["doctor", "--targets", path], "");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for db in &dbs {
        assert!(stdout.contains(&format!("/{}\n", db.name)), "{stdout}");
    }
    assert!(stdout.contains("1 could not be read"), "{stdout}");
    assert!(report["targets"][3]["error"].is_string());

    leaked.commit().await.unwrap();
    queued.await.unwrap().unwrap();
}
