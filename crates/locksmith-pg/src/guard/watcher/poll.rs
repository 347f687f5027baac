//! The one polling loop of the watch (see the parent module): each round, one
//! `SELECT` finds the watched sessions with all a round needs about them,
//! and the same work follows for each, whoever they are. What depends on
//! whom is watched is [`Whom`]'s: the filter, the signals' conditions, and
//! whether blockers are described.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::signal::{self, Condition, Sent, Signal};
use crate::snapshot::{SessionSummary, SUMMARY_COLUMNS};
use crate::{Connection, Error};
use locksmith_core::lock::LockMode;
use tokio::sync::watch;
use tokio_postgres::Row;

use super::super::look::{self, Holder, WaitedFor};
use super::super::policy;
use super::{Backend, CancelledWait, Limits, Scope, WantedLock, Watch, POLL, ROW_LOCKS};

/// Whom a running loop watches.
pub(super) enum Whom {
    /// The guard's backend.
    Backend(Backend),
    /// A program's sessions, by the name `names` holds now.
    Program {
        names: watch::Receiver<String>,
        /// Opened since this server time (seconds since the epoch), unless
        /// `None` ([`Scope::Pooled`]).
        since_epoch: Option<f64>,
        scope: Scope,
    },
}

/// The round's view of [`Whom`]: the name as it is this round.
enum Round<'a> {
    Backend(Backend),
    Program {
        application_name: &'a str,
        since_epoch: Option<f64>,
        scope: Scope,
    },
}

impl Round<'_> {
    /// The `WHERE` clause that picks a watched session `x` of
    /// `pg_stat_activity`, over the parameters of [`Self::query`].
    fn watched(&self, x: &str) -> String {
        match self {
            Round::Backend(_) => format!(
                "{x}.pid = $1 AND ($2::int8 IS NULL
                 OR (extract(epoch FROM {x}.xact_start) * 1000000)::bigint = $2)"
            ),
            Round::Program { .. } => format!(
                "{x}.application_name = $1
                 AND ($2::float8 IS NULL OR extract(epoch FROM {x}.backend_start)::float8 >= $2)
                 AND {x}.pid <> pg_backend_pid()"
            ),
        }
    }

    /// The watched sessions, and for each all the round needs.
    async fn query(&self, sidecar: &Connection) -> Result<Vec<Row>, tokio_postgres::Error> {
        let sql = format!("SELECT {COLUMNS} {FROM} WHERE {}", self.watched("a")).replace(
            "{outside}",
            &format!("NOT coalesce({}, false)", self.watched("w")),
        );
        match self {
            Round::Backend(b) => sidecar.query(&sql, &[&b.pid, &b.xact]).await,
            Round::Program {
                application_name,
                since_epoch,
                ..
            } => sidecar.query(&sql, &[application_name, since_epoch]).await,
        }
    }

    /// Whether a wait over the budget may be cancelled, given whom it waits
    /// for: behind a pooler, a wait queued only behind the program's own
    /// sessions may be a nameless client's request under our name (see the
    /// parent module): never cancelled.
    fn may_cancel(&self, all_blockers: &[i32], outside: &[i32]) -> bool {
        !matches!(
            self,
            Round::Program {
                scope: Scope::Pooled,
                ..
            }
        ) || all_blockers.is_empty()
            || !outside.is_empty()
    }

    /// What must still hold as a lock wait of `s` is cancelled: the guard's
    /// backend still in its transaction; a program's statement still the one
    /// seen, under our name, waiting on a lock. `None`: nothing to check by,
    /// so no cancel.
    fn wait_condition(&self, s: &Session) -> Option<Condition<'_>> {
        match self {
            Round::Backend(b) => Some(b.xact.map_or(Condition::Exists, Condition::InTransaction)),
            Round::Program {
                application_name, ..
            } => Some(Condition::WaitingStatement {
                application_name,
                query_start: s.query_start?,
            }),
        }
    }

    /// How a hold of `s` past `max_hold` is stopped, and what must still hold
    /// as it is: the guard's statement is cancelled while its transaction is
    /// still ours (the guard then rolls back and sends nothing more); a
    /// program's statement is cancelled, or, idle in its transaction, its
    /// connection ended, while still the same transaction under our name (a
    /// pooled backend may serve another client by now).
    fn hold_stop(&self, s: &Session, xact_ms: i64) -> (Signal, Condition<'_>) {
        match self {
            Round::Backend(b) => (
                Signal::Cancel,
                b.xact.map_or(Condition::Exists, Condition::InTransaction),
            ),
            Round::Program {
                application_name, ..
            } => {
                let idle = s
                    .state
                    .as_deref()
                    .is_some_and(|s| s.starts_with("idle in transaction"));
                let how = if idle {
                    Signal::Terminate
                } else {
                    Signal::Cancel
                };
                let still = Condition::NamedTransaction {
                    application_name,
                    xact_ms,
                };
                (how, still)
            }
        }
    }

    /// Whether the blockers are described as [`Holder`]s while the session
    /// waits, and the terminate policy applied to them: a program's, for its
    /// report and its next look. The guard names its own in its look.
    fn describes(&self) -> bool {
        matches!(self, Round::Program { .. })
    }

    /// Whether the watch's queries go through a pooler ([`Scope::Pooled`]).
    fn pooled(&self) -> bool {
        matches!(
            self,
            Round::Program {
                scope: Scope::Pooled,
                ..
            }
        )
    }
}

