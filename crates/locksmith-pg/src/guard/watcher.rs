//! The session watch: a sidecar connection that polls the server while
//! watched sessions run, bounds their lock waits and their holds from
//! outside, and keeps an account of what it saw ([`Watch`]). The one watcher
//! of the workspace: the guard's attempts, `run`'s wrapped tool and its
//! warden all use it.
//!
//! Whose sessions are watched ([`Watched`]) is the only thing that differs:
//! - **the guard's own backend** ([`Backend`]), by pid and, when the attempt
//!   is a transaction, its start: behind a connection pooler a backend is
//!   ours only for one transaction, so only that transaction is looked at and
//!   signalled, never what the backend runs for someone else later;
//! - **a program's sessions** ([`Watched::Program`]): every session carrying
//!   one `application_name` (the one `locksmith run` gives a wrapped
//!   migration tool through `PGAPPNAME`) opened since the watch started, or,
//!   behind a pooler, whenever opened ([`Scope::Pooled`]). The wrapped tool
//!   opens its own connections, so they are found by name.
//!
//! The two differ only in the `SELECT` that finds the watched sessions, in
//! the condition each signal re-checks as it is sent (and how a hold is
//! stopped, below), and in naming blockers: the guard names its own in the
//! look before its next attempt (from [`Watch::waited_for`]), a program's
//! are described as [`Holder`]s while it waits. Every poll, for each watched session, one loop
//! (`watcher::poll`):
//! - a lock wait that outlives the budget (plus a small grace) is cancelled
//!   on the server (`pg_cancel_backend`): the remedy that works even when the
//!   client is stuck or its driver ignored `lock_timeout`;
//! - the sessions it waits for are recorded, with the lock it wanted (so a
//!   retry can look before it queues), and how many sessions queue behind it:
//!   the traffic it made wait;
//! - under `terminate_idle_after`, a program's blockers that are idle in
//!   transaction at least that long are terminated (the guard's terminate
//!   policy, `policy::terminate_idle`, which the guard applies in its look);
//!   one whose state this role may not see (no `pg_read_all_stats`) is left,
//!   and the account says so, naming the grant (the guard fails instead);
//! - under `max_hold`, the hold bound: a watched session holding a lock that
//!   other sessions wait for is stopped once it has held it for `max_hold`:
//!   a table lock that blocks reads or writes (`SHARE` and stronger, on a
//!   table, view or materialized view), counted from when it was first seen
//!   held, while someone outside waits for the session; and row locks (an
//!   `UPDATE` of many rows: `transactionid`/`tuple` waits), which no table
//!   lock shows, counted from when a writer was first seen waiting on them
//!   and started over when none waits. A lock nobody waits for (a table the
//!   program just created) costs nothing and is left. The guard's statement
//!   is cancelled and it rolls back itself; a program's is cancelled, or,
//!   idle in its transaction, its connection ended (it is the wrapped
//!   program's own session, never an application's). The guard also bounds
//!   its table locks with `statement_timeout`; `run` cannot set a tool's
//!   timeout per statement, so for it the watch is the bound.
//!
//! It must not touch anything else: never a session that does not block a
//! watched one, never an active query, never another database's session
//! unless the server names it as the holder of a shared catalog row (a
//! role's) a watched one waits for (termination re-checks all that in the
//! terminating statement), never a watched session except to cancel a lock
//! wait or to stop a hold past `max_hold`. Sessions opened before the watch
//! started are ignored even when they carry the name, so a reused
//! `PGAPPNAME` cannot turn the watch on an application's old sessions.
//!
//! Hot standbys given to [`Watcher::watch_replicas`] are looked at before a
//! retry too ([`Watcher::blocking_retry`]): their sessions holding a lock
//! that conflicts with an `ACCESS EXCLUSIVE` lock the tool waited for (the
//! only mode the standby replays), under the standby rule
//! ([`replica::standby_waits_out`]) and the terminate policy: the guard's
//! own standby look (`replica::in_the_way`). The first try knows no tables,
//! so it cannot look.
//!
//! If the sidecar connection is lost, the watch goes blind but the watched
//! sessions still carry `lock_timeout`: the server keeps bounding their waits.
//!
//! Behind a pooler (PgBouncer) a program's sessions are pooled backends,
//! opened long before the watch, and carry no `lock_timeout` (the pooler
//! refuses or drops `PGOPTIONS`): the watch is then the only bound on their
//! waits. They are found by name alone: PgBouncer sets a client's
//! `application_name` on the backend it links it to. Every cancel is one
//! conditional statement that re-checks, at the moment of signalling, the
//! pid, the name, the statement (`query_start`) and that it still waits on
//! a lock: a backend handed to a named client in between is not touched.
//! (The guard's backend is re-checked by pid and transaction start.) A watch
//! whose own queries wait for a pooled connection longer than the budget
//! leaves waits unbounded meanwhile, and its account says so once
//! ([`Watch::errors`]).
//!
//! What a name cannot cover, behind a pooler:
//! - a program that sets its own `application_name` (its connection
//!   string, or a driver that ignores `PGAPPNAME`, e.g. JDBC) is invisible;
//! - PgBouncer 1.18 leaves a backend's `application_name` as it is for a
//!   client that sent none: such a client, handed a backend the program
//!   used, runs under our name. So the caller gives each attempt a fresh
//!   name ([`Watcher::rename`]), and a wait queued only behind watched
//!   sessions (traffic queued behind the program's own lock request) is
//!   never cancelled; the rest of that window — an unnamed client's lock
//!   wait over the budget on such a backend while the program still runs —
//!   is a known limitation, said in `run`'s report.
//!
//! Every signal goes through [`crate::signal`]; this module decides whom to
//! signal, never how. `trace` watches no traffic: it observes the locks of
//! its own statement (`trace::waits`) and bounds its live run with the
//! guard's look and server-side timeouts.

