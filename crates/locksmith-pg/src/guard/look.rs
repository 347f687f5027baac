//! "Look before you queue": which sessions hold a lock that conflicts with
//! the locks a migration is about to ask for, and ending the ones the policy
//! allows. Queueing behind a session idle in transaction is exactly what
//! took production down, so the guard asks here first and queues only when
//! nobody long-lived is in the way.
//!
//! Three ways to find a holder, merged into one list of [`Holder`]s that the
//! terminate policy and the reports treat alike:
//! - relation locks on the plan's relations and, as `LOCK` recurses, on
//!   their partitions and inheritance children ([`resolve`], [`conflicting_holders`]);
//! - before a concurrent index build, sessions of this database with a
//!   snapshot the build would wait out ([`snapshot_holders`]);
//! - sessions the server said an earlier attempt waited for, on any lock
//!   (row, transaction id, shared catalog), while still in that same
//!   transaction ([`waited_for`]);
//! - prepared transactions (`PREPARE TRANSACTION`) holding a conflicting
//!   lock, or any lock of a kind an attempt waited on for "pid 0", which is
//!   how the server names them ([`prepared_holders`]). They have no session:
//!   always long-lived, never terminated, named by their gid.
//!
//! Another role's session that our role may not inspect (no
//! `pg_read_all_stats`) is still found through `pg_locks`; its state is
//! unknown, so it counts as long-lived ([`Holder::is_long_lived`]).

use std::time::Duration;

use crate::Connection;
use locksmith_core::lock::LockMode;
use serde::Serialize;

use super::RelationLock;
use crate::prepared::{PreparedXact, NO_BACKEND, PREPARED_COLUMNS, PREPARED_LOCKS};
use crate::signal::{self, Condition, Sent, Signal};
use crate::snapshot::{SessionSummary, SUMMARY_COLUMNS};
use crate::Error;

/// A session holding a lock the migration needs, as reports name it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Holder {
    /// Who it is and what it is doing.
    #[serde(flatten)]
    pub session: SessionSummary,
    /// The relation of the conflicting lock; `None` when the lock is on no
    /// relation (a transaction id, a snapshot).
    pub relation: Option<String>,
    /// What the lock is on: `relation`, `tuple`, `transactionid`,
    /// `virtualxid`, …, or `snapshot` (an old snapshot a concurrent build waits out).
    pub lock_type: String,
    /// The lock it holds (`pg_locks` spelling); empty for a snapshot, or
    /// when it holds none of the kind we waited on (queued ahead of us).
    pub mode: String,
    /// `client backend`, `autovacuum worker`, …
    #[serde(skip)]
    pub backend_type: String,
    /// Connected to another database: only ever a session the server said
    /// we waited for (a shared catalog's row, e.g. a role's).
    #[serde(skip)]
    pub other_database: bool,
    /// The hot standby it is on (`--replica`), as `host:port`; `None` on the primary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// A prepared transaction, not a session: `pid` is null in JSON
    /// ([`NO_BACKEND`]) and this names it, with the statements that finish it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prepared: Option<PreparedXact>,
}

impl Holder {
    /// The terminate policy, in one place: only a client session idle in a
    /// transaction (or an aborted one) for at least `threshold`. Active
    /// queries, background workers and younger idle sessions never qualify.
    /// [`terminate_if_still_idle`] re-checks this on the server as it terminates.
    pub fn may_terminate(&self, threshold: Duration) -> bool {
        self.prepared.is_none()
            && self.session.is_idle_in_transaction()
            && self.backend_type == "client backend"
            && self.session.idle_for() >= threshold
    }

    /// A holder not worth racing: idle in a transaction, or in a transaction,
    /// for at least `after` (see [`long_lived_after`]). A healthy request pauses
    /// inside its transaction for milliseconds and is raced like any writer;
    /// a leaked one stays idle for seconds to forever. One we may not inspect
    /// counts as long-lived: queueing behind an unknown is the outage this
    /// tool exists to prevent. So does a prepared transaction, however young:
    /// nothing ends it but `COMMIT PREPARED` / `ROLLBACK PREPARED`.
    pub fn is_long_lived(&self, after: Duration) -> bool {
        let after = after.as_millis() as i64;
        self.prepared.is_some()
            || !self.session.is_visible()
            || (self.session.is_idle_in_transaction()
                && self.session.state_age_ms.unwrap_or(0) >= after)
            || self.session.xact_age_ms.unwrap_or(0) >= after
    }
}

