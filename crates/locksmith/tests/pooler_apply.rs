//! `locksmith apply` through a real PgBouncer, in session and in transaction
//! pooling, with application traffic on the same pool: migrations apply
//! exactly once (even with two runners racing), leaked sessions are named or
//! terminated, a statement that cannot run in a transaction block is refused
//! up front unless a direct route is given, a statement pooler is refused
//! before anything is touched unless a direct route is given, a killed run leaves a consistent
//! state. Every test checks that nothing of ours reached the application: its
//! queries fail if our `lock_timeout`/`statement_timeout` leaked onto their
//! backend, and none may be cancelled or fail at all.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use locksmith_pg::{Connection, ConnectionSettings};
use locksmith_sandbox::pooler::{PoolMode, Pooler, PoolerOptions};
use locksmith_sandbox::traffic::{LeakedSessions, Query, Traffic, TrafficProfile};
use locksmith_sandbox::{shared, wait};
use serde_json::Value;

mod support;
use support::{query_i64, text, write};

const MODES: [PoolMode; 2] = [PoolMode::Session, PoolMode::Transaction];

/// Fails (division by zero) on a backend where someone's timeouts stayed set.
const NO_LEAKED_SETTINGS: &str = "SELECT 1/(current_setting('lock_timeout') = '0' \
     AND current_setting('statement_timeout') = '0')::int";

/// A database with a table the app reads, a pooler in front of the server,
/// and the app's traffic through that pooler.
struct Scene {
    /// Straight to the server, for checks.
    admin: Connection,
    direct: ConnectionSettings,
    pooler: Pooler,
    traffic: Traffic,
}

impl Scene {
    async fn start(hint: &str, mode: PoolMode) -> Scene {
        let (direct, cluster) = shared::database(hint).await.unwrap();
        let admin = direct.connect().await.unwrap();
        admin
            .batch_execute(
                "CREATE TABLE items (id int PRIMARY KEY, name text);
                 INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 200) g;
                 CREATE TABLE counter (n int NOT NULL);
                 INSERT INTO counter VALUES (0);",
            )
            .await
            .unwrap();
        // Session pooling gives each client a backend of its own: room for
        // the app, two runners and the leakers. Transaction pooling shares few.
        let pool_size = match mode {
            PoolMode::Session => 14,
            PoolMode::Transaction | PoolMode::Statement => 4,
        };
        let options = PoolerOptions {
            pool_size,
            ..PoolerOptions::new(mode)
        };
        let pooler = Pooler::start_with(cluster, options).unwrap_or_else(|e| panic!("{e}"));
        let profile = TrafficProfile {
            rate: 60.0,
            pool_size: 3,
            queries: vec![
                Query {
                    sql: NO_LEAKED_SETTINGS.into(),
                    share: 1.0,
                },
                Query {
                    sql: "SELECT id, name FROM items WHERE id = $1".into(),
                    share: 1.0,
                },
            ],
            keys: 200,
            gateway_timeout: Duration::from_secs(10),
        };
        let traffic = Traffic::start(pooler.settings(direct.dbname(), "app"), profile);
        // The app is really running through the pooler before we start.
        wait::until(Duration::from_secs(30), "app traffic", || async {
            traffic.live().served >= 5
        })
        .await
        .unwrap();
        Scene {
            admin,
            direct,
            pooler,
            traffic,
        }
    }

    fn pooled_url(&self) -> String {
        self.pooler.url(self.direct.dbname())
    }

    fn direct_url(&self) -> String {
        shared::cluster().unwrap().url(self.direct.dbname())
    }

    /// `locksmith apply DIR ARGS --format json` through the pooler.
    fn command(&self, dir: &std::path::Path, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_locksmith"));
        command
            .arg("apply")
            .arg(dir)
            .args(["--format", "json"])
            .args(args)
            .env("DATABASE_URL", self.pooled_url())
            .env_remove("LOCKSMITH_DIRECT_URL")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn apply(&self, dir: &std::path::Path, args: &[&str]) -> Output {
        self.command(dir, args).output().unwrap()
    }

    async fn count(&self, sql: &str) -> i64 {
        query_i64(&self.admin, sql).await
    }

    /// Rows in the history table: migrations recorded as applied.
    async fn recorded(&self) -> i64 {
        self.count("SELECT count(*) FROM locksmith_migrations")
            .await
    }

    /// Stops the traffic and checks that no app query failed, was cancelled
    /// or saw our settings.
    async fn traffic_was_untouched(self, context: &str) {
        let report = self.traffic.stop().await;
        assert!(
            report.requests >= 5,
            "{context}: {} requests",
            report.requests
        );
        assert_eq!(
            (report.errors, report.timeouts),
            (0, 0),
            "{context}: the app saw errors: {:?}",
            report.first_errors
        );
    }
}

fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(out)))
}

/// The backend pids listed under `key` (`blockers`, `terminated`), sorted.
fn pids(report: &Value, key: &str) -> Vec<i64> {
    let mut pids: Vec<i64> = report[key]
        .as_array()
        .map(|a| a.iter().map(|s| s["pid"].as_i64().unwrap()).collect())
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

fn versions(report: &Value, key: &str) -> Vec<i64> {
    report[key]
        .as_array()
        .map(|a| a.iter().map(|m| m["version"].as_i64().unwrap()).collect())
        .unwrap_or_default()
}

/// Transactional migrations, one no-transaction migration whose statements
/// can run in a transaction block, and a counter that says how often each ran.
fn migrations(dir: &std::path::Path) {
    write(
        dir,
        &[
            ("001_add_c1.sql", "ALTER TABLE items ADD COLUMN c1 int;\nUPDATE counter SET n = n + 1;\n"),
            ("002_bump.sql", "UPDATE counter SET n = n + 10;\n"),
            ("003_add_c3.sql", "ALTER TABLE items ADD COLUMN c3 text;\nUPDATE counter SET n = n + 100;\n"),
            (
                "004_steps.sql",
                "-- locksmith:no-transaction\nUPDATE counter SET n = n + 1000;\nALTER TABLE items ADD COLUMN c4 int;\nUPDATE counter SET n = n + 10000;\n",
            ),
        ],
    );
}

/// What every migration above did, once each.
const ALL_ONCE: i64 = 11111;

async fn applied_once(scene: &Scene, context: &str) {
    assert_eq!(scene.recorded().await, 4, "{context}");
    assert_eq!(
        scene.count("SELECT n::bigint FROM counter").await,
        ALL_ONCE,
        "{context}"
    );
    assert_eq!(
        scene
            .count("SELECT count(*) FROM pg_attribute WHERE attrelid = 'items'::regclass AND attname IN ('c1', 'c3', 'c4')")
            .await,
        3,
        "{context}"
    );
    assert_eq!(
        scene
            .count("SELECT count(*) FROM locksmith_online_steps")
            .await,
        0,
        "{context}: progress rows left behind"
    );
}

#[tokio::test]
async fn applies_through_either_pooling_mode_without_touching_the_app() {
    for mode in MODES {
        let context = format!("{mode:?}");
        let scene = Scene::start(&format!("pooled_plain_{}", mode.as_str()), mode).await;
        let dir = tempfile::tempdir().unwrap();
        migrations(dir.path());
        let out = scene.apply(dir.path(), &[]);
        assert_eq!(out.status.code(), Some(0), "{context}: {}", text(&out));
        let json = report(&out);
        assert_eq!(versions(&json, "migrations"), vec![1, 2, 3, 4], "{json}");
        assert_eq!(json["pooler"]["detected"], true, "{json}");
        assert_eq!(json["pooler"]["direct"], false, "{json}");
        applied_once(&scene, &context).await;

        // Human format says once, on stderr, what is in between.
        let again = support::locksmith(
            &scene.pooled_url(),
            &["apply", dir.path().to_str().unwrap()],
        );
        assert_eq!(again.status.code(), Some(0), "{context}: {}", text(&again));
        let stderr = String::from_utf8_lossy(&again.stderr);
        assert_eq!(
            stderr.matches("through a connection pooler").count(),
            1,
            "{context}: {stderr}"
        );
        assert!(
            text(&again).contains("Nothing to apply"),
            "{}",
            text(&again)
        );
        applied_once(&scene, &context).await;

        // --online steps that each run in a transaction need no direct route.
        write(
            dir.path(),
            &[(
                "005_check.sql",
                "ALTER TABLE items ADD CONSTRAINT items_id_positive CHECK (id > 0);\n",
            )],
        );
        let online = scene.apply(dir.path(), &["--online"]);
        assert_eq!(
            online.status.code(),
            Some(0),
            "{context}: {}",
            text(&online)
        );
        assert_eq!(
            versions(&report(&online), "migrations"),
            vec![5],
            "{context}"
        );
        assert_eq!(
            scene
                .count("SELECT count(*) FROM pg_constraint WHERE conname = 'items_id_positive' AND convalidated")
                .await,
            1,
            "{context}"
        );
        scene.traffic_was_untouched(&context).await;
    }
}

#[tokio::test]
async fn leaked_sessions_on_the_pool_are_named_or_terminated() {
    for mode in MODES {
        let context = format!("{mode:?}");
        let scene = Scene::start(&format!("pooled_leaks_{}", mode.as_str()), mode).await;
        let leaked = LeakedSessions::open(
            &scene.pooler.settings(scene.direct.dbname(), "leaky-worker"),
            2,
            "items",
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[("001_add.sql", "ALTER TABLE items ADD COLUMN c1 int;\n")],
        );

        let out = scene.apply(dir.path(), &["--deadline", "3s"]);
        assert_eq!(out.status.code(), Some(3), "{context}: {}", text(&out));
        let json = report(&out);
        let mut leakers: Vec<i64> = leaked.pids().iter().map(|&p| i64::from(p)).collect();
        leakers.sort_unstable();
        assert_eq!(pids(&json, "blockers"), leakers, "{context}: {json}");
        // Their client address is the pooler's, and the report says so.
        for b in json["blockers"].as_array().unwrap() {
            assert_eq!(b["via_pooler"], true, "{context}: {b}");
        }
        assert_eq!(scene.recorded().await, 0);

        let out = scene.apply(
            dir.path(),
            &["--deadline", "30s", "--terminate-idle-after", "1s"],
        );
        assert_eq!(out.status.code(), Some(0), "{context}: {}", text(&out));
        let json = report(&out);
        assert_eq!(pids(&json, "terminated"), leakers, "{context}: {json}");
        assert_eq!(scene.recorded().await, 1);
        scene.traffic_was_untouched(&context).await;
    }
}

/// Statement pooling cuts a transaction at its `BEGIN`: apply refuses it at
/// connect (exit 2), before the runner lock, the history table or any
/// termination, naming statement pooling and `--direct-url`; with
/// `--direct-url` it runs over the direct route, terminations included.
#[tokio::test]
async fn a_statement_pooler_is_refused_before_anything_is_terminated() {
    let scene = Scene::start("pooled_statement", PoolMode::Statement).await;
    // A transaction cannot stay open through a statement pooler: the leak is
    // another client of the server's.
    let leaked = LeakedSessions::open(
        &scene.direct.with_application_name("leaky-worker"),
        1,
        "items",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[("001_add.sql", "ALTER TABLE items ADD COLUMN c1 int;\n")],
    );
    let args = ["--deadline", "30s", "--terminate-idle-after", "500ms"];
    // Idle past the threshold already: a guard that started would terminate it at its first look.
    wait::until(Duration::from_secs(30), "the leak idle for 1 s", || async {
        scene
            .count(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'leaky-worker'
                   AND state = 'idle in transaction' AND now() - state_change > interval '1 s'",
            )
            .await
            == 1
    })
    .await
    .unwrap();

    let out = scene.apply(dir.path(), &args);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in ["statement pooling", "--direct-url", "nothing was done"] {
        assert!(stderr.contains(needle), "{needle:?} missing: {stderr}");
    }
    assert_eq!(
        leaked.alive(),
        1,
        "a session was terminated: {}",
        text(&out)
    );
    assert_eq!(
        scene
            .count("SELECT count(*) FROM pg_class WHERE relname = 'locksmith_migrations'")
            .await,
        0,
        "the history table was touched"
    );

    let direct = scene.direct_url();
    let mut with_direct = args.to_vec();
    with_direct.extend(["--direct-url", &direct]);
    let out = scene.apply(dir.path(), &with_direct);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json = report(&out);
    let leakers: Vec<i64> = leaked.pids().iter().map(|&p| i64::from(p)).collect();
    assert_eq!(pids(&json, "terminated"), leakers, "{json}");
    assert_eq!(scene.recorded().await, 1);
    scene.traffic_was_untouched("statement pooling").await;
}

#[tokio::test]
async fn two_racing_runners_apply_each_migration_exactly_once() {
    for mode in MODES {
        let context = format!("{mode:?}");
        let scene = Scene::start(&format!("pooled_race_{}", mode.as_str()), mode).await;
        let dir = tempfile::tempdir().unwrap();
        migrations(dir.path());
        let a = scene
            .command(dir.path(), &["--deadline", "60s"])
            .spawn()
            .unwrap();
        let b = scene
            .command(dir.path(), &["--deadline", "60s"])
            .spawn()
            .unwrap();
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        assert_eq!(a.status.code(), Some(0), "{context}: {}", text(&a));
        assert_eq!(b.status.code(), Some(0), "{context}: {}", text(&b));
        // Between them, every migration once: applied by one; the other found
        // it applied, when it read the history or in the migration's own
        // transaction (`applied_elsewhere`).
        let (a, b) = (report(&a), report(&b));
        let mut ran = versions(&a, "migrations");
        ran.extend(versions(&b, "migrations"));
        ran.sort_unstable();
        assert_eq!(ran, vec![1, 2, 3, 4], "{context}: {a} {b}");
        applied_once(&scene, &context).await;
        scene.traffic_was_untouched(&context).await;
    }
}

#[tokio::test]
async fn a_concurrent_build_needs_the_direct_route() {
    for mode in MODES {
        let context = format!("{mode:?}");
        let scene = Scene::start(&format!("pooled_cic_{}", mode.as_str()), mode).await;
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                ("001_add.sql", "ALTER TABLE items ADD COLUMN c1 int;\n"),
                (
                    "002_index.sql",
                    "-- locksmith:no-transaction\nCREATE INDEX CONCURRENTLY items_name ON items (name);\n",
                ),
            ],
        );
        let out = scene.apply(dir.path(), &[]);
        assert_eq!(out.status.code(), Some(2), "{context}: {}", text(&out));
        let said = text(&out);
        for needle in ["002_index.sql:2:", "connection pooler", "--direct-url"] {
            assert!(said.contains(needle), "{context}: no {needle}: {said}");
        }
        // Before anything ran: not even the first migration.
        assert_eq!(
            scene
                .count("SELECT count(*) FROM pg_attribute WHERE attrelid = 'items'::regclass AND attname = 'c1'")
                .await,
            0,
            "{context}"
        );
        assert_eq!(
            scene
                .count("SELECT count(*) FROM pg_class WHERE relname = 'locksmith_migrations'")
                .await,
            0,
            "{context}"
        );

        let direct = scene.direct_url();
        let out = scene.apply(dir.path(), &["--direct-url", &direct]);
        assert_eq!(out.status.code(), Some(0), "{context}: {}", text(&out));
        let json = report(&out);
        assert_eq!(versions(&json, "migrations"), vec![1, 2], "{json}");
        assert_eq!(json["pooler"]["direct"], true, "{json}");
        assert_eq!(
            scene
                .count("SELECT count(*) FROM pg_index WHERE indexrelid = 'items_name'::regclass AND indisvalid")
                .await,
            1,
            "{context}"
        );

        // --online: its concurrent build needs the direct route too.
        write(
            dir.path(),
            &[(
                "003_unique.sql",
                "ALTER TABLE items ADD CONSTRAINT items_name_key UNIQUE (name);\n",
            )],
        );
        let out = scene.apply(dir.path(), &["--online"]);
        assert_eq!(out.status.code(), Some(2), "{context}: {}", text(&out));
        let said = text(&out);
        for needle in ["003_unique.sql", "connection pooler", "--direct-url"] {
            assert!(said.contains(needle), "{context}: no {needle}: {said}");
        }
        assert_eq!(scene.recorded().await, 2, "{context}");
        let out = scene.apply(dir.path(), &["--online", "--direct-url", &direct]);
        assert_eq!(out.status.code(), Some(0), "{context}: {}", text(&out));
        assert_eq!(versions(&report(&out), "migrations"), vec![3], "{context}");
        assert_eq!(
            scene
                .count("SELECT count(*) FROM pg_constraint WHERE conname = 'items_name_key'")
                .await,
            1,
            "{context}"
        );
        scene.traffic_was_untouched(&context).await;
    }
}

