//! A hot standby beside a throwaway primary: what `--replica` tests stand on.

use std::time::{Duration, Instant};

use locksmith_sandbox::Cluster;

#[tokio::test]
async fn a_standby_streams_the_primarys_changes() {
    let primary = Cluster::start().unwrap();
    let standby = primary.start_standby(&[]).unwrap();
    let p = primary.settings("postgres", "t").connect().await.unwrap();
    let s = standby.settings("postgres", "t").connect().await.unwrap();
    let in_recovery: bool = s
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery);
    p.batch_execute("CREATE TABLE t (a int); INSERT INTO t VALUES (42)")
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        if let Ok(row) = s.query_one("SELECT a FROM t", &[]).await {
            assert_eq!(row.get::<_, i32>(0), 42);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never replayed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Same relation oid on both.
    let sql = "SELECT 't'::regclass::oid";
    let on_primary: u32 = p.query_one(sql, &[]).await.unwrap().get(0);
    let on_standby: u32 = s.query_one(sql, &[]).await.unwrap().get(0);
    assert_eq!(on_primary, on_standby);
}
