//! `locksmith trace --database-url` never blocks the server's traffic: a
//! rewrite of a big table is refused before anything runs (exit 2), and a
//! statement behind a session idle in transaction gives up within the lock
//! budget, naming it (exit 3), with no lock request left queued. A reader
//! queries the table every 30 ms throughout and never waits long.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use locksmith_sandbox::shared;
use serde_json::Value;

fn trace(url: &str, dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["trace", "m.sql", "--database-url", url, "--format", "json"])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// A session reading one row of `table` every 30 ms until stopped; yields
/// the longest a read took.
fn reader(
    settings: locksmith_pg::ConnectionSettings,
    table: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Duration> {
    tokio::spawn(async move {
        let c = settings.connect().await.unwrap();
        let sql = format!("SELECT * FROM {table} WHERE id = 1");
        let mut longest = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            c.query(sql.as_str(), &[]).await.unwrap();
            longest = longest.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        longest
    })
}

async fn database(hint: &str) -> (locksmith_pg::ConnectionSettings, String) {
    let cluster = shared::cluster().unwrap();
    let name = shared::unique_name(hint);
    let settings = cluster.create_database(&name).await.unwrap();
    (settings, cluster.url(&name))
}

/// A database with 100 `orders`, a session idle in a transaction that read
/// one of them (so it holds `ACCESS SHARE` on the table), and a folder with
/// `m.sql` adding two columns to it.
struct Blocked {
    settings: locksmith_pg::ConnectionSettings,
    url: String,
    admin: locksmith_pg::Connection,
    idle: locksmith_pg::Connection,
    idle_pid: i32,
    dir: tempfile::TempDir,
}

async fn orders_behind_an_idle_session(hint: &str) -> Blocked {
    let (settings, url) = database(hint).await;
    let admin = settings.connect().await.unwrap();
    admin
        .batch_execute(
            "CREATE TABLE orders (id int PRIMARY KEY, total int);
             INSERT INTO orders SELECT g, g FROM generate_series(1, 100) g;",
        )
        .await
        .unwrap();
    let idle = settings.connect().await.unwrap();
    let idle_pid: i32 = idle
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    idle.batch_execute("BEGIN; SELECT * FROM orders WHERE id = 1")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.sql"),
        "ALTER TABLE orders ADD COLUMN note text;\nALTER TABLE orders ADD COLUMN tag text;\n",
    )
    .unwrap();
    Blocked {
        settings,
        url,
        admin,
        idle,
        idle_pid,
        dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewrite_of_a_big_table_is_refused_before_anything_runs() {
    let (settings, url) = database("trace_live_big").await;
    let c = settings.connect().await.unwrap();
    c.batch_execute(
        "CREATE TABLE accounts (id int PRIMARY KEY, balance int);
         INSERT INTO accounts SELECT g, g FROM generate_series(1, 1000000) g;
         ANALYZE accounts;",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("m.sql"),
        "ALTER TABLE accounts ALTER COLUMN balance TYPE bigint;\n",
    )
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let read = reader(settings.clone(), "accounts", stop.clone());
    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        let dir = dir.path().to_path_buf();
        move || trace(&url, &dir)
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let longest = read.await.unwrap();

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("m.sql:1: rewrites `accounts`"), "{stderr}");
    assert!(stderr.contains("without --database-url"), "{stderr}");
    assert!(
        longest < Duration::from_secs(1),
        "a read waited {longest:?}"
    );
    let t: String = c
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = 'accounts'::regclass AND attname = 'balance'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(t, "integer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_session_idle_in_transaction_it_gives_up_within_the_budget() {
    let Blocked {
        settings,
        url,
        admin: c,
        idle,
        idle_pid,
        dir,
    } = orders_behind_an_idle_session("trace_live_blocked").await;

    let stop = Arc::new(AtomicBool::new(false));
    let read = reader(settings.clone(), "orders", stop.clone());
    let started = Instant::now();
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || trace(&url, &dir)
    })
    .await
    .unwrap();
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let longest = read.await.unwrap();

    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(3), "{text}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = v["files"][0]["statements"].as_array().unwrap();
    assert_eq!(s[0]["trace"]["method"], "blocked", "{text}");
    assert_eq!(s[0]["trace"]["blocked_by"][0]["pid"], idle_pid, "{text}");
    let gave_up = s[0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "LS951")
        .unwrap_or_else(|| panic!("no LS951: {text}"));
    let message = gave_up["message"].as_str().unwrap();
    assert!(message.contains(&format!("pid {idle_pid}")), "{message}");
    assert_eq!(gave_up["severity"], "error", "{message}");
    assert_eq!(s[1]["trace"]["method"], "not-traced", "{text}");
    // One attempt of 200 ms, plus connecting and reading the catalog.
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        longest < Duration::from_secs(1),
        "a read waited {longest:?}"
    );
    // No lock request of ours is left queued; the idle session is untouched.
    let waiting: i64 = c
        .query_one("SELECT count(*) FROM pg_locks WHERE NOT granted", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(waiting, 0);
    let columns: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attnum > 0",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(columns, 2);
    idle.batch_execute("COMMIT").await.unwrap();
}

/// With `--deadline`, a trace blocked by a session idle in transaction is a
/// unit of the guard's retry loop: rolled back, it waits out the session
/// without queueing and runs again from the start once it is gone, then
/// traces every statement (and still commits nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_deadline_it_waits_out_the_session_and_traces_it_all() {
    let Blocked {
        settings,
        url,
        admin: c,
        idle,
        dir,
        ..
    } = orders_behind_an_idle_session("trace_live_retry").await;

    let stop = Arc::new(AtomicBool::new(false));
    let read = reader(settings.clone(), "orders", stop.clone());
    let child = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args([
            "trace",
            "m.sql",
            "--database-url",
            &url,
            "--format",
            "json",
            "--deadline",
            "60s",
        ])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The trace ran once, was blocked and rolled back, and now waits for the
    // session: out of any transaction (it holds nothing while it waits), its
    // last query the retry loop's look at pg_locks (before its first run its
    // last query is `SELECT pg_backend_pid()`; during a run it is in a
    // transaction).
    locksmith_sandbox::wait::until(
        locksmith_sandbox::wait::BOUND,
        "the trace to be blocked, rolled back and waiting, holding nothing",
        || {
            let c = &c;
            async move {
                c.query_one(
                    "SELECT count(*) FROM pg_stat_activity a
                     WHERE a.application_name = 'locksmith trace' AND a.state = 'idle'
                       AND a.xact_start IS NULL AND a.query LIKE '%pg_locks%'",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
                    == 1
            }
        },
    )
    .await
    .unwrap();
    let held: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'locksmith trace' AND l.locktype = 'relation'
               AND l.relation = 'orders'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 0, "nothing held on orders while waiting");
    idle.batch_execute("COMMIT").await.unwrap();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let longest = read.await.unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{text}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = v["files"][0]["statements"].as_array().unwrap();
    assert_eq!(s[0]["trace"]["method"], "transaction", "{text}");
    assert_eq!(s[1]["trace"]["method"], "transaction", "{text}");
    assert!(
        longest < Duration::from_secs(1),
        "a read waited {longest:?}"
    );
    let columns: i64 = c
        .query_one(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_name = 'orders' AND column_name IN ('note', 'tag')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(columns, 0, "rolled back: nothing committed");
}
