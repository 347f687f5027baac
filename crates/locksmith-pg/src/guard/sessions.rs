//! A sidecar that watches *another program's* sessions: every session
//! carrying one `application_name` (the one `locksmith run` gives a wrapped
//! migration tool through `PGAPPNAME`), opened since the watch started — or,
//! behind a connection pooler, whenever opened ([`Scope::Pooled`]).
//!
//! Where [`super::watchdog`] watches backends whose pids the guard knows, the
//! wrapped tool opens its own connections, so they are found by name. For
//! each of them, every poll:
//! - a lock wait that outlives the budget (plus a small grace) is cancelled
//!   on the server (`pg_cancel_backend`): the remedy that works even when the
//!   tool's driver ignored `lock_timeout` and its client is stuck;
//! - the sessions it waits for are recorded as [`Holder`]s (for the report)
//!   together with the lock it wanted (so a retry can look before it queues);
//! - under `terminate_idle_after`, those blockers that are idle in
//!   transaction at least that long are terminated.
//!
//! It must not touch anything else: never a session that does not block a
//! watched one, never an active query, never another database's session
//! unless the server names it as the holder of a shared catalog row (a
//! role's) a watched one waits for (termination re-checks all that in the
//! terminating statement), never a watched session except to cancel a lock
//! wait. Sessions opened before the
//! watch started are ignored even when they carry the name, so a reused
//! `PGAPPNAME` cannot turn the watchdog on an application's old sessions.
//!
//! Hot standbys given to [`SessionWatchdog::watch_replicas`] are looked at
//! before a retry too: their sessions holding a lock that conflicts with an
//! `ACCESS EXCLUSIVE` lock the tool waited for (the only mode the standby
//! replays), under the standby rule ([`replica::standby_waits_out`]) and the
//! terminate policy. The first try knows no tables, so it cannot look.
//!
//! If the sidecar connection is lost, the watch goes blind but the watched
//! sessions still carry `lock_timeout`: the server keeps bounding their waits.
//!
//! Behind a pooler (PgBouncer) the program's sessions are pooled backends,
//! opened long before the watch, and carry no `lock_timeout` (the pooler
//! refuses or drops `PGOPTIONS`): the watch is then the only bound on their
//! waits. They are found by name alone: PgBouncer sets a client's
//! `application_name` on the backend it links it to. Every cancel is one
//! conditional statement that re-checks, at the moment of signalling, the
//! pid, the name, the statement (`query_start`) and that it still waits on
//! a lock: a backend handed to a named client in between is not touched.
//!
//! What a name cannot cover, behind a pooler:
//! - a program that sets its own `application_name` (its connection
//!   string, or a driver that ignores `PGAPPNAME`, e.g. JDBC) is invisible;
//! - PgBouncer 1.18 leaves a backend's `application_name` as it is for a
//!   client that sent none: such a client, handed a backend the program
//!   used, runs under our name. So the caller gives each attempt a fresh
//!   name ([`SessionWatchdog::rename`]), and a wait queued only behind
//!   watched sessions (traffic queued behind the program's own lock
//!   request) is never cancelled; the rest of that window — an unnamed
//!   client's lock wait over the budget on such a backend while the program
//!   still runs — is a known limitation, said in `run`'s report.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::signal::{self, Condition, Sent, Signal};
use crate::Connection;
use locksmith_core::lock::LockMode;
use tokio::sync::watch;

use super::look::{self, Holder, Resolved};
use super::watchdog::{WaitClocks, POLL, WAIT_COLUMNS};
use super::{commits, replica};
use crate::snapshot::{SessionSummary, SUMMARY_COLUMNS};
use crate::{ConnectionSettings, Error};

/// The shortest lock wait this watch is sure to see (three polls): a wrapped
/// tool's try should wait at least this long, or a lost race may teach
/// nothing about who holds what.
pub const SHORTEST_SEEN_WAIT: Duration = Duration::from_millis(POLL.as_millis() as u64 * 3);

