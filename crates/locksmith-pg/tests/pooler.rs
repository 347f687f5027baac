//! The connection layer behind a real PgBouncer: it knows a pooler is in
//! between (and a statement pooler for what it is), its parameterised statements survive transaction pooling while
//! other clients share the pool, it leaves no session setting on pooled
//! backends, its cancel requests reach our statement without taking
//! PgBouncer down, and `--direct-url` must lead straight to the same server.

use std::sync::Arc;

use locksmith_pg::connection::Pooling;
use locksmith_pg::guard::{ConnectError, Guard, GuardPolicy};
use locksmith_pg::{Connection, ConnectionSettings};
use locksmith_sandbox::pooler::{PoolMode, Pooler, PoolerOptions};
use locksmith_sandbox::{wait, Cluster};
use tokio::task::JoinSet;
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

/// Starts a pooler, failing with the error's own words (a missing
/// `pgbouncer` names `scripts/setup.sh --tests`): never a skip.
fn start(cluster: &Cluster, mode: PoolMode, pool_size: u32) -> Pooler {
    Pooler::start_with(
        cluster,
        PoolerOptions {
            pool_size,
            ..PoolerOptions::new(mode)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// A plain driver connection (no locksmith layer): how another client sees things.
async fn raw(url: &str) -> tokio_postgres::Client {
    let (client, connection) = url
        .parse::<tokio_postgres::Config>()
        .unwrap()
        .connect(NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

async fn setting(client: &tokio_postgres::Client, name: &str) -> String {
    client
        .query_one("SELECT current_setting($1)", &[&name])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_pooler_is_detected_in_both_modes_and_not_without_one() {
    let cluster = Cluster::start().unwrap();
    let direct = cluster
        .settings("postgres", "test")
        .connect()
        .await
        .unwrap();
    assert_eq!(direct.pooler(), None);
    for mode in [PoolMode::Session, PoolMode::Transaction] {
        let pooler = start(&cluster, mode, 3);
        let pooled = pooler.settings("postgres", "test").connect().await.unwrap();
        let found = pooled
            .pooler()
            .unwrap_or_else(|| panic!("{mode:?}: no pooler"));
        assert_ne!(found.key_pid, found.backend_pid);
        let backend: i32 = pooled
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        // The announced pid is PgBouncer's, no server backend.
        let is_backend: bool = direct
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)",
                &[&found.key_pid],
            )
            .await
            .unwrap()
            .get(0);
        assert!(!is_backend, "{mode:?}: {found:?}");
        if mode == PoolMode::Session {
            assert_eq!(backend, found.backend_pid);
        }
        assert_eq!(found.pooling, Pooling::Transaction, "{mode:?}");
    }
}

/// Statement pooling is found at connect (PgBouncer cuts the probe's
/// `BEGIN`); the connection handed back still answers single statements;
/// the guard refuses it by type unless a direct route is given, and then
/// runs over that route.
#[tokio::test]
async fn statement_pooling_is_found_at_connect_and_the_guard_refuses_it() {
    let cluster = Cluster::start().unwrap();
    let pooler = start(&cluster, PoolMode::Statement, 2);
    let settings = pooler.settings("postgres", "test");
    let pooled = settings.connect().await.unwrap();
    let found = pooled.pooler().expect("a pooler");
    assert_eq!(found.pooling, Pooling::Statement);
    let one: i32 = pooled.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    let refused = pooled
        .require_transactions("it runs transactions", true)
        .unwrap_err();
    assert!(refused.to_string().contains("--direct-url"), "{refused}");

    let (_interrupts, rx) = tokio::sync::watch::channel(None);
    let err = Guard::connect(&settings, GuardPolicy::default(), rx.clone())
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, ConnectError::StatementPooling(_)), "{err:?}");
    let with_direct = settings.with_direct(cluster.settings("postgres", "test"));
    let guard = Guard::connect(&with_direct, GuardPolicy::default(), rx)
        .await
        .unwrap();
    assert_eq!(guard.client().pooler(), None, "the direct route is used");
}

/// The old driver's named statements failed here with `prepared statement
/// "s0" already exists`: eight clients on a pool of two backends, each
/// running parameterised statements in turn.
#[tokio::test]
async fn parameterised_statements_work_through_transaction_pooling_under_concurrency() {
    let cluster = Cluster::start().unwrap();
    let setup = cluster
        .settings("postgres", "test")
        .connect()
        .await
        .unwrap();
    setup
        .batch_execute("CREATE TABLE counters (id int PRIMARY KEY, n bigint NOT NULL DEFAULT 0)")
        .await
        .unwrap();
    let pooler = start(&cluster, PoolMode::Transaction, 2);
    let mut clients = JoinSet::new();
    for id in 0..8i32 {
        let settings = pooler.settings("postgres", &format!("client-{id}"));
        clients.spawn(async move {
            let c = settings.connect().await.unwrap();
            c.execute("INSERT INTO counters (id) VALUES ($1)", &[&id])
                .await?;
            for i in 0..40i64 {
                let rows = c
                    .query(
                        "SELECT $1::bigint + g FROM generate_series(1, $2::int) AS g",
                        &[&i, &3i32],
                    )
                    .await?;
                assert_eq!(rows.len(), 3);
                assert_eq!(rows[2].get::<_, i64>(0), i + 3);
                let text: String = c
                    .query_one("SELECT $1::text || $2::text", &[&"a", &id.to_string()])
                    .await?
                    .get(0);
                assert_eq!(text, format!("a{id}"));
                let touched = c
                    .execute(
                        "UPDATE counters SET n = n + $2 WHERE id = $1",
                        &[&id, &1i64],
                    )
                    .await?;
                assert_eq!(touched, 1);
            }
            Ok::<_, tokio_postgres::Error>(())
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap().unwrap_or_else(|e| panic!("{e:?}"));
    }
    let total: i64 = setup
        .query_one("SELECT sum(n)::bigint FROM counters", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 8 * 40);
}

/// Directly, locksmith sets keepalives and `client_connection_check_interval`
/// at connect; through a transaction pooler that would stay on the backend
/// for the next client. One backend, so the next client gets ours.
#[tokio::test]
async fn connecting_through_a_pooler_leaves_no_session_setting() {
    let cluster = Cluster::start().unwrap();
    let names = ["client_connection_check_interval", "tcp_keepalives_idle"];
    let mut defaults = Vec::new();
    let other = raw(&cluster.url("postgres")).await;
    for name in names {
        defaults.push(setting(&other, name).await);
    }
    // A direct locksmith connection does set them (so the check below means something).
    let direct = cluster
        .settings("postgres", "test")
        .connect()
        .await
        .unwrap();
    let ours: String = direct
        .query_one(
            "SELECT current_setting('client_connection_check_interval')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_ne!(ours, defaults[0], "a direct connection sets it");

    let pooler = start(&cluster, PoolMode::Transaction, 1);
    let ours = pooler
        .settings("postgres", "locksmith")
        .connect()
        .await
        .unwrap();
    ours.query_one("SELECT 1", &[]).await.unwrap();
    let app = raw(&pooler.url("postgres")).await;
    let seen: i32 = app
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        seen,
        ours.backend_pid().await.unwrap(),
        "one shared backend"
    );
    for (name, default) in names.iter().zip(&defaults) {
        assert_eq!(&setting(&app, name).await, default, "{name} left behind");
    }
}

#[tokio::test]
async fn a_cancel_through_the_pooler_stops_our_statement_and_pgbouncer_lives_on() {
    let cluster = Cluster::start().unwrap();
    let pooler = start(&cluster, PoolMode::Transaction, 2);
    let settings = pooler.settings("postgres", "to-cancel");
    let watcher = cluster
        .settings("postgres", "watcher")
        .connect()
        .await
        .unwrap();
    for round in 0..3 {
        let conn = Arc::new(settings.connect().await.unwrap());
        let running = {
            let conn = conn.clone();
            tokio::spawn(async move { conn.query("SELECT pg_sleep(60)", &[]).await })
        };
        wait::until(wait::BOUND, "the sleep runs", || async {
            watcher
                .query_one(
                    "SELECT EXISTS (SELECT FROM pg_stat_activity
                     WHERE application_name = 'to-cancel' AND state = 'active'
                       AND query LIKE 'SELECT pg_sleep%')",
                    &[],
                )
                .await
                .map(|r| r.get::<_, bool>(0))
                .unwrap_or(false)
        })
        .await
        .unwrap();
        settings.cancel(&conn.cancel_token()).await.unwrap();
        let err = running.await.unwrap().unwrap_err();
        assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "round {round}");
        // PgBouncer is still there: a new connection works.
        let again = settings.connect().await.unwrap();
        let one: i32 = again.query_one("SELECT 1", &[]).await.unwrap().get(0);
        assert_eq!(one, 1);
    }
    assert!(
        !pooler.log().contains("FATAL"),
        "PgBouncer complained:\n{}",
        pooler.log()
    );
}

async fn refusal(settings: &ConnectionSettings, target: &Connection) -> String {
    settings
        .connect_direct(target)
        .await
        .map(|_| ())
        .unwrap_err()
        .to_string()
}

#[tokio::test]
async fn a_direct_route_must_lead_straight_to_the_same_server() {
    let cluster = Cluster::start().unwrap();
    let other = Cluster::start().unwrap();
    let pooler = start(&cluster, PoolMode::Transaction, 2);
    let pooled = pooler.settings("postgres", "test");
    let target = pooled.connect().await.unwrap();

    let elsewhere = refusal(
        &pooled.with_direct(other.settings("postgres", "test")),
        &target,
    )
    .await;
    assert!(
        elsewhere.contains("--direct-url") && elsewhere.contains("another server"),
        "{elsewhere}"
    );
    let through = refusal(
        &pooled.with_direct(pooler.settings("postgres", "x")),
        &target,
    )
    .await;
    assert!(
        through.contains("--direct-url") && through.contains("pooler"),
        "{through}"
    );
    let straight = pooled
        .with_direct(cluster.settings("postgres", "test"))
        .connect_direct(&target)
        .await
        .unwrap();
    assert_eq!(straight.pooler(), None);
}
