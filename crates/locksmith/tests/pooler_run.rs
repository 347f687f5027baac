//! `locksmith run -- psql` behind a real PgBouncer (Debian's 1.18), in
//! session and transaction pooling, with application traffic on the same
//! pool. PgBouncer refuses the `options` startup parameter (or, told to
//! ignore it, drops it silently), so `run` must not rely on `PGOPTIONS`:
//! its watch bounds the command's lock waits itself, finding the pooled
//! backends by `application_name`. The traffic's own query fails if any of
//! our settings leaked into its pooled sessions, and none of its requests
//! may ever be cancelled.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use locksmith_pg::Connection;
use locksmith_sandbox::incident::{Incident, TABLE};
use locksmith_sandbox::pooler::{PoolMode, Pooler, PoolerOptions};
use locksmith_sandbox::traffic::{LeakedSessions, Query, Traffic, TrafficProfile, TrafficReport};
use locksmith_sandbox::{shared, wait};
use serde_json::Value;

mod support;
use support::text;

const PSQL: &str = "/usr/lib/postgresql/15/bin/psql";

/// Fails (division by zero) in a session carrying a `lock_timeout` or
/// `statement_timeout`: one of ours, left on a pooled backend.
const NO_LEAK: &str = "SELECT 1/(current_setting('lock_timeout') = '0' \
                       AND current_setting('statement_timeout') = '0')::int";

