//! `locksmith apply` end to end, against real servers: ordering, history,
//! refusal of bad input before anything runs, blocking, concurrency, faults.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use locksmith_sandbox::incident::{Incident, TABLE};
use locksmith_sandbox::traffic::LeakedSessions;
use locksmith_sandbox::wait;
use locksmith_sandbox::Cluster;
use serde_json::Value;

mod support;
use support::{locksmith, query_i64, text, write};

/// Whether a session named `application_name` holds a lock on the story's table.
async fn holds_lock(client: &locksmith_pg::Connection, application_name: &str) -> bool {
    query_i64(client, &format!("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.application_name = '{application_name}' AND l.granted AND l.relation = '{TABLE}'::regclass")).await > 0
}

const UNIQUE: &str =
    "ALTER TABLE academic_partners ADD CONSTRAINT unique_informal_name UNIQUE (informal_name);\n";

#[tokio::test]
async fn applies_in_order_records_history_and_is_idempotent() {
    let incident = Incident::stage_shared("apply_basic").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("002_unique.sql", UNIQUE),
            ("001_add_column.up.sql", "BEGIN;\nSET lock_timeout = '10s';\nALTER TABLE academic_partners ADD COLUMN country text;\nCOMMIT;\n"),
            ("001_add_column.down.sql", "ALTER TABLE academic_partners DROP COLUMN country;"),
            ("README.md", "not a migration"),
        ],
    );
    let url = incident.url.clone();
    let out = locksmith(
        &url,
        &["apply", dir.path().to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "applied");
    let versions: Vec<i64> = report["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, vec![1, 2]);
    assert_eq!(report["migrations"][0]["name"], "add_column");
    assert!(report["attempts"].as_i64().unwrap() >= 2);

    let admin = incident.admin.connect().await.unwrap();
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        2
    );
    let row = admin.query_one("SELECT name, length(checksum), attempts, duration_ms >= 0 FROM locksmith_migrations WHERE version = 2", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "unique");
    assert_eq!(row.get::<_, i32>(1), 64);
    assert_eq!(row.get::<_, i32>(2), 1);
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'country'"
        )
        .await,
        1
    );

    let again = locksmith(&url, &["apply", dir.path().to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        text(&again).contains("Nothing to apply"),
        "{}",
        text(&again)
    );
}