/// What a round reads about each watched backend `a`: whether it waits on a
/// lock, whom for (`pg_blocking_pids`, only when waiting) and each one's
/// virtual transaction (to tell, later, whether a session our role may not
/// inspect is still in the transaction that blocked it), how many sessions
/// wait behind it, the server clock, the lock it waits on, its transaction
/// id, statement and transaction start, state; and for the hold bound: the
/// traffic-blocking table locks it holds, how many sessions outside the
/// watch wait for it, and how many of those on its row locks.
const COLUMNS: &str = "a.pid, coalesce(a.wait_event_type = 'Lock', false),
    CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) END,
    q.behind, extract(epoch FROM clock_timestamp())::float8, lk.locktype, lk.relation,
    CASE WHEN a.wait_event_type = 'Lock' THEN ARRAY(
        SELECT (SELECT v.virtualtransaction FROM pg_locks v WHERE v.pid = b LIMIT 1)
        FROM unnest(pg_blocking_pids(a.pid)) WITH ORDINALITY AS u(b, i) ORDER BY i) END,
    a.backend_xid::text::bigint, a.query_start, coalesce(a.query, ''),
    (extract(epoch FROM a.xact_start) * 1000)::bigint, a.state,
    lk.holds, q.outside > 0, q.on_rows";

/// Where [`COLUMNS`] come from: one pass over `a`'s locks (the one it waits
/// for, the traffic-blocking table locks it holds) and one over the sessions
/// waiting for it (a row lock wait shows as `transactionid` or `tuple`).
/// `{outside}` is "`w` is not watched".
const FROM: &str = "FROM pg_stat_activity a
    LEFT JOIN LATERAL (
        SELECT (array_agg(l.locktype) FILTER (WHERE NOT l.granted))[1] AS locktype,
            (array_agg(CASE WHEN l.database = d.oid THEN l.relation::regclass::text END)
                FILTER (WHERE NOT l.granted))[1] AS relation,
            string_agg(DISTINCT l.mode || ' on ' || l.relation::regclass::text, ', ')
                FILTER (WHERE l.granted AND l.locktype = 'relation' AND l.database = d.oid
                    AND c.relkind IN ('r', 'p', 'm', 'v')
                    AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
                                   'AccessExclusiveLock')) AS holds
        FROM pg_locks l
        CROSS JOIN (SELECT oid FROM pg_database WHERE datname = current_database()) d
        LEFT JOIN pg_class c ON c.oid = l.relation AND l.database = d.oid
        WHERE l.pid = a.pid
    ) lk ON true
    LEFT JOIN LATERAL (
        SELECT count(*) AS behind,
            count(*) FILTER (WHERE w.pid <> a.pid AND {outside}) AS outside,
            count(*) FILTER (WHERE w.pid <> a.pid AND {outside}
                               AND w.wait_event IN ('transactionid', 'tuple')) AS on_rows
        FROM pg_stat_activity w
        WHERE w.wait_event_type = 'Lock' AND a.pid = ANY(pg_blocking_pids(w.pid))
    ) q ON true";