mod poll;

use std::sync::Arc;
use std::time::Duration;

use crate::Connection;
use locksmith_core::lock::LockMode;
use tokio::sync::watch;

use super::look::{self, Holder, Resolved, WaitedFor};
use super::{commits, replica};
use crate::signal;
use crate::{ConnectionSettings, Error};

/// How often the watch looks. Small against the budget, light on the server:
/// one query per poll, plus, for a program's session waiting on a lock, one
/// describing whom it waits for.
pub(crate) const POLL: Duration = Duration::from_millis(25);

/// The shortest lock wait this watch is sure to see (three polls): a wrapped
/// tool's try should wait at least this long, or a lost race may teach
/// nothing about who holds what.
pub const SHORTEST_SEEN_WAIT: Duration = Duration::from_millis(POLL.as_millis() as u64 * 3);

/// A backend's transaction start as exact microseconds since the epoch, the
/// same expression on both sides of the comparison the watch makes with
/// [`Backend::xact`].
pub(crate) const XACT_MICROS: &str = "(extract(epoch FROM now()) * 1000000)::bigint";

/// The guard's own backend: its pid and, when the attempt is a transaction,
/// when that transaction started (`XACT_MICROS`): then only that
/// transaction is looked at and signalled, never what the backend runs for
/// someone else later (a pooled backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// The backend.
    pub pid: i32,
    /// Our transaction's start on it, in microseconds since the epoch.
    pub xact: Option<i64>,
}

/// Which sessions carrying a program's name are the program's.
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

/// Whose sessions a watch watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watched {
    /// The guard's own backend.
    Backend(Backend),
    /// Every session named `application_name` in `scope`.
    Program {
        /// The name; [`Watcher::rename`] changes it between attempts.
        application_name: String,
        /// Which of them are the program's.
        scope: Scope,
    },
}

/// What a watch enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The longest a watched session may wait for a lock.
    pub budget: Duration,
    /// Terminate a program's blockers idle in transaction this long.
    pub terminate_idle_after: Option<Duration>,
    /// The longest a watched session may hold a lock others wait for.
    pub max_hold: Option<Duration>,
}

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
    /// The sessions it waited for, as seen just before the cancel (a
    /// program's; the guard names its own in its look).
    pub blockers: Vec<Holder>,
}