impl Holder {
    /// One line naming it: `pid 4242 app@10.0.0.5 idle 41s`, or the
    /// prepared transaction by its gid (it has no pid).
    pub fn label(&self) -> String {
        match &self.prepared {
            Some(p) => p.label(),
            None => self.session.label(),
        }
    }

    /// Whether `other` is the same holder: the same session, or the same
    /// prepared transaction (they all share [`NO_BACKEND`] as their pid).
    pub fn same_as(&self, other: &Holder) -> bool {
        self.session.pid == other.session.pid
            && self.server == other.server
            && self.prepared.as_ref().map(|p| &p.gid) == other.prepared.as_ref().map(|p| &p.gid)
    }

    /// A prepared transaction holding `mode` on `relation` (or a lock of `lock_type`).
    fn prepared(
        xact: PreparedXact,
        relation: Option<String>,
        lock_type: String,
        mode: String,
        other_database: bool,
    ) -> Holder {
        Holder {
            session: xact.summary(),
            relation,
            lock_type,
            mode,
            backend_type: "prepared transaction".into(),
            other_database,
            server: None,
            prepared: Some(xact),
        }
    }
}

/// The least age at which a holder counts as long-lived.
pub const LONG_LIVED_FLOOR: Duration = Duration::from_secs(1);

/// How old a holder's transaction (or its idleness in one) must be before the
/// guard stops racing it and waits it out instead: the budget a lock attempt
/// may make traffic wait (`lock_timeout`), and at least [`LONG_LIVED_FLOOR`].
/// Racing a younger holder costs traffic at most one budget per attempt;
/// waiting on it would mistake healthy traffic (an ORM's `BEGIN; SELECT;
/// …; UPDATE; COMMIT`, idle for milliseconds between statements) for a leak.
pub fn long_lived_after(lock_timeout: Duration) -> Duration {
    lock_timeout.max(LONG_LIVED_FLOOR)
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
        for h in holders
            .iter()
            .filter(|h| h.session.is_idle_in_transaction())
        {
            // A little past the threshold, so the server-side re-check agrees.
            wait = wait
                .min(threshold.saturating_sub(h.session.idle_for()) + Duration::from_millis(10));
        }
    }
    wait.min(remaining)
}

/// Sessions holding locks that conflict with `targets` right now, on any
/// connection (no guard needed): for `--dry-run` and `lint --database-url`.
pub async fn holders(client: &Connection, targets: &[RelationLock]) -> Result<Vec<Holder>, Error> {
    let resolved = resolve(client, targets).await?;
    let mut found = conflicting_holders(client, &resolved).await?;
    found.extend(prepared_holders(client, &resolved, &[]).await?);
    Ok(found)
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

/// Resolves target names to oids, with every partition and inheritance
/// child below them (as `LOCK` and `ALTER TABLE` recurse); relations that do
/// not exist yet (created by the migration itself) are left out. Children
/// are looked at but not locked by name: the parent's `LOCK` covers them.
pub(crate) async fn resolve(
    client: &Connection,
    targets: &[RelationLock],
) -> Result<Vec<Resolved>, Error> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = targets.iter().map(|t| t.relation.clone()).collect();
    // Each name's oid and kind, as the server's search_path resolves it, then its descendants.
    let rows = client
        .query(
            "WITH RECURSIVE tree(name, i, oid, inherited) AS (
                 SELECT n.name, n.i, c.oid, false
                 FROM unnest($1::text[]) WITH ORDINALITY AS n(name, i)
                 JOIN pg_class c ON c.oid = to_regclass(n.name)
               UNION
                 SELECT t.name, t.i, h.inhrelid, true
                 FROM tree t JOIN pg_inherits h ON h.inhparent = t.oid
             )
             SELECT t.name, c.oid, c.relkind::text, c.oid::regclass::text, t.inherited
             FROM tree t JOIN pg_class c ON c.oid = t.oid
             ORDER BY t.i, t.inherited, c.oid",
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
        let inherited: bool = row.get(4);
        let mode = targets
            .iter()
            .filter(|t| t.relation == name)
            .map(|t| t.mode)
            .max()
            .unwrap_or(LockMode::AccessExclusive);
        // `LOCK TABLE` takes tables, partitioned tables and views only
        // ("cannot lock relation" for a materialized view or foreign
        // table): those are still looked at, and the statement itself
        // takes their lock under the budget's lock_timeout.
        let lockable = !inherited && matches!(kind.as_str(), "r" | "p" | "v");
        match resolved.iter_mut().find(|r| r.oid == oid) {
            Some(r) => {
                r.mode = r.mode.max(mode);
                r.lockable |= lockable;
            }
            None => resolved.push(Resolved {
                // A child is reported by its own name.
                name: if inherited { lock_name.clone() } else { name },
                lock_name,
                oid,
                lockable,
                mode,
            }),
        }
    }
    Ok(resolved)
}