/// One watched session as a round saw it.
struct Session {
    pid: i32,
    waiting: bool,
    /// Whom it waits for, as the server names them.
    blockers: Vec<i32>,
    behind: i64,
    xid: Option<i64>,
    query_start: Option<SystemTime>,
    /// Its transaction's start, in milliseconds since the epoch.
    xact_ms: Option<i64>,
    state: Option<String>,
    /// The traffic-blocking table locks it holds, as text.
    table_holds: Option<String>,
    /// Whether a session outside the watch waits for it.
    waited_on: bool,
    /// How many sessions outside the watch wait on its row locks.
    row_waiters: i64,
}

impl Session {
    fn from_row(row: &Row) -> Session {
        Session {
            pid: row.get(0),
            waiting: row.get(1),
            blockers: row.get::<_, Option<Vec<i32>>>(2).unwrap_or_default(),
            behind: row.get(3),
            xid: row.get(8),
            query_start: row.get(9),
            xact_ms: row.get(11),
            state: row.get(12),
            table_holds: row.get(13),
            waited_on: row.get(14),
            row_waiters: row.get(15),
        }
    }

    /// The sessions it waits for as first seen, from the same row.
    fn waited_for(&self, row: &Row) -> Vec<WaitedFor> {
        let vxids = row
            .get::<_, Option<Vec<Option<String>>>>(7)
            .unwrap_or_default();
        self.blockers
            .iter()
            .enumerate()
            .map(|(i, &pid)| WaitedFor {
                pid,
                seen_at: row.get(4),
                lock_type: row
                    .get::<_, Option<String>>(5)
                    .unwrap_or_else(|| "relation".into()),
                relation: row.get(6),
                vxid: vxids.get(i).cloned().flatten(),
            })
            .collect()
    }
}

/// What the loop shares with its [`super::Watcher`].
#[derive(Clone, Default)]
pub(super) struct Shared {
    pub(super) seen: Arc<Mutex<Watch>>,
    /// Since when the poll in flight has waited for its answer.
    pub(super) polling_since: Arc<Mutex<Option<Instant>>>,
}

/// One round of the loop, from its first query to its end. Through a pooler
/// a round longer than the budget means the watch's queries waited for a
/// pooled connection (or the machine is starved): the lock waits went
/// unbounded meanwhile, and the account says so when the round ends, or, if
/// it is still going, when [`super::Watcher::take`] reads the account.
struct Timing<'a> {
    shared: &'a Shared,
    /// The budget, when starving counts (a pooled program's watch).
    starves_after: Option<Duration>,
    started: Instant,
}

impl<'a> Timing<'a> {
    fn start(shared: &'a Shared, starves_after: Option<Duration>) -> Timing<'a> {
        let started = Instant::now();
        *shared.polling_since.lock().unwrap() = Some(started);
        Timing {
            shared,
            starves_after,
            started,
        }
    }
}

impl Drop for Timing<'_> {
    fn drop(&mut self) {
        // Under the account's lock, so a `take` sees the round going or its note.
        let mut seen = self.shared.seen.lock().unwrap();
        let took = self.started.elapsed();
        if self.starves_after.is_some_and(|budget| took > budget) {
            seen.note_starved(took);
        }
        *self.shared.polling_since.lock().unwrap() = None;
    }
}

/// When each watched backend started waiting on a lock, as seen poll by poll.
#[derive(Debug, Default)]
struct WaitClocks {
    since: HashMap<i32, Instant>,
}