#[tokio::test]
async fn bad_input_stops_before_anything_runs() {
    let incident = Incident::stage_shared("apply_bad").await.unwrap();
    let url = incident.url.clone();
    let admin = incident.admin.connect().await.unwrap();

    // A syntax error in the second file: the first (valid) one must not run either.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("1_ok.sql", "CREATE TABLE t1 (id int);"),
            (
                "2_broken.sql",
                "CREATE TABLE t2 (id int);\nALTER TABLE t2 ADD COLUMN x int DEFALT 1;\n",
            ),
        ],
    );
    let out = locksmith(&url, &["apply", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let expected = format!("{}:2:33", dir.path().join("2_broken.sql").display());
    assert!(
        text(&out).contains(&expected),
        "wanted {expected} in {}",
        text(&out)
    );
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_class WHERE relname IN ('t1', 'locksmith_migrations')"
        )
        .await,
        0
    );

    // A file that looks like a migration but has no version.
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[("1_ok.sql", "SELECT 1;"), ("add_users.sql", "SELECT 1;")],
    );
    let out = locksmith(&url, &["apply", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("add_users.sql"), "{}", text(&out));

    // A missing folder.
    let out = locksmith(&url, &["apply", "/nonexistent/migrations"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("/nonexistent/migrations"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn changed_and_out_of_order_files_are_refused() {
    let incident = Incident::stage_shared("apply_changed").await.unwrap();
    let url = incident.url.clone();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("1_a.sql", "CREATE TABLE a (id int);"),
            ("3_c.sql", "CREATE TABLE c (id int);"),
        ],
    );
    let d = dir.path().to_str().unwrap();
    assert_eq!(locksmith(&url, &["apply", d]).status.code(), Some(0));

    write(dir.path(), &[("1_a.sql", "CREATE TABLE a (id bigint);")]);
    let out = locksmith(&url, &["apply", d]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).contains("1_a.sql") && text(&out).contains("changed"),
        "{}",
        text(&out)
    );
    assert_eq!(
        locksmith(&url, &["apply", d, "--allow-changed"])
            .status
            .code(),
        Some(0)
    );

    write(dir.path(), &[("2_b.sql", "CREATE TABLE b (id int);")]);
    let out = locksmith(&url, &["apply", d, "--allow-changed"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("out of order"), "{}", text(&out));
    let out = locksmith(&url, &["apply", d, "--allow-changed", "--out-of-order"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[tokio::test]
async fn blocked_by_leakers_gives_up_then_terminates_them_when_allowed() {
    let incident = Incident::stage_shared("apply_blocked").await.unwrap();
    let leaked = LeakedSessions::open(&incident.app.with_application_name("leaky-app"), 2, TABLE)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("1_unique.sql", UNIQUE)]);
    let url = incident.url.clone();
    let d = dir.path().to_str().unwrap();

    let dry = locksmith(&url, &["apply", d, "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    assert!(
        text(&dry).contains("AccessExclusiveLock on academic_partners"),
        "{}",
        text(&dry)
    );
    assert!(text(&dry).contains("leaky-app"), "{}", text(&dry));

    let started = Instant::now();
    let out = locksmith(&url, &["apply", d, "--deadline", "2s", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(10));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "blocked");
    let mut named: Vec<i64> = report["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["pid"].as_i64().unwrap())
        .collect();
    named.sort();
    let mut pids: Vec<i64> = leaked.pids().iter().map(|p| *p as i64).collect();
    pids.sort();
    assert_eq!(named, pids);
    for b in report["blockers"].as_array().unwrap() {
        for key in [
            "state",
            "application_name",
            "client_addr",
            "xact_age_ms",
            "state_age_ms",
            "query",
        ] {
            assert!(b.get(key).is_some(), "blocker lacks {key}: {b}");
        }
    }
    let admin = incident.admin.connect().await.unwrap();
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        0
    );

    // The human report names them and says what to do.
    let out = locksmith(&url, &["apply", d, "--deadline", "1s"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out).contains("leaky-app")
            && text(&out).contains("idle_in_transaction_session_timeout"),
        "{}",
        text(&out)
    );

    let out = locksmith(
        &url,
        &[
            "apply",
            d,
            "--terminate-idle-after",
            "200ms",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["terminated"].as_array().unwrap().len(), 2);
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        1
    );
}

#[tokio::test]
async fn ten_simultaneous_runners_apply_exactly_once() {
    let incident = Incident::stage_shared("apply_race").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Not idempotent on purpose: a second run of any file would fail.
    write(
        dir.path(),
        &[
            ("1_a.sql", "CREATE TABLE a (id int);"),
            ("2_b.sql", "ALTER TABLE a ADD COLUMN b int;"),
            ("3_c.sql", UNIQUE),
        ],
    );
    let url = incident.url.clone();
    let children: Vec<_> = (0..10)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_locksmith"))
                .args(["apply", dir.path().to_str().unwrap()])
                .env("DATABASE_URL", &url)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
    let admin = incident.admin.connect().await.unwrap();
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        3
    );
}

#[tokio::test]
async fn failure_halfway_rolls_back_and_says_what_next() {
    let incident = Incident::stage_shared("apply_fail").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("1_ok.sql", "CREATE TABLE ok (id int);"),
            (
                "2_half.sql",
                "CREATE TABLE half (id int);\nINSERT INTO half VALUES (1/0);\n",
            ),
            ("3_later.sql", "CREATE TABLE later (id int);"),
            ("4_last.sql", "CREATE TABLE last (id int);"),
        ],
    );
    let out = locksmith(
        &incident.url,
        &["apply", dir.path().to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "failed");
    assert_eq!(report["migrations"].as_array().unwrap().len(), 1);
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("division by zero") && error.contains("rolled back"),
        "{error}"
    );
    assert!(!error.contains(".."), "a doubled period: {error}");
    // Where things stand: what stopped it, and what a rerun will apply.
    assert_eq!(report["stopped_at"], "2 half");
    assert_eq!(report["pending"], serde_json::json!(["3 later", "4 last"]));
    let admin = incident.admin.connect().await.unwrap();
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        1
    );
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_class WHERE relname = 'half'"
        )
        .await,
        0
    );
    // The same in words, with the command that continues.
    let human = locksmith(&incident.url, &["apply", dir.path().to_str().unwrap()]);
    assert_eq!(human.status.code(), Some(1), "{}", text(&human));
    let said = String::from_utf8_lossy(&human.stdout);
    assert!(
        said.contains("Where things stand: nothing applied in this run; stopped at 2 half (not applied); 2 pending after it: 3 later … 4 last."),
        "{said}"
    );
    assert!(
        said.contains(&format!("Rerun `locksmith apply {}`", dir.path().display())),
        "{said}"
    );
}