/// Sessions holding a granted lock on one of `targets` (relations of this
/// database) that conflicts with the mode we want there.
pub(crate) async fn conflicting_holders(
    client: &Connection,
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
        if holders.iter().any(|h| h.session.pid == session.pid) {
            continue;
        }
        holders.push(Holder {
            session,
            relation: Some(target.name.clone()),
            lock_type: "relation".into(),
            mode,
            backend_type: row.get(8),
            other_database: false,
            server: None,
            prepared: None,
        });
    }
    Ok(holders)
}

/// Prepared transactions holding a granted lock on one of `targets` that
/// conflicts with the mode we want there, and, for each wait in `waits` on
/// "pid 0" (how `pg_blocking_pids` names a prepared transaction), those
/// holding a lock of that kind, in any database. One entry per transaction.
pub(crate) async fn prepared_holders(
    client: &Connection,
    targets: &[Resolved],
    waits: &[WaitedFor],
) -> Result<Vec<Holder>, Error> {
    let waits: Vec<&WaitedFor> = waits.iter().filter(|w| w.pid == NO_BACKEND).collect();
    if targets.is_empty() && waits.is_empty() {
        return Ok(Vec::new());
    }
    let oids: Vec<u32> = targets.iter().map(|t| t.oid).collect();
    let kinds: Vec<String> = waits.iter().map(|w| w.lock_type.clone()).collect();
    // Granted locks of prepared transactions on our tables, or of a kind we waited on for pid 0.
    let rows = client
        .query(
            &format!(
                "SELECT {PREPARED_COLUMNS}, pr.locktype, pr.relation, pr.mode,
                    pr.database IS DISTINCT FROM current_database()
             FROM {PREPARED_LOCKS} pr
             WHERE pr.granted
               AND ((pr.locktype = 'relation' AND pr.relation = ANY($1::oid[])
                     AND pr.lock_database = (SELECT oid FROM pg_database WHERE datname = current_database()))
                    OR pr.locktype = ANY($2::text[]))
             ORDER BY pr.prepared, pr.gid"
            ),
            &[&oids, &kinds],
        )
        .await
        .map_err(|e| Error::query("looking for prepared transactions holding conflicting locks", e))?;
    let mut holders: Vec<Holder> = Vec::new();
    for row in &rows {
        let xact = PreparedXact::from_row(row, 0);
        if holders
            .iter()
            .any(|h| h.prepared.as_ref().is_some_and(|p| p.gid == xact.gid))
        {
            continue;
        }
        let lock_type: String = row.get(5);
        let oid: Option<u32> = row.get(6);
        let mode: String = row.get(7);
        let relation = match oid.and_then(|oid| targets.iter().find(|t| t.oid == oid)) {
            Some(target) if lock_type == "relation" => {
                let held = LockMode::from_pg_name(&mode);
                if !held.is_some_and(|h| target.mode.conflicts_with(h)) {
                    continue;
                }
                Some(target.name.clone())
            }
            _ => match waits.iter().find(|w| w.lock_type == lock_type) {
                Some(w) => w.relation.clone(),
                None => continue,
            },
        };
        holders.push(Holder::prepared(
            xact,
            relation,
            lock_type,
            mode,
            row.get(8),
        ));
    }
    Ok(holders)
}