#[tokio::test]
async fn a_run_killed_mid_migration_is_finished_by_the_next() {
    for mode in MODES {
        let context = format!("{mode:?}");
        let scene = Scene::start(&format!("pooled_kill_{}", mode.as_str()), mode).await;
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                (
                    "001_add.sql",
                    "ALTER TABLE items ADD COLUMN c1 int;\nUPDATE counter SET n = n + 1;\n",
                ),
                // Killed in its second statement: the first is done and
                // recorded as progress, the second rolled back.
                (
                    "002_slow.sql",
                    "-- locksmith:no-transaction\nUPDATE counter SET n = n + 10;\nSELECT pg_sleep(2);\nUPDATE counter SET n = n + 1000;\n",
                ),
                (
                    "003_add.sql",
                    "ALTER TABLE items ADD COLUMN c3 int;\nUPDATE counter SET n = n + 100;\n",
                ),
            ],
        );
        let mut child = scene.command(dir.path(), &[]).spawn().unwrap();
        wait::until(Duration::from_secs(30), "apply to reach the slow migration", || async {
            scene
                .count("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(2)%' AND state = 'active' AND pid <> pg_backend_pid()")
                .await
                > 0
        })
        .await
        .unwrap();
        child.kill().unwrap();
        let _ = child.wait();
        assert_eq!(
            scene
                .count("SELECT count(*) FROM locksmith_online_steps WHERE version = 2")
                .await,
            1,
            "{context}: the first statement's progress"
        );

        let out = scene.apply(dir.path(), &["--deadline", "60s"]);
        assert_eq!(out.status.code(), Some(0), "{context}: {}", text(&out));
        assert_eq!(
            versions(&report(&out), "migrations"),
            vec![2, 3],
            "{context}"
        );
        assert_eq!(scene.recorded().await, 3);
        assert_eq!(
            scene.count("SELECT n::bigint FROM counter").await,
            1111,
            "{context}"
        );
        assert_eq!(
            scene
                .count("SELECT count(*) FROM locksmith_online_steps")
                .await,
            0,
            "{context}"
        );
        scene.traffic_was_untouched(&context).await;
    }
}