#[tokio::test]
async fn failed_concurrent_unique_index_leaves_no_invalid_index() {
    let incident = Incident::stage_shared("apply_cic").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    admin
        .batch_execute("UPDATE academic_partners SET informal_name = 'dup' WHERE id IN (1, 2)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[("1_unique_index.sql", "CREATE UNIQUE INDEX CONCURRENTLY partners_informal_name ON academic_partners (informal_name);\n")],
    );
    let out = locksmith(&incident.url, &["apply", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("(informal_name)=(dup)"),
        "the duplicates are reported: {}",
        text(&out)
    );
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_class WHERE relname = 'partners_informal_name'"
        )
        .await,
        0
    );
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        0
    );
}

#[tokio::test]
async fn ctrl_c_while_queued_leaves_no_lock_request_behind() {
    let incident = Incident::stage_shared("apply_sigint").await.unwrap();
    // A young, active transaction holding the table: the guard will queue for it (within its budget).
    let holder = incident
        .app
        .with_application_name("busy")
        .connect()
        .await
        .unwrap();
    let busy = tokio::spawn(async move {
        holder
            .batch_execute(
                "BEGIN; SELECT count(*) FROM academic_partners; SELECT pg_sleep(8); COMMIT",
            )
            .await
    });
    let admin = incident.admin.connect().await.unwrap();
    wait::until(wait::BOUND, "the busy session to hold its lock", || {
        holds_lock(&admin, "busy")
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("1_unique.sql", UNIQUE)]);
    let child = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args([
            "apply",
            dir.path().to_str().unwrap(),
            "--lock-timeout",
            "30s",
        ])
        .env("DATABASE_URL", incident.url.clone())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while query_i64(&admin, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'locksmith apply' AND wait_event_type = 'Lock' AND datname = current_database()").await == 0 {
        assert!(Instant::now() < deadline, "locksmith never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unsafe {
        libc_kill(child.id() as i32, 2);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    wait::until(wait::BOUND, "no lock request of locksmith's left queued", || async {
        query_i64(&admin, "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE a.application_name LIKE 'locksmith%' AND a.datname = current_database() AND NOT l.granted").await == 0
    })
    .await
    .unwrap();
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'unique_informal_name'"
        )
        .await,
        0
    );
    busy.abort();
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// `kill -9` of locksmith at each point of a run — before it connects,
/// inside each migration's transaction, after the last — proven reached by
/// polling the server before the kill: whatever is recorded in the history
/// table was applied, whatever is not was not, and a rerun finishes.
#[tokio::test]
async fn kill_9_at_each_point_never_half_applies() {
    let cluster = locksmith_sandbox::shared::cluster().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "1_a.sql",
                "CREATE TABLE a (id int);\nSELECT pg_sleep(0.5);\nINSERT INTO a VALUES (1);\n",
            ),
            (
                "2_b.sql",
                "CREATE TABLE b (id int);\nSELECT pg_sleep(0.5);\nINSERT INTO b VALUES (1);\n",
            ),
            (
                "3_c.sql",
                "CREATE TABLE c (id int);\nSELECT pg_sleep(0.5);\nINSERT INTO c VALUES (1);\n",
            ),
        ],
    );
    /// Where the kill lands.
    #[derive(Debug, Clone, Copy)]
    enum Point {
        /// At once, before the run connects.
        Start,
        /// Inside the transaction of the migration after this many recorded.
        Inside(i64),
        /// After all three are recorded.
        Done,
    }
    // Migrations recorded so far (0 before the history table exists).
    async fn recorded_count(admin: &locksmith_pg::Connection) -> i64 {
        match admin
            .query_one("SELECT count(*) FROM locksmith_migrations", &[])
            .await
        {
            Ok(row) => row.get(0),
            Err(_) => 0,
        }
    }
    let points = [
        Point::Start,
        Point::Inside(0),
        Point::Inside(1),
        Point::Inside(2),
        Point::Done,
    ];
    for (trial, point) in points.into_iter().enumerate() {
        let db = locksmith_sandbox::shared::unique_name(&format!("kill_{trial}"));
        let settings = cluster.create_database(&db).await.unwrap();
        let admin = settings.connect().await.unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_locksmith"))
            .args(["apply", dir.path().to_str().unwrap()])
            .env("DATABASE_URL", cluster.url(&db))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        match point {
            Point::Start => {}
            Point::Inside(k) => {
                wait::until(wait::BOUND, "the run to sleep inside the next migration", || async {
                    recorded_count(&admin).await == k
                        && query_i64(
                            &admin,
                            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'locksmith apply'
                               AND datname = current_database() AND query LIKE '%pg_sleep%' AND state = 'active'",
                        )
                        .await
                            == 1
                })
                .await
                .unwrap();
            }
            Point::Done => {
                wait::until(wait::BOUND, "all three recorded", || async {
                    recorded_count(&admin).await == 3
                })
                .await
                .unwrap();
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // The server ends the killed client's session once it notices; read after that.
        wait::until(wait::BOUND, "the killed run's session to end", || async {
            query_i64(&admin, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'locksmith apply' AND datname = current_database()").await == 0
        })
        .await
        .unwrap();
        let recorded: Vec<i64> = match admin
            .query(
                "SELECT version FROM locksmith_migrations ORDER BY version",
                &[],
            )
            .await
        {
            Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
            Err(_) => Vec::new(), // killed before the table existed
        };
        // The kill landed where it was aimed: the migration in flight rolled back.
        let expected = match point {
            Point::Start => 0,
            Point::Inside(k) => k as usize,
            Point::Done => 3,
        };
        assert_eq!(
            recorded.len(),
            expected,
            "trial {trial} ({point:?}): {recorded:?}"
        );
        for (version, table) in [(1, "a"), (2, "b"), (3, "c")] {
            let exists = query_i64(
                &admin,
                &format!("SELECT count(*) FROM pg_class WHERE relname = '{table}'"),
            )
            .await
                == 1;
            assert_eq!(
                exists,
                recorded.contains(&version),
                "trial {trial}: table {table} exists={exists}, recorded={recorded:?}"
            );
            if exists {
                assert_eq!(
                    query_i64(&admin, &format!("SELECT count(*) FROM {table}")).await,
                    1,
                    "trial {trial}: {table} half-applied"
                );
            }
        }
        let out = locksmith(&cluster.url(&db), &["apply", dir.path().to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "trial {trial}: rerun failed: {}",
            text(&out)
        );
        assert_eq!(
            query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
            3
        );
    }
}

/// The server restarts while a migration runs: locksmith fails cleanly (exit 1),
/// nothing is half-applied, and a rerun completes.
#[tokio::test]
async fn server_restart_mid_run_leaves_history_consistent() {
    let mut cluster = Cluster::start().unwrap();
    let settings = cluster.create_database("restart").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[(
            "1_slow.sql",
            "CREATE TABLE slow (id int);\nSELECT pg_sleep(2);\n",
        )],
    );
    let child = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["apply", dir.path().to_str().unwrap()])
        .env("DATABASE_URL", cluster.url("restart"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Restart while the migration runs its slow statement.
    let watcher = settings.connect().await.unwrap();
    wait::until(wait::BOUND, "the migration to reach its slow statement", || async {
        query_i64(&watcher, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'locksmith apply' AND query LIKE '%pg_sleep(2)%'").await == 1
    })
    .await
    .unwrap();
    drop(watcher);
    cluster.restart().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let admin = settings.connect().await.unwrap();
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_class WHERE relname = 'slow'"
        )
        .await,
        0
    );
    let out = locksmith(
        &cluster.url("restart"),
        &["apply", dir.path().to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        1
    );
}

/// A migration role that may not terminate the app's sessions gets a clear
/// error naming `pg_signal_backend`, and nothing is applied.
#[tokio::test]
async fn terminating_without_permission_names_pg_signal_backend() {
    let incident = Incident::stage_shared("apply_perm").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    admin
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE migrator LOGIN PASSWORD 'migrator-pw';
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$;
             ALTER TABLE academic_partners OWNER TO migrator;
             GRANT CREATE ON SCHEMA public TO migrator;",
        )
        .await
        .unwrap();
    let leaked = LeakedSessions::open(&incident.app.with_application_name("leaky-app"), 1, TABLE)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("1_unique.sql", UNIQUE)]);
    let prefix = format!(
        "{}:{}@",
        locksmith_sandbox::cluster::SUPERUSER,
        locksmith_sandbox::cluster::SUPERUSER_PASSWORD
    );
    let url = incident.url.replace(&prefix, "migrator:migrator-pw@");
    let args = [
        "apply",
        dir.path().to_str().unwrap(),
        "--terminate-idle-after",
        "100ms",
        "--deadline",
        "10s",
    ];
    // Without pg_read_all_stats the role cannot even see that the blocker is idle.
    let out = locksmith(&url, &args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("pg_read_all_stats"), "{}", text(&out));
    // Seeing is not terminating: that takes pg_signal_backend.
    admin
        .batch_execute("GRANT pg_read_all_stats TO migrator")
        .await
        .unwrap();
    let out = locksmith(&url, &args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("pg_signal_backend"), "{}", text(&out));
    assert!(!text(&out).contains("migrator-pw"), "{}", text(&out));
    assert_eq!(leaked.alive(), 1);
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'unique_informal_name'"
        )
        .await,
        0
    );
}