/// Connection sessions of this database (other than ours, `except`) holding a
/// snapshot: a concurrent index build waits for every transaction whose
/// snapshot is older than its own (a `REPEATABLE READ` transaction left idle
/// waits it out forever). Active queries hold one for a moment too; the
/// long-lived rule tells them apart. Sessions whose state our role may not
/// see are left out (every query of theirs would look like an unknown
/// holder); if one makes the build wait, the watchdog names it.
pub(crate) async fn snapshot_holders(
    client: &Connection,
    except: i32,
) -> Result<Vec<Holder>, Error> {
    // Sessions of our database with a snapshot (backend_xmin), oldest transaction first.
    let rows = client
        .query(
            &format!(
                "SELECT {SUMMARY_COLUMNS}, coalesce(a.backend_type, '')
             FROM pg_stat_activity a
             WHERE a.datname = current_database() AND a.backend_xmin IS NOT NULL
               AND a.backend_type = 'client backend' AND a.state IS NOT NULL
               AND a.pid <> pg_backend_pid() AND a.pid <> $1
             ORDER BY a.xact_start NULLS LAST, a.pid"
            ),
            &[&except],
        )
        .await
        .map_err(|e| {
            Error::query(
                "looking for old snapshots a concurrent build would wait for",
                e,
            )
        })?;
    Ok(rows
        .iter()
        .map(|row| Holder {
            session: SessionSummary::from_row(row, 0),
            relation: None,
            lock_type: "snapshot".into(),
            mode: String::new(),
            backend_type: row.get(8),
            other_database: false,
            server: None,
            prepared: None,
        })
        .collect())
}

/// A session the server said one of our attempts waited for
/// (`pg_blocking_pids`), and on what.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitedFor {
    /// Its pid.
    pub pid: i32,
    /// When we saw it block us (server clock, seconds since the epoch): its
    /// transaction then started no later than this.
    pub seen_at: f64,
    /// The kind of lock we waited on (`relation`, `tuple`, `transactionid`, …).
    pub lock_type: String,
    /// The relation of that lock, when it is one of this database.
    pub relation: Option<String>,
    /// Its virtual transaction then (`pg_locks.virtualtransaction`): for a
    /// session our role may not inspect (no `xact_start`), whether it is
    /// still in the transaction that blocked us.
    pub vxid: Option<String>,
}

impl std::fmt::Display for WaitedFor {
    /// As progress lines name it: `pid 4242`, or `a prepared transaction`
    /// for pid 0 (how `pg_blocking_pids` reports one).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.pid {
            NO_BACKEND => write!(f, "a prepared transaction"),
            pid => write!(f, "pid {pid}"),
        }
    }
}