impl WaitClocks {
    /// `pid` waits now: how long it has waited. A new wait began somewhere
    /// between the last look and this one, so it counts from half a poll ago.
    fn waiting(&mut self, pid: i32) -> Duration {
        self.since.entry(pid).or_insert_with(first_seen).elapsed()
    }

    /// Forgets the backends that no longer wait.
    fn keep_only(&mut self, waiting: &[i32]) {
        self.since.retain(|pid, _| waiting.contains(pid));
    }

    /// Starts `pid`'s clock over (after cancelling it, or a new statement).
    fn reset(&mut self, pid: i32) {
        self.since.remove(&pid);
    }

    /// Past the budget by a grace of two polls: the server's own
    /// `lock_timeout` should fire first; this is for when it did not.
    fn over_budget(waited: Duration, budget: Duration) -> bool {
        waited > budget + POLL * 2
    }
}

/// Something began between the last look and this one: half a poll ago.
fn first_seen() -> Instant {
    Instant::now() - POLL / 2
}

/// Since when each watched transaction (pid, start in ms) has held what
/// others wait for: a traffic-blocking table lock, and row locks (from the
/// first writer seen waiting on them, as nothing else shows them).
#[derive(Default)]
struct HoldClocks {
    table: HashMap<(i32, i64), Instant>,
    rows: HashMap<(i32, i64), Instant>,
}

/// The polling loop: see the parent module.
pub(super) async fn run(
    sidecar: Arc<Connection>,
    whom: Whom,
    limits: Limits,
    shared: Shared,
    mut stopped: watch::Receiver<bool>,
) {
    let mut clocks = WaitClocks::default();
    // The statement each watched backend runs: a pooled backend may run
    // another client's next, and a wait's clock belongs to one statement.
    let mut statements: HashMap<i32, Option<SystemTime>> = HashMap::new();
    let mut holds = HoldClocks::default();
    loop {
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
        if sidecar.is_closed() {
            return;
        }
        let name;
        let round = match &whom {
            Whom::Backend(b) => Round::Backend(*b),
            Whom::Program {
                names,
                since_epoch,
                scope,
            } => {
                name = names.borrow().clone();
                Round::Program {
                    application_name: &name,
                    since_epoch: *since_epoch,
                    scope: *scope,
                }
            }
        };
        // Until this round ends, however it ends: every query of it goes
        // over the sidecar, and through a pooler each may wait for the pool.
        let _timing = Timing::start(&shared, round.pooled().then_some(limits.budget));
        let Ok(rows) = round.query(&sidecar).await else {
            continue;
        };
        let seen: Vec<Session> = rows.iter().map(Session::from_row).collect();
        let watched: Vec<i32> = seen.iter().map(|s| s.pid).collect();
        let mut still_waiting = Vec::new();
        for (s, row) in seen.iter().zip(&rows) {
            {
                let mut account = shared.seen.lock().unwrap();
                account.max_queued_behind = account.max_queued_behind.max(s.behind);
                if let Some(xid) = s.xid.filter(|x| !account.xids.contains(x)) {
                    account.xids.push(xid);
                }
            }
            if statements.insert(s.pid, s.query_start) != Some(s.query_start) {
                clocks.reset(s.pid);
            }
            if let Some(max_hold) = limits.max_hold {
                bound_hold(&sidecar, &round, s, max_hold, &mut holds, &shared.seen).await;
            }
            if !s.waiting {
                continue;
            }
            still_waiting.push(s.pid);
            let waited = clocks.waiting(s.pid);
            // Blockers outside the watch: a program's own sessions waiting
            // for each other are its business, never candidates for termination.
            let outside: Vec<i32> = s
                .blockers
                .iter()
                .copied()
                .filter(|b| !watched.contains(b))
                .collect();
            let waited_for: Vec<WaitedFor> = s
                .waited_for(row)
                .into_iter()
                .filter(|w| outside.contains(&w.pid))
                .collect();
            {
                let mut account = shared.seen.lock().unwrap();
                account.longest_wait = account.longest_wait.max(waited);
                for w in &waited_for {
                    account.note_waited_for(w.clone());
                }
            }
            let mut blockers = Vec::new();
            if round.describes() {
                let described = describe_wait(&sidecar, s.pid, &outside, &waited_for).await;
                if let Ok((holders, wanted)) = described {
                    {
                        let mut account = shared.seen.lock().unwrap();
                        if let Some(w) = wanted {
                            account.note_wanted(w);
                        }
                        holders.iter().for_each(|h| account.note_blocker(h.clone()));
                    }
                    blockers = holders.clone();
                    terminate_eligible(
                        &sidecar,
                        holders,
                        limits.terminate_idle_after,
                        &shared.seen,
                    )
                    .await;
                }
            }
            if !round.may_cancel(&s.blockers, &outside)
                || !WaitClocks::over_budget(waited, limits.budget)
            {
                continue;
            }
            if let Some(still) = round.wait_condition(s) {
                let sent = signal::send(&sidecar, Signal::Cancel, s.pid, still).await;
                if matches!(sent, Ok(Sent::Signalled)) {
                    let mut account = shared.seen.lock().unwrap();
                    account.cancelled.push(s.pid);
                    account.cancels.push(CancelledWait {
                        pid: s.pid,
                        query: row.get(10),
                        waited_ms: waited.as_millis() as u64,
                        blockers,
                    });
                }
            }
            clocks.reset(s.pid);
        }
        clocks.keep_only(&still_waiting);
        statements.retain(|pid, _| watched.contains(pid));
        let current: Vec<(i32, i64)> = seen
            .iter()
            .filter_map(|s| Some((s.pid, s.xact_ms?)))
            .collect();
        holds.table.retain(|k, _| current.contains(k));
        holds.rows.retain(|k, _| current.contains(k));
    }
}