/// The venv's python with psycopg2 (the story's driver): `LOCKSMITH_TEST_PYTHON`,
/// else the one `scripts/python-venv.sh` creates, as in `tests/run.rs`.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(p) = std::env::var_os("LOCKSMITH_TEST_PYTHON").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = Command::new("bash")
            .arg(root.join("scripts/python-venv.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("running scripts/python-venv.sh");
        assert!(
            out.status.success(),
            "scripts/python-venv.sh could not create the venv with psycopg2: point \
             LOCKSMITH_TEST_PYTHON at a python that has it"
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// The incident's database, a PgBouncer in front of it, and traffic through it.
struct Scene {
    incident: Incident,
    pooler: Pooler,
    dbname: String,
}

impl Scene {
    async fn new(hint: &str, mode: PoolMode, ignore: &str) -> Scene {
        let cluster = shared::cluster().unwrap();
        let dbname = shared::unique_name(hint);
        let incident = Incident::stage(cluster, &dbname).await.unwrap();
        let pooler = start_pooler(mode, ignore);
        Scene {
            incident,
            pooler,
            dbname,
        }
    }

    /// Requests through the pooler: half read the table, half check for leaks.
    fn traffic(&self) -> Traffic {
        Traffic::start(
            self.pooler.settings(&self.dbname, "web-app"),
            TrafficProfile {
                rate: 30.0,
                pool_size: 4,
                queries: vec![
                    Query {
                        sql: "SELECT id, informal_name FROM academic_partners WHERE id = $1".into(),
                        share: 1.0,
                    },
                    Query {
                        sql: NO_LEAK.into(),
                        share: 1.0,
                    },
                ],
                ..TrafficProfile::default()
            },
        )
    }

    fn url(&self) -> String {
        self.pooler.url(&self.dbname)
    }

    /// `locksmith run ARGS -- psql -X -v ON_ERROR_STOP=1 URL -c SQL` with
    /// `DATABASE_URL` the pooler's, off the runtime's thread.
    async fn run_psql(&self, args: &[&str], url: &str, sql: &str) -> Output {
        self.run(args, &[PSQL, "-X", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
            .await
    }

    /// `locksmith run ARGS -- CMD` with `DATABASE_URL` the pooler's, to spawn.
    fn command(&self, args: &[&str], cmd: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_locksmith"));
        command
            .arg("run")
            .args(args)
            .arg("--")
            .args(cmd)
            .env("DATABASE_URL", self.url())
            .env_remove("PGOPTIONS")
            .env_remove("PGAPPNAME")
            .env_remove("LOCKSMITH_DIRECT_URL")
            .env("NO_COLOR", "1");
        command
    }

    /// [`Self::command`], run to its end.
    async fn run(&self, args: &[&str], cmd: &[&str]) -> Output {
        let mut command = self.command(args, cmd);
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }

    async fn admin(&self) -> Connection {
        self.incident.admin.connect().await.unwrap()
    }
}

fn start_pooler(mode: PoolMode, ignore: &str) -> Pooler {
    Pooler::start_with(
        shared::cluster().unwrap(),
        PoolerOptions {
            // Room for leakers, the command, the traffic and the watch.
            pool_size: 12,
            ignore_startup_parameters: ignore.into(),
            ..PoolerOptions::new(mode)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

async fn has_column(admin: &Connection, column: &str) -> bool {
    admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_attribute
                            WHERE attrelid = 'academic_partners'::regclass AND attname = $1)",
            &[&column],
        )
        .await
        .unwrap()
        .get(0)
}

/// No application request failed (a cancel, or a leaked setting tripping
/// [`NO_LEAK`]) and none stalled past `bound`.
fn assert_traffic_unharmed(report: &TrafficReport, bound: Duration, out: &Output) {
    eprintln!(
        "traffic: {} requests, {} errors, worst {} ms, p99 {} ms",
        report.requests, report.errors, report.max_stall_ms, report.p99_ms
    );
    assert!(report.requests > 0, "no traffic ran");
    assert_eq!(
        report.errors,
        0,
        "application requests failed: {report:?}\n{}",
        text(out)
    );
    assert!(
        report.max_stall_ms < bound.as_millis() as u64,
        "an application request stalled {} ms\n{}",
        report.max_stall_ms,
        text(out)
    );
}

/// How many of the command's sessions (any attempt) wait for a lock now.
async fn queued_lock_requests(admin: &Connection) -> i64 {
    queued_lock_requests_of(admin, "locksmith-run-%").await
}

/// How many sessions whose `application_name` is `LIKE` `pattern` (one
/// attempt's: `locksmith-run-%-2`) wait for a lock now.
async fn queued_lock_requests_of(admin: &Connection, pattern: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name LIKE $1 AND wait_event_type = 'Lock'",
            &[&pattern],
        )
        .await
        .unwrap()
        .get(0)
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not a JSON report ({e}): {}", text(out)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_through_the_pooler_in_both_modes() {
    let cluster = shared::cluster().unwrap();
    let dbname = shared::unique_name("pooler_run_applies");
    let incident = Incident::stage(cluster, &dbname).await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    for (n, (mode, ignore)) in [
        (PoolMode::Session, ""),
        (PoolMode::Transaction, ""),
        (PoolMode::Session, "extra_float_digits,options"),
        (PoolMode::Transaction, "extra_float_digits,options"),
    ]
    .into_iter()
    .enumerate()
    {
        let scene = Scene {
            incident: incident.clone(),
            pooler: start_pooler(mode, ignore),
            dbname: dbname.clone(),
        };
        let traffic = scene.traffic();
        let column = format!("note_{n}");
        let out = scene
            .run_psql(
                &["--format", "json"],
                &scene.url(),
                &format!("ALTER TABLE academic_partners ADD COLUMN {column} text"),
            )
            .await;
        // The pool's backends keep serving the application after we are gone:
        // a setting of ours left on one would fail its leak check.
        let served = traffic.live().served;
        wait::until(wait::BOUND, "requests after the run", || async {
            traffic.live().served >= served + 20
        })
        .await
        .unwrap();
        let report = traffic.stop().await;
        let case = format!("{mode:?}, ignore_startup_parameters = {ignore:?}");
        assert_eq!(out.status.code(), Some(0), "{case}: {}", text(&out));
        let json = json(&out);
        assert_eq!(json["status"], "applied", "{case}: {json}");
        assert_eq!(json["pooler"]["detected"], true, "{case}: {json}");
        assert_eq!(json["pooler"]["direct"], false, "{case}: {json}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("connection pooler"),
            "{case}: {}",
            text(&out)
        );
        assert!(
            !text(&out).contains(locksmith_sandbox::cluster::SUPERUSER_PASSWORD),
            "{case}: a password was printed: {}",
            text(&out)
        );
        assert!(has_column(&admin, &column).await, "{case}");
        if report.errors > 0 {
            // What PgBouncer saw, for a failure that is the pooler's own.
            eprintln!("pgbouncer's log:\n{}", scene.pooler.log());
        }
        assert_traffic_unharmed(&report, Duration::from_secs(5), &out);
    }
}

/// Leaked sessions idle in transaction on the pool hold the table: the
/// command's ALTER is cancelled by locksmith after about the budget, each
/// attempt, until the deadline; then it gives up naming the leakers, and
/// no application request was cancelled or stalled long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leakers_make_it_give_up_without_touching_traffic() {
    for mode in [PoolMode::Transaction, PoolMode::Session] {
        let scene = Scene::new("pooler_run_leaks", mode, "extra_float_digits,options").await;
        let _leakers =
            LeakedSessions::open(&scene.pooler.settings(&scene.dbname, "leaky-app"), 2, TABLE)
                .await
                .unwrap();
        let traffic = scene.traffic();
        let began = Instant::now();
        let out = scene
            .run_psql(
                &[
                    "--format",
                    "json",
                    "--lock-timeout",
                    "300ms",
                    "--deadline",
                    "3s",
                ],
                &scene.url(),
                "ALTER TABLE academic_partners ADD COLUMN never text",
            )
            .await;
        let took = began.elapsed();
        let report = traffic.stop().await;
        assert_eq!(out.status.code(), Some(3), "{mode:?}: {}", text(&out));
        let json = json(&out);
        assert_eq!(json["status"], "blocked", "{mode:?}: {json}");
        assert!(took < Duration::from_secs(20), "{mode:?}: took {took:?}");
        // Each cancel: the command's statement, on its backend, after about the budget.
        let cancels = json["cancelled_by_locksmith"].as_array().unwrap();
        assert!(!cancels.is_empty(), "{mode:?}: {json}");
        for c in cancels {
            assert!(
                c["query"].as_str().unwrap().contains("ADD COLUMN never"),
                "{c}"
            );
            assert!(c["pid"].as_i64().unwrap() > 0, "{c}");
            let waited = c["waited_ms"].as_u64().unwrap();
            assert!((300..3_000).contains(&waited), "{mode:?}: {c}");
            assert!(
                c["blockers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|b| b["application_name"] == "leaky-app"),
                "{mode:?}: {c}"
            );
        }
        let blockers = json["blockers"].as_array().unwrap();
        assert!(
            blockers.iter().any(
                |b| b["application_name"] == "leaky-app" && b["state"] == "idle in transaction"
            ),
            "{mode:?}: leakers not named: {json}"
        );
        let admin = scene.admin().await;
        assert!(!has_column(&admin, "never").await);
        // Nothing of the command's is left queued on the server.
        assert_eq!(queued_lock_requests(&admin).await, 0, "{mode:?}");
        assert_traffic_unharmed(&report, Duration::from_secs(3), &out);
    }
}

/// With `--terminate-idle-after` the leakers are ended and the ALTER applied;
/// the watch goes straight to the server (`--direct-url`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_idle_after_ends_the_leakers_and_applies() {
    let scene = Scene::new("pooler_run_terminate", PoolMode::Transaction, "").await;
    let leakers =
        LeakedSessions::open(&scene.pooler.settings(&scene.dbname, "leaky-app"), 2, TABLE)
            .await
            .unwrap();
    let traffic = scene.traffic();
    let direct = shared::cluster().unwrap().url(&scene.dbname);
    let out = scene
        .run_psql(
            &[
                "--format",
                "json",
                "--lock-timeout",
                "300ms",
                "--terminate-idle-after",
                "500ms",
                "--deadline",
                "20s",
                "--direct-url",
                &direct,
            ],
            &scene.url(),
            "ALTER TABLE academic_partners ADD COLUMN later text",
        )
        .await;
    let report = traffic.stop().await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json = json(&out);
    assert_eq!(json["status"], "applied", "{json}");
    assert_eq!(json["pooler"]["detected"], true, "{json}");
    assert_eq!(json["pooler"]["direct"], true, "{json}");
    let terminated = json["terminated"].as_array().unwrap();
    assert!(
        terminated
            .iter()
            .any(|t| t["application_name"] == "leaky-app"),
        "{json}"
    );
    assert!(has_column(&scene.admin().await, "later").await);
    wait::until(wait::BOUND, "the leakers' connections to close", || async {
        leakers.alive() < 2
    })
    .await
    .unwrap();
    assert_traffic_unharmed(&report, Duration::from_secs(3), &out);
}

/// The deadline holds for the command itself: a statement that runs on
/// past it is cancelled on the server and the command stopped (exit 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_stops_the_command() {
    let scene = Scene::new("pooler_run_deadline", PoolMode::Transaction, "").await;
    let began = Instant::now();
    let out = scene
        .run_psql(
            &["--format", "json", "--deadline", "2s"],
            &scene.url(),
            "SELECT pg_sleep(60)",
        )
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(began.elapsed() < Duration::from_secs(20));
    let json = json(&out);
    assert_eq!(json["status"], "blocked", "{json}");
    assert!(
        json["error"].as_str().unwrap().contains("deadline"),
        "{json}"
    );
    let admin = scene.admin().await;
    wait::until(wait::BOUND, "the sleep to be cancelled", || async {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE query LIKE 'SELECT pg_sleep(60)%' AND state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
            == 0
    })
    .await
    .unwrap();
}

/// A command that sets its own `application_name` could not be watched
/// behind a pooler: refused up front (exit 2), naming the pooler and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_naming_itself_is_refused_behind_a_pooler() {
    let scene = Scene::new("pooler_run_refused", PoolMode::Transaction, "").await;
    let url = format!("{}?application_name=mine", scene.url());
    let out = scene
        .run_psql(
            &[],
            &url,
            "ALTER TABLE academic_partners ADD COLUMN never text",
        )
        .await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("pooler"), "{stderr}");
    assert!(stderr.contains("application_name"), "{stderr}");
    assert!(
        !stderr.contains(locksmith_sandbox::cluster::SUPERUSER_PASSWORD),
        "{stderr}"
    );
    assert!(!has_column(&scene.admin().await, "never").await);
}

/// A pool too small for the leakers, the command and the watch (3 server
/// connections, no `--direct-url`): the watch cannot bound the wait at the
/// budget and the report says so, naming the fix; at the deadline the
/// command is stopped and nothing of it stays queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_starved_watch_says_so_and_the_deadline_still_holds() {
    let cluster = shared::cluster().unwrap();
    let dbname = shared::unique_name("pooler_run_starved");
    let incident = Incident::stage(cluster, &dbname).await.unwrap();
    let pooler = Pooler::start_with(
        cluster,
        PoolerOptions {
            pool_size: 3,
            ..PoolerOptions::new(PoolMode::Transaction)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let scene = Scene {
        incident,
        pooler,
        dbname,
    };
    let _leakers =
        LeakedSessions::open(&scene.pooler.settings(&scene.dbname, "leaky-app"), 2, TABLE)
            .await
            .unwrap();
    let out = scene
        .run_psql(
            &[
                "--format",
                "json",
                "--lock-timeout",
                "300ms",
                "--deadline",
                "3s",
            ],
            &scene.url(),
            "ALTER TABLE academic_partners ADD COLUMN never text",
        )
        .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let json = json(&out);
    assert_eq!(json["status"], "blocked", "{json}");
    let error = json["error"].as_str().unwrap();
    assert!(error.contains("deadline"), "{json}");
    if !error.contains("--direct-url") {
        eprintln!("{}\npgbouncer's log:\n{}", text(&out), scene.pooler.log());
    }
    assert!(error.contains("--direct-url"), "{json}");
    let admin = scene.admin().await;
    wait::until(
        wait::BOUND,
        "no lock request of the command's left",
        || async { queued_lock_requests(&admin).await == 0 },
    )
    .await
    .unwrap();
    assert!(!has_column(&admin, "never").await);
}

/// The command's own failure behind a pooler is passed through as its own:
/// nothing was cancelled by locksmith, and the report says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commands_own_failure_is_not_taken_for_a_cancel() {
    let scene = Scene::new("pooler_run_own_failure", PoolMode::Transaction, "").await;
    let out = scene
        .run_psql(&["--format", "json"], &scene.url(), "SELECT 1/0")
        .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "psql's own code: {}",
        text(&out)
    );
    let json = json(&out);
    assert_eq!(json["status"], "failed", "{json}");
    assert_eq!(json["attempts"], 1, "not rerun: {json}");
    assert_eq!(
        json["cancelled_by_locksmith"],
        serde_json::json!([]),
        "{json}"
    );
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("not a lost lock race"),
        "{json}"
    );
}

