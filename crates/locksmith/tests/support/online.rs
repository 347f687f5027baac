//! What the online tests share: a staged database with their tables, a
//! one-file migration folder, and the bookkeeping a run must leave behind
//! (history rows, online progress rows).

use locksmith_pg::Connection;
use locksmith_sandbox::incident::Incident;

use super::query_i64;

/// A database of its own on the shared test server (the incident's
/// `academic_partners` included), with `setup` run in it.
pub async fn staged(hint: &str, setup: &str) -> (Incident, Connection) {
    let incident = Incident::stage_shared(hint).await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    admin.batch_execute(setup).await.unwrap();
    (incident, admin)
}

/// Database `db` on `cluster`, with `setup` run in it (a test that needs a
/// server of its own: another major, a standby, a restart).
pub async fn staged_on(
    cluster: &locksmith_sandbox::Cluster,
    db: &str,
    setup: &str,
) -> (Incident, Connection) {
    let incident = Incident::stage(cluster, db).await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    admin.batch_execute(setup).await.unwrap();
    (incident, admin)
}

/// A migration folder holding one file, `file`, of `sql`.
pub fn folder(file: &str, sql: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(file), sql).unwrap();
    dir
}

/// The run finished: `applied` migrations are recorded, and no online
/// progress is left (the last unit deletes it with the history row).
pub async fn assert_finished(admin: &Connection, applied: i64) {
    assert_eq!(
        query_i64(admin, "SELECT count(*) FROM locksmith_migrations").await,
        applied,
        "migrations recorded"
    );
    assert_eq!(
        query_i64(admin, "SELECT count(*) FROM locksmith_online_steps").await,
        0,
        "online progress left"
    );
}

/// No migration is recorded as applied (a run that failed or was killed).
pub async fn assert_not_applied(admin: &Connection) {
    assert_eq!(
        query_i64(admin, "SELECT count(*) FROM locksmith_migrations").await,
        0,
        "migrations recorded"
    );
}

/// A number about the online progress (`sql` reads `locksmith_online_steps`):
/// 0 until a run has created that table.
pub async fn progress(admin: &Connection, sql: &str) -> i64 {
    admin
        .query_one(sql, &[])
        .await
        .map(|r| r.get::<_, i64>(0))
        .unwrap_or(0)
}

/// `locksmith apply DIR --online EXTRA…` against `url` in the background,
/// its output discarded: a run to interrupt.
pub fn spawn_online(url: &str, dir: &std::path::Path, extra: &[&str]) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["apply", dir.to_str().unwrap(), "--online"])
        .args(extra)
        .env("DATABASE_URL", url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}