/// What the watch saw: during one attempt of the guard, or since the last
/// [`Watcher::take`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Watch {
    /// The longest continuous lock wait of one watched session.
    pub longest_wait: Duration,
    /// Sessions a watched session waited for, each as first seen blocking it.
    pub waited_for: Vec<WaitedFor>,
    /// Most sessions queued behind one watched session at once.
    pub max_queued_behind: i64,
    /// Pids whose lock waits were cancelled for outliving the budget.
    pub cancelled: Vec<i32>,
    /// Those cancels, each with its statement, wait and blockers.
    pub cancels: Vec<CancelledWait>,
    /// Sessions a watched session waited for, described (a program's); the
    /// latest view of each.
    pub blockers: Vec<Holder>,
    /// Blockers terminated under `terminate_idle_after`.
    pub terminated: Vec<Holder>,
    /// Locks the watched sessions waited for (a program's).
    pub wanted: Vec<WantedLock>,
    /// Actions that failed (e.g. a termination refused for lack of privilege).
    pub errors: Vec<String>,
    /// Transaction ids (32-bit) the watched sessions held: see [`super::commits`].
    pub xids: Vec<i64>,
    /// Watched sessions stopped for holding a lock other sessions waited for
    /// longer than `max_hold`: what they held.
    pub held_too_long: Vec<String>,
    /// Whether one of those was row locks ([`ROW_LOCKS`]), which no table
    /// lock shows.
    pub held_rows: bool,
}

/// How [`Watch::held_too_long`] names row locks.
pub const ROW_LOCKS: &str = "row locks";

impl Watch {
    /// Whether the watch signalled a watched session: a lock wait over the
    /// budget cancelled, or a hold past `max_hold` stopped. A statement that
    /// failed with `57014` then was stopped by the watch.
    pub fn stopped_any(&self) -> bool {
        !self.cancelled.is_empty() || !self.held_too_long.is_empty()
    }

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