/// Without `--pg-version`, the plan is judged for the server it runs on:
/// on 13, `DETACH PARTITION` takes only SHARE UPDATE EXCLUSIVE on the
/// partition (ACCESS EXCLUSIVE from 14 on). CI has every major; elsewhere
/// the test needs PostgreSQL 13 among `LOCKSMITH_PG_BINS`.
#[tokio::test]
async fn the_plan_is_judged_for_the_servers_version() {
    let Some(bin) = locksmith_sandbox::bin_dir::BinDir::find_major(13) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have PostgreSQL 13"
        );
        return;
    };
    let cluster = Cluster::start_with(locksmith_sandbox::cluster::ClusterOptions {
        bin: Some(bin),
        ..Default::default()
    })
    .unwrap();
    let settings = cluster.create_database("on13").await.unwrap();
    settings
        .connect()
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE events (at date) PARTITION BY RANGE (at);
             CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[(
            "1_detach.sql",
            "ALTER TABLE events DETACH PARTITION events_2024;\n",
        )],
    );
    let out = locksmith(
        &cluster.url("on13"),
        &[
            "apply",
            dir.path().to_str().unwrap(),
            "--dry-run",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let locks = &plan["migrations"][0]["statements"][0]["locks"];
    let on_partition = locks
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "events_2024")
        .unwrap_or_else(|| panic!("{plan}"));
    assert_eq!(on_partition["mode"], "ShareUpdateExclusiveLock", "{plan}");
}

