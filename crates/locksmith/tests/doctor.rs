//! `locksmith doctor` against real servers and real server logs.

use std::process::Command;

use locksmith_sandbox::cluster::ClusterOptions;
use locksmith_sandbox::incident::{Incident, MIGRATION, TABLE};
use locksmith_sandbox::traffic::LeakedSessions;
use locksmith_sandbox::wait;
use locksmith_sandbox::Cluster;
use serde_json::Value;

fn locksmith(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ids(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn default_server_lacks_the_idle_timeout_until_the_role_has_one() {
    let cluster = Cluster::start().unwrap();
    let url = cluster.url("postgres");
    let (code, stdout, stderr) = locksmith(&["doctor", "--format", "json", "--database-url", &url]);
    assert_eq!(code, 1, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let finding = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "idle_in_transaction_session_timeout")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(finding["severity"], "warning");
    // The only role is the superuser an administrator works as: a backstop, not a minute.
    assert_eq!(
        finding["fix"],
        "ALTER ROLE postgres SET idle_in_transaction_session_timeout = '10min';"
    );
    let why = finding["why"].as_str().unwrap();
    assert!(why.contains("applies to new sessions only"), "{why}");
    assert!(why.contains("superuser"), "{why}");
    let keys: Vec<&String> = finding.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["fix", "id", "message", "severity", "why"]);
    assert_eq!(report["log"], serde_json::json!([]));

    // Run the fix: the finding goes away, and a clean server exits 0.
    let admin = cluster
        .settings("postgres", "test")
        .connect()
        .await
        .unwrap();
    admin
        .batch_execute(finding["fix"].as_str().unwrap())
        .await
        .unwrap();
    let (code, stdout, stderr) = locksmith(&["doctor", "--format", "json", "--database-url", &url]);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        !ids(&report).contains(&"idle_in_transaction_session_timeout".to_string()),
        "{stdout}"
    );
    assert_eq!(code, 0, "{stdout}{stderr}");

    let (code, human, _) = locksmith(&["doctor", "--database-url", &url]);
    assert_eq!(code, 0);
    assert!(human.contains("No settings or sessions"), "{human}");
}