/// A lock a watched session waited for: what a retry must not queue for while
/// long-lived sessions hold a conflicting one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedLock {
    /// The relation, as the server names it.
    pub relation: String,
    /// Its oid.
    pub oid: u32,
    /// The mode wanted.
    pub mode: LockMode,
}

/// Which sessions carrying the name are the program's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Those opened since the watch started (a direct connection: the
    /// program opens its own backends, and an older session reusing the name
    /// is someone else's).
    OpenedSinceStart,
    /// All of them, whenever opened: behind a pooler the program's backends
    /// are pooled ones, opened before it ran.
    Pooled,
}

/// A statement of a watched session that the watch cancelled for waiting on
/// a lock longer than the budget.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CancelledWait {
    /// The backend it ran on.
    pub pid: i32,
    /// The statement, as the server showed it.
    pub query: String,
    /// How long it had waited for its lock when cancelled.
    pub waited_ms: u64,
    /// The sessions it waited for, as seen just before the cancel.
    pub blockers: Vec<Holder>,
}

/// What the watchdog saw since the last [`SessionWatchdog::take`].
#[derive(Debug, Clone, Default)]
pub struct SessionWatch {
    /// Pids whose lock waits were cancelled for outliving the budget.
    pub cancelled: Vec<i32>,
    /// Those cancels, each with its statement, wait and blockers.
    pub cancels: Vec<CancelledWait>,
    /// Sessions a watched session waited for; the latest view of each.
    pub blockers: Vec<Holder>,
    /// Blockers terminated under `terminate_idle_after`.
    pub terminated: Vec<Holder>,
    /// Locks the watched sessions waited for.
    pub wanted: Vec<WantedLock>,
    /// The longest continuous lock wait of one watched session.
    pub longest_wait: Duration,
    /// Most sessions queued behind one watched session at once.
    pub max_queued_behind: i64,
    /// Actions that failed (e.g. a termination refused for lack of privilege).
    pub errors: Vec<String>,
    /// Transaction ids (32-bit) the watched sessions held: see [`super::commits`].
    pub xids: Vec<i64>,
    /// Watched sessions stopped for holding a lock that blocks traffic longer
    /// than `max_hold` while other sessions waited for it: what they held.
    pub held_too_long: Vec<String>,
}

impl SessionWatch {
    /// Says, once, that the watch waited `waited` for a pooled connection.
    fn note_starved(&mut self, waited: Duration) {
        if !self.errors.iter().any(|e| e.starts_with(STARVED)) {
            self.errors.push(format!(
                "{STARVED} {} for answers through the pooler (its pooled server connections \
                 busy), so lock waits were not bounded at the budget meanwhile; give --direct-url \
                 so it never waits for the pool",
                locksmith_core::duration::human(waited)
            ));
        }
    }

    fn note_blocker(&mut self, h: Holder) {
        match self
            .blockers
            .iter_mut()
            .find(|b| b.session.pid == h.session.pid)
        {
            Some(b) => {
                // A wait that ended between reading its blockers and reading
                // their locks leaves the lock unknown: keep what an earlier
                // poll saw of it, with the session's newer state.
                let lock = (b.lock_type.clone(), b.mode.clone(), b.relation.clone());
                let forgets = h.lock_type.is_empty() && !lock.0.is_empty();
                *b = h;
                if forgets {
                    (b.lock_type, b.mode, b.relation) = lock;
                }
            }
            None => self.blockers.push(h),
        }
    }

    fn note_wanted(&mut self, w: WantedLock) {
        if !self.wanted.contains(&w) {
            self.wanted.push(w);
        }
    }
}

/// Who is in the way of what a wrapped tool waited for, as a look before a
/// retry finds them ([`SessionWatchdog::blocking_retry`]).
#[derive(Debug, Clone, Default)]
pub struct InTheWay {
    /// On the primary, now (after the terminate policy): what decides how
    /// long the next attempt may queue.
    pub now: Vec<Holder>,
    /// Those to wait out rather than race, the standbys' included.
    pub long_lived: Vec<Holder>,
}