/// A session left holding the runner lock (a deploy killed with -9 whose
/// server session lives on) is named when apply gives up waiting for it,
/// so the user knows which session to end.
#[tokio::test]
async fn a_runner_lock_left_behind_is_named_when_apply_gives_up() {
    let (settings, cluster) = locksmith_sandbox::shared::database("stale_runner")
        .await
        .unwrap();
    let stale = settings
        .with_application_name("stale-deploy")
        .connect()
        .await
        .unwrap();
    stale
        .batch_execute("SELECT pg_advisory_lock(x'6c6f636b736d6974'::bigint)")
        .await
        .unwrap();
    let pid = stale.backend_pid().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("1_a.sql", "CREATE TABLE a (id int);")]);
    let out = locksmith(
        &cluster.url(settings.dbname()),
        &[
            "apply",
            dir.path().to_str().unwrap(),
            "--deadline",
            "1s",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("another locksmith apply held the runner lock"),
        "{error}"
    );
    assert!(error.contains(&format!("pid {pid}")), "{error}");
    assert!(error.contains("stale-deploy"), "{error}");
    // The dry run waits for the same lock and ends the same way: exit 3, named.
    let dry = locksmith(
        &cluster.url(settings.dbname()),
        &[
            "apply",
            dir.path().to_str().unwrap(),
            "--deadline",
            "1s",
            "--dry-run",
        ],
    );
    assert_eq!(dry.status.code(), Some(3), "{}", text(&dry));
    assert!(text(&dry).contains("stale-deploy"), "{}", text(&dry));
    let admin = settings.connect().await.unwrap();
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM pg_class WHERE relname = 'a'").await,
        0
    );
}