/// The sessions among `waits` still in the transaction that blocked us (one
/// that ended and began another no longer blocks us), in any database: a
/// shared catalog's row (a role) is held across databases. For another
/// role's session whose `xact_start` our role may not see, "the same
/// transaction" is its virtual transaction in `pg_locks`: it is kept (as an
/// unknown, so long-lived) while that still runs, never dropped as absent.
pub(crate) async fn waited_for(
    client: &Connection,
    waits: &[WaitedFor],
) -> Result<Vec<Holder>, Error> {
    if waits.is_empty() {
        return Ok(Vec::new());
    }
    let pids: Vec<i32> = waits.iter().map(|w| w.pid).collect();
    let seen: Vec<f64> = waits.iter().map(|w| w.seen_at).collect();
    let kinds: Vec<String> = waits.iter().map(|w| w.lock_type.clone()).collect();
    // Unknown as '' (never a virtual transaction), so the array needs no NULLs.
    let vxids: Vec<String> = waits
        .iter()
        .map(|w| w.vxid.clone().unwrap_or_default())
        .collect();
    // Each session we waited for, if its current transaction began before we
    // saw it block us (hidden from our role: if it is still in that virtual
    // transaction), with a lock it holds of the kind we waited on.
    let rows = client
        .query(
            &format!(
                "SELECT {SUMMARY_COLUMNS}, coalesce(a.backend_type, ''),
                    a.datname IS DISTINCT FROM current_database(), coalesce(l.mode, '')
             FROM unnest($1::int[], $2::float8[], $3::text[], $4::text[]) AS w(pid, seen_at, kind, vxid)
             JOIN pg_stat_activity a ON a.pid = w.pid
             LEFT JOIN LATERAL (
                 SELECT l.mode FROM pg_locks l
                 WHERE l.pid = w.pid AND l.granted AND l.locktype = w.kind
                 LIMIT 1
             ) l ON true
             WHERE a.pid <> pg_backend_pid()
               AND ((a.xact_start IS NOT NULL
                     AND extract(epoch FROM a.xact_start)::float8 <= w.seen_at)
                    OR (a.backend_type IS NULL
                        AND EXISTS (SELECT FROM pg_locks v
                                    WHERE v.pid = w.pid AND v.virtualtransaction = w.vxid)))
             ORDER BY a.xact_start NULLS LAST, a.pid"
            ),
            &[&pids, &seen, &kinds, &vxids],
        )
        .await
        .map_err(|e| Error::query("looking at the sessions our attempts waited for", e))?;
    let mut holders: Vec<Holder> = Vec::new();
    for row in &rows {
        let session = SessionSummary::from_row(row, 0);
        let Some(wait) = waits.iter().find(|w| w.pid == session.pid) else {
            continue;
        };
        if holders.iter().any(|h| h.session.pid == session.pid) {
            continue;
        }
        holders.push(Holder {
            session,
            relation: wait.relation.clone(),
            lock_type: wait.lock_type.clone(),
            mode: row.get(10),
            backend_type: row.get(8),
            other_database: row.get(9),
            server: None,
            prepared: None,
        });
    }
    Ok(holders)
}

/// Terminates `pid` only if, at this instant, it is still a client backend
/// of this database (of any, when `any_database`: a session the server said
/// blocks us on a shared catalog), idle in a transaction for at least
/// `idle_for`. The conditions are checked in the same statement that
/// terminates, so a session that woke up in between is left alone. Returns
/// whether it was terminated.
pub(crate) async fn terminate_if_still_idle(
    client: &Connection,
    pid: i32,
    idle_for: Duration,
    any_database: bool,
) -> Result<bool, Error> {
    let still = Condition::IdleInTransaction {
        idle_for,
        any_database,
    };
    let sent = signal::send(client, Signal::Terminate, pid, still).await?;
    Ok(sent == Sent::Signalled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_transaction_is_long_lived_at_once_and_never_terminated() {
        let xact = PreparedXact::new(
            "2pc-1".into(),
            "app".into(),
            "shop".into(),
            "2026-01-01T00:00:00.000000Z".into(),
            5,
        );
        let h = Holder::prepared(
            xact,
            Some("t".into()),
            "relation".into(),
            "AccessShareLock".into(),
            false,
        );
        assert!(h.is_long_lived(Duration::from_secs(60)), "however young");
        assert!(!h.may_terminate(Duration::ZERO));
        assert_eq!(h.session.pid, NO_BACKEND);
        assert!(
            h.label().starts_with("prepared transaction '2pc-1'"),
            "{}",
            h.label()
        );
        let json = serde_json::to_value(&h).unwrap();
        assert!(json["pid"].is_null(), "{json}");
        assert_eq!(json["prepared"]["gid"], "2pc-1");
        assert_eq!(json["prepared"]["rollback"], "ROLLBACK PREPARED '2pc-1'");
    }
}