/// The hold bound for one watched session `s` (see the parent module): a
/// traffic-blocking table lock held `max_hold` since first seen while
/// someone outside waits for it, or row locks someone outside has waited on
/// for `max_hold` without a break, stops it. Records what it held.
async fn bound_hold(
    sidecar: &Connection,
    round: &Round<'_>,
    s: &Session,
    max_hold: Duration,
    holds: &mut HoldClocks,
    seen: &Mutex<Watch>,
) {
    let Some(xact_ms) = s.xact_ms else { return };
    let key = (s.pid, xact_ms);
    let mut over = Vec::new();
    match &s.table_holds {
        // Counted from when seen held: never from before it was taken.
        Some(held) => {
            let since = *holds.table.entry(key).or_insert_with(Instant::now);
            if s.waited_on && since.elapsed() >= max_hold {
                over.push(held.clone());
            }
        }
        None => {
            holds.table.remove(&key);
        }
    }
    // Row locks show only through their waiters: from the first one seen,
    // which began waiting since the last look, as a lock wait does.
    if s.row_waiters > 0 {
        let since = *holds.rows.entry(key).or_insert_with(first_seen);
        if since.elapsed() >= max_hold {
            over.push(ROW_LOCKS.to_string());
        }
    } else {
        holds.rows.remove(&key);
    }
    if over.is_empty() {
        return;
    }
    let (how, still) = round.hold_stop(s, xact_ms);
    if matches!(
        signal::send(sidecar, how, s.pid, still).await,
        Ok(Sent::Signalled)
    ) {
        let mut account = seen.lock().unwrap();
        account.held_rows |= over.iter().any(|h| h == ROW_LOCKS);
        account.held_too_long.push(over.join(", "));
        holds.table.remove(&key);
        holds.rows.remove(&key);
    }
}

