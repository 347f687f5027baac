//! `locksmith blockers` against the incident staged with real sessions.

use std::process::Command;

use locksmith_sandbox::incident::{Incident, TABLE};
use locksmith_sandbox::queue::Queue;
use locksmith_sandbox::Cluster;
use serde_json::Value;

fn locksmith(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn names_leakers_as_roots_and_the_alter_as_the_queue_head() {
    let cluster = Cluster::start().unwrap();
    let incident = Incident::stage(&cluster, "incident").await.unwrap();
    let queue = Queue::form(&incident, 2, 1).await.unwrap();
    let leaked = &queue.leaked;
    let admin = incident.admin.connect().await.unwrap();

    let url = cluster.url("incident");
    let (code, stdout, stderr) =
        locksmith(&["blockers", "--format", "json", "--database-url", &url]);
    assert_eq!(code, 3, "an outage in progress: {stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();

    let roots: Vec<i64> = report["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["pid"].as_i64().unwrap())
        .collect();
    let mut leakers: Vec<i64> = leaked.pids().iter().map(|p| *p as i64).collect();
    leakers.sort();
    assert_eq!(roots, leakers, "the leakers are the root blockers");
    for b in report["blockers"].as_array().unwrap() {
        assert_eq!(b["state"], "idle in transaction");
        assert_eq!(b["application_name"], "leaky-app");
        assert_eq!(b["client_addr"], "127.0.0.1");
        assert_eq!(b["usename"], "app");
        assert!(b["xact_age_ms"].as_i64().unwrap() >= 0);
        assert!(b["holds"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["relation"] == TABLE && h["mode"] == "AccessShareLock"));
        assert_eq!(b["blocking"].as_array().unwrap().len(), 1);
    }
    let waiting = report["waiting"].as_array().unwrap();
    let alter_row = waiting
        .iter()
        .find(|w| w["query"].as_str().unwrap().starts_with("ALTER TABLE"))
        .unwrap();
    assert_eq!(alter_row["wants"]["mode"], "AccessExclusiveLock");
    assert_eq!(alter_row["wants"]["relation"], TABLE);
    let mut blocked_by: Vec<i64> = alter_row["blocked_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_i64().unwrap())
        .collect();
    blocked_by.sort();
    assert_eq!(blocked_by, leakers);
    let select_row = waiting
        .iter()
        .find(|w| w["query"].as_str().unwrap().starts_with("SELECT count"))
        .unwrap();
    assert_eq!(
        alter_row["queued_behind"],
        serde_json::json!([select_row["pid"]]),
        "the SELECT queues behind the ALTER"
    );
    assert_eq!(
        select_row["blocked_by"],
        serde_json::json!([alter_row["pid"]])
    );
    assert_eq!(select_row["wants"]["mode"], "AccessShareLock");
    assert!(select_row["waiting_ms"].as_i64().unwrap() >= 0);
    assert_eq!(report["idle_in_transaction"].as_array().unwrap().len(), 2);
    let used = report["connections"]["used"].as_i64().unwrap();
    assert!(used >= 6, "{used}");
    assert_eq!(report["connections"]["max"], 100);

    // The human view tells the same story.
    let (code, human, _) = locksmith(&["blockers", "--database-url", &url]);
    assert_eq!(code, 3);
    // The advice names the leakers and their role, not placeholders.
    let leaker_pids = leakers
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    assert!(
        human.contains(&format!("WHERE pid IN ({leaker_pids})")),
        "{human}"
    );
    assert!(human.contains("ALTER ROLE app SET"), "{human}");
    assert!(human.contains("ROOT pid"), "{human}");
    assert!(
        human.contains("wants AccessExclusiveLock on academic_partners"),
        "{human}"
    );
    assert!(human.contains("queued behind it"), "{human}");
    assert!(
        !human.contains(locksmith_sandbox::cluster::SUPERUSER_PASSWORD),
        "password printed: {human}"
    );

    // Cancel the ALTER: the SELECT gets through at once.
    admin
        .execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'alembic'", &[])
        .await
        .unwrap();
    assert!(queue.alter.await.unwrap().is_err());
    for reader in queue.readers {
        assert_eq!(reader.await.unwrap().unwrap()[0].get::<_, i64>(0), 250);
    }
}

#[tokio::test]
async fn quiet_server_has_no_blockers() {
    let cluster = Cluster::start().unwrap();
    let (code, stdout, stderr) = locksmith(&[
        "blockers",
        "--format",
        "json",
        "--database-url",
        &cluster.url("postgres"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["blockers"], serde_json::json!([]));
    assert_eq!(report["waiting"], serde_json::json!([]));
}

#[test]
fn unreachable_server_is_one_clear_line() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://someone:s3cret@127.0.0.1:{port}/app");
    let (code, _, stderr) = locksmith(&["blockers", "--database-url", &url]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!("someone@127.0.0.1:{port}/app")),
        "{stderr}"
    );
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

#[test]
fn bad_url_is_bad_input() {
    let (code, _, stderr) = locksmith(&[
        "blockers",
        "--database-url",
        "postgres://u:s3cret@h:notaport/db",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("invalid connection string"), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
}

#[tokio::test]
async fn wrong_password_names_the_target() {
    let cluster = Cluster::start().unwrap();
    let url = format!(
        "postgres://postgres:wrong-pw@127.0.0.1:{}/postgres",
        cluster.port()
    );
    let (code, _, stderr) = locksmith(&["blockers", "--database-url", &url]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("postgres@127.0.0.1:{}/postgres", cluster.port())),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-pw"), "{stderr}");
    // One sentence as written: no runs of spaces from a broken line continuation.
    let said = stderr.replace(&cluster.port().to_string(), "PORT");
    assert!(!said.contains("   "), "{said}");
    insta::assert_snapshot!(said);
}

/// A port where something else listens (here: a service that greets every
/// client with an SSH banner) is named as such, not as a parse error; with
/// TLS asked for too, where the banner's first byte reads as "TLS, yes".
#[test]
fn a_port_that_does_not_speak_postgresql_says_so() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Serves every connection until the test process ends.
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 512];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"SSH-2.0-OpenSSH_9.6 not a database\r\n");
        }
    });
    let mut said = Vec::new();
    for sslmode in ["disable", "prefer"] {
        let url = format!(
            "postgres://someone:s3cret@127.0.0.1:{port}/app?sslmode={sslmode}&connect_timeout=10"
        );
        let (code, _, stderr) = locksmith(&["blockers", "--database-url", &url]);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains("does not speak the PostgreSQL protocol"),
            "sslmode={sslmode}: {stderr}"
        );
        assert!(!stderr.contains("bytes remaining on stream"), "{stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
        said.push(stderr.replace(&port.to_string(), "PORT"));
    }
    assert_eq!(said[0], said[1], "one message whatever the sslmode");
    insta::assert_snapshot!(said[0]);
}

/// A wait in another database is named by that database: its table's name
/// can only be read from inside it.
#[tokio::test]
async fn relations_in_other_databases_name_the_database() {
    let cluster = Cluster::start().unwrap();
    let other = cluster.create_database("other_app").await.unwrap();
    let holder = other.connect().await.unwrap();
    holder
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    holder
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let waiter = other.connect().await.unwrap();
    let waiting =
        tokio::spawn(async move { waiter.query("SELECT * FROM t", &[]).await.map(|_| ()) });
    let admin = cluster
        .settings("postgres", "test")
        .connect()
        .await
        .unwrap();
    locksmith_sandbox::wait::until(
        locksmith_sandbox::wait::BOUND,
        "the reader to queue",
        || async {
            admin
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'relation'",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
                == 1
        },
    )
    .await
    .unwrap();
    let (code, stdout, stderr) = locksmith(&[
        "blockers",
        "--format",
        "json",
        "--database-url",
        &cluster.url("postgres"),
    ]);
    assert_eq!(code, 3, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let wants = report["waiting"][0]["wants"]["relation"].as_str().unwrap();
    assert!(
        wants.starts_with("relation ") && wants.ends_with(" in database other_app"),
        "{wants}"
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
    waiting.await.unwrap().unwrap();
}