/// A running watch over the sessions named `application_name`. Stop it with
/// [`SessionWatchdog::stop`]; dropping it stops the polling too.
pub struct SessionWatchdog {
    sidecar: Arc<Connection>,
    /// The name watched; [`Self::rename`] changes it between attempts.
    name: watch::Sender<String>,
    since_epoch: Option<f64>,
    terminate_idle_after: Option<Duration>,
    seen: Arc<Mutex<SessionWatch>>,
    /// Since when the poll in flight has waited for its answer.
    polling_since: Arc<Mutex<Option<std::time::Instant>>>,
    limits: Limits,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// Hot standbys watched too.
    standbys: Vec<replica::Replica>,
}

impl SessionWatchdog {
    /// Starts watching, over `sidecar` (opened as `locksmith-watchdog`, over
    /// the direct route when there is one), the sessions named
    /// `application_name` in `scope`.
    pub async fn start(
        sidecar: Connection,
        application_name: &str,
        scope: Scope,
        budget: Duration,
        terminate_idle_after: Option<Duration>,
        max_hold: Option<Duration>,
    ) -> Result<SessionWatchdog, Error> {
        let sidecar = Arc::new(sidecar);
        // The server's clock, so the "opened since" filter compares like with like.
        let since_epoch: Option<f64> = match scope {
            Scope::Pooled => None,
            Scope::OpenedSinceStart => Some(
                sidecar
                    .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
                    .await
                    .map_err(|e| Error::query("reading the server clock", e))?
                    .get(0),
            ),
        };
        let seen = Arc::new(Mutex::new(SessionWatch::default()));
        let (stop, stopped) = watch::channel(false);
        let (name, names) = watch::channel(application_name.to_string());
        let limits = Limits {
            budget,
            terminate_idle_after,
            max_hold,
            scope,
        };
        let polling_since = Arc::new(Mutex::new(None));
        let task = tokio::spawn(poll_loop(
            sidecar.clone(),
            names,
            since_epoch,
            limits,
            Shared {
                seen: seen.clone(),
                polling_since: polling_since.clone(),
            },
            stopped,
        ));
        Ok(SessionWatchdog {
            standbys: Vec::new(),
            sidecar,
            name,
            since_epoch,
            terminate_idle_after,
            seen,
            polling_since,
            limits,
            stop,
            task,
        })
    }

    /// Watches the sessions named `application_name` from now on instead:
    /// behind a pooler each attempt of the program gets its own name, so a
    /// backend an earlier attempt left under its name, since handed to a
    /// client that sent none, is no longer taken for the program's.
    pub fn rename(&self, application_name: &str) {
        self.name.send_replace(application_name.to_string());
    }

    /// What was seen since the last call; starts a fresh account.
    pub fn take(&self) -> SessionWatch {
        let mut seen = self.seen.lock().unwrap();
        // A poll still waiting for a pooled connection: the account must say
        // so now, not when (and if) its answer comes.
        let waiting = self.polling_since.lock().unwrap().map(|t| t.elapsed());
        if let Some(waited) = waiting.filter(|w| self.limits.starved(*w)) {
            seen.note_starved(waited);
        }
        std::mem::take(&mut *seen)
    }

    /// Looks at these hot standbys too before a retry. Fails when one cannot
    /// be reached or is not a standby.
    pub async fn watch_replicas(&mut self, replicas: &[ConnectionSettings]) -> Result<(), Error> {
        self.standbys.extend(replica::watch(replicas).await?);
        Ok(())
    }

