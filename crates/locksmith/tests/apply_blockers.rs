//! `apply` against blockers its look must see, and traffic it must not
//! mistake for them: healthy ORM transactions are raced; a holder on a
//! partition, a row lock, a role's catalog row held from another database,
//! and what a concurrent index build waits for are named in the JSON report
//! and ended by `--terminate-idle-after`; giving up keeps the deadline.

use std::time::{Duration, Instant};

use locksmith_pg::Connection;
use locksmith_pg::ConnectionSettings;
use locksmith_sandbox::incident::{Incident, TABLE};
use locksmith_sandbox::orm::OrmTraffic;
use locksmith_sandbox::traffic::LeakedSessions;
use serde_json::Value;

mod support;
use support::{locksmith, query_i64, text};

/// A folder holding one migration file.
fn migration(sql: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("1_change.sql"), sql).unwrap();
    dir
}

fn path(dir: &tempfile::TempDir) -> &str {
    dir.path().to_str().unwrap()
}

/// A session that ran `sql` and stays idle in its transaction; returns it and its pid.
async fn idle_in_transaction(settings: &ConnectionSettings, sql: &str) -> (Connection, i32) {
    let client = settings.connect().await.unwrap();
    let pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    client.batch_execute(sql).await.unwrap();
    (client, pid)
}

