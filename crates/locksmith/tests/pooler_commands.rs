//! The read-side commands through a real PgBouncer, in session and
//! transaction pooling (statement pooling is refused, or bypassed over
//! `--direct-url`), with application traffic on the same pool: each
//! works (or refuses clearly), says that a pooler is in between, labels the
//! pooler's client addresses, leaves no setting on pooled backends, and the
//! application sees no error.

use std::process::Output;

use locksmith_sandbox::incident::Incident;
use locksmith_sandbox::pooler::{PoolMode, Pooler, PoolerOptions};
use locksmith_sandbox::traffic::{LeakedSessions, Traffic, TrafficProfile};
use locksmith_sandbox::{wait, Cluster};
use serde_json::Value;

mod support;
use support::text;

/// The table the leakers read and the waiter wants: apart from the
/// application's table, so that the traffic is never queued behind the waiter.
const SIDE: &str = "side_table";

struct Scene {
    cluster: Cluster,
    pooler: Pooler,
    admin: locksmith_pg::Connection,
    traffic: Option<Traffic>,
}

impl Scene {
    /// A cluster with the incident's database (`app`) and [`SIDE`], a
    /// pooler in `mode` with `pool_size` server connections, and the web
    /// application's traffic through it.
    async fn start(mode: PoolMode, pool_size: u32) -> Scene {
        let cluster = Cluster::start().unwrap();
        let incident = Incident::stage(&cluster, "app").await.unwrap();
        let admin = incident.admin.connect().await.unwrap();
        admin
            .batch_execute(&format!(
                "CREATE TABLE {SIDE} (id int PRIMARY KEY); INSERT INTO {SIDE} VALUES (1), (2)"
            ))
            .await
            .unwrap();
        let pooler = Pooler::start_with(
            &cluster,
            PoolerOptions {
                pool_size,
                ..PoolerOptions::new(mode)
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let traffic = Traffic::start(
            pooler.settings("app", "web-app"),
            TrafficProfile {
                rate: 30.0,
                pool_size: 8,
                ..TrafficProfile::default()
            },
        );
        Scene {
            cluster,
            pooler,
            admin,
            traffic: Some(traffic),
        }
    }

    fn url(&self) -> String {
        self.pooler.url("app")
    }

    /// Stops the traffic, asserting it saw no error, then that none of our
    /// settings stayed on any of the pool's `size` backends.
    async fn left_nothing(&mut self, size: usize) {
        self.no_app_errors().await;
        for seen in settings_on_every_backend(&self.pooler, size).await {
            assert_eq!(seen, DEFAULTS);
        }
    }

    /// Stops the traffic and asserts it saw no error.
    async fn no_app_errors(&mut self) {
        let report = self.traffic.take().unwrap().stop().await;
        assert!(report.requests > 0);
        assert_eq!(report.errors, 0, "application requests failed");
    }
}

/// `locksmith ARGS`, off the runtime's threads so the traffic keeps flowing.
async fn locksmith(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_locksmith"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("LOCKSMITH_DIRECT_URL")
        .env("NO_COLOR", "1");
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().await.unwrap()
}

fn said_pooler(out: &Output) -> bool {
    String::from_utf8_lossy(&out.stderr).contains("connected through a connection pooler")
}

async fn pids(admin: &locksmith_pg::Connection, application: &str, state: &str) -> Vec<i64> {
    let rows = admin
        .query(
            "SELECT pid::bigint FROM pg_stat_activity
             WHERE application_name = $1 AND state = $2 ORDER BY pid",
            &[&application, &state],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

async fn blockers_name_the_leakers_via_the_pooler(mode: PoolMode) {
    // In session pooling each client keeps a server connection for its whole
    // session: room for the traffic's 8 (all open on a loaded machine), the
    // 2 leakers and locksmith's own.
    let pool_size = match mode {
        PoolMode::Session => 14,
        PoolMode::Transaction | PoolMode::Statement => 6,
    };
    let mut scene = Scene::start(mode, pool_size).await;
    let leaked = LeakedSessions::open(&scene.pooler.settings("app", "leaky-app"), 2, SIDE)
        .await
        .unwrap();
    assert_eq!(leaked.alive(), 2);
    let leakers = pids(&scene.admin, "leaky-app", "idle in transaction").await;
    assert_eq!(leakers.len(), 2);
    // A direct session queues for the side table behind them.
    let waiter = scene
        .cluster
        .settings("app", "waiter")
        .connect()
        .await
        .unwrap();
    let queued = tokio::spawn(async move {
        waiter
            .batch_execute(&format!(
                "SET lock_timeout = '60s'; LOCK TABLE {SIDE} IN ACCESS EXCLUSIVE MODE"
            ))
            .await
    });
    wait::until(wait::BOUND, "the waiter queues", || async {
        pids(&scene.admin, "waiter", "active").await.len() == 1
    })
    .await
    .unwrap();

    let url = scene.url();
    let out = locksmith(
        &["blockers", "--format", "json", "--database-url", &url],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let roots: Vec<i64> = report["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(roots, leakers, "{report:#}");
    for b in report["blockers"].as_array().unwrap() {
        assert_eq!(b["application_name"], "leaky-app");
        assert_eq!(b["client_addr"], "127.0.0.1");
        assert_eq!(b["via_pooler"], true, "{b:#}");
    }
    assert!(report["pooler"]["key_pid"].as_i64().is_some(), "{report:#}");
    assert_eq!(report["pooler"]["detected"], true);
    assert_eq!(report["pooler"]["direct"], false);

    let out = locksmith(&["blockers", "--database-url", &url], &[]).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(said_pooler(&out), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("127.0.0.1 via pooler"), "{stdout}");

    drop(leaked);
    queued.await.unwrap().unwrap();
    scene.no_app_errors().await;
}

#[tokio::test]
async fn blockers_through_transaction_pooling_names_the_leakers_via_the_pooler() {
    blockers_name_the_leakers_via_the_pooler(PoolMode::Transaction).await;
}

#[tokio::test]
async fn blockers_through_session_pooling_names_the_leakers_via_the_pooler() {
    blockers_name_the_leakers_via_the_pooler(PoolMode::Session).await;
}

/// The settings locksmith could leave on a backend, as a fresh client of a
/// pool of `size` sees them on each backend (each held by an open
/// transaction, so every backend is looked at).
async fn settings_on_every_backend(pooler: &Pooler, size: usize) -> Vec<String> {
    let names = [
        "default_transaction_read_only",
        "lock_timeout",
        "statement_timeout",
        "client_connection_check_interval",
        "idle_in_transaction_session_timeout",
    ];
    let mut clients = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..size {
        let client = pooler.settings("app", "checker").connect().await.unwrap();
        client.batch_execute("BEGIN").await.unwrap();
        let row = client
            .query_one(
                "SELECT string_agg(n || '=' || current_setting(n), ' ' ORDER BY n)
                 FROM unnest($1::text[]) AS n",
                &[&names.to_vec()],
            )
            .await
            .unwrap();
        seen.push(row.get(0));
        clients.push(client);
    }
    seen
}

const DEFAULTS: &str = "client_connection_check_interval=0 default_transaction_read_only=off \
                        idle_in_transaction_session_timeout=0 lock_timeout=0 statement_timeout=0";

/// Every command reads in transactions, which a statement pooler cuts at
/// `BEGIN`: each refuses it with exit 2, naming statement pooling and
/// `--direct-url`, and with `--direct-url` reads the server that way. `run`
/// refuses it even then: the wrapped command still goes through the pooler.
#[tokio::test]
async fn statement_pooling_is_refused_by_name_or_bypassed_with_the_direct_route() {
    let mut scene = Scene::start(PoolMode::Statement, 3).await;
    let url = scene.url();
    let direct = scene.cluster.url("app");
    let refused = |out: &Output, needles: &[&str]| {
        assert_eq!(out.status.code(), Some(2), "{}", text(out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        for needle in ["statement pooling", "nothing was done"]
            .iter()
            .chain(needles)
        {
            assert!(stderr.contains(needle), "{needle:?} missing: {stderr}");
        }
    };
    for command in ["blockers", "doctor"] {
        let out = locksmith(&[command, "--format", "json", "--database-url", &url], &[]).await;
        refused(&out, &["--direct-url"]);
        let out = locksmith(
            &[
                command,
                "--format",
                "json",
                "--database-url",
                &url,
                "--direct-url",
                &direct,
            ],
            &[],
        )
        .await;
        assert!(
            matches!(out.status.code(), Some(0 | 1)),
            "{command}: {}",
            text(&out)
        );
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("{command}: not JSON ({e}): {}", text(&out)));
    }
    let psql = ["--", "psql", "-X", url.as_str(), "-c", "SELECT 1"];
    for direct_args in [&[][..], &["--direct-url", direct.as_str()]] {
        let mut args = vec!["run", "--database-url", url.as_str()];
        args.extend(direct_args);
        args.extend(psql);
        let out = locksmith(&args, &[]).await;
        refused(&out, &["straight at the server"]);
    }
    scene.no_app_errors().await;
}

#[tokio::test]
async fn doctor_through_transaction_pooling_reports_the_pooler_and_leaves_nothing() {
    let mut scene = Scene::start(PoolMode::Transaction, 2).await;
    let url = scene.url();
    for _ in 0..3 {
        let out = locksmith(&["doctor", "--format", "json", "--database-url", &url], &[]).await;
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let finding = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == "connection_pooler")
            .unwrap_or_else(|| panic!("{report:#}"))
            .clone();
        assert!(
            finding["fix"].as_str().unwrap().contains("--direct-url"),
            "{finding:#}"
        );
        assert!(report["pooler"].is_object(), "{report:#}");
    }
    let out = locksmith(&["doctor", "--database-url", &url], &[]).await;
    assert!(said_pooler(&out), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("connection pooler"),
        "{}",
        text(&out)
    );
    scene.left_nothing(2).await;
}

#[tokio::test]
async fn lint_with_a_pooler_url_works_repeatedly_under_traffic_and_leaves_nothing() {
    let mut scene = Scene::start(PoolMode::Transaction, 2).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("001.sql");
    std::fs::write(
        &file,
        "ALTER TABLE academic_partners ALTER COLUMN name TYPE varchar(300);\n",
    )
    .unwrap();
    let url = scene.url();
    let file = file.to_str().unwrap();
    for _ in 0..5 {
        let out = locksmith(
            &["lint", "--format", "json", "--database-url", &url, file],
            &[],
        )
        .await;
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
        assert!(said_pooler(&out), "{}", text(&out));
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(!report.is_null());
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("Error"),
            "{}",
            text(&out)
        );
    }
    scene.left_nothing(2).await;
}

#[tokio::test]
async fn trace_with_a_pooler_url_traces_a_transactional_migration() {
    let mut scene = Scene::start(PoolMode::Transaction, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.sql");
    std::fs::write(
        &plain,
        format!("ALTER TABLE {SIDE} ADD COLUMN note text;\n"),
    )
    .unwrap();
    let url = scene.url();
    let out = locksmith(
        &[
            "trace",
            "--format",
            "json",
            "--database-url",
            &url,
            plain.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(said_pooler(&out), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("AccessExclusiveLock"), "{report}");
    assert!(report.contains("\"transaction\""), "{report}");
    // Rolled back: the column is not there.
    let columns: i64 = scene
        .admin
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'side_table'::regclass AND attname = 'note'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(columns, 0);
    scene.no_app_errors().await;
}

#[tokio::test]
async fn trace_through_a_pooler_takes_the_direct_route_when_given_and_checks_it() {
    let scene = Scene::start(PoolMode::Transaction, 3).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("index.sql");
    std::fs::write(
        &file,
        format!(
            "ALTER TABLE {SIDE} ADD COLUMN note text;\n\
             CREATE INDEX CONCURRENTLY side_note ON {SIDE} (note);\n"
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap();
    let url = scene.url();
    let direct = scene.cluster.url("app");
    let args = |direct: &str| {
        vec![
            "trace".to_string(),
            "--format".into(),
            "json".into(),
            "--database-url".into(),
            url.clone(),
            "--direct-url".into(),
            direct.to_string(),
            file.into(),
        ]
    };
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        locksmith(&args, &[]).await
    };
    // Through the pooler alone: the transactional part is traced; the
    // concurrent build is never run on --database-url, pooler or not.
    let out = locksmith(
        &["trace", "--format", "json", "--database-url", &url, file],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("not-traced") && report.contains("AccessExclusiveLock"),
        "{report}"
    );
    // Straight to the server: traced there, the concurrent build reported not traced.
    let out = run(args(&direct)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("not-traced"), "{report}");
    // The same through LOCKSMITH_DIRECT_URL.
    let out = locksmith(
        &["trace", "--format", "json", "--database-url", &url, file],
        &[("LOCKSMITH_DIRECT_URL", &direct)],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // A "direct" route through the pooler itself is refused, naming the flag.
    let out = run(args(&url)).await;
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("--direct-url"), "{}", text(&out));
    let indexes: i64 = scene
        .admin
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'side_note'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(indexes, 0, "trace never builds on the live database");
}

/// A wrong password or an unreachable pooler: every command says which
/// target refused and why, never the password, and changes nothing.
#[tokio::test]
async fn a_refused_login_through_the_pooler_says_why_without_the_password() {
    let mut scene = Scene::start(PoolMode::Transaction, 4).await;
    let wrong = scene.url().replace(
        locksmith_sandbox::cluster::SUPERUSER_PASSWORD,
        "not-the-password",
    );
    assert_ne!(wrong, scene.url());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("1_add.sql"),
        "ALTER TABLE academic_partners ADD COLUMN never text;\n",
    )
    .unwrap();
    let migrations = dir.path().to_str().unwrap();
    let target = format!("127.0.0.1:{}/app", scene.pooler.port());
    for args in [
        vec!["blockers", "--database-url", &wrong],
        vec!["doctor", "--database-url", &wrong],
        vec!["apply", migrations, "--database-url", &wrong],
    ] {
        let out = locksmith(&args, &[]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("authentication failed")
                && stderr.contains("check the user and password"),
            "{args:?}: {stderr}"
        );
        assert!(stderr.contains(&target), "{args:?}: {stderr}");
        assert!(!stderr.contains("not-the-password"), "{args:?}: {stderr}");
    }
    // The pooler gone: a connection refused, named, nothing else.
    let gone = scene
        .url()
        .replace(&format!(":{}/", scene.pooler.port()), ":1/");
    let out = locksmith(&["blockers", "--database-url", &gone], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("127.0.0.1:1/app"), "{stderr}");
    assert!(
        !stderr.contains(locksmith_sandbox::cluster::SUPERUSER_PASSWORD),
        "{stderr}"
    );
    let columns: i64 = scene
        .admin
        .query_one(
            "SELECT count(*) FROM pg_attribute
             WHERE attrelid = 'academic_partners'::regclass AND attname = 'never'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(columns, 0);
    scene.no_app_errors().await;
}