/// The story's driver, psycopg2 (SQLAlchemy and alembic use it), through
/// PgBouncer in transaction pooling: it sends PGAPPNAME, so the watch finds
/// its backend and cancels its wait behind the leakers, and run tries again
/// once they commit. They commit only after that wait has ended, which
/// nothing but a cancel can do while they hold their locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg2_through_transaction_pooling_is_watched() {
    let scene = Scene::new("pooler_run_psycopg2", PoolMode::Transaction, "").await;
    let leakers =
        LeakedSessions::open(&scene.pooler.settings(&scene.dbname, "leaky-app"), 2, TABLE)
            .await
            .unwrap();
    let traffic = scene.traffic();
    let script = "import os, psycopg2\n\
                  c = psycopg2.connect(os.environ['DATABASE_URL'])\n\
                  c.cursor().execute('ALTER TABLE academic_partners ADD COLUMN via_psycopg2 text')\n\
                  c.commit()\n";
    let py = python().display().to_string();
    let args = [
        "--format",
        "json",
        "--lock-timeout",
        "300ms",
        "--deadline",
        "60s",
    ];
    let command = [py.as_str(), "-c", script];
    let run = scene.run(&args, &command);
    let admin = scene.admin().await;
    let waiting = || async { queued_lock_requests(&admin).await > 0 };
    // The leakers stay until the command's wait behind them has ended:
    // nothing but a cancel can end it while they hold their locks.
    let release = async {
        let mut seen = wait::until(Duration::from_secs(60), "the command's wait", &waiting).await;
        if seen.is_ok() {
            seen = wait::until(Duration::from_secs(60), "the wait's end", || async {
                !waiting().await
            })
            .await;
        }
        leakers.commit().await.unwrap();
        seen
    };
    let (out, seen) = tokio::join!(run, release);
    assert!(seen.is_ok(), "{seen:?}: {}", text(&out));
    let report = traffic.stop().await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let json = json(&out);
    assert_eq!(json["status"], "applied", "{json}");
    assert!(json["attempts"].as_u64().unwrap() >= 2, "{json}");
    assert_eq!(json["terminated"], serde_json::json!([]), "{json}");
    let cancels = json["cancelled_by_locksmith"].as_array().unwrap();
    assert!(!cancels.is_empty(), "its wait was cancelled: {json}");
    assert!(
        cancels[0]["query"]
            .as_str()
            .unwrap()
            .contains("via_psycopg2"),
        "{json}"
    );
    assert!(has_column(&scene.admin().await, "via_psycopg2").await);
    assert_traffic_unharmed(&report, Duration::from_secs(3), &out);
}

