//! The runner lock against real sessions: a runner that times out waiting
//! for it can name the session that holds it, even as a role that may not
//! see other roles' session state.

use std::time::Duration;

use locksmith_pg::history;
use locksmith_pg::ConnectionSettings;
use locksmith_sandbox::incident::Incident;

#[tokio::test]
async fn the_runner_lock_holder_is_named_by_pid_and_application() {
    let incident = Incident::stage_shared("runner").await.unwrap();
    let holder_conn = incident
        .admin
        .with_application_name("deploy-a")
        .connect()
        .await
        .unwrap();
    let holder_pid: i32 = holder_conn
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(history::lock_runners(&holder_conn, Duration::from_secs(5))
        .await
        .unwrap());

    // Another runner with the same privileges: it times out, then sees all of it.
    let second = incident
        .admin
        .with_application_name("deploy-b")
        .connect()
        .await
        .unwrap();
    assert!(
        !history::lock_runners(&second, Duration::from_millis(200))
            .await
            .unwrap(),
        "the lock is held"
    );
    let named = history::runner_lock_holder(&second)
        .await
        .unwrap()
        .expect("someone holds it");
    assert_eq!(named.pid, holder_pid);
    assert_eq!(named.application_name, "deploy-a");
    assert_eq!(named.usename.as_deref(), Some("postgres"));
    assert_eq!(named.state.as_deref(), Some("idle"));
    assert!(named.since_ms.is_some());
    let line = named.to_string();
    assert!(
        line.starts_with(&format!(
            "pid {holder_pid} \"deploy-a\" (role postgres, 127.0.0.1, connected "
        )),
        "{line}"
    );

    // A runner of a role without pg_read_all_stats (a deploy role that owns
    // the tables): pid, role and application are still named; the rest is
    // said to be hidden, with the grant that shows it.
    let admin = incident.admin.connect().await.unwrap();
    admin
        .batch_execute(
            "DO $$ BEGIN
               CREATE ROLE deployer LOGIN PASSWORD 'deployer-password';
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$",
        )
        .await
        .unwrap();
    let port: u16 = incident
        .url
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    let low = ConnectionSettings::loopback(
        port,
        "deployer",
        "deployer-password",
        incident.admin.dbname(),
        "deploy-c",
    )
    .connect()
    .await
    .unwrap();
    assert!(!history::lock_runners(&low, Duration::from_millis(100))
        .await
        .unwrap());
    let named = history::runner_lock_holder(&low).await.unwrap().unwrap();
    assert_eq!(named.pid, holder_pid);
    assert_eq!(named.application_name, "deploy-a");
    assert_eq!(named.usename.as_deref(), Some("postgres"));
    assert_eq!(named.state, None);
    assert!(
        named.to_string().contains("GRANT pg_read_all_stats"),
        "{named}"
    );

    // Released: nobody is named.
    history::unlock_runners(&holder_conn).await.unwrap();
    assert_eq!(history::runner_lock_holder(&second).await.unwrap(), None);
}