/// `kill -9` of `apply` while its transaction holds ACCESS EXCLUSIVE on the
/// app's table, through the pooler: the pooled backend is left running a
/// statement for a client that is gone. The lock must go within seconds
/// (the attempt's `client_connection_check_interval`, set for its
/// transaction only), not when the statement ends, and the app's reads of
/// the table resume; nothing of the migration was committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_holding_its_lock_releases_it_within_seconds() {
    for mode in MODES {
        let context = format!("{mode:?}");
        let scene = Scene::start(&format!("pooled_kill_lock_{}", mode.as_str()), mode).await;
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[(
                "001_slow.sql",
                "ALTER TABLE items ADD COLUMN c1 int;\nUPDATE counter SET n = n + 1;\nSELECT pg_sleep(60);\n",
            )],
        );
        let mut child = scene
            .command(dir.path(), &["--max-hold", "5m"])
            .spawn()
            .unwrap();
        let holding = "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                        WHERE c.relname = 'items' AND l.mode = 'AccessExclusiveLock' AND l.granted";
        wait::until(
            Duration::from_secs(30),
            "apply to hold its lock",
            || async { scene.count(holding).await > 0 },
        )
        .await
        .unwrap();
        child.kill().unwrap();
        let _ = child.wait();
        let killed = std::time::Instant::now();
        wait::until(Duration::from_secs(30), "the lock to go", || async {
            scene.count(holding).await == 0
        })
        .await
        .unwrap();
        let held_on = killed.elapsed();
        assert!(
            held_on < Duration::from_secs(15),
            "{context}: the lock outlived its client by {held_on:?}"
        );
        assert_eq!(scene.count("SELECT n::bigint FROM counter").await, 0);

        scene.traffic_was_untouched(&context).await;
    }
}

