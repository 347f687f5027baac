//! The embedding example (`examples/apply.rs`) against a throwaway cluster:
//! the flow a Rust program gets from the crate doc applies a folder, records
//! it, finds nothing to do the second time, and stops a syntax error before
//! connecting. The example's own code runs here, so CI runs it.

#[allow(dead_code)]
#[path = "../examples/apply.rs"]
mod example;

use locksmith_pg::migrate::Status;
use locksmith_sandbox::cluster::Cluster;

#[tokio::test(flavor = "multi_thread")]
async fn the_example_applies_a_folder_once() {
    let cluster = Cluster::start().expect("a throwaway cluster");
    let settings = cluster.create_database("embed").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("001_accounts.sql"),
        "CREATE TABLE accounts (id int PRIMARY KEY, email text);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("002_unique_email.sql"),
        "ALTER TABLE accounts ADD CONSTRAINT accounts_email UNIQUE (email);\n",
    )
    .unwrap();
    // The example reads DATABASE_URL, as a user's program would; this test
    // binary has no other test to race for the environment.
    std::env::set_var("DATABASE_URL", cluster.url("embed"));
    let folder = dir.path().to_str().unwrap();

    assert_eq!(example::apply(folder).await.unwrap(), Status::Applied);
    let client = settings.connect().await.unwrap();
    let recorded: i64 = client
        .query_one("SELECT count(*) FROM locksmith_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 2);
    let constraint: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conname = 'accounts_email'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(constraint, 1);

    // Nothing pending: applied again, nothing run.
    assert_eq!(example::apply(folder).await.unwrap(), Status::Applied);

    // A syntax error is bad input, at its place, before anything connects.
    std::fs::write(
        dir.path().join("003_broken.sql"),
        "ALTER TABLE accounts ADD;\n",
    )
    .unwrap();
    let e = example::apply(folder).await.unwrap_err();
    assert_eq!(e.kind(), locksmith_pg::ErrorKind::BadInput);
    assert!(e.to_string().contains("003_broken.sql:1:"), "{e}");
}