#[tokio::test]
async fn staged_incident_names_roles_and_idle_sessions() {
    let cluster = Cluster::start_with(ClusterOptions {
        settings: vec![("log_lock_waits".into(), "off".into())],
        ..Default::default()
    })
    .unwrap();
    let incident = Incident::stage(&cluster, "incident").await.unwrap();
    let _leaked = LeakedSessions::open(&incident.app.with_application_name("leaky-app"), 2, TABLE)
        .await
        .unwrap();
    let (code, stdout, _) = locksmith(&[
        "doctor",
        "--format",
        "json",
        "--database-url",
        &cluster.url("incident"),
    ]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let found = ids(&report);
    // The superuser owns the table (it ran the "migration"), the app role does not.
    assert!(found.contains(&"lock_timeout".to_string()), "{stdout}");
    assert!(found.contains(&"log_lock_waits".to_string()), "{stdout}");
    let fixes: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fix"].as_str().unwrap())
        .collect();
    assert!(
        fixes.contains(&"ALTER ROLE app SET idle_in_transaction_session_timeout = '60s';"),
        "{stdout}"
    );
    assert!(
        fixes
            .iter()
            .any(|f| f.starts_with("ALTER ROLE postgres SET lock_timeout")),
        "{stdout}"
    );
}

#[tokio::test]
async fn scans_real_stderr_and_csv_logs() {
    let cluster = Cluster::start_with(ClusterOptions {
        settings: vec![
            ("logging_collector".into(), "on".into()),
            ("log_destination".into(), "stderr,csvlog".into()),
            ("log_directory".into(), "log".into()),
        ],
        ..Default::default()
    })
    .unwrap();
    let incident = Incident::stage(&cluster, "incident").await.unwrap();
    let leaked = LeakedSessions::open(&incident.app.with_application_name("leaky-app"), 2, TABLE)
        .await
        .unwrap();
    // The ALTER waits past deadlock_timeout (1s: logged with holders and queue), then gives up.
    let migrator = incident
        .admin
        .with_application_name("alembic")
        .connect()
        .await
        .unwrap();
    migrator
        .batch_execute("SET lock_timeout = '1500ms'")
        .await
        .unwrap();
    let err = migrator.batch_execute(MIGRATION).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "55P03");
    // A leaked session ended by the server's idle timeout.
    let idle = incident
        .app
        .with_application_name("leaky-app")
        .connect()
        .await
        .unwrap();
    idle.batch_execute("SET idle_in_transaction_session_timeout = '100ms'; BEGIN; SELECT 1")
        .await
        .unwrap();
    wait::until(
        wait::BOUND,
        "the server to end the idle session",
        || async { idle.is_closed() },
    )
    .await
    .unwrap();
    drop(leaked);
    // The collector writes asynchronously: wait until both logs have the last line.
    let log_dir = cluster.data_dir().join("log");
    let logs = || -> Vec<std::path::PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(&log_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files
    };
    wait::until(wait::BOUND, "the collector to log the idle timeout", || {
        let files = logs();
        async move {
            ["log", "csv"].iter().all(|ext| {
                files.iter().any(|p| {
                    p.extension().is_some_and(|e| e == *ext)
                        && std::fs::read_to_string(p)
                            .unwrap_or_default()
                            .contains("idle-in-transaction timeout")
                })
            })
        }
    })
    .await
    .unwrap();
    let files = logs();
    let stderr_log = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "log"))
        .unwrap();
    let csv_log = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "csv"))
        .unwrap();
    for file in [stderr_log, csv_log] {
        let path = file.to_str().unwrap();
        let (code, stdout, stderr) = locksmith(&[
            "doctor",
            "--format",
            "json",
            "--database-url",
            &cluster.url("incident"),
            "--log",
            path,
        ]);
        assert_eq!(code, 1, "{stderr}");
        let report: Value = serde_json::from_str(&stdout).unwrap();
        let log = report["log"].as_array().unwrap();
        let kind = |k: &str| {
            log.iter().find(|e| e["kind"] == k).unwrap_or_else(|| {
                panic!(
                    "no {k} in {path}: {stdout}\n{}",
                    std::fs::read_to_string(file).unwrap()
                )
            })
        };
        let wait = kind("lock_wait");
        assert_eq!(wait["count"], 1, "{stdout}");
        let mut leakers: Vec<i64> = Vec::new();
        for e in wait["holding"].as_array().unwrap() {
            leakers.push(e.as_i64().unwrap());
        }
        assert_eq!(leakers.len(), 2, "both leakers hold the lock: {stdout}");
        assert!(
            wait["first"].as_str().unwrap().starts_with("20"),
            "{stdout}"
        );
        assert!(wait["locks"][0]
            .as_str()
            .unwrap()
            .starts_with("AccessExclusiveLock on relation"));
        let timeout = kind("lock_timeout");
        assert_eq!(
            timeout["pids"], wait["pids"],
            "the ALTER waited, then gave up"
        );
        assert_eq!(kind("idle_in_transaction_timeout")["count"], 1);
        for e in log {
            let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
            assert!(e["meaning"].as_str().is_some_and(|m| !m.is_empty()), "{e}");
            for k in ["kind", "count", "first", "last", "pids"] {
                assert!(keys.iter().any(|x| *x == k), "{k} missing: {e}");
            }
        }
    }
    // Human output explains in the story's terms.
    let (_, human, _) = locksmith(&[
        "doctor",
        "--database-url",
        &cluster.url("incident"),
        "--log",
        stderr_log.to_str().unwrap(),
    ]);
    assert!(human.contains("holding the lock:"), "{human}");
    assert!(human.contains("lock_timeout ×1"), "{human}");
}

#[test]
fn log_only_when_the_server_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("pg.log");
    std::fs::write(
        &log,
        "2022-05-11 09:13:05.509 PDT [7891] LOG: unexpected EOF on client connection with an open transaction\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://u@127.0.0.1:{port}/db");
    let (code, stdout, stderr) = locksmith(&[
        "doctor",
        "--format",
        "json",
        "--database-url",
        &url,
        "--log",
        log.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["findings"][0]["id"], "server_unreachable");
    assert_eq!(report["log"][0]["kind"], "client_eof_in_transaction");
    assert_eq!(report["log"][0]["pids"], serde_json::json!([7891]));
    let (code, _, stderr) = locksmith(&["doctor", "--log", "/nonexistent/pg.log"]);
    assert_eq!(code, 2, "{stderr}");
}