/// A migration the role may not run (it does not own the table) is not
/// called wrong: the message says the role lacks the privilege, and that
/// the migration needs no change.
#[tokio::test]
async fn a_missing_privilege_is_not_blamed_on_the_migration() {
    let incident = Incident::stage_shared("apply_privilege").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    let role = locksmith_sandbox::shared::unique_name("deployer");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'pw';
             GRANT CREATE ON SCHEMA public TO {role};"
        ))
        .await
        .unwrap();
    let rest = incident.url.split_once('@').unwrap().1;
    let url = format!("postgresql://{role}:pw@{rest}");
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[(
            "1_col.sql",
            "ALTER TABLE academic_partners ADD COLUMN country text;",
        )],
    );
    let out = locksmith(
        &url,
        &["apply", dir.path().to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("permission denied") && error.contains("42501"),
        "{error}"
    );
    assert_eq!(
        error.matches("rolled back").count(),
        1,
        "said twice: {error}"
    );
    assert!(error.contains("the migration is fine"), "{error}");
    assert!(!error.contains("fix the migration"), "{error}");
    assert!(!error.contains("pw@"), "{error}");
}

/// The database recorded version 1 as `create_a`; a folder whose version 1
/// is `create_b` (the wrong folder, or the wrong database) is a collision
/// naming both, not a "changed" migration: `--allow-changed` must not skip
/// a migration that never ran.
#[tokio::test]
async fn another_migration_under_an_applied_version_is_a_collision() {
    let incident = Incident::stage_shared("apply_collision").await.unwrap();
    let first = tempfile::tempdir().unwrap();
    write(
        first.path(),
        &[("1_create_a.sql", "CREATE TABLE a (id int);")],
    );
    let out = locksmith(&incident.url, &["apply", first.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let other = tempfile::tempdir().unwrap();
    write(
        other.path(),
        &[
            ("1_create_b.sql", "CREATE TABLE b (id int);"),
            ("2_more.sql", "CREATE TABLE more (id int);"),
        ],
    );
    for extra in [None, Some("--allow-changed")] {
        let mut args = vec!["apply", other.path().to_str().unwrap()];
        args.extend(extra);
        let out = locksmith(&incident.url, &args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", text(&out));
        let said = text(&out);
        assert!(
            said.contains("create_a") && said.contains("create_b"),
            "{said}"
        );
        assert!(said.contains("Wrong folder or wrong database?"), "{said}");
    }
    let admin = incident.admin.connect().await.unwrap();
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_class WHERE relname IN ('b', 'more')"
        )
        .await,
        0
    );
}

/// `LOCK TABLE` refuses materialized views and foreign tables ("cannot lock
/// relation"): the guard must not take them by name up front, yet still look
/// for the sessions in their way and bound the statement's own wait.
#[tokio::test]
async fn a_materialized_view_is_refreshed_under_the_guard() {
    let incident = Incident::stage_shared("apply_matview").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    admin
        .batch_execute(
            "CREATE MATERIALIZED VIEW partners_mv AS SELECT id, informal_name FROM academic_partners;
             CREATE UNIQUE INDEX ON partners_mv (id);
             GRANT SELECT ON partners_mv TO app;",
        )
        .await
        .unwrap();
    let leaked = LeakedSessions::open(
        &incident.app.with_application_name("mv-reader"),
        1,
        "partners_mv",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[("1_refresh.sql", "REFRESH MATERIALIZED VIEW partners_mv;\n")],
    );
    let (url, d) = (incident.url.clone(), dir.path().to_str().unwrap());

    // A reader of the view is in the way: named, nothing applied.
    let out = locksmith(&url, &["apply", d, "--deadline", "2s", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "blocked", "{}", text(&out));
    assert_eq!(
        report["blockers"][0]["pid"].as_i64(),
        Some(leaked.pids()[0] as i64),
        "{}",
        text(&out)
    );
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        0
    );

    // Once the reader's transaction ends, the refresh runs.
    leaked.commit().await.unwrap();
    let out = locksmith(&url, &["apply", d, "--deadline", "30s", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        1
    );
}