/// `kill -9` of `run` while the command's ALTER waits behind the leakers
/// through the pooler. Nothing else bounds that wait (no `lock_timeout`
/// reaches a pooled session), so without `run` the ALTER, and every request
/// on the table behind it, would wait as long as the leakers live. The
/// warden `run` left behind stops the command and cancels its statement on
/// the server; the leakers are not touched, and nothing was applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_leaves_no_lock_wait_behind() {
    for mode in [PoolMode::Transaction, PoolMode::Session] {
        let scene = Scene::new(&format!("pooler_run_killed_{}", mode.as_str()), mode, "").await;
        let leakers =
            LeakedSessions::open(&scene.pooler.settings(&scene.dbname, "leaky-app"), 2, TABLE)
                .await
                .unwrap();
        let log = tempfile::NamedTempFile::new().unwrap();
        let url = scene.url();
        let mut run = scene
            .command(
                &["--lock-timeout", "5m", "--deadline", "10m"],
                &[
                    PSQL,
                    "-X",
                    "-v",
                    "ON_ERROR_STOP=1",
                    &url,
                    "-c",
                    "ALTER TABLE academic_partners ADD COLUMN never text",
                ],
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let admin = scene.admin().await;
        wait::until(wait::BOUND, "the command's ALTER to wait", || async {
            queued_lock_requests(&admin).await > 0
        })
        .await
        .unwrap();
        run.kill().unwrap();
        run.wait().unwrap();
        let killed = Instant::now();
        wait::until(
            Duration::from_secs(60),
            "the ALTER's wait to go",
            || async { queued_lock_requests(&admin).await == 0 },
        )
        .await
        .unwrap();
        let stayed = killed.elapsed();
        let said = std::fs::read_to_string(log.path()).unwrap();
        assert!(
            stayed < Duration::from_secs(15),
            "{mode:?}: the wait outlived run by {stayed:?}\n{said}"
        );
        assert!(!has_column(&admin, "never").await, "{mode:?}");
        assert_eq!(
            leakers.alive(),
            2,
            "{mode:?}: the leakers are not ours to end"
        );
        // The app reads the table through the pooler again, nothing queued.
        let app = scene
            .pooler
            .settings(&scene.dbname, "app")
            .connect()
            .await
            .unwrap();
        app.batch_execute("SELECT count(*) FROM academic_partners")
            .await
            .unwrap();
        wait::until(wait::BOUND, "the warden to say what it did", || async {
            std::fs::read_to_string(log.path())
                .unwrap()
                .contains("warden: the command is stopped")
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{mode:?}: {e}\n{}",
                std::fs::read_to_string(log.path()).unwrap()
            )
        });
    }
}

