//! "Look before you queue": which sessions hold a lock that conflicts with
//! the locks a migration is about to ask for, and ending the ones the policy
//! allows. Queueing behind a session idle in transaction is exactly what
//! took production down, so the guard asks here first and queues only when
//! nobody long-lived is in the way.

use std::time::Duration;

use locksmith_core::lock::LockMode;
use serde::Serialize;
use tokio_postgres::Client;

use super::RelationLock;
use crate::snapshot::{SessionSummary, SUMMARY_COLUMNS};
use crate::Error;

/// A session holding a lock the migration needs, as reports name it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Holder {
    /// Who it is and what it is doing.
    #[serde(flatten)]
    pub session: SessionSummary,
    /// The relation it holds a conflicting lock on.
    pub relation: String,
    /// The lock it holds (`pg_locks` spelling).
    pub mode: String,
    /// `client backend`, `autovacuum worker`, …
    #[serde(skip)]
    pub backend_type: String,
}

impl std::ops::Deref for Holder {
    type Target = SessionSummary;
    fn deref(&self) -> &SessionSummary {
        &self.session
    }
}

impl Holder {
    /// The terminate policy, in one place: only a client session idle in a
    /// transaction (or an aborted one) for at least `threshold`. Active
    /// queries, background workers and younger idle sessions never qualify.
    /// [`terminate_if_still_idle`] re-checks this on the server as it terminates.
    pub fn may_terminate(&self, threshold: Duration) -> bool {
        self.is_idle_in_transaction()
            && self.backend_type == "client backend"
            && self.idle_for() >= threshold
    }

    /// A holder that will not let go within `budget` on its own: idle in a
    /// transaction, or in a transaction already older than the budget. One we
    /// may not inspect counts as long-lived: queueing behind an unknown is the
    /// outage this tool exists to prevent.
    pub fn is_long_lived(&self, budget: Duration) -> bool {
        !self.is_visible()
            || self.is_idle_in_transaction()
            || self.xact_age_ms.unwrap_or(0) as u128 >= budget.as_millis()
    }
}

/// When to look again while long-lived holders are in the way: after `delay`
/// (the backoff's), but no later than when an idle holder reaches the
/// termination threshold, and never past the deadline (`remaining`).
pub fn next_look(
    holders: &[Holder],
    delay: Duration,
    terminate_after: Option<Duration>,
    remaining: Duration,
) -> Duration {
    let mut wait = delay;
    if let Some(threshold) = terminate_after {
        for h in holders.iter().filter(|h| h.is_idle_in_transaction()) {
            // A little past the threshold, so the server-side re-check agrees.
            wait = wait.min(threshold.saturating_sub(h.idle_for()) + Duration::from_millis(10));
        }
    }
    wait.min(remaining)
}

/// Sessions holding locks that conflict with `targets` right now, on any
/// connection (no guard needed): for `--dry-run` and `lint --database-url`.
pub async fn holders(client: &Client, targets: &[RelationLock]) -> Result<Vec<Holder>, Error> {
    let resolved = resolve(client, targets).await?;
    conflicting_holders(client, &resolved).await
}

/// The relations of a plan that exist now, with their oids and whether `LOCK TABLE` applies.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub name: String,
    /// The name as the server quotes it, for `LOCK TABLE`.
    pub lock_name: String,
    pub oid: u32,
    pub lockable: bool,
    pub mode: LockMode,
}

