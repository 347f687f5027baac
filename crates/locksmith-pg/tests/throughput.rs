//! The throughput probe on a real server: measured on a regular table where
//! the role may create one, on a temporary table where it may not, the
//! default rates (and why) in a read-only session; never anything left behind.

use locksmith_pg::throughput::{self, Calibration, Throughput, PROBE_ROWS};
use locksmith_sandbox::incident::Incident;

async fn leftovers(client: &locksmith_pg::Connection) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'locksmith_probe%'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

fn plausible(t: &Throughput) {
    assert!(t.scan_bytes_per_sec > 1e6, "{t:?}");
    assert!(t.rewrite_bytes_per_sec > 1e6, "{t:?}");
    assert!(t.sort_varlena_ns_per_row > 0.0, "{t:?}");
    assert!(t.sort_fixed_ns_per_row > 0.0, "{t:?}");
    assert!((50.0..500.0).contains(&t.bytes_per_row), "{t:?}");
}

#[tokio::test]
async fn the_probe_measures_where_it_can_write_and_says_why_not_elsewhere() {
    let incident = Incident::stage_shared("probe").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    // As from PostgreSQL 15 on, whatever the version: only the owner creates in public.
    admin
        .batch_execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        .await
        .unwrap();

    let t = throughput::measure(&admin).await;
    assert_eq!(
        t.calibration,
        Calibration::Measured {
            rows: PROBE_ROWS,
            temporary: false
        }
    );
    plausible(&t);
    assert_eq!(t.calibration.to_string(), "rates measured on this server");

    // The application's role may not create in public: a temporary table.
    let app = incident.app.connect().await.unwrap();
    let t = throughput::measure(&app).await;
    assert_eq!(
        t.calibration,
        Calibration::Measured {
            rows: PROBE_ROWS,
            temporary: true
        }
    );
    plausible(&t);

    // A read-only session: the defaults, saying why.
    app.batch_execute("SET default_transaction_read_only = on")
        .await
        .unwrap();
    let t = throughput::measure(&app).await;
    match &t.calibration {
        Calibration::Default { reason } => assert!(reason.contains("read-only"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(t.scan_bytes_per_sec, Throughput::DEFAULT.scan_bytes_per_sec);
    assert!(
        t.calibration
            .to_string()
            .starts_with("conservative default rates: the session is read-only"),
        "{}",
        t.calibration
    );

    // Every probe rolled back: no table, and the sessions are usable.
    assert_eq!(leftovers(&admin).await, 0);
    app.batch_execute("SELECT 1").await.unwrap();
}

#[tokio::test]
async fn on_a_hot_standby_the_defaults_are_used_and_said_so() {
    let primary = locksmith_sandbox::Cluster::start().unwrap();
    let standby = primary.start_standby(&[]).unwrap();
    let client = standby
        .settings("postgres", "probe-test")
        .connect()
        .await
        .unwrap();
    let t = throughput::measure(&client).await;
    match &t.calibration {
        Calibration::Default { reason } => assert!(reason.contains("standby"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        t.rewrite_bytes_per_sec,
        Throughput::DEFAULT.rewrite_bytes_per_sec
    );
}
