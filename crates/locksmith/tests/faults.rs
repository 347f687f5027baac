//! Faults `apply` must survive with one rerun, against real servers: a
//! killed or restarted concurrent index build, a client that vanishes while
//! it holds ACCESS EXCLUSIVE, a server that accepts TCP and never answers,
//! and signals while connecting or waiting for another runner.

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use locksmith_sandbox::Cluster;

mod support;
use support::{locksmith, query_i64, text, write};

fn spawn(url: &str, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Polls `sql` (a count) until it is non-zero, for at most 30 s.
async fn wait_for(client: &locksmith_pg::Connection, sql: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while query_i64(client, sql).await == 0 {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn send_signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) of a child we spawned and have not reaped.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
}

/// Waits for `child` at most `limit`; its output and how long it took.
fn wait_within(mut child: Child, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = started.elapsed();
    (child.wait_with_output().unwrap(), took)
}

/// A table of 300 rows and an IMMUTABLE key function that sleeps 10 ms a row:
/// a concurrent build on `slow_key(id)` takes seconds, long enough to fault.
const SLOW_TABLE: &str = "CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 300) g;
CREATE FUNCTION slow_key(i int) RETURNS int IMMUTABLE LANGUAGE plpgsql
  AS $$ BEGIN PERFORM pg_sleep(0.01); RETURN i; END $$;";

const SLOW_INDEX: &str = "CREATE INDEX CONCURRENTLY items_slow ON items (slow_key(id));\n";

/// The state of `items_slow`: absent, INVALID or valid.
async fn index_state(client: &locksmith_pg::Connection) -> &'static str {
    let row = client
        .query_opt(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('items_slow')",
            &[],
        )
        .await
        .unwrap();
    match row.map(|r| r.get::<_, bool>(0)) {
        None => "absent",
        Some(false) => "invalid",
        Some(true) => "valid",
    }
}

/// The rerun after a killed concurrent build records it and finishes, whether
/// the server finished the build (valid index, no history row) or not.
#[tokio::test]
async fn kill_9_during_concurrent_index_build_needs_one_rerun() {
    let (settings, cluster) = locksmith_sandbox::shared::database("cic_kill")
        .await
        .unwrap();
    let admin = settings.connect().await.unwrap();
    admin.batch_execute(SLOW_TABLE).await.unwrap();
    let url = cluster.url(settings.dbname());
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("1_slow_index.sql", SLOW_INDEX)]);
    let d = dir.path().to_str().unwrap();

    let child = spawn(&url, &["apply", d]);
    wait_for(
        &admin,
        "SELECT count(*) FROM pg_class WHERE relname = 'items_slow'",
        "the build started",
    )
    .await;
    send_signal(&child, libc::SIGKILL);
    wait_within(child, Duration::from_secs(10));
    let out = locksmith(&url, &["apply", d, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(index_state(&admin).await, "valid");
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        1
    );
}

/// A valid index already built under the statement's name (an earlier run
/// finished it, then died before recording): the step is done. Under the same
/// name with another definition: a clear error, nothing recorded.
#[tokio::test]
async fn an_existing_index_is_recognised_by_its_definition() {
    let (settings, cluster) = locksmith_sandbox::shared::database("cic_exists")
        .await
        .unwrap();
    let admin = settings.connect().await.unwrap();
    admin
        .batch_execute(
            "CREATE SCHEMA shop; CREATE TABLE shop.users (id int, email text, deleted_at timestamptz);
             CREATE UNIQUE INDEX users_email ON shop.users (lower(email)) WHERE deleted_at IS NULL;
             CREATE INDEX users_id ON shop.users (id);
             CREATE TABLE public.users (id int);",
        )
        .await
        .unwrap();
    let url = cluster.url(settings.dbname());
    let dir = tempfile::tempdir().unwrap();
    // Written differently from the server's normal form, and with search_path elsewhere.
    write(
        dir.path(),
        &[(
            "1_email.sql",
            "CREATE UNIQUE INDEX CONCURRENTLY users_email ON shop.users USING btree (LOWER(email)) WHERE deleted_at is null;\n",
        )],
    );
    let out = locksmith(&url, &["apply", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("already built"), "{}", text(&out));
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        1
    );

    write(
        dir.path(),
        &[(
            "2_id.sql",
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_id ON shop.users (id, email);\n",
        )],
    );
    let out = locksmith(&url, &["apply", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("shop.users_id already exists")
            && said.contains("USING btree (id)")
            && said.contains("USING btree (id, email)"),
        "{said}"
    );
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        1
    );
}

