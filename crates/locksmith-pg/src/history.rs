//! The history table `locksmith_migrations` and the advisory lock that makes
//! `apply` run exactly once when several deploys start it at the same moment.
//!
//! The history row of a transactional migration is written inside the
//! migration's own transaction (see [`insert_sql`]), so a crash at any point
//! leaves either both or neither. Runners serialise on a session-level
//! advisory lock taken before any table lock; it is released when the
//! session ends, so a killed runner never leaves it behind.

use std::time::{Duration, Instant};

use locksmith_core::quote::literal;
use tokio_postgres::Client;

use crate::guard::backoff::Backoff;
use crate::Error;

/// The history table's name.
pub const TABLE: &str = "locksmith_migrations";

/// The advisory lock key runners serialise on ("locksmit" in ASCII).
const RUNNER_LOCK: i64 = 0x6c6f_636b_736d_6974;

/// One applied migration, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Version.
    pub version: i64,
    /// Name.
    pub name: String,
    /// SHA-256 of the file when it was applied.
    pub checksum: String,
}

/// Creates the history table if it does not exist. Call with the runner lock held.
pub async fn ensure_table(client: &Client, lock_timeout: Duration) -> Result<(), Error> {
    let sql = format!(
        "SET lock_timeout = '{}';
         CREATE TABLE IF NOT EXISTS {TABLE} (
           version bigint PRIMARY KEY,
           name text NOT NULL,
           checksum text NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now(),
           duration_ms bigint NOT NULL,
           attempts integer NOT NULL
         );
         RESET lock_timeout;",
        locksmith_core::duration::to_pg_setting(lock_timeout)
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(|e| Error::query(format!("creating the history table {TABLE}"), e))
}

/// The migrations applied so far, by version.
pub async fn applied(client: &Client) -> Result<Vec<Applied>, Error> {
    // Every recorded migration, oldest version first.
    let rows = client
        .query(
            &format!("SELECT version, name, checksum FROM {TABLE} ORDER BY version"),
            &[],
        )
        .await
        .map_err(|e| Error::query(format!("reading {TABLE}"), e))?;
    Ok(rows
        .iter()
        .map(|r| Applied {
            version: r.get(0),
            name: r.get(1),
            checksum: r.get(2),
        })
        .collect())
}

/// The statement that records a migration; run last inside its transaction.
/// `before` is the time spent before that transaction began (waiting, lost
/// attempts); the server adds the transaction's own time so far, so the
/// recorded duration counts the statements that just ran.
pub fn insert_sql(
    version: i64,
    name: &str,
    checksum: &str,
    before: Duration,
    attempts: u32,
) -> String {
    format!(
        "INSERT INTO {TABLE} (version, name, checksum, duration_ms, attempts) VALUES ({version}, {}, {}, {} + (extract(epoch FROM clock_timestamp() - now()) * 1000)::bigint, {attempts})",
        literal(name),
        literal(checksum),
        before.as_millis()
    )
}

/// Takes the runner lock, polling until `timeout`: another runner may hold it
/// while it applies. Returns `false` if the time ran out. Polling rather than
/// waiting keeps this lock out of the server's lock queue and bounded.
pub async fn lock_runners(client: &Client, timeout: Duration) -> Result<bool, Error> {
    let started = Instant::now();
    // Jittered, so runners that lost together do not retry together.
    let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(500));
    loop {
        // Non-blocking: never queue, even for our own lock.
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&RUNNER_LOCK])
            .await
            .map_err(|e| Error::query("taking the runner lock", e))?
            .get(0);
        if got {
            return Ok(true);
        }
        if started.elapsed() >= timeout {
            return Ok(false);
        }
        tokio::time::sleep(
            backoff
                .next_delay()
                .min(timeout.saturating_sub(started.elapsed())),
        )
        .await;
    }
}

/// Releases the runner lock.
pub async fn unlock_runners(client: &Client) -> Result<(), Error> {
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&RUNNER_LOCK])
        .await
        .map(|_| ())
        .map_err(|e| Error::query("releasing the runner lock", e))
}
