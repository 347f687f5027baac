//! The history table `locksmith_migrations` and the advisory lock that makes
//! `apply` run exactly once when several deploys start it at the same moment.
//!
//! The history row of a transactional migration is written inside the
//! migration's own transaction (see [`insert_sql`]), so a crash at any point
//! leaves either both or neither. Runners serialise on a session-level
//! advisory lock taken before any table lock; it is released when the
//! session ends, so a killed runner never leaves it behind.
//!
//! Behind a connection pooler a session outlives us on a pooled backend, so
//! the session lock cannot be used there: each migration's transaction
//! starts with [`start_sql`] instead, the transaction-level form of the same
//! lock plus the history check for that migration, so exactly one runner
//! applies it whichever backend it gets.
//!
//! Rows are keyed by `version bigint`. Versions that are not one integer
//! (Flyway's `1.1`) and repeatable migrations (`R__views`) keep their key in
//! `version_text` (added to older tables with `ADD COLUMN IF NOT EXISTS`) and
//! get a negative `version` derived from it, so older readers still work.

use std::time::{Duration, Instant};

use crate::Connection;
use locksmith_core::quote::literal;

use crate::guard::backoff::Backoff;
use crate::Error;

/// The history table's name.
pub const TABLE: &str = "locksmith_migrations";

/// The advisory lock key runners serialise on ("locksmit" in ASCII).
const RUNNER_LOCK: i64 = 0x6c6f_636b_736d_6974;

/// One applied migration, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Version (the row's key; negative for keys that are not one integer).
    pub version: i64,
    /// The migration's key: `version_text`, else `version` as text.
    pub id: String,
    /// Name.
    pub name: String,
    /// SHA-256 of the file when it was applied.
    pub checksum: String,
}

/// The SQLSTATE [`start_sql`] raises when the migration is already recorded.
pub const ALREADY_APPLIED: &str = "LS001";

/// Creates the history table if it does not exist (and adds `version_text`
/// to an older one). Call with the runner lock held, or behind a pooler
/// without it: then another runner may be creating it at the same moment.
pub async fn ensure_table(client: &Connection, lock_timeout: Duration) -> Result<(), Error> {
    let setting = locksmith_core::duration::to_pg_setting(lock_timeout);
    create_in_own_transaction(
        client,
        &format!("creating the history table {TABLE}"),
        &format!(
            "SET LOCAL lock_timeout = '{setting}';
             CREATE TABLE IF NOT EXISTS {TABLE} (
               version bigint PRIMARY KEY,
               name text NOT NULL,
               checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now(),
               duration_ms bigint NOT NULL,
               attempts integer NOT NULL,
               version_text text
             )"
        ),
    )
    .await?;
    // Whether a table made by an older locksmith lacks the version_text column.
    let has_text: bool = client
        .query_one(
            &format!("SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = '{TABLE}'::regclass AND attname = 'version_text' AND NOT attisdropped)"),
            &[],
        )
        .await
        .map_err(|e| Error::query(format!("reading {TABLE}'s columns"), e))?
        .get(0);
    if has_text {
        return Ok(());
    }
    create_in_own_transaction(
        client,
        &format!("adding version_text to {TABLE}"),
        &format!(
            "SET LOCAL lock_timeout = '{setting}';
             ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS version_text text"
        ),
    )
    .await
}

/// Runs `sql` (idempotent DDL: `… IF NOT EXISTS`) as `BEGIN; sql; COMMIT` in
/// one simple query, so its `SET LOCAL` ends with it and nothing stays on a
/// pooled backend. Another runner doing the same at the same moment makes
/// it wait for that runner's commit, then fail (`23505`, `42P07`) or time
/// out (`55P03`): it is tried again, with backoff, a bounded number of times.
pub(crate) async fn create_in_own_transaction(
    client: &Connection,
    what: &str,
    sql: &str,
) -> Result<(), Error> {
    const TRIES: u32 = 8;
    let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(500));
    let mut tried = 0;
    loop {
        tried += 1;
        let done = client.batch_execute(&format!("BEGIN; {sql}; COMMIT")).await;
        let Err(e) = done else { return Ok(()) };
        // An explicit BEGIN stays open (aborted) after an error: end it here.
        let _ = client.batch_execute("ROLLBACK").await;
        let racing = matches!(
            e.code().map(|c| c.code()),
            Some("23505" | "42P07" | "55P03")
        );
        if !racing || tried >= TRIES {
            return Err(Error::query(what.to_string(), e));
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Whether the history table exists (on the search path).
pub async fn exists(client: &Connection) -> Result<bool, Error> {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&TABLE])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::query(format!("looking for {TABLE}"), e))
}