/// The sessions `blocking` (pids) that `waiter` waits for, each with the lock
/// it holds (or is queued for) on the object `waiter` wants; and that object
/// when it is a relation of this database.
async fn describe_wait(
    client: &Connection,
    waiter: i32,
    blocking: &[i32],
    waited_for: &[WaitedFor],
) -> Result<(Vec<Holder>, Option<WantedLock>), Error> {
    // The relation lock the waiter is queued for, in our database.
    let wanted = client
        .query_opt(
            "SELECT l.relation, l.relation::regclass::text, l.mode FROM pg_locks l
             WHERE l.pid = $1 AND NOT l.granted AND l.locktype = 'relation'
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             LIMIT 1",
            &[&waiter],
        )
        .await
        .map_err(|e| Error::query("reading the lock a watched session waits for", e))?
        .and_then(|row| {
            let mode: String = row.get(2);
            Some(WantedLock {
                oid: row.get(0),
                relation: row.get(1),
                mode: LockMode::from_pg_name(&mode)?,
            })
        });
    if blocking.is_empty() {
        return Ok((Vec::new(), wanted));
    }
    // Each blocker, and its lock on the very object the waiter is queued for
    // (granted first: a holder, else a request queued ahead of the waiter).
    let rows = client
        .query(
            &format!(
                "SELECT {SUMMARY_COLUMNS}, coalesce(a.backend_type, ''),
                    CASE WHEN h.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                         THEN h.relation::regclass::text END,
                    coalesce(h.locktype, ''), coalesce(h.mode, ''),
                    a.datname IS DISTINCT FROM current_database()
             FROM pg_stat_activity a
             LEFT JOIN LATERAL (
                 SELECT h.database, h.relation, h.locktype, h.mode FROM pg_locks h, pg_locks w
                 WHERE h.pid = a.pid AND w.pid = $1 AND NOT w.granted
                   AND h.locktype = w.locktype
                   AND h.database IS NOT DISTINCT FROM w.database
                   AND h.relation IS NOT DISTINCT FROM w.relation
                   AND h.page IS NOT DISTINCT FROM w.page
                   AND h.tuple IS NOT DISTINCT FROM w.tuple
                   AND h.virtualxid IS NOT DISTINCT FROM w.virtualxid
                   AND h.transactionid IS NOT DISTINCT FROM w.transactionid
                   AND h.classid IS NOT DISTINCT FROM w.classid
                   AND h.objid IS NOT DISTINCT FROM w.objid
                   AND h.objsubid IS NOT DISTINCT FROM w.objsubid
                 ORDER BY h.granted DESC LIMIT 1
             ) h ON true
             WHERE a.pid = ANY($2)
             ORDER BY a.xact_start NULLS LAST, a.pid"
            ),
            &[&waiter, &blocking],
        )
        .await
        .map_err(|e| Error::query("describing the sessions a watched session waits for", e))?;
    let mut holders: Vec<Holder> = rows
        .iter()
        .map(|row| Holder {
            session: SessionSummary::from_row(row, 0),
            backend_type: row.get(8),
            relation: row.get(9),
            lock_type: row.get(10),
            mode: row.get(11),
            other_database: row.get(12),
            server: None,
            prepared: None,
        })
        .collect();
    // "pid 0" is a prepared transaction: no session to describe, named by its gid.
    holders.extend(look::prepared_holders(client, &[], waited_for).await?);
    Ok((holders, wanted))
}

/// Applies the terminate policy ([`policy::terminate_idle`]) to `holders`
/// under `threshold`: records whom it terminated and, never silently, why it
/// could not (a grant missing). Returns the ones left.
pub(super) async fn terminate_eligible(
    client: &Connection,
    holders: Vec<Holder>,
    threshold: Option<Duration>,
    seen: &Mutex<Watch>,
) -> Vec<Holder> {
    let Some(threshold) = threshold else {
        return holders;
    };
    record_policed(
        seen,
        policy::terminate_idle(client, holders, threshold).await,
    )
}

/// Records what the terminate policy did in the account: whom it terminated
/// and, never silently, why it could not. Returns the ones left.
pub(super) fn record_policed(seen: &Mutex<Watch>, policed: policy::Policed) -> Vec<Holder> {
    let mut account = seen.lock().unwrap();
    for h in policed.terminated {
        if !account
            .terminated
            .iter()
            .any(|t| t.session.pid == h.session.pid)
        {
            account.terminated.push(h);
        }
    }
    if let Some(e) = &policed.failed {
        account.note_error(e);
    }
    policed.kept
}
