//! A throwaway PgBouncer in front of a throwaway cluster: it serves in both
//! pooling modes, transaction pooling really shares backends, an `options`
//! startup parameter is refused unless ignored, and it cleans up on drop.
//!
//! These tests use `tokio_postgres` and `simple_query` directly: PgBouncer in
//! transaction mode is exactly where the connection layer under test matters.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use locksmith_sandbox::pooler::{PoolMode, Pooler, PoolerOptions};
use locksmith_sandbox::Cluster;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

async fn connect(config: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config
        .parse::<tokio_postgres::Config>()?
        .connect(NoTls)
        .await?;
    tokio::spawn(connection);
    Ok(client)
}

/// The first column of the first row of `sql`, as text.
async fn one(client: &Client, sql: &str) -> String {
    client
        .simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row.get(0).unwrap().to_string()),
            _ => None,
        })
        .unwrap()
}

/// Starts a pooler, failing with the error's own words (a missing
/// `pgbouncer` names `scripts/setup.sh --tests`): never a skip.
fn start(cluster: &Cluster, options: PoolerOptions) -> Pooler {
    Pooler::start_with(cluster, options).unwrap_or_else(|e| panic!("{e}"))
}

fn pool_of(mode: PoolMode, size: u32) -> PoolerOptions {
    PoolerOptions {
        pool_size: size,
        ..PoolerOptions::new(mode)
    }
}

#[tokio::test]
async fn serves_both_modes_and_cleans_up_on_drop() {
    let cluster = Cluster::start().unwrap();
    for mode in [PoolMode::Session, PoolMode::Transaction] {
        let pooler = start(&cluster, PoolerOptions::new(mode));
        assert_ne!(pooler.port(), cluster.port());
        let client = connect(&pooler.url("postgres")).await.unwrap();
        assert_eq!(one(&client, "SELECT current_database()").await, "postgres");
        // The client really reached the cluster, through PgBouncer's port.
        assert_eq!(
            one(&client, "SELECT current_setting('port')").await,
            cluster.port().to_string()
        );
        let log = pooler.log();
        assert!(log.contains("process up"), "{log}");
        // The console is closed unless asked for.
        assert_eq!(pooler.admin_url(), None);
        assert!(connect(&pooler.url("pgbouncer")).await.is_err());
        drop(client);
        let port = pooler.port();
        let dir = pooler.dir().to_path_buf();
        assert!(dir.join("pgbouncer.ini").is_file());
        drop(pooler);
        assert!(!dir.exists(), "{} left behind", dir.display());
        let refused = std::net::TcpStream::connect_timeout(
            &([127, 0, 0, 1], port).into(),
            Duration::from_secs(1),
        );
        assert!(refused.is_err(), "{mode:?}: still listening after drop");
    }
}

#[tokio::test]
async fn transaction_mode_shares_one_backend_between_clients() {
    let cluster = Cluster::start().unwrap();
    let pooler = start(&cluster, pool_of(PoolMode::Transaction, 1));
    let first = connect(&pooler.url("postgres")).await.unwrap();
    let second = connect(&pooler.url("postgres")).await.unwrap();
    let pid_first = one(&first, "SELECT pg_backend_pid()").await;
    let pid_second = one(&second, "SELECT pg_backend_pid()").await;
    assert_eq!(pid_first, pid_second, "two clients, one server connection");
    let backends = one(
        &first,
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
    )
    .await;
    assert_eq!(backends, "1");
}

#[tokio::test]
async fn session_mode_gives_concurrent_clients_their_own_backends() {
    let cluster = Cluster::start().unwrap();
    let pooler = start(&cluster, PoolerOptions::new(PoolMode::Session));
    let first = connect(&pooler.url("postgres")).await.unwrap();
    let second = connect(&pooler.url("postgres")).await.unwrap();
    let pid_first = one(&first, "SELECT pg_backend_pid()").await;
    let pid_second = one(&second, "SELECT pg_backend_pid()").await;
    assert_ne!(pid_first, pid_second);
    // Each keeps its own for the whole session.
    assert_eq!(one(&first, "SELECT pg_backend_pid()").await, pid_first);
    assert_eq!(one(&second, "SELECT pg_backend_pid()").await, pid_second);
}

#[tokio::test]
async fn options_startup_parameter_is_refused_unless_ignored() {
    let cluster = Cluster::start().unwrap();
    let with_options =
        |pooler: &Pooler| format!("{}?options=-c%20lock_timeout%3D1s", pooler.url("postgres"));
    let strict = start(&cluster, PoolerOptions::new(PoolMode::Transaction));
    let err = connect(&with_options(&strict)).await.unwrap_err();
    let refusal = err.as_db_error().unwrap_or_else(|| panic!("{err:?}"));
    assert_eq!(
        refusal.message(),
        "unsupported startup parameter: options",
        "{err:?}"
    );
    assert!(strict.log().contains("options=-c lock_timeout=1s"));

    // Ignored, the connection works and the setting is silently dropped:
    // what locksmith must not rely on.
    let lenient = start(
        &cluster,
        PoolerOptions {
            ignore_startup_parameters: "extra_float_digits,options".into(),
            ..PoolerOptions::new(PoolMode::Transaction)
        },
    );
    let client = connect(&with_options(&lenient)).await.unwrap();
    assert_eq!(one(&client, "SHOW lock_timeout").await, "0");
}

#[tokio::test]
async fn console_opens_only_for_the_users_given() {
    let cluster = Cluster::start().unwrap();
    let pooler = start(
        &cluster,
        PoolerOptions {
            admin_users: vec!["postgres".into()],
            ..PoolerOptions::new(PoolMode::Transaction)
        },
    );
    let url = pooler.admin_url().expect("the console is open");
    let console = connect(&url).await.unwrap();
    let rows = console.simple_query("SHOW CONFIG").await.unwrap();
    let pool_mode = rows.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) if row.get(0) == Some("pool_mode") => {
            row.get(1).map(str::to_string)
        }
        _ => None,
    });
    assert_eq!(pool_mode.as_deref(), Some("transaction"));
}

/// A child process starts a cluster and a pooler, reports them and is killed
/// with SIGKILL: the guardian must stop PgBouncer and delete its folder.
#[test]
fn cleans_up_after_kill() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_that_is_killed",
            "--nocapture",
            "--include-ignored",
        ])
        .env("LOCKSMITH_TEST_POOLER_CHILD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut out = String::new();
    let mut byte = [0u8; 1];
    while !out.contains("END") && stdout.read(&mut byte).unwrap() == 1 {
        out.push(byte[0] as char);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let line = out
        .lines()
        .find(|l| l.starts_with("POOLER "))
        .unwrap_or_else(|| panic!("{out}"));
    let mut parts = line.split_whitespace().skip(1);
    let port: u16 = parts.next().unwrap().parse().unwrap();
    let dir = PathBuf::from(parts.next().unwrap());
    let listening = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (dir.exists() || listening()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(!listening(), "pgbouncer still listening on {port}");
}

#[test]
#[ignore = "run by cleans_up_after_kill in a child process"]
fn child_that_is_killed() {
    if std::env::var_os("LOCKSMITH_TEST_POOLER_CHILD").is_none() {
        return;
    }
    let cluster = Cluster::start().unwrap();
    let pooler = start(&cluster, PoolerOptions::new(PoolMode::Session));
    println!("POOLER {} {} END", pooler.port(), pooler.dir().display());
    std::thread::sleep(Duration::from_secs(60));
}