/// A row lock on one partition, taken through the pool and left idle in
/// transaction, blocks an ALTER of the partitioned parent: the guard names
/// the pooled backend holding it, and nothing is applied.
#[tokio::test]
async fn a_row_lock_on_a_partition_through_the_pool_is_named() {
    for mode in MODES {
        let context = format!("{mode:?}");
        let scene = Scene::start(&format!("pooled_partition_{}", mode.as_str()), mode).await;
        scene
            .admin
            .batch_execute(
                "CREATE TABLE events (id int NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);
                 CREATE TABLE events_2026 PARTITION OF events
                     FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
                 INSERT INTO events SELECT g, '2026-06-01' FROM generate_series(1, 50) g;",
            )
            .await
            .unwrap();
        let locker = LeakedSessions::holding(
            &scene.pooler.settings(scene.direct.dbname(), "row-locker"),
            1,
            "SELECT id FROM events_2026 WHERE id = 7 FOR UPDATE",
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[("001_add.sql", "ALTER TABLE events ADD COLUMN note text;\n")],
        );

        let out = scene.apply(dir.path(), &["--deadline", "3s"]);
        assert_eq!(out.status.code(), Some(3), "{context}: {}", text(&out));
        let json = report(&out);
        assert_eq!(
            pids(&json, "blockers"),
            [i64::from(locker.pids()[0])],
            "{context}: {json}"
        );
        assert_eq!(scene.recorded().await, 0, "{context}");
        assert_eq!(
            scene
                .count(
                    "SELECT count(*) FROM pg_attribute \
                     WHERE attrelid = 'events'::regclass AND attname = 'note'"
                )
                .await,
            0,
            "{context}"
        );
        locker.commit().await.unwrap();
        scene.traffic_was_untouched(&context).await;
    }
}