    /// Long-lived sessions holding a lock that conflicts with one of `wanted`
    /// right now, after applying the terminate policy to them: who a retry
    /// would queue behind. Then each standby's sessions in the way of the
    /// `ACCESS EXCLUSIVE` locks among `wanted`, named with their server.
    /// Terminated sessions are recorded for [`take`](Self::take).
    pub async fn blocking_retry(
        &self,
        wanted: &[WantedLock],
        budget: Duration,
    ) -> Result<InTheWay, Error> {
        let targets: Vec<Resolved> = wanted
            .iter()
            .map(|w| Resolved {
                name: w.relation.clone(),
                lock_name: w.relation.clone(),
                oid: w.oid,
                lockable: true,
                mode: w.mode,
            })
            .collect();
        let holders = look::conflicting_holders(&self.sidecar, &targets).await?;
        let now = terminate_eligible(
            &self.sidecar,
            holders,
            self.terminate_idle_after,
            &self.seen,
        )
        .await;
        let mut long_lived: Vec<Holder> = now
            .iter()
            .filter(|h| h.is_long_lived(look::long_lived_after(budget)))
            .cloned()
            .collect();
        // Relation oids are the primary's on a physical standby.
        let replayed: Vec<Resolved> = targets
            .into_iter()
            .filter(|t| t.mode == LockMode::AccessExclusive)
            .collect();
        if replayed.is_empty() {
            return Ok(InTheWay { now, long_lived });
        }
        for replica::Replica {
            name: server,
            client,
        } in &self.standbys
        {
            let on_standby = |e: Error| Error::Replica {
                server: server.clone(),
                reason: e.to_string(),
            };
            let mut holders = look::conflicting_holders(client, &replayed)
                .await
                .map_err(on_standby)?;
            for h in &mut holders {
                h.server = Some(server.clone());
            }
            let holders =
                terminate_eligible(client, holders, self.terminate_idle_after, &self.seen).await;
            long_lived.extend(holders.into_iter().filter(replica::standby_waits_out));
        }
        Ok(InTheWay { now, long_lived })
    }

    /// A mark to take before running the tool: see [`Self::committed_since`].
    pub async fn mark(&self) -> Result<i64, Error> {
        commits::next_txid(&self.sidecar).await
    }

    /// What the tool committed since `mark`, if anything, judging by the
    /// transaction ids its sessions held (`xids`, from [`SessionWatch`]) and
    /// the catalog: a rerun would repeat it.
    pub async fn committed_since(&self, mark: i64, xids: &[i64]) -> Result<Option<String>, Error> {
        commits::committed_since(&self.sidecar, mark, xids).await
    }

    /// Cancels the current statement of every watched session (Ctrl-C,
    /// SIGTERM): a queued lock request is removed only by a cancel on the
    /// server, never by the client going away. Returns how many were signalled.
    pub async fn cancel_all(&self) -> Result<u64, Error> {
        self.cancel_where(false).await
    }

    /// Cancels the watched sessions that are waiting on a lock: after the
    /// wrapped program ended, such a backend would otherwise stay queued
    /// (and keep traffic queued behind it) until its wait ends.
    pub async fn cancel_lock_waits(&self) -> Result<u64, Error> {
        self.cancel_where(true).await
    }

    async fn cancel_where(&self, lock_waits_only: bool) -> Result<u64, Error> {
        let name = self.name.borrow().clone();
        signal::cancel_program(&self.sidecar, &name, self.since_epoch, lock_waits_only).await
    }

    /// Stops polling and returns what was seen since the last [`take`](Self::take).
    pub async fn stop(self) -> SessionWatch {
        let SessionWatchdog {
            stop, task, seen, ..
        } = self;
        let _ = stop.send(true);
        let _ = task.await;
        let seen = seen.lock().unwrap().clone();
        seen
    }
}

/// The `pg_stat_activity` filter for the scope: opened since `$2` (an epoch),
/// or any age when `$2` is null ([`Scope::Pooled`]).
const WATCHED_SINCE: &str =
    "($2::float8 IS NULL OR extract(epoch FROM backend_start)::float8 >= $2)";

/// How a watch's own connection waiting for the pool is reported.
const STARVED: &str = "the watch waited";

