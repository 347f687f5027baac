//! Online backfills throttle between batches, as gh-ost does: while the
//! `--pause-file` exists, while more than `--max-active` backends are active,
//! while a `--replica` standby replays more than `--max-lag` behind. Each
//! pause is said on stderr with its reason; the backfill goes on, to the same
//! result, once the reason is gone.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use locksmith_sandbox::{wait, Cluster};

mod support;
use support::online::{folder, staged, staged_on};
use support::query_i64;

const SETUP: &str = "
    CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL DEFAULT 0);
    INSERT INTO accounts SELECT i, 0 FROM generate_series(1, 20000) AS i;
    ANALYZE accounts;";

const BUMP: &str = "UPDATE accounts SET balance = balance + 1000;\n";

/// `apply DIR --online EXTRA…` in the background, its stderr into a file.
fn spawn(url: &str, dir: &Path, extra: &[&str]) -> (Child, PathBuf, tempfile::TempDir) {
    let out = tempfile::tempdir().unwrap();
    let stderr = out.path().join("stderr");
    let child = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["apply", dir.to_str().unwrap(), "--online"])
        .args(extra)
        .env("DATABASE_URL", url)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    (child, stderr, out)
}

/// Waits until stderr says the backfill is paused for `why`.
async fn paused(stderr: &Path, why: &str) {
    wait::until(wait::BOUND, "the backfill to say it is paused", || async {
        std::fs::read_to_string(stderr)
            .unwrap_or_default()
            .lines()
            .any(|l| l.contains("paused: ") && l.contains(why))
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {}",
            std::fs::read_to_string(stderr).unwrap_or_default()
        )
    });
}

/// The run ended with exit 0 and every row got its 1000 once.
async fn finished(mut child: Child, stderr: &Path, admin: &locksmith_pg::Connection) {
    let status = child.wait().unwrap();
    let said = std::fs::read_to_string(stderr).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{said}");
    assert_eq!(
        query_i64(admin, "SELECT count(*) FROM accounts WHERE balance <> 1000").await,
        0,
        "{said}"
    );
}

/// Rows the batches covered so far (0 before the first batch commits).
async fn rows_done(admin: &locksmith_pg::Connection) -> i64 {
    query_i64(
        admin,
        "SELECT coalesce(max(rows_done), 0)::bigint FROM locksmith_online_steps WHERE NOT done AND unit >= 0",
    )
    .await
}

#[tokio::test]
async fn a_pause_file_holds_the_backfill_until_it_is_removed() {
    let (incident, admin) = staged("throttle_file", SETUP).await;
    let dir = folder("1_bump.sql", BUMP);
    let pause = dir.path().join("pause");
    std::fs::write(&pause, "").unwrap();
    let (child, stderr, _out) = spawn(
        &incident.url,
        dir.path(),
        &["--pause-file", pause.to_str().unwrap()],
    );
    paused(&stderr, "(--pause-file)").await;
    assert_eq!(rows_done(&admin).await, 0);
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM accounts WHERE balance > 0").await,
        0
    );
    std::fs::remove_file(&pause).unwrap();
    finished(child, &stderr, &admin).await;
}

#[tokio::test]
async fn busy_backends_over_max_active_hold_the_backfill() {
    let (incident, admin) = staged("throttle_active", SETUP).await;
    // Two sessions busy with a long query: over --max-active 1.
    let mut busy = Vec::new();
    for _ in 0..2 {
        let client = incident
            .admin
            .with_application_name("busy")
            .connect()
            .await
            .unwrap();
        busy.push(tokio::spawn(async move {
            let _ = client.batch_execute("SELECT pg_sleep(120)").await;
        }));
    }
    wait::until(wait::BOUND, "the busy sessions", || async {
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'busy' AND state = 'active'",
        )
        .await
            == 2
    })
    .await
    .unwrap();
    let dir = folder("1_bump.sql", BUMP);
    let (child, stderr, _out) = spawn(&incident.url, dir.path(), &["--max-active", "1"]);
    paused(&stderr, "backends are active (over --max-active 1)").await;
    assert_eq!(rows_done(&admin).await, 0);
    admin
        .batch_execute(
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'busy'",
        )
        .await
        .unwrap();
    finished(child, &stderr, &admin).await;
    for task in busy {
        task.await.unwrap();
    }
}