/// The migrations applied so far, by version.
pub async fn applied(client: &Connection) -> Result<Vec<Applied>, Error> {
    // Every recorded migration, oldest version first.
    let rows = client
        .query(
            &format!("SELECT version, coalesce(version_text, version::text), name, checksum FROM {TABLE} ORDER BY version"),
            &[],
        )
        .await
        .map_err(|e| Error::query(format!("reading {TABLE}"), e))?;
    Ok(rows
        .iter()
        .map(|r| Applied {
            version: r.get(0),
            id: r.get(1),
            name: r.get(2),
            checksum: r.get(3),
        })
        .collect())
}

/// What a history row says about one migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// The migration's key: its canonical version (`7`, `1.1`) or `R__<name>`.
    pub id: &'a str,
    /// Its name.
    pub name: &'a str,
    /// SHA-256 of what ran.
    pub checksum: &'a str,
    /// Repeatable: a rerun replaces the row instead of adding one.
    pub repeatable: bool,
}

/// The `version` column for a key: the number itself when the key is one
/// integer, else a negative number derived from the key (never a real version).
pub fn row_version(id: &str) -> i64 {
    if let Ok(v) = id.parse::<i64>() {
        if v >= 0 {
            return v;
        }
    }
    let hash = locksmith_core::source::checksum(id);
    let bits = u64::from_str_radix(&hash[..15], 16).unwrap_or(0);
    -1 - bits as i64
}

/// The statement that records a migration; run last inside its transaction.
/// `attempts` 0 and `duration` zero mark a migration recorded by `--baseline`.
/// Otherwise `before` is the time spent before that transaction began
/// (waiting, lost attempts); the server adds the transaction's own time so
/// far, so the recorded duration counts the statements that just ran.
pub fn insert_sql(record: &Record<'_>, before: Duration, attempts: u32) -> String {
    let version = row_version(record.id);
    let text = if version.to_string() == record.id {
        "NULL".to_string()
    } else {
        literal(record.id)
    };
    let upsert = if record.repeatable {
        " ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum, applied_at = now(), duration_ms = EXCLUDED.duration_ms, attempts = EXCLUDED.attempts"
    } else if attempts == 0 {
        // A baseline recorded by two runners at once (behind a pooler, with
        // no session lock): the second finds the row there.
        " ON CONFLICT (version) DO NOTHING"
    } else {
        ""
    };
    let duration = if attempts == 0 {
        "0".to_string()
    } else {
        format!(
            "{} + (extract(epoch FROM clock_timestamp() - now()) * 1000)::bigint",
            before.as_millis()
        )
    };
    format!(
        "INSERT INTO {TABLE} (version, version_text, name, checksum, duration_ms, attempts) VALUES ({version}, {text}, {}, {}, {duration}, {attempts}){upsert}",
        literal(record.name),
        literal(record.checksum),
    )
}

/// The statement that opens a migration's transaction behind a pooler: the
/// runner lock for this transaction only (`55P03` when another runner holds
/// it, a lost race to retry), then `ALREADY_APPLIED` when the migration is
/// recorded already, or when `done` (a query returning a row when the unit
/// is done, e.g. its progress row) says so. Runs before any table lock.
pub fn start_sql(record: &Record<'_>, done: Option<&str>) -> String {
    let version = row_version(record.id);
    let same = match record.repeatable {
        true => format!(" AND checksum = {}", literal(record.checksum)),
        false => String::new(),
    };
    let done = done
        .map(|q| format!(" OR EXISTS ({q})"))
        .unwrap_or_default();
    format!(
        "DO $locksmith$ BEGIN
           IF NOT pg_try_advisory_xact_lock({RUNNER_LOCK}) THEN
             RAISE EXCEPTION 'another locksmith apply is applying a migration' USING ERRCODE = '55P03';
           END IF;
           IF EXISTS (SELECT FROM {TABLE} WHERE version = {version}{same}){done} THEN
             RAISE EXCEPTION 'migration {} was applied by another runner', {}
               USING ERRCODE = '{ALREADY_APPLIED}';
           END IF;
         END $locksmith$",
        "%",
        literal(record.id),
    )
}

