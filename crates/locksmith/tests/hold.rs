//! `--max-hold` end to end: a statement that would hold a lock blocking
//! traffic longer than the budget is refused up front when its estimate
//! (table size, server throughput) says so, or stopped by the server and
//! rolled back when the estimate was wrong, with exit 3, the statement
//! named and the online way to run it instead.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use locksmith_sandbox::incident::{Incident, TABLE};
use serde_json::Value;

fn apply(url: &str, dir: &Path, extra: &[&str]) -> (Output, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["apply", dir.to_str().unwrap(), "--format", "json"])
        .args(extra)
        .env("DATABASE_URL", url)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, report)
}

async fn count(client: &locksmith_pg::Connection, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

async fn grow(client: &locksmith_pg::Connection, rows: i64) {
    client
        .batch_execute(&format!(
            "INSERT INTO {TABLE} (name, informal_name)
               SELECT 'University ' || i, md5(i::text) FROM generate_series(251, {rows}) AS i;
             ANALYZE {TABLE};"
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_statement_holding_a_blocking_lock_past_max_hold_is_stopped_and_rolled_back() {
    let incident = Incident::stage_shared("hold_sleep").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("1_slow.sql"),
        format!("ALTER TABLE {TABLE} ADD COLUMN note text;\nSELECT pg_sleep(30);\n"),
    )
    .unwrap();

    // A reader on the table all along: how long did traffic wait at worst?
    let worst = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (worst, stop) = (worst.clone(), stop.clone());
        let app = incident.app.connect().await.unwrap();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                app.query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])
                    .await
                    .unwrap();
                worst.fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let started = Instant::now();
    let url = incident.url.clone();
    let path = dir.path().to_path_buf();
    let (out, report) =
        tokio::task::spawn_blocking(move || apply(&url, &path, &["--max-hold", "500ms"]))
            .await
            .unwrap();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();

    assert_eq!(out.status.code(), Some(3), "{report}");
    assert_eq!(report["status"], "hold_exceeded", "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("1_slow.sql:2:1"), "{error}");
    assert!(
        error.contains("ACCESS EXCLUSIVE on academic_partners"),
        "{error}"
    );
    // Stopped by the server after about the budget, not after the 30 s sleep.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let worst = Duration::from_millis(worst.load(Ordering::Relaxed));
    assert!(worst < Duration::from_secs(10), "a read waited {worst:?}");

    let admin = incident.admin.connect().await.unwrap();
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'"
        )
        .await,
        0,
        "the ALTER was rolled back"
    );
    assert_eq!(
        count(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        0
    );
}

#[tokio::test]
async fn an_index_build_past_max_hold_is_stopped_and_the_online_plan_named() {
    let incident = Incident::stage_shared("hold_index").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    // The size estimate cannot see a key that is slow to compute: 250 rows
    // estimate at ~0 ms, but each key takes 10 ms (2.5 s in all). Only the
    // runtime bound, the backstop for a wrong estimate, can stop it.
    admin
        .batch_execute(
            "CREATE FUNCTION slow_key(t text) RETURNS text IMMUTABLE LANGUAGE plpgsql
               AS $$ BEGIN PERFORM pg_sleep(0.01); RETURN t; END $$",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("1_unique.sql"),
        format!("CREATE UNIQUE INDEX u_informal ON {TABLE} (slow_key(informal_name));\n"),
    )
    .unwrap();

    let (out, report) = apply(&incident.url, dir.path(), &["--max-hold", "150ms"]);
    assert_eq!(out.status.code(), Some(3), "{report}");
    assert_eq!(report["status"], "hold_exceeded", "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("1_unique.sql:1:1"), "{error}");
    assert!(error.contains("the server stopped it"), "{error}");
    assert!(error.contains("about 250 rows"), "{error}");
    assert!(
        error.contains("CREATE UNIQUE INDEX CONCURRENTLY"),
        "{error}"
    );
    assert!(report["attempts"].as_i64().unwrap() >= 1, "{report}");
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_class WHERE relname = 'u_informal'"
        )
        .await,
        0,
        "no index left behind"
    );
    assert_eq!(
        count(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        0
    );

    // With room enough, the same migration applies.
    let (out, report) = apply(&incident.url, dir.path(), &["--max-hold", "5m"]);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_class WHERE relname = 'u_informal'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_table_clearly_too_big_for_max_hold_is_refused_before_anything_runs() {
    let incident = Incident::stage_shared("hold_refuse").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    grow(&admin, 20_000).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("1_unique.sql"),
        format!("ALTER TABLE {TABLE} ADD CONSTRAINT u_informal UNIQUE (informal_name);\n"),
    )
    .unwrap();

    let (out, report) = apply(&incident.url, dir.path(), &["--max-hold", "1ms"]);
    assert_eq!(out.status.code(), Some(3), "{report}");
    assert_eq!(report["status"], "hold_exceeded", "{report}");
    assert_eq!(report["attempts"], 0, "nothing was attempted: {report}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("refused before running anything"), "{error}");
    assert!(
        error.contains("CREATE UNIQUE INDEX CONCURRENTLY"),
        "{error}"
    );
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'u_informal'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_statement_outside_a_transaction_is_bounded_by_max_hold_too() {
    let incident = Incident::stage_shared("hold_outside").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Run statement by statement; the volatile default rewrites the table
    // under ACCESS EXCLUSIVE, 10 ms a row: 2.5 s on 250 rows, far too small
    // a table for the size estimate to refuse it up front.
    std::fs::write(
        dir.path().join("1_slow_default.sql"),
        format!(
            "-- locksmith: no-transaction\n\
             ALTER TABLE {TABLE} ADD COLUMN slow int DEFAULT (CASE WHEN pg_sleep(0.01) IS NULL THEN 1 END);\n"
        ),
    )
    .unwrap();

    let (out, report) = apply(&incident.url, dir.path(), &["--max-hold", "300ms"]);
    assert_eq!(out.status.code(), Some(3), "{report}");
    assert_eq!(report["status"], "hold_exceeded", "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("1_slow_default.sql:2:1"), "{error}");
    assert!(error.contains("the server stopped it"), "{error}");
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'slow'"
        )
        .await,
        0
    );
    assert_eq!(
        count(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        0
    );
}

#[tokio::test]
async fn a_table_created_in_the_same_migration_is_not_bounded() {
    let incident = Incident::stage_shared("hold_new_table").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Nobody else can see `fresh` before the commit: holding it blocks nobody.
    std::fs::write(
        dir.path().join("1_fresh.sql"),
        "CREATE TABLE fresh (id int);\nSELECT pg_sleep(0.5);\nINSERT INTO fresh VALUES (1);\n",
    )
    .unwrap();
    let (out, report) = apply(&incident.url, dir.path(), &["--max-hold", "100ms"]);
    assert_eq!(out.status.code(), Some(0), "{report}");
    let admin = incident.admin.connect().await.unwrap();
    assert_eq!(count(&admin, "SELECT count(*) FROM fresh").await, 1);
}

/// The advice for a rewriting type change names its online form (a shadow
/// column); it never prints the blocking statement again with a
/// `lock_timeout` added, as if that were a fix.
#[tokio::test]
async fn a_type_change_past_max_hold_is_not_advised_as_itself() {
    let incident = Incident::stage_shared("hold_type").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    grow(&admin, 20_000).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("1_bigint.sql"),
        format!("ALTER TABLE {TABLE} ALTER COLUMN id TYPE bigint;\n"),
    )
    .unwrap();
    let (out, report) = apply(&incident.url, dir.path(), &["--max-hold", "1ms"]);
    assert_eq!(out.status.code(), Some(3), "{report}");
    assert_eq!(report["status"], "hold_exceeded", "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("refused before running anything"), "{error}");
    assert!(
        error.contains("rewritten under ACCESS EXCLUSIVE"),
        "{error}"
    );
    assert!(
        error.contains("apply --online changes the type through a shadow column"),
        "{error}"
    );
    assert!(
        !error.contains("SET lock_timeout"),
        "the blocking statement as its own fix: {error}"
    );
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'academic_partners' AND column_name = 'id' AND data_type = 'integer'"
        )
        .await,
        1
    );
}