    fn note_waited_for(&mut self, w: WaitedFor) {
        if !self.waited_for.iter().any(|k| k.pid == w.pid) {
            self.waited_for.push(w);
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

    fn note_error(&mut self, e: &Error) {
        let text = e.to_string();
        if !self.errors.contains(&text) {
            self.errors.push(text);
        }
    }
}

/// How a watch's own connection waiting for the pool is reported.
const STARVED: &str = "the watch waited";

/// Who is in the way of what a wrapped tool waited for, as a look before a
/// retry finds them ([`Watcher::blocking_retry`]).
#[derive(Debug, Clone, Default)]
pub struct InTheWay {
    /// On the primary, now (after the terminate policy): what decides how
    /// long the next attempt may queue.
    pub now: Vec<Holder>,
    /// Those to wait out rather than race, the standbys' included.
    pub long_lived: Vec<Holder>,
}

/// A running watch. Stop it with [`Watcher::stop`]; dropping it stops the
/// polling too.
pub struct Watcher {
    sidecar: Arc<Connection>,
    /// A program's name ([`Self::rename`]); `None` for the guard's backend.
    name: Option<watch::Sender<String>>,
    /// A program's scope; `None` for the guard's backend.
    scope: Option<Scope>,
    /// The server's clock when a program's watch started
    /// ([`Scope::OpenedSinceStart`]).
    since_epoch: Option<f64>,
    limits: Limits,
    shared: poll::Shared,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    /// Hot standbys looked at before a retry.
    standbys: Vec<replica::Replica>,
}

impl Watcher {
    /// Starts watching `watched` over `sidecar` (a program's watch opens it
    /// as `locksmith-watchdog`, over the direct route when there is one).
    /// Watching a program in [`Scope::OpenedSinceStart`] reads the server's
    /// clock first, so the "opened since" filter compares like with like.
    pub async fn start(
        sidecar: impl Into<Arc<Connection>>,
        watched: Watched,
        limits: Limits,
    ) -> Result<Watcher, Error> {
        let sidecar = sidecar.into();
        let since_epoch: Option<f64> = match &watched {
            Watched::Program {
                scope: Scope::OpenedSinceStart,
                ..
            } => Some(
                sidecar
                    .query_one("SELECT extract(epoch FROM clock_timestamp())::float8", &[])
                    .await
                    .map_err(|e| Error::query("reading the server clock", e))?
                    .get(0),
            ),
            _ => None,
        };
        Ok(Watcher::spawn(sidecar, watched, since_epoch, limits))
    }

    /// Starts watching the guard's backend: [`start`](Self::start) without
    /// a round trip first.
    pub fn backend(sidecar: Arc<Connection>, backend: Backend, limits: Limits) -> Watcher {
        Watcher::spawn(sidecar, Watched::Backend(backend), None, limits)
    }

    fn spawn(
        sidecar: Arc<Connection>,
        watched: Watched,
        since_epoch: Option<f64>,
        limits: Limits,
    ) -> Watcher {
        let shared = poll::Shared::default();
        let (stop, stopped) = watch::channel(false);
        let (whom, name, scope) = match watched {
            Watched::Backend(b) => (poll::Whom::Backend(b), None, None),
            Watched::Program {
                application_name,
                scope,
            } => {
                let (name, names) = watch::channel(application_name);
                let whom = poll::Whom::Program {
                    names,
                    since_epoch,
                    scope,
                };
                (whom, Some(name), Some(scope))
            }
        };
        let task = tokio::spawn(poll::run(
            sidecar.clone(),
            whom,
            limits,
            shared.clone(),
            stopped,
        ));
        Watcher {
            sidecar,
            name,
            scope,
            since_epoch,
            limits,
            shared,
            stop,
            task,
            standbys: Vec::new(),
        }
    }

    /// Watches the sessions named `application_name` from now on instead:
    /// behind a pooler each attempt of the program gets its own name, so a
    /// backend an earlier attempt left under its name, since handed to a
    /// client that sent none, is no longer taken for the program's. (The
    /// guard's backend has no name: nothing changes.)
    pub fn rename(&self, application_name: &str) {
        if let Some(name) = &self.name {
            name.send_replace(application_name.to_string());
        }
    }

    /// Whether it has stopped a watched session for holding a lock too long
    /// (the guard: send no other statement of the attempt).
    pub fn held_too_long(&self) -> bool {
        !self.shared.seen.lock().unwrap().held_too_long.is_empty()
    }

    /// What was seen since the last call; starts a fresh account.
    pub fn take(&self) -> Watch {
        let mut seen = self.shared.seen.lock().unwrap();
        // A poll still waiting for a pooled connection: the account must say
        // so now, not when (and if) its answer comes.
        let waiting = self
            .shared
            .polling_since
            .lock()
            .unwrap()
            .map(|t| t.elapsed());
        if let Some(waited) = waiting.filter(|w| self.starved(*w)) {
            seen.note_starved(waited);
        }
        std::mem::take(&mut *seen)
    }

    /// Whether a round of the watch that took `took` left waits unbounded
    /// for want of a pooled connection.
    fn starved(&self, took: Duration) -> bool {
        self.scope == Some(Scope::Pooled) && took > self.limits.budget
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
        let terminate_idle_after = self.limits.terminate_idle_after;
        let seen = &self.shared.seen;
        let mut holders = look::conflicting_holders(&self.sidecar, &targets).await?;
        // Prepared transactions hold locks with no session: long-lived, never raced.
        holders.extend(look::prepared_holders(&self.sidecar, &targets, &[]).await?);
        let now =
            poll::terminate_eligible(&self.sidecar, holders, terminate_idle_after, seen).await;
        let mut long_lived: Vec<Holder> = now
            .iter()
            .filter(|h| h.is_long_lived(look::long_lived_after(budget)))
            .cloned()
            .collect();
        let standbys = replica::in_the_way(&self.standbys, &targets, terminate_idle_after).await?;
        let standbys = poll::record_policed(seen, standbys);
        long_lived.extend(standbys.into_iter().filter(replica::standby_waits_out));
        Ok(InTheWay { now, long_lived })
    }

    /// A mark to take before running the tool: see [`Self::committed_since`].
    pub async fn mark(&self) -> Result<i64, Error> {
        commits::next_txid(&self.sidecar).await
    }

    /// What the tool committed since `mark`, if anything, judging by the
    /// transaction ids its sessions held (`xids`, from [`Watch`]) and the
    /// catalog: a rerun would repeat it.
    pub async fn committed_since(&self, mark: i64, xids: &[i64]) -> Result<Option<String>, Error> {
        commits::committed_since(&self.sidecar, mark, xids).await
    }

    /// Cancels the current statement of every session of the watched program
    /// (Ctrl-C, SIGTERM): a queued lock request is removed only by a cancel
    /// on the server, never by the client going away. Returns how many were
    /// signalled. (The guard cancels its own backend through its connection.)
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
        let Some(name) = &self.name else {
            return Ok(0);
        };
        let name = name.borrow().clone();
        signal::cancel_program(&self.sidecar, &name, self.since_epoch, lock_waits_only).await
    }

    /// Stops polling and returns what was seen since the last [`take`](Self::take).
    pub async fn stop(self) -> Watch {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let seen = self.shared.seen.lock().unwrap().clone();
        seen
    }
}