/// What the polling loop shares with its [`SessionWatchdog`].
struct Shared {
    seen: Arc<Mutex<SessionWatch>>,
    polling_since: Arc<Mutex<Option<std::time::Instant>>>,
}

/// One round of the polling loop, from its first query to its end. Through
/// a pooler a round longer than the budget means the watch's queries waited
/// for a pooled connection (or the machine is starved): the lock waits went
/// unbounded meanwhile, and the account says so when the round ends, or, if
/// it is still going, when [`SessionWatchdog::take`] reads the account.
struct Round<'a> {
    shared: &'a Shared,
    limits: Limits,
    started: std::time::Instant,
}

impl<'a> Round<'a> {
    fn start(shared: &'a Shared, limits: Limits) -> Round<'a> {
        let started = std::time::Instant::now();
        *shared.polling_since.lock().unwrap() = Some(started);
        Round {
            shared,
            limits,
            started,
        }
    }
}

impl Drop for Round<'_> {
    fn drop(&mut self) {
        // Under the account's lock, so a `take` sees the round going or its note.
        let mut seen = self.shared.seen.lock().unwrap();
        if self.limits.starved(self.started.elapsed()) {
            seen.note_starved(self.started.elapsed());
        }
        *self.shared.polling_since.lock().unwrap() = None;
    }
}

/// What the polling loop enforces.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// The longest a watched session may wait for a lock.
    budget: Duration,
    /// Terminate its blockers idle in transaction this long.
    terminate_idle_after: Option<Duration>,
    /// The longest it may hold a traffic-blocking lock others wait for.
    max_hold: Option<Duration>,
    /// Which sessions carrying the name are the program's.
    scope: Scope,
}

impl Limits {
    /// Whether a round of the watch that took `took` left waits unbounded
    /// for want of a pooled connection.
    fn starved(&self, took: Duration) -> bool {
        self.scope == Scope::Pooled && took > self.budget
    }
}