/// A standby whose replay is paused (`pg_wal_replay_pause()`) falls behind
/// as the backfill writes: the backfill pauses, says which standby and how
/// far behind, and goes on once replay resumes.
#[tokio::test]
async fn a_lagging_standby_holds_the_backfill_until_it_catches_up() {
    let primary = Cluster::start().unwrap();
    let (incident, admin) = staged_on(&primary, "throttle_lag", SETUP).await;
    let standby = primary.start_standby(&[]).unwrap();
    let replica = standby.settings("throttle_lag", "test");
    wait::until(wait::BOUND, "the standby to replay the table", || async {
        match replica.connect().await {
            Ok(c) => c
                .query_one("SELECT count(*) FROM accounts", &[])
                .await
                .is_ok(),
            Err(_) => false,
        }
    })
    .await
    .unwrap();
    let standby_client = replica.connect().await.unwrap();
    standby_client
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    // Something to replay, committed over a second ago.
    admin
        .batch_execute(
            "CREATE TABLE marker (id int); SELECT pg_sleep(1.2); INSERT INTO marker VALUES (1)",
        )
        .await
        .unwrap();
    // Received there, not replayed: the standby is behind before the run starts.
    wait::until(
        wait::BOUND,
        "the standby to receive what it does not replay",
        || async {
            standby_client
                .query_one(
                    "SELECT pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()",
                    &[],
                )
                .await
                .map(|r| r.get::<_, bool>(0))
                .unwrap_or(false)
        },
    )
    .await
    .unwrap();
    let dir = folder("1_bump.sql", BUMP);
    let url = standby.url("throttle_lag");
    let (child, stderr, _out) = spawn(&incident.url, dir.path(), &["--replica", &url]);
    paused(&stderr, "behind (over --max-lag 1.0s)").await;
    assert_eq!(rows_done(&admin).await, 0);
    standby_client
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    finished(child, &stderr, &admin).await;
}

/// The backfill of a volatile default is throttled the same way where the
/// table has a key (its batches go over the key instead of heap pages).
#[tokio::test]
async fn a_volatile_defaults_backfill_is_throttled_too() {
    let (incident, admin) = staged("throttle_default", SETUP).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("1_token.sql"),
        "ALTER TABLE accounts ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid();\n",
    )
    .unwrap();
    let pause = dir.path().join("pause");
    std::fs::write(&pause, "").unwrap();
    let (mut child, stderr, _out) = spawn(
        &incident.url,
        dir.path(),
        &["--pause-file", pause.to_str().unwrap()],
    );
    paused(&stderr, "(--pause-file)").await;
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM accounts WHERE token IS NOT NULL"
        )
        .await,
        0
    );
    std::fs::remove_file(&pause).unwrap();
    let status = child.wait().unwrap();
    let said = std::fs::read_to_string(&stderr).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{said}");
    assert_eq!(
        query_i64(&admin, "SELECT count(DISTINCT token) FROM accounts").await,
        20_000
    );
}

#[tokio::test]
async fn under_format_json_the_backfill_says_its_progress_as_json_lines_on_stderr() {
    let (incident, admin) = staged("throttle_json", SETUP).await;
    let dir = folder("1_bump.sql", BUMP);
    let pause = dir.path().join("pause");
    std::fs::write(&pause, "").unwrap();
    let (child, stderr, _out) = spawn(
        &incident.url,
        dir.path(),
        &["--pause-file", pause.to_str().unwrap(), "--format", "json"],
    );
    let events = || {
        std::fs::read_to_string(&stderr)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == "backfill")
            .collect::<Vec<_>>()
    };
    wait::until(wait::BOUND, "a paused backfill event", || async {
        events().iter().any(|e| {
            e["paused"]
                .as_str()
                .is_some_and(|p| p.contains("--pause-file"))
        })
    })
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {}",
            std::fs::read_to_string(&stderr).unwrap_or_default()
        )
    });
    let first = &events()[0];
    assert_eq!(first["table"], "accounts", "{first}");
    for key in ["rows_done", "rows_total", "rows_per_second"] {
        assert!(first[key].is_number(), "{key}: {first}");
    }
    std::fs::remove_file(&pause).unwrap();
    finished(child, &stderr, &admin).await;
    let last = events().pop().unwrap();
    assert!(last["paused"].is_null(), "{last}");
    assert_eq!(last["rows_done"], 20000, "{last}");
}