/// Polls until `pid` has been idle in transaction at least `idle`, bounded by 30 s.
async fn wait_idle(admin: &Connection, pid: i32, idle: Duration) {
    let started = Instant::now();
    loop {
        let ok: bool = admin
            .query_one(
                "SELECT coalesce(bool_or(state = 'idle in transaction'
                        AND now() - state_change >= make_interval(secs => $2::float8)), false)
                 FROM pg_stat_activity WHERE pid = $1",
                &[&pid, &idle.as_secs_f64()],
            )
            .await
            .unwrap()
            .get(0);
        if ok {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "pid {pid} never went idle"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `apply` with a short deadline: it must give up (exit 3) naming
/// `pid` of `application` in the JSON report. Returns the report.
fn named_when_blocked(url: &str, dir: &str, pid: i32, application: &str) -> Value {
    let out = locksmith(url, &["apply", dir, "--deadline", "2s", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let blocked: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(blocked["status"], "blocked", "{blocked}");
    let named = blocker(&blocked, pid);
    assert_eq!(named["application_name"], application, "{named}");
    assert_ne!(named["relation"], "", "{named}");
    assert!(named["lock_type"].is_string(), "{named}");
    blocked
}

/// The blocker `pid` in a report.
fn blocker(report: &Value, pid: i32) -> &Value {
    report["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["pid"] == pid)
        .unwrap_or_else(|| panic!("pid {pid} not named: {report}"))
}

/// Runs `apply --terminate-idle-after 500ms`: it must apply (exit 0) having
/// terminated exactly `pid`.
fn applies_terminating(url: &str, dir: &str, pid: i32) {
    let out = locksmith(
        url,
        &[
            "apply",
            dir,
            "--terminate-idle-after",
            "500ms",
            "--deadline",
            "20s",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let applied: Value = serde_json::from_slice(&out.stdout).unwrap();
    let terminated: Vec<i64> = applied["terminated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(terminated, vec![pid as i64], "{applied}");
}

/// Polls until some of the ORM clients' updates have committed, bounded by 30 s.
async fn wait_for_traffic(admin: &Connection) {
    let started = Instant::now();
    while query_i64(
        admin,
        "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'academic_partners'",
    )
    .await
        < 50
    {
        assert!(started.elapsed() < Duration::from_secs(30), "no traffic");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_orm_traffic_is_raced_not_waited_for() {
    let incident = Incident::stage_shared("apply_orm").await.unwrap();
    let orm = OrmTraffic::start(&incident.app, 8, TABLE, Duration::from_millis(5))
        .await
        .unwrap();
    let dir = migration("ALTER TABLE academic_partners ADD COLUMN country text;\n");
    // Wait until the clients are busy, and keep them running while apply runs.
    let admin = incident.admin.connect().await.unwrap();
    wait_for_traffic(&admin).await;
    let started = Instant::now();
    let (url, d) = (incident.url.clone(), path(&dir).to_string());
    let out =
        tokio::task::spawn_blocking(move || locksmith(&url, &["apply", &d, "--deadline", "30s"]))
            .await
            .unwrap();
    let took = started.elapsed();
    let report = orm.stop().await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}: {}",
        text(&out)
    );
    // Raced, not waited for: the guard took its locks with NOWAIT attempts
    // and never stood aside for the clients' short transactions.
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("attempt 1: taking locks with NOWAIT"),
        "{said}"
    );
    assert!(
        !said.contains("not queueing"),
        "waited for healthy traffic: {said}"
    );
    assert!(report.committed > 100, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    // Generous: an attempt makes traffic wait at most its budget (200 ms).
    assert!(report.worst < Duration::from_millis(1500), "{report:?}");
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'country'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn holder_on_a_partition_is_named_and_terminated() {
    let incident = Incident::stage_shared("apply_partition").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    admin
        .batch_execute(
            "CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
             CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
             CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
             GRANT SELECT ON events, events_2024, events_2025 TO app",
        )
        .await
        .unwrap();
    let leaked = LeakedSessions::open(
        &incident.app.with_application_name("partition-app"),
        1,
        "events_2024",
    )
    .await
    .unwrap();
    let pid = leaked.pids()[0];
    let dir = migration("ALTER TABLE events ADD COLUMN note text;\n");
    let blocked = named_when_blocked(&incident.url, path(&dir), pid, "partition-app");
    let named = blocker(&blocked, pid);
    assert_eq!(named["relation"], "events_2024", "{blocked}");
    assert_eq!(named["mode"], "AccessShareLock", "{blocked}");
    applies_terminating(&incident.url, path(&dir), pid);
    let started = Instant::now();
    while leaked.alive() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the holder lives on"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'events_2024' AND column_name = 'note'").await,
        1
    );
}

#[tokio::test]
async fn row_lock_left_idle_is_named_and_terminated() {
    let incident = Incident::stage_shared("apply_row_lock").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    let (holder, pid) = idle_in_transaction(
        &incident.app.with_application_name("row-locker"),
        "BEGIN; SELECT * FROM academic_partners WHERE id = 7 FOR UPDATE",
    )
    .await;
    let dir = migration("UPDATE academic_partners SET informal_name = 'seven' WHERE id = 7;\n");
    let blocked = named_when_blocked(&incident.url, path(&dir), pid, "row-locker");
    let named = blocker(&blocked, pid);
    assert!(
        ["transactionid", "tuple"].contains(&named["lock_type"].as_str().unwrap()),
        "{named}"
    );
    applies_terminating(&incident.url, path(&dir), pid);
    assert!(holder.is_closed() || holder.batch_execute("SELECT 1").await.is_err());
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM academic_partners WHERE id = 7 AND informal_name = 'seven'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn role_held_from_another_database_is_named_and_terminated() {
    let incident = Incident::stage_shared("apply_role").await.unwrap();
    let cluster = locksmith_sandbox::shared::cluster().unwrap();
    let other = cluster
        .create_database(&locksmith_sandbox::shared::unique_name("apply_role_other"))
        .await
        .unwrap();
    let role = locksmith_sandbox::shared::unique_name("reporting");
    let admin = incident.admin.connect().await.unwrap();
    admin
        .batch_execute(&format!("CREATE ROLE \"{role}\" NOLOGIN"))
        .await
        .unwrap();
    // Roles are shared catalog rows: this session, in another database, holds the role's row.
    let (_holder, pid) = idle_in_transaction(
        &other.with_application_name("role-admin"),
        &format!("BEGIN; ALTER ROLE \"{role}\" CONNECTION LIMIT 5"),
    )
    .await;
    let dir = migration(&format!("ALTER ROLE \"{role}\" CONNECTION LIMIT 10;\n"));
    named_when_blocked(&incident.url, path(&dir), pid, "role-admin");
    applies_terminating(&incident.url, path(&dir), pid);
    assert_eq!(
        query_i64(
            &admin,
            &format!("SELECT rolconnlimit::bigint FROM pg_roles WHERE rolname = '{role}'")
        )
        .await,
        10
    );
}

const INDEX: &str = "CREATE INDEX CONCURRENTLY partners_name ON academic_partners (name);\n";

async fn index_state(admin: &Connection) -> (i64, i64) {
    let row = admin
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE i.indisvalid)
             FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid WHERE c.relname = 'partners_name'",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

#[tokio::test]
async fn concurrent_build_behind_a_leaked_writer() {
    let incident = Incident::stage_shared("apply_cic_writer").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    let (_writer, pid) = idle_in_transaction(
        &incident.app.with_application_name("leaked-writer"),
        "BEGIN; UPDATE academic_partners SET name = name WHERE id = 3",
    )
    .await;
    wait_idle(&admin, pid, Duration::from_millis(300)).await;
    let dir = migration(INDEX);
    let blocked = named_when_blocked(&incident.url, path(&dir), pid, "leaked-writer");
    assert_eq!(
        blocker(&blocked, pid)["mode"],
        "RowExclusiveLock",
        "{blocked}"
    );
    assert_eq!(
        index_state(&admin).await,
        (0, 0),
        "no index, valid or not, is left"
    );
    applies_terminating(&incident.url, path(&dir), pid);
    assert_eq!(index_state(&admin).await, (1, 1));
}

#[tokio::test]
async fn concurrent_build_behind_an_old_snapshot() {
    let incident = Incident::stage_shared("apply_cic_snapshot").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    admin
        .batch_execute("CREATE TABLE unrelated (id int); GRANT SELECT ON unrelated TO app")
        .await
        .unwrap();
    // A repeatable-read transaction on another table: the build still waits for its snapshot.
    let (_reader, pid) = idle_in_transaction(
        &incident.app.with_application_name("old-snapshot"),
        "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM unrelated",
    )
    .await;
    wait_idle(&admin, pid, Duration::from_millis(300)).await;
    let dir = migration(INDEX);
    let blocked = named_when_blocked(&incident.url, path(&dir), pid, "old-snapshot");
    let named = blocker(&blocked, pid);
    assert_eq!(named["lock_type"], "snapshot", "{blocked}");
    assert!(named["relation"].is_null(), "{blocked}");
    assert_eq!(
        index_state(&admin).await,
        (0, 0),
        "no index, valid or not, is left"
    );
    applies_terminating(&incident.url, path(&dir), pid);
    assert_eq!(index_state(&admin).await, (1, 1));
}

#[tokio::test]
async fn giving_up_keeps_the_deadline_while_attempts_lose_races() {
    let incident = Incident::stage_shared("apply_deadline").await.unwrap();
    // Young for a 5 s budget, so the guard races it rather than waiting it out:
    // every attempt loses, and the backoff between them grows.
    let leaked = LeakedSessions::open(&incident.app.with_application_name("racer"), 1, TABLE)
        .await
        .unwrap();
    let dir = migration("ALTER TABLE academic_partners ADD COLUMN late text;\n");
    let started = Instant::now();
    let out = locksmith(
        &incident.url,
        &[
            "apply",
            path(&dir),
            "--lock-timeout",
            "5s",
            "--deadline",
            "3s",
            "--format",
            "json",
        ],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["attempts"].as_i64().unwrap() >= 6,
        "attempts lost races: {report}"
    );
    assert_eq!(report["blockers"][0]["pid"], leaked.pids()[0], "{report}");
    assert!(
        took < Duration::from_secs(5),
        "gave up after {took:?} for a 3 s deadline"
    );
}

#[tokio::test]
async fn zero_deadline_with_nothing_blocking_applies() {
    let incident = Incident::stage_shared("apply_zero_deadline").await.unwrap();
    let dir = migration("ALTER TABLE academic_partners ADD COLUMN quick text;\n");
    let out = locksmith(&incident.url, &["apply", path(&dir), "--deadline", "0s"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!text(&out).contains("stayed blocked"), "{}", text(&out));
}

#[tokio::test]
async fn recorded_duration_counts_the_statements() {
    let incident = Incident::stage_shared("apply_duration").await.unwrap();
    let dir =
        migration("SELECT pg_sleep(0.4);\nALTER TABLE academic_partners ADD COLUMN slow text;\n");
    let out = locksmith(&incident.url, &["apply", path(&dir)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let admin = incident.admin.connect().await.unwrap();
    let recorded = query_i64(&admin, "SELECT duration_ms FROM locksmith_migrations").await;
    assert!(
        recorded >= 400,
        "recorded {recorded} ms for a 400 ms migration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_that_needs_no_fix_does_not_ask_for_one() {
    let incident = Incident::stage_shared("apply_transient").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    let dir =
        migration("SELECT pg_sleep(30);\nALTER TABLE academic_partners ADD COLUMN never text;\n");
    let (url, d) = (incident.url.clone(), path(&dir).to_string());
    // (The sleep holds the ALTER's lock: --max-hold must not be what stops it.)
    let apply =
        tokio::task::spawn_blocking(move || locksmith(&url, &["apply", &d, "--max-hold", "5m"]));
    // An operator cancels the migration's statement (SQLSTATE 57014): nothing in the file is wrong.
    let started = Instant::now();
    while query_i64(
        &admin,
        "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity
         WHERE query LIKE '%SELECT pg_sleep(30)%' AND application_name = 'locksmith apply'",
    )
    .await
        == 0
    {
        assert!(started.elapsed() < Duration::from_secs(30), "never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = apply.await.unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("run apply again"), "{}", text(&out));
    assert!(!text(&out).contains("fix it"), "{}", text(&out));
}