/// A migration that fails halfway through the pool is rolled back whole and
/// the history stays consistent: what was applied before it stays recorded,
/// nothing of it or after it is. The failed transaction leaves nothing on
/// the pooled backend, and a fixed rerun applies the rest.
#[tokio::test]
async fn a_failure_halfway_through_the_pool_rolls_back_and_resumes() {
    for mode in MODES {
        let context = format!("{mode:?}");
        let scene = Scene::start(&format!("pooled_fail_{}", mode.as_str()), mode).await;
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &[
                ("1_ok.sql", "CREATE TABLE ok (id int);\n"),
                (
                    "2_half.sql",
                    "CREATE TABLE half (id int);\nINSERT INTO half VALUES (1/0);\n",
                ),
                ("3_after.sql", "CREATE TABLE after (id int);\n"),
            ],
        );
        let out = scene.apply(dir.path(), &[]);
        assert_eq!(out.status.code(), Some(1), "{context}: {}", text(&out));
        let json = report(&out);
        assert_eq!(json["status"], "failed", "{context}: {json}");
        let error = json["error"].as_str().unwrap();
        assert!(
            error.contains("division by zero") && error.contains("rolled back"),
            "{context}: {error}"
        );
        assert_eq!(scene.recorded().await, 1, "{context}");
        assert_eq!(
            scene
                .count("SELECT count(*) FROM pg_class WHERE relname IN ('ok', 'half', 'after')")
                .await,
            1,
            "{context}"
        );

        write(
            dir.path(),
            &[(
                "2_half.sql",
                "CREATE TABLE half (id int);\nINSERT INTO half VALUES (1);\n",
            )],
        );
        let out = scene.apply(dir.path(), &[]);
        assert_eq!(out.status.code(), Some(0), "{context}: {}", text(&out));
        assert_eq!(scene.recorded().await, 3, "{context}");
        scene.traffic_was_untouched(&context).await;
    }
}