/// A brief idle transaction on the pool: the first attempt's wait is
/// cancelled after the budget, and once the app commits a later attempt
/// applies. Nobody is terminated and no request was harmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_brief_idle_transaction_is_waited_out_by_a_retry() {
    for mode in [PoolMode::Transaction, PoolMode::Session] {
        let scene = Scene::new("pooler_run_brief", mode, "").await;
        let leaker =
            LeakedSessions::open(&scene.pooler.settings(&scene.dbname, "brief-app"), 1, TABLE)
                .await
                .unwrap();
        let traffic = scene.traffic();
        let mut command = scene.command(
            &[
                "--format",
                "json",
                "--lock-timeout",
                "300ms",
                "--deadline",
                "60s",
            ],
            &[
                PSQL,
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                &scene.url(),
                "-c",
                "ALTER TABLE academic_partners ADD COLUMN soon text",
            ],
        );
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The app commits only once a second attempt waits: the first was
        // cancelled by the watch, not granted.
        let admin = scene.admin().await;
        wait::until(wait::BOUND, "a second attempt waiting", || async {
            queued_lock_requests_of(&admin, "locksmith-run-%-2").await > 0
        })
        .await
        .unwrap();
        leaker.commit().await.unwrap();
        let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
            .await
            .unwrap();
        let report = traffic.stop().await;
        assert_eq!(out.status.code(), Some(0), "{mode:?}: {}", text(&out));
        let json = json(&out);
        assert_eq!(json["status"], "applied", "{mode:?}: {json}");
        assert!(json["attempts"].as_u64().unwrap() >= 2, "{mode:?}: {json}");
        assert!(
            json["cancelled_by_locksmith"]
                .as_array()
                .is_some_and(|c| !c.is_empty()),
            "{mode:?}: {json}"
        );
        assert_eq!(
            json["terminated"].as_array().map_or(0, Vec::len),
            0,
            "{mode:?}: {json}"
        );
        assert!(has_column(&admin, "soon").await, "{mode:?}");
        assert_eq!(leaker.alive(), 1, "{mode:?}: the app's session was kept");
        assert_eq!(queued_lock_requests(&admin).await, 0, "{mode:?}");
        assert_traffic_unharmed(&report, Duration::from_secs(3), &out);
    }
}
