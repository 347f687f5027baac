//! `apply --replica`: a hot standby replays the migration's ACCESS EXCLUSIVE
//! lock, so its own readers of the table are blockers too. With a real
//! primary and a streaming standby on this machine: a standby session in the
//! way is named with its server and waited out without stalling the standby's
//! reads, or terminated under `--terminate-idle-after`; without `--replica`,
//! the unwatched standby is pointed out.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use locksmith_sandbox::incident::{Incident, TABLE};
use locksmith_sandbox::{wait, Cluster};
use serde_json::Value;

mod support;
use support::text;

fn apply(url: &str, dir: &std::path::Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["apply", dir.to_str().unwrap(), "--format", "json"])
        .args(extra)
        .env("DATABASE_URL", url)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// A primary with the incident's table, a standby that has replayed it, and
/// a migration folder adding a column.
async fn staged(db: &str) -> (Cluster, Cluster, Incident, tempfile::TempDir) {
    let primary = Cluster::start().unwrap();
    let incident = Incident::stage(&primary, db).await.unwrap();
    let standby = primary.start_standby(&[]).unwrap();
    let url = standby.url(db);
    wait::until(wait::BOUND, "the standby to replay the table", || {
        let url = url.clone();
        async move {
            let Ok(settings) = locksmith_pg::ConnectionSettings::resolve(Some(&url)) else {
                return false;
            };
            match settings.connect().await {
                Ok(c) => c
                    .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])
                    .await
                    .is_ok(),
                Err(_) => false,
            }
        }
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("1_note.sql"),
        format!("ALTER TABLE {TABLE} ADD COLUMN note text;\n"),
    )
    .unwrap();
    (primary, standby, incident, dir)
}

async fn standby_client(standby: &Cluster, db: &str, app: &str) -> tokio_postgres::Client {
    standby.settings(db, app).connect().await.unwrap()
}

/// Reads the table on the standby every 50 ms; the worst latency seen.
fn standby_reads(
    client: tokio_postgres::Client,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let worst = Arc::new(AtomicU64::new(0));
    let task = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                client
                    .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])
                    .await
                    .unwrap();
                worst.fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            worst.load(Ordering::Relaxed)
        })
    };
    (stop, task)
}

async fn has_note(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT count(*) > 0 FROM information_schema.columns WHERE column_name = 'note'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_reader_is_named_and_waited_out_without_stalling_the_standby() {
    let db = "replica_wait";
    let (primary, standby, incident, dir) = staged(db).await;
    // A report on the standby, left idle in its transaction: it holds the table.
    let report = standby_client(&standby, db, "standby-report").await;
    report
        .batch_execute(&format!("BEGIN; SELECT count(*) FROM {TABLE}"))
        .await
        .unwrap();
    let report_pid: i32 = report
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let (stop, reads) = standby_reads(standby_client(&standby, db, "standby-traffic").await);

    let replica = standby.url(db);
    let url = incident.url.clone();
    let path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        apply(&url, &path, &["--replica", &replica, "--deadline", "5s"])
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let worst = Duration::from_millis(reads.await.unwrap());

    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report_json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let named = report_json["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["pid"] == report_pid && b["application_name"] == "standby-report")
        .unwrap_or_else(|| panic!("the standby session is not named: {report_json}"));
    assert_eq!(
        named["server"],
        format!("127.0.0.1:{}", standby.port()),
        "{named}"
    );
    assert!(
        worst < Duration::from_secs(1),
        "a standby read waited {worst:?}"
    );
    let admin = primary.settings(db, "check").connect().await.unwrap();
    assert!(!has_note(&admin).await, "nothing applied");

    // Once the report ends, the migration applies and the standby replays it.
    report.batch_execute("COMMIT").await.unwrap();
    let replica = standby.url(db);
    let out = apply(&incident.url, dir.path(), &["--replica", &replica]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let check = standby_client(&standby, db, "check").await;
    wait::until(wait::BOUND, "the standby to replay the column", || async {
        has_note(&check).await
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_standby_session_is_terminated_under_the_policy() {
    let db = "replica_terminate";
    let (_primary, standby, incident, dir) = staged(db).await;
    let leaked = standby_client(&standby, db, "standby-leak").await;
    leaked
        .batch_execute(&format!("BEGIN; SELECT count(*) FROM {TABLE}"))
        .await
        .unwrap();
    let (stop, reads) = standby_reads(standby_client(&standby, db, "standby-traffic").await);
    let replica = standby.url(db);
    let url = incident.url.clone();
    let path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        apply(
            &url,
            &path,
            &["--replica", &replica, "--terminate-idle-after", "1s"],
        )
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let worst = Duration::from_millis(reads.await.unwrap());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let terminated = report["terminated"].as_array().unwrap();
    assert!(
        terminated
            .iter()
            .any(|t| t["application_name"] == "standby-leak" && t["server"].is_string()),
        "{report}"
    );
    assert!(
        worst < Duration::from_secs(1),
        "a standby read waited {worst:?}"
    );
    let check = standby_client(&standby, db, "check").await;
    wait::until(wait::BOUND, "the standby to replay the column", || async {
        has_note(&check).await
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_unwatched_standby_is_pointed_out() {
    let db = "replica_unwatched";
    let (_primary, _standby, incident, dir) = staged(db).await;
    let out = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["apply", dir.path().to_str().unwrap(), "--dry-run"])
        .env("DATABASE_URL", &incident.url)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 standby server(s) stream from this primary and are not watched"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_standby_query_is_waited_for_not_raced() {
    let db = "replica_active";
    let (_primary, standby, incident, dir) = staged(db).await;
    let report = standby_client(&standby, db, "standby-long-report").await;
    let running = tokio::spawn(async move {
        report
            .batch_execute(&format!("SELECT count(*), pg_sleep(8) FROM {TABLE}"))
            .await
    });
    let watcher = standby_client(&standby, db, "check").await;
    wait::until(wait::BOUND, "the report to run on the standby", || async {
        watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = 'standby-long-report' AND state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            > 0
    })
    .await
    .unwrap();
    // Past the budget, not yet a second old: on the primary it would be raced.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (stop, reads) = standby_reads(standby_client(&standby, db, "standby-traffic").await);
    let replica = standby.url(db);
    let url = incident.url.clone();
    let path = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        apply(&url, &path, &["--replica", &replica, "--deadline", "3s"])
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let worst = Duration::from_millis(reads.await.unwrap());
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["blockers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["application_name"] == "standby-long-report"),
        "{report}"
    );
    assert!(
        worst < Duration::from_secs(1),
        "a standby read waited {worst:?}"
    );
    running.await.unwrap().unwrap();
}