/// Resolves target names to oids; relations that do not exist yet (created
/// by the migration itself) are left out.
pub(crate) async fn resolve(
    client: &Client,
    targets: &[RelationLock],
) -> Result<Vec<Resolved>, Error> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = targets.iter().map(|t| t.relation.clone()).collect();
    // Each name's oid and kind, as the server's search_path resolves it.
    let rows = client
        .query(
            "SELECT n.name, c.oid, c.relkind::text, c.oid::regclass::text
             FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i)
             JOIN pg_class c ON c.oid = to_regclass(n.name)
             ORDER BY n.i",
            &[&names],
        )
        .await
        .map_err(|e| Error::query("resolving the migration's tables", e))?;
    let mut resolved: Vec<Resolved> = Vec::new();
    for row in rows {
        let name: String = row.get(0);
        let oid: u32 = row.get(1);
        let kind: String = row.get(2);
        let lock_name: String = row.get(3);
        let mode = targets
            .iter()
            .filter(|t| t.relation == name)
            .map(|t| t.mode)
            .max()
            .unwrap_or(LockMode::AccessExclusive);
        match resolved.iter_mut().find(|r| r.oid == oid) {
            Some(r) => r.mode = r.mode.max(mode),
            None => resolved.push(Resolved {
                name,
                lock_name,
                oid,
                lockable: matches!(kind.as_str(), "r" | "p" | "v" | "m" | "f"),
                mode,
            }),
        }
    }
    Ok(resolved)
}

/// Sessions of any database holding a granted lock that conflicts with what we want.
pub(crate) async fn conflicting_holders(
    client: &Client,
    targets: &[Resolved],
) -> Result<Vec<Holder>, Error> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let oids: Vec<u32> = targets.iter().map(|t| t.oid).collect();
    // Granted relation locks held by other backends on our tables, with who holds them.
    let rows = client
        .query(
            &format!(
                "SELECT {SUMMARY_COLUMNS}, coalesce(a.backend_type, ''), l.relation, l.mode
             FROM pg_locks l
             JOIN pg_stat_activity a ON a.pid = l.pid
             WHERE l.locktype = 'relation' AND l.granted
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND l.relation = ANY($1::oid[])
               AND l.pid <> pg_backend_pid()
             ORDER BY a.xact_start NULLS LAST, l.pid"
            ),
            &[&oids],
        )
        .await
        .map_err(|e| Error::query("looking for sessions holding conflicting locks", e))?;
    let mut holders: Vec<Holder> = Vec::new();
    for row in rows {
        let oid: u32 = row.get(9);
        let mode: String = row.get(10);
        let Some(target) = targets.iter().find(|t| t.oid == oid) else {
            continue;
        };
        let held = LockMode::from_pg_name(&mode);
        if !held.is_some_and(|h| target.mode.conflicts_with(h)) {
            continue;
        }
        let session = SessionSummary::from_row(&row, 0);
        if holders.iter().any(|h| h.pid == session.pid) {
            continue;
        }
        holders.push(Holder {
            session,
            relation: target.name.clone(),
            mode,
            backend_type: row.get(8),
        });
    }
    Ok(holders)
}

/// Terminates `pid` only if, at this instant, it is still a client backend
/// of this database, idle in a transaction for at least `idle_for`. The
/// conditions are checked in the same statement that terminates, so a
/// session that woke up in between is left alone. Returns whether it was terminated.
pub(crate) async fn terminate_if_still_idle(
    client: &Client,
    pid: i32,
    idle_for: Duration,
) -> Result<bool, Error> {
    let idle_ms = idle_for.as_millis() as f64;
    // Terminate only an idle-in-transaction client session of our database, idle long enough.
    let row = client
        .query_opt(
            "SELECT pg_terminate_backend(pid)
             FROM pg_stat_activity
             WHERE pid = $1 AND datname = current_database() AND backend_type = 'client backend'
               AND state IN ('idle in transaction', 'idle in transaction (aborted)')
               AND (extract(epoch FROM now() - state_change) * 1000)::float8 >= $2::float8",
            &[&pid, &idle_ms],
        )
        .await;
    match row {
        Ok(row) => Ok(row.map(|r| r.get::<_, bool>(0)).unwrap_or(false)),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            Err(Error::Permission {
                action: format!("terminate session {pid}"),
                needs: "pg_signal_backend".into(),
            })
        }
        Err(e) => Err(Error::query(format!("terminating session {pid}"), e)),
    }
}