/// The server restarts mid-build: an INVALID index is left. One rerun drops
/// it and builds it again, even with `IF NOT EXISTS`, which on its own would
/// skip the broken index and record it as applied.
#[tokio::test]
async fn restart_during_concurrent_index_build_needs_one_rerun() {
    let mut cluster = Cluster::start().unwrap();
    let settings = cluster.create_database("cic_restart").await.unwrap();
    settings
        .connect()
        .await
        .unwrap()
        .batch_execute(SLOW_TABLE)
        .await
        .unwrap();
    let url = cluster.url("cic_restart");
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[(
            "1_slow_index.sql",
            &SLOW_INDEX.replace("CONCURRENTLY", "CONCURRENTLY IF NOT EXISTS"),
        )],
    );
    let d = dir.path().to_str().unwrap();
    let child = spawn(&url, &["apply", d]);
    {
        let admin = settings.connect().await.unwrap();
        wait_for(
            &admin,
            "SELECT count(*) FROM pg_class WHERE relname = 'items_slow'",
            "the build started",
        )
        .await;
    }
    cluster.restart().unwrap();
    let (out, _) = wait_within(child, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let admin = settings.connect().await.unwrap();
    assert_eq!(index_state(&admin).await, "invalid");

    let out = locksmith(&url, &["apply", d]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("dropped the invalid index"),
        "{}",
        text(&out)
    );
    assert_eq!(index_state(&admin).await, "valid");
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        1
    );
}

/// `kill -9` of `apply` while its statement holds ACCESS EXCLUSIVE and runs
/// on: the server notices the vanished client (client_connection_check_interval,
/// PostgreSQL 14+) and traffic gets the table back within about a second,
/// not when the statement would have ended.
#[tokio::test]
async fn a_vanished_clients_lock_goes_within_seconds() {
    let (settings, cluster) = locksmith_sandbox::shared::database("vanished")
        .await
        .unwrap();
    let admin = settings.connect().await.unwrap();
    admin
        .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[(
            "1_slow.sql",
            "LOCK TABLE t IN ACCESS EXCLUSIVE MODE;\nSELECT pg_sleep(30);\n",
        )],
    );
    let child = spawn(
        &cluster.url(settings.dbname()),
        &["apply", dir.path().to_str().unwrap()],
    );
    wait_for(
        &admin,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
           AND application_name = 'locksmith apply' AND query LIKE '%pg_sleep(30)%' AND state = 'active'",
        "the migration holds the table",
    )
    .await;
    send_signal(&child, libc::SIGKILL);
    wait_within(child, Duration::from_secs(10));
    let killed = Instant::now();
    admin
        .batch_execute("SET statement_timeout = '20s'")
        .await
        .unwrap();
    assert_eq!(query_i64(&admin, "SELECT count(*) FROM t").await, 1);
    let waited = killed.elapsed();
    assert!(
        waited < Duration::from_secs(5),
        "the table stayed locked {waited:?} after the client died"
    );
}

/// A TCP server that accepts connections and never says a word.
struct SilentServer {
    port: u16,
    /// Connections accepted so far.
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl SilentServer {
    fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        SilentServer { port, accepted }
    }