/// The polling loop: see the module documentation.
async fn poll_loop(
    sidecar: Arc<Connection>,
    names: watch::Receiver<String>,
    since_epoch: Option<f64>,
    limits: Limits,
    shared: Shared,
    mut stopped: watch::Receiver<bool>,
) {
    let seen = shared.seen.clone();
    let Limits {
        budget,
        terminate_idle_after,
        max_hold,
        scope,
    } = limits;
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
        let application_name = names.borrow().clone();
        // Until this round ends, however it ends: every query of it goes
        // over the sidecar, and through a pooler each may wait for the pool.
        let _round = Round::start(&shared, limits);
        // The watched sessions: whether each waits on a lock, for whom, and how many queue behind it.
        let rows = sidecar
            .query(
                &format!(
                    "SELECT {WAIT_COLUMNS}, a.backend_xid::text::bigint, a.query_start,
                            coalesce(a.query, '')
                     FROM pg_stat_activity a
                     WHERE a.application_name = $1 AND {}
                       AND a.pid <> pg_backend_pid()",
                    WATCHED_SINCE.replace("backend_start", "a.backend_start")
                ),
                &[&application_name, &since_epoch],
            )
            .await;
        let Ok(rows) = rows else { continue };
        let watched: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
        let mut still_waiting = Vec::new();
        for row in &rows {
            let pid: i32 = row.get(0);
            let waiting: bool = row.get(1);
            let behind: i64 = row.get(3);
            {
                let mut s = seen.lock().unwrap();
                s.max_queued_behind = s.max_queued_behind.max(behind);
                if let Some(xid) = row.get::<_, Option<i64>>(4) {
                    if !s.xids.contains(&xid) {
                        s.xids.push(xid);
                    }
                }
            }
            let query_start: Option<SystemTime> = row.get(5);
            if statements.insert(pid, query_start) != Some(query_start) {
                clocks.reset(pid);
            }
            if !waiting {
                continue;
            }
            still_waiting.push(pid);
            let waited = clocks.waiting(pid);
            {
                let mut s = seen.lock().unwrap();
                s.longest_wait = s.longest_wait.max(waited);
            }
            // Blockers outside the watched program: its own sessions waiting for each
            // other are its business, and are never candidates for termination.
            let all_blockers = row.get::<_, Option<Vec<i32>>>(2).unwrap_or_default();
            let blocking: Vec<i32> = all_blockers
                .iter()
                .copied()
                .filter(|b| !watched.contains(b))
                .collect();
            // Behind a pooler, a wait queued only behind the program's own
            // sessions may be a nameless client's request under our name
            // (see the module documentation): never cancelled.
            let cancellable =
                scope == Scope::OpenedSinceStart || all_blockers.is_empty() || !blocking.is_empty();
            let mut blockers = Vec::new();
            if let Ok((holders, wanted)) = describe_wait(&sidecar, pid, &blocking).await {
                {
                    let mut s = seen.lock().unwrap();
                    if let Some(w) = wanted {
                        s.note_wanted(w);
                    }
                    holders.iter().for_each(|h| s.note_blocker(h.clone()));
                }
                blockers = holders.clone();
                terminate_eligible(&sidecar, holders, terminate_idle_after, &seen).await;
            }
            if cancellable && WaitClocks::over_budget(waited, budget) {
                let target = WaitingStatement {
                    pid,
                    application_name: &application_name,
                    query_start,
                };
                if cancel_wait(&sidecar, &target).await {
                    let mut s = seen.lock().unwrap();
                    s.cancelled.push(pid);
                    s.cancels.push(CancelledWait {
                        pid,
                        query: row.get(6),
                        waited_ms: waited.as_millis() as u64,
                        blockers,
                    });
                }
                clocks.reset(pid);
            }
        }
        clocks.keep_only(&still_waiting);
        statements.retain(|pid, _| watched.contains(pid));
        if let Some(max_hold) = max_hold {
            bound_holds(
                &sidecar,
                &application_name,
                since_epoch,
                max_hold,
                &mut holds,
                &seen,
            )
            .await;
        }
    }
}

/// One statement of a watched backend, as a poll saw it waiting on a lock.
struct WaitingStatement<'a> {
    pid: i32,
    application_name: &'a str,
    query_start: Option<SystemTime>,
}

/// Cancels that statement on the server if it is still the one running there,
/// still under our name and still waiting on a lock — checked in the very
/// statement that signals, so a pooled backend handed to another client since
/// the poll is left alone. Whether it was signalled.
async fn cancel_wait(sidecar: &Connection, target: &WaitingStatement<'_>) -> bool {
    let Some(query_start) = target.query_start else {
        return false;
    };
    let still = Condition::WaitingStatement {
        application_name: target.application_name,
        query_start,
    };
    matches!(
        signal::send(sidecar, Signal::Cancel, target.pid, still).await,
        Ok(Sent::Signalled)
    )
}

/// When each watched session's transaction was first seen holding a lock
/// that blocks traffic, by pid and transaction start.
#[derive(Default)]
struct HoldClocks(std::collections::HashMap<(i32, i64), std::time::Instant>);