/// Takes the runner lock, polling until `timeout`: another runner may hold it
/// while it applies. Returns `false` if the time ran out. Polling rather than
/// waiting keeps this lock out of the server's lock queue and bounded.
pub async fn lock_runners(client: &Connection, timeout: Duration) -> Result<bool, Error> {
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

/// The session holding the runner lock, as a give-up names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunnerLockHolder {
    /// Its backend pid.
    pub pid: i32,
    /// Its role (`pg_stat_activity` shows it to every role).
    pub usename: Option<String>,
    /// Its `application_name` (shown to every role too).
    pub application_name: String,
    /// Its client address; `None` for a Unix socket, or when our role may
    /// not see it (another role's session without `pg_read_all_stats`).
    pub client_addr: Option<String>,
    /// How long it has held the lock (its session's age: the lock is held
    /// from the start of `apply`); `None` when hidden from our role.
    pub since_ms: Option<i64>,
    /// Its state (`active`, `idle`, …); `None` when hidden from our role.
    pub state: Option<String>,
}

impl std::fmt::Display for RunnerLockHolder {
    /// `pid 4242 "locksmith" (role deploy, 10.0.0.5, connected 3m ago, active)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let app = match self.application_name.as_str() {
            "" => "(no application_name)".to_string(),
            name => format!("\"{name}\""),
        };
        write!(
            f,
            "pid {} {app} (role {}",
            self.pid,
            self.usename.as_deref().unwrap_or("?")
        )?;
        match (&self.state, self.since_ms) {
            (Some(state), Some(ms)) => write!(
                f,
                ", {}, connected {} ago, {state})",
                self.client_addr.as_deref().unwrap_or("local"),
                locksmith_core::duration::human(Duration::from_millis(ms.max(0) as u64))
            ),
            _ => write!(
                f,
                "; its client, age and state are hidden from this role: GRANT pg_read_all_stats to see them)"
            ),
        }
    }
}

/// Who holds the runner lock now (another `apply` of this database), or
/// `None` if nobody does: for the give-up after [`lock_runners`] timed out.
pub async fn runner_lock_holder(client: &Connection) -> Result<Option<RunnerLockHolder>, Error> {
    // The session holding our advisory key in this database (a bigint key is classid:objid, objsubid 1).
    let row = client
        .query_opt(
            "SELECT l.pid, a.usename::text, coalesce(a.application_name, ''), host(a.client_addr),
                    (extract(epoch FROM now() - a.backend_start) * 1000)::bigint, a.state
             FROM pg_locks l
             LEFT JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
               AND ((l.classid::bigint << 32) | l.objid::bigint) = $1
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.pid <> pg_backend_pid()
             LIMIT 1",
            &[&RUNNER_LOCK],
        )
        .await
        .map_err(|e| Error::query("looking for the session holding the runner lock", e))?;
    Ok(row.map(|row| RunnerLockHolder {
        pid: row.get(0),
        usename: row.get(1),
        application_name: row.get(2),
        client_addr: row.get(3),
        since_ms: row.get(4),
        state: row.get(5),
    }))
}

/// Releases the runner lock.
pub async fn unlock_runners(client: &Connection) -> Result<(), Error> {
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&RUNNER_LOCK])
        .await
        .map(|_| ())
        .map_err(|e| Error::query("releasing the runner lock", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_versions_keep_integers_and_hide_other_keys_below_zero() {
        assert_eq!(row_version("20240101120000"), 20240101120000);
        assert_eq!(row_version("0"), 0);
        for id in ["1.1", "R__views", "99999999999999999999"] {
            assert!(row_version(id) < 0, "{id}");
        }
        assert_ne!(row_version("1.1"), row_version("1.2"));
        assert_eq!(row_version("1.1"), row_version("1.1"));
    }

    #[test]
    fn the_start_check_locks_for_the_transaction_then_looks_for_the_row() {
        let record = Record {
            id: "R__views",
            name: "views",
            checksum: "abc",
            repeatable: true,
        };
        let sql = start_sql(&record, Some("SELECT 1"));
        let lock = sql.find("pg_try_advisory_xact_lock").unwrap();
        let check = sql
            .find(&format!("version = {}", row_version("R__views")))
            .unwrap();
        assert!(lock < check, "{sql}");
        for part in [
            "'55P03'",
            "'LS001'",
            "AND checksum = 'abc'",
            "OR EXISTS (SELECT 1)",
        ] {
            assert!(sql.contains(part), "{part}: {sql}");
        }
        // A versioned migration is done once recorded, whatever its checksum.
        let record = Record {
            repeatable: false,
            id: "7",
            ..record
        };
        let sql = start_sql(&record, None);
        assert!(
            !sql.contains("checksum") && sql.contains("version = 7)"),
            "{sql}"
        );
    }
}