    /// Waits (bounded by 30 s) until more than `before` connections were
    /// accepted: a command is then inside its connect.
    fn wait_for_connection(&self, before: usize) {
        let started = std::time::Instant::now();
        while self.accepted.load(std::sync::atomic::Ordering::SeqCst) <= before {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the command never connected"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn url(&self, query: &str) -> String {
        format!("postgresql://u:secret-pw@127.0.0.1:{}/db{query}", self.port)
    }
}

/// A server that never answers: every command fails within `connect_timeout`
/// (from the URL or `PGCONNECT_TIMEOUT`), exit 1, saying what happened.
#[tokio::test]
async fn a_silent_server_fails_within_the_connect_timeout() {
    let server = SilentServer::start();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("1_a.sql", "CREATE TABLE a (id int);")]);
    let d = dir.path().to_str().unwrap();
    let cases: [(&str, Vec<&str>, Option<&str>); 4] = [
        ("?connect_timeout=2", vec!["blockers"], None),
        ("", vec!["doctor"], Some("2")),
        ("?connect_timeout=2&sslmode=disable", vec!["apply", d], None),
        ("?connect_timeout=2&sslmode=require", vec!["apply", d], None),
    ];
    for (query, args, env_timeout) in cases {
        let mut command = Command::new(env!("CARGO_BIN_EXE_locksmith"));
        command
            .args(&args)
            .env("DATABASE_URL", server.url(query))
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(secs) = env_timeout {
            command.env("PGCONNECT_TIMEOUT", secs);
        }
        let (out, took) = wait_within(command.spawn().unwrap(), Duration::from_secs(15));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", text(&out));
        assert!(
            took < Duration::from_secs(6),
            "{args:?} took {took:?} with connect_timeout 2 s"
        );
        let said = text(&out);
        assert!(said.contains("connect_timeout"), "{args:?}: {said}");
        assert!(!said.contains("secret-pw"), "{args:?}: {said}");
    }
}

/// SIGTERM while connecting to a silent server, and while waiting for
/// another runner's lock: `apply` exits 143 at once, and leaves no lock
/// request queued behind it.
#[tokio::test]
async fn signals_end_every_wait_of_apply() {
    let server = SilentServer::start();
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("1_a.sql", "CREATE TABLE a (id int);")]);
    let d = dir.path().to_str().unwrap();
    for (args, signal, code) in [
        (vec!["apply", d], libc::SIGTERM, 143),
        (vec!["apply", d], libc::SIGINT, 130),
        (vec!["run", "--", "true"], libc::SIGTERM, 143),
    ] {
        let before = server.accepted.load(std::sync::atomic::Ordering::SeqCst);
        let connecting = spawn(&server.url(""), &args);
        // Signalled while it connects: polled for, never a guessed delay.
        server.wait_for_connection(before);
        send_signal(&connecting, signal);
        let (out, took) = wait_within(connecting, Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", text(&out));
        assert!(took < Duration::from_secs(2), "{args:?} took {took:?}");
    }

    // Another runner holds the runner lock: apply polls for it, then SIGTERM.
    let (settings, cluster) = locksmith_sandbox::shared::database("sigterm_runner")
        .await
        .unwrap();
    let other = settings.connect().await.unwrap();
    other
        .batch_execute("SELECT pg_advisory_lock(x'6c6f636b736d6974'::bigint)")
        .await
        .unwrap();
    let admin = settings.connect().await.unwrap();
    let waiting = spawn(&cluster.url(settings.dbname()), &["apply", d]);
    wait_for(
        &admin,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
           AND application_name = 'locksmith apply' AND query LIKE '%pg_try_advisory_lock%'",
        "apply polls for the runner lock",
    )
    .await;
    send_signal(&waiting, libc::SIGTERM);
    let (out, took) = wait_within(waiting, Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(143), "{}", text(&out));
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(
        text(&out).contains("waiting for another locksmith apply"),
        "{}",
        text(&out)
    );
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name LIKE 'locksmith%' AND NOT l.granted"
        )
        .await,
        0
    );
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM pg_class WHERE relname = 'a'").await,
        0
    );
}