/// `--max-hold` for a program whose statements locksmith does not run: a
/// watched session that has held a lock blocking reads or writes (`SHARE` and
/// stronger, on a table, view or materialized view) for `max_hold` while
/// another program's session waits for it is stopped — its statement
/// cancelled, or, idle in its transaction, its connection ended (it is the
/// wrapped program's own session, never an application's). A lock nobody
/// waits for (a table the program just created) costs nothing and is left.
async fn bound_holds(
    sidecar: &Connection,
    application_name: &str,
    since_epoch: Option<f64>,
    max_hold: Duration,
    holds: &mut HoldClocks,
    seen: &Mutex<SessionWatch>,
) {
    // Watched sessions holding a traffic-blocking table lock, since when (their
    // transaction), what they hold, and whether someone outside waits for them.
    let rows = sidecar
        .query(
            "SELECT a.pid, (extract(epoch FROM a.xact_start) * 1000)::bigint, a.state,
                    string_agg(DISTINCT l.mode || ' on ' || l.relation::regclass::text, ', '),
                    EXISTS (SELECT 1 FROM pg_stat_activity w
                            WHERE w.wait_event_type = 'Lock' AND w.pid <> a.pid
                              AND w.application_name IS DISTINCT FROM $1
                              AND a.pid = ANY (pg_blocking_pids(w.pid)))
             FROM pg_stat_activity a
             JOIN pg_locks l ON l.pid = a.pid AND l.granted AND l.locktype = 'relation'
             JOIN pg_class c ON c.oid = l.relation AND c.relkind IN ('r', 'p', 'm', 'v')
             WHERE a.application_name = $1
               AND ($2::float8 IS NULL OR extract(epoch FROM a.backend_start)::float8 >= $2)
               AND a.pid <> pg_backend_pid() AND a.xact_start IS NOT NULL
               AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock', 'AccessExclusiveLock')
             GROUP BY a.pid, a.xact_start, a.state",
            &[&application_name, &since_epoch],
        )
        .await;
    let Ok(rows) = rows else { return };
    let now = std::time::Instant::now();
    let mut current = std::collections::HashMap::new();
    for row in &rows {
        let key: (i32, i64) = (row.get(0), row.get(1));
        let since = *holds.0.get(&key).unwrap_or(&now);
        current.insert(key, since);
        let blocking_someone: bool = row.get(4);
        if !blocking_someone || now.duration_since(since) < max_hold {
            continue;
        }
        let idle: bool = row
            .get::<_, Option<String>>(2)
            .is_some_and(|s| s.starts_with("idle in transaction"));
        // Still the same transaction under our name, checked as it is stopped
        // (a pooled backend may serve another client by now).
        let how = if idle {
            Signal::Terminate
        } else {
            Signal::Cancel
        };
        let still = Condition::NamedTransaction {
            application_name,
            xact_ms: key.1,
        };
        let stopped = matches!(
            signal::send(sidecar, how, key.0, still).await,
            Ok(Sent::Signalled)
        );
        if stopped {
            let held: String = row.get(3);
            seen.lock().unwrap().held_too_long.push(held);
            current.remove(&key);
        }
    }
    holds.0 = current;
}

/// The sessions `blocking` (pids) that `waiter` waits for, each with the lock
/// it holds (or is queued for) on the object `waiter` wants; and that object
/// when it is a relation of this database.
async fn describe_wait(
    client: &Connection,
    waiter: i32,
    blocking: &[i32],
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
    let holders = rows
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
    Ok((holders, wanted))
}

/// Applies the terminate policy to `holders`: those idle in transaction (or
/// aborted) at least `threshold`, client backends, are terminated (re-checked
/// in the terminating statement). Returns the ones left; records the rest.
async fn terminate_eligible(
    client: &Connection,
    holders: Vec<Holder>,
    threshold: Option<Duration>,
    seen: &Mutex<SessionWatch>,
) -> Vec<Holder> {
    let Some(threshold) = threshold else {
        return holders;
    };
    let mut kept = Vec::with_capacity(holders.len());
    for h in holders {
        if !h.may_terminate(threshold) {
            kept.push(h);
            continue;
        }
        match look::terminate_if_still_idle(client, h.session.pid, threshold, h.other_database)
            .await
        {
            Ok(true) => {
                let mut s = seen.lock().unwrap();
                if !s.terminated.iter().any(|t| t.session.pid == h.session.pid) {
                    s.terminated.push(h);
                }
            }
            Ok(false) => kept.push(h),
            Err(e) => {
                let mut s = seen.lock().unwrap();
                let text = e.to_string();
                if !s.errors.contains(&text) {
                    s.errors.push(text);
                }
                kept.push(h);
            }
        }
    }
    kept
}
