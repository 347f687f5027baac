//! The guard: run DDL without ever making traffic wait longer than a budget.
//!
//! Each unit of work (a migration in one transaction, or one statement that
//! cannot run in a transaction) goes through the same loop:
//! 1. **Look** ([`look`]): find sessions holding locks that conflict with the
//!    plan (its relations and their partitions; before a concurrent build,
//!    old snapshots; and whoever an earlier attempt waited for, on any lock).
//!    Long-lived ones (idle in transaction, or in one, for at least
//!    [`look::long_lived_after`] the budget) are waited out *without
//!    queueing*, with backoff — or, under `terminate_idle_after`, terminated
//!    if idle in transaction that long. Younger ones are raced, as writers are
//!    (on the primary only: a hot standby's are all waited out, see [`replica`]).
//! 2. **Attempt**: `BEGIN`, `lock_timeout` and `statement_timeout` set on the
//!    server (so it gives up by itself if we die), the caller's `start`
//!    statement if any, the backend pid and transaction start read in the
//!    same round trip (behind a pooler the backend changes per transaction),
//!    then `LOCK … NOWAIT` in a fixed order, the statements, the history row,
//!    `COMMIT`. After a few NOWAIT
//!    losses to a stream of short transactions, the `LOCK` waits at most the
//!    budget instead. A [`watcher`] on a second connection cancels any lock
//!    wait that outlives the budget, and only while that backend still runs
//!    the attempt's own transaction.
//! 3. **Retry** on `55P03` with backoff and jitter until `max_attempts` or
//!    the deadline, then give up naming the blockers. Never an unbounded wait:
//!    every sleep ends at the deadline, and so does an attempt in flight. The
//!    decisions are [`retry`]'s, shared with `locksmith run`.
//!
//! Interrupts (Ctrl-C, SIGTERM) and the deadline cancel the in-flight
//! statement on the server and roll back, so no lock request of ours stays
//! queued. The guard knows nothing about files or history tables: callers
//! pass SQL and the locks it needs.
//!
//! Holding is bounded too: from the moment its locks are taken, a unit's
//! statements run with what is left of `max_hold` as their server-side
//! `statement_timeout` when those locks block traffic ([`GuardError::HoldExceeded`]).
//! Hot standbys given to [`Guard::watch_replicas`] are looked at as well
//! ([`replica`]).
//!
//! For a migration tool that keeps its own connections (`locksmith run`),
//! the same [`watcher`] finds its sessions by `application_name` instead: the
//! same cancel-over-budget and hold bound, and the terminate policy, applied
//! from outside.
//!
//! Embedding it in your own runner (a sqlx or refinery migrator, a deploy
//! job): analyse the SQL, hand the guard the steps, record your history row
//! in the same transaction.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use locksmith_core::analysis::analyze;
//! use locksmith_pg::guard::{Guard, GuardError, GuardPolicy, Step};
//! use locksmith_pg::ConnectionSettings;
//!
//! let settings = ConnectionSettings::resolve(None)?; // DATABASE_URL, else PG*
//! // Keep the sender: a dropped one means "never interrupted".
//! let (_interrupt, interrupts) = tokio::sync::watch::channel(None);
//! let mut guard = Guard::connect(&settings, GuardPolicy::default(), interrupts).await?;
//! let sql = "ALTER TABLE users ADD COLUMN nickname text";
//! let steps: Vec<Step> = analyze(sql, 18)?.iter().map(Step::from).collect();
//! let record = |_attempts: u32, _waited: std::time::Duration| {
//!     "INSERT INTO my_history (version) VALUES (42)".to_string()
//! };
//! match guard.run_transaction(&steps, Some(&record)).await {
//!     Ok(attempts) => println!("applied after {attempts} attempt(s)"),
//!     Err(GuardError::Blocked { holders, .. }) => {
//!         for h in holders {
//!             eprintln!("blocked by pid {} ({})", h.session.pid, h.session.application_name);
//!         }
//!     }
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok(()) }
//! ```

mod attempt;
pub mod backoff;
pub mod commits;
mod index_build;
pub mod look;
mod policy;
pub mod replica;
pub mod retry;
pub mod watcher;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Connection;
use locksmith_core::analysis::{Statement, StatementKind};
use serde::Serialize;
use tokio::sync::watch;
use tokio_postgres::CancelToken;

use crate::connection::StatementPooling;
use crate::{ConnectionSettings, Error, Pooler};
pub use look::Holder;
use look::Resolved;
use retry::{Lost, Retry};
use std::ops::ControlFlow::{self, Break, Continue};
use watcher::Watch;

/// How patient the guard is, and what it may do to blockers.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardPolicy {
    /// The most any one lock attempt may make traffic wait.
    pub lock_timeout: Duration,
    /// Lock attempts before giving up.
    pub max_attempts: u32,
    /// Total time before giving up.
    pub deadline: Duration,
    /// Terminate blockers idle in transaction at least this long (off when `None`).
    pub terminate_idle_after: Option<Duration>,
    /// The most a unit of work may hold a lock that blocks traffic (reads or
    /// writes), from the moment it has its locks until it commits. Enforced by
    /// the server through `statement_timeout`, so a rewrite or an index build
    /// that would take longer is stopped and rolled back.
    pub max_hold: Duration,
}

impl Default for GuardPolicy {
    /// Chosen from the benchmark (docs/benchmarks.md): a 200 ms budget keeps
    /// the story's traffic under 500 ms even when a fallback attempt queues;
    /// three minutes is long enough to outlast a burst, short enough for a deploy.
    fn default() -> Self {
        GuardPolicy {
            lock_timeout: Duration::from_millis(200),
            max_attempts: 60,
            deadline: Duration::from_secs(180),
            terminate_idle_after: None,
            max_hold: Duration::from_secs(2),
        }
    }
}

/// One statement and the table locks it needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The SQL to run.
    pub sql: String,
    /// Relations and the mode each needs (the strongest, per relation).
    pub locks: Vec<RelationLock>,
    /// The index a `CREATE INDEX CONCURRENTLY` builds: dropped before a retry if
    /// a failed build left it INVALID.
    pub builds_index: Option<String>,
}

/// A relation and the lock mode a statement needs on it: the analysis' own type.
pub use locksmith_core::analysis::RelationLock;

impl From<&Statement> for Step {
    /// The guard's work order for an analysed statement: its SQL, the locks the
    /// analysis says it takes, and the index a concurrent build would leave behind.
    fn from(s: &Statement) -> Step {
        let builds_index = match &s.kind {
            StatementKind::CreateIndex {
                name: Some(name),
                concurrently: true,
                ..
            } => Some(name.clone()),
            _ => None,
        };
        Step {
            sql: s.sql.clone(),
            locks: s.locks.clone(),
            builds_index,
        }
    }
}

/// A signal that asks the guard to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Interrupt {
    /// Ctrl-C.
    Interrupt,
    /// SIGTERM.
    Terminate,
}

/// What happened, for live progress lines.
#[derive(Debug)]
pub enum Event<'a> {
    /// Long-lived sessions hold conflicting locks; waiting without queueing.
    Waiting {
        /// Who.
        holders: &'a [Holder],
        /// How long until the next look.
        next_look: Duration,
    },
    /// A blocker was terminated under the policy.
    Terminated(&'a Holder),
    /// A lock attempt starts.
    Attempt {
        /// 1-based attempt number.
        number: u32,
        /// `LOCK … NOWAIT` (true) or `LOCK` bounded by `lock_timeout`.
        nowait: bool,
    },
    /// An attempt lost the race for its locks and was rolled back.
    LostRace {
        /// Which attempt.
        number: u32,
        /// What the watchdog saw.
        watch: &'a Watch,
    },
    /// An INVALID index left by a failed concurrent build was dropped.
    DroppedInvalidIndex(&'a str),
    /// The index a concurrent build makes already exists (an earlier run
    /// finished it but was stopped before recording it): the step is done.
    IndexAlreadyBuilt(&'a str),
    /// A step of an online plan starts (its attempts follow), or is skipped
    /// because an interrupted run already did it.
    OnlineStep {
        /// 1-based.
        number: usize,
        /// Steps in the plan.
        of: usize,
        /// Its first statement.
        sql: &'a str,
        /// Already done: not run again.
        skipped: bool,
    },
    /// A batch of a batched `UPDATE` (or backfill) committed, or the
    /// batches are paused.
    Backfill {
        /// The table.
        table: &'a str,
        /// Rows (keys) covered so far, by this run and those before it.
        rows_done: i64,
        /// The table's rows as the planner counts them (an estimate; at least `rows_done`).
        rows_total: i64,
        /// Rows per second in this run so far.
        rows_per_second: f64,
        /// Why the batches wait before the next one, when they do.
        paused: Option<&'a str>,
    },
}

/// What the guard did, across everything it ran.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GuardReport {
    /// Lock attempts made.
    pub attempts: u32,
    /// Sessions terminated under the policy.
    pub terminated: Vec<Holder>,
    /// The blockers seen last while waiting (named when giving up).
    pub blockers: Vec<Holder>,
    /// Most sessions that queued behind one of our lock requests.
    pub max_queued_behind: i64,
    /// Longest lock wait of ours.
    pub longest_wait_ms: u64,
    /// Behind a connection pooler: its address, as the server sees the
    /// pooler's connections (`inet_client_addr()` of ours). Sessions from
    /// there are the pooler's; reports label them ([`GuardReport::labelled`]).
    #[serde(skip)]
    pub pooler_addr: Option<String>,
}

impl GuardReport {
    /// `holders` with the pooler's client address labelled `via pooler`.
    pub fn labelled(&self, holders: &[Holder]) -> Vec<Holder> {
        let mut holders = holders.to_vec();
        if let Some(addr) = self.pooler_addr.as_deref() {
            for h in &mut holders {
                h.session.via_pooler = h.session.client_addr.as_deref() == Some(addr);
            }
        }
        holders
    }
}

/// Behind a pooler, the pooler's address as the server sees it: what our
/// own pooled backend reports as its client.
pub async fn pooler_addr(client: &Connection) -> Result<Option<String>, Error> {
    if client.pooler().is_none() {
        return Ok(None);
    }
    client
        .query_one("SELECT host(inet_client_addr())", &[])
        .await
        .map(|row| row.get(0))
        .map_err(|e| Error::query("reading the pooler's address", e))
}

/// Why a unit of work did not complete.
#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    /// Still blocked when attempts or the deadline ran out.
    #[error("gave up: {reason}")]
    Blocked {
        /// Attempts exhausted, or deadline reached.
        reason: String,
        /// Who held conflicting locks when we gave up.
        holders: Vec<Holder>,
    },
    /// Ctrl-C or SIGTERM: the statement was cancelled on the server and rolled back.
    #[error(
        "interrupted by {}; the in-flight statement was cancelled on the server and rolled back", match .0 { Interrupt::Interrupt => "Ctrl-C", Interrupt::Terminate => "SIGTERM" }
    )]
    Interrupted(Interrupt),
    /// A statement held a lock that blocks traffic for longer than `max_hold`;
    /// the server stopped it and the transaction was rolled back.
    #[error(
        "a statement held {} for longer than --max-hold {}; the server stopped it and rolled back",
        describe_locks(.locks),
        locksmith_core::duration::human(*.max_hold)
    )]
    HoldExceeded {
        /// 0-based index of the statement among the unit's steps.
        step: usize,
        /// The traffic-blocking locks the unit held.
        locks: Vec<RelationLock>,
        /// The budget that was exceeded.
        max_hold: Duration,
    },
    /// A statement failed for another reason; the transaction was rolled back.
    #[error("{0}")]
    Failed(Error),
}

/// Why the guard could not start: nothing ran yet.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server could not be reached, or a first query failed.
    #[error(transparent)]
    Failed(#[from] Error),
    /// A statement pooler is in between and no direct route was given.
    #[error(transparent)]
    StatementPooling(#[from] StatementPooling),
}

impl ConnectError {
    /// What kind of failure this is: a statement pooler is a route the
    /// command cannot run over (bad input), refused before anything ran.
    pub fn kind(&self) -> crate::ErrorKind {
        match self {
            ConnectError::Failed(e) => e.kind(),
            ConnectError::StatementPooling(_) => crate::ErrorKind::BadInput,
        }
    }
}

/// "ACCESS EXCLUSIVE on t, SHARE on u", for messages.
fn describe_locks(locks: &[RelationLock]) -> String {
    locks
        .iter()
        .map(|l| format!("{} on {}", l.mode.sql_name(), l.relation))
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<Error> for GuardError {
    fn from(e: Error) -> Self {
        GuardError::Failed(e)
    }
}

/// Opens a connection that can run transaction blocks, for what `needs`
/// them (named in the refusal): to the target; or, when a statement pooler
/// is in between, over the direct route if one was given (checked to reach
/// the same server), else [`ConnectError::StatementPooling`], before anything
/// ran. Through a statement pooler a migration would be cut at its first
/// `BEGIN`, after whatever ran before it (terminations included).
pub async fn connect_for_transactions(
    settings: &ConnectionSettings,
    needs: &str,
) -> Result<Connection, ConnectError> {
    let target = settings.connect().await?;
    match target.require_transactions(needs, true) {
        Ok(()) => Ok(target),
        Err(_) if settings.has_direct() => Ok(settings.connect_direct(&target).await?),
        Err(refused) => Err(refused.into()),
    }
}

/// The direct connection for statements outside a transaction block.
struct Outside {
    conn: Connection,
    pid: i32,
    cancel: CancelToken,
}

/// How one attempt ended.
enum Attempt {
    Done,
    LostRace(Box<Watch>),
    /// The caller's `start` statement found its lock taken (`55P03`) before
    /// any table lock was asked for: back off as after a lost race, without
    /// counting it as a `NOWAIT` loss.
    Busy,
}

/// NOWAIT attempts lost in a row before the guard lets `LOCK` wait up to the budget.
const NOWAIT_TRIES: u32 = 5;

/// The least time the first attempt of a unit gets, even when the deadline
/// has passed (e.g. `--deadline 0s`): "try once, never wait".
const FIRST_ATTEMPT_FLOOR: Duration = Duration::from_secs(1);

/// The guard over one server; owns the migration connection and the sidecar.
pub struct Guard {
    settings: ConnectionSettings,
    client: Connection,
    cancel: CancelToken,
    pid: i32,
    /// Behind a pooler with a direct route (`--direct-url`): the connection
    /// that runs statements that cannot run in a transaction block.
    outside: Option<Outside>,
    sidecar: Arc<Connection>,
    policy: GuardPolicy,
    started: Instant,
    /// When the attempt in flight must stop (the deadline, or the first attempt's floor).
    attempt_until: Instant,
    interrupt: watch::Receiver<Option<Interrupt>>,
    on_event: Box<dyn FnMut(Event<'_>) + Send + Sync>,
    /// Hot standbys watched too (`--replica`).
    replicas: Vec<replica::Replica>,
    /// Say nothing of first attempts (batches: one line each would bury the rest).
    quiet_first_attempts: bool,
    /// When backfills wait between batches.
    throttle: crate::online::Throttle,
    /// What the guard did so far.
    pub report: GuardReport,
}

impl Guard {
    /// Opens the migration connection and the sidecar (and, behind a pooler
    /// with a direct route, a direct connection for statements that cannot
    /// run in a transaction block). The deadline starts now. Behind a
    /// statement pooler everything takes the direct route, and without one
    /// it refuses ([`ConnectError::StatementPooling`]) before touching anything.
    pub async fn connect(
        settings: &ConnectionSettings,
        policy: GuardPolicy,
        interrupt: watch::Receiver<Option<Interrupt>>,
    ) -> Result<Guard, ConnectError> {
        let client = connect_for_transactions(
            settings,
            "locksmith runs each migration in a transaction that takes its locks",
        )
        .await?;
        // Straight to the server with --direct-url: a pooler would hand the
        // sidecar's statements to any backend, and it must never queue behind us.
        let sidecar = settings
            .with_application_name("locksmith-watchdog")
            .connect_direct(&client)
            .await?;
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(|e| Error::query("reading our backend pid", e))?
            .get(0);
        // A statement outside a transaction block has no transaction to pin
        // it to one pooled backend (nor SET LOCAL to bound it): it goes
        // straight to the server when it can.
        let outside = match client.pooler().is_some() && settings.has_direct() {
            true => {
                let conn = settings.connect_direct(&client).await?;
                let pid = conn
                    .backend_pid()
                    .await
                    .map_err(|e| Error::query("reading our direct backend pid", e))?;
                Some(Outside {
                    cancel: conn.cancel_token(),
                    conn,
                    pid,
                })
            }
            false => None,
        };
        let report = GuardReport {
            pooler_addr: pooler_addr(&client).await?,
            ..GuardReport::default()
        };
        Ok(Guard {
            cancel: client.cancel_token(),
            settings: settings.clone(),
            client,
            pid,
            outside,
            sidecar: Arc::new(sidecar),
            policy,
            started: Instant::now(),
            attempt_until: Instant::now(),
            interrupt,
            on_event: Box::new(|_| {}),
            replicas: Vec::new(),
            quiet_first_attempts: false,
            throttle: crate::online::Throttle::default(),
            report,
        })
    }

    /// Receives progress events.
    pub fn on_event(&mut self, f: impl FnMut(Event<'_>) + Send + Sync + 'static) {
        self.on_event = Box::new(f);
    }

    /// Hands an event of work the guard runs for a caller (an online step)
    /// to the same receiver as its own.
    pub(crate) fn emit(&mut self, event: Event<'_>) {
        (self.on_event)(event);
    }

    /// Starts the deadline over: an online step's wait for its locks is
    /// bounded from that step's start, not from the run's (a long fill
    /// before it is running work, which the deadline never bounds).
    pub(crate) fn restart_deadline(&mut self) {
        self.started = Instant::now();
    }

    /// When backfills wait between batches (`--max-lag`, `--max-active`, `--pause-file`).
    pub fn set_throttle(&mut self, throttle: crate::online::Throttle) {
        self.throttle = throttle;
    }

    /// When backfills wait between batches.
    pub(crate) fn throttle(&self) -> &crate::online::Throttle {
        &self.throttle
    }

    /// The hot standbys watched.
    pub(crate) fn replicas(&self) -> &[replica::Replica] {
        &self.replicas
    }

    /// Waits `d` between two units of work (a paused backfill), however far
    /// the deadline is, which bounds waiting for locks; an interrupt ends it.
    pub(crate) async fn pause(&mut self, d: Duration) -> Result<(), GuardError> {
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            signal = next_interrupt(&mut self.interrupt) => Err(GuardError::Interrupted(signal)),
        }
    }

    /// Whether first attempts go unreported (a batched run reports its
    /// batches instead); lost races and retries are always reported.
    pub(crate) fn quiet_first_attempts(&mut self, quiet: bool) {
        self.quiet_first_attempts = quiet;
    }

    /// The migration connection, for the caller's own bookkeeping queries.
    pub fn client(&self) -> &Connection {
        &self.client
    }

    /// The migration connection's backend pid when it connected (behind a
    /// pooler, each attempt reads its own after `BEGIN`).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The pooler between the migration connection and the server, if any.
    pub fn pooler(&self) -> Option<Pooler> {
        self.client.pooler()
    }

    /// Whether statements that cannot run in a transaction block go straight
    /// to the server (no pooler, or a direct route given).
    pub fn runs_outside_directly(&self) -> bool {
        self.client.pooler().is_none() || self.outside.is_some()
    }

    /// A connection straight to the server that stays one session: the
    /// migration connection without a pooler, the direct route behind one,
    /// `None` behind a pooler without a direct route. For session-level
    /// bookkeeping such as the runner lock.
    pub fn session_client(&self) -> Option<&Connection> {
        match (&self.outside, self.client.pooler()) {
            (Some(o), _) => Some(&o.conn),
            (None, None) => Some(&self.client),
            (None, Some(_)) => None,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &GuardPolicy {
        &self.policy
    }

    /// Sessions holding locks that conflict with `targets` right now (for `--dry-run`).
    pub async fn holders_for(&self, targets: &[RelationLock]) -> Result<Vec<Holder>, Error> {
        look::holders(&self.sidecar, targets).await
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.policy.deadline.saturating_sub(self.started.elapsed())
    }

    /// Runs `steps` in one transaction; `finish(attempt, elapsed)` returns SQL
    /// run last in the same transaction (e.g. the history row).
    pub async fn run_transaction(
        &mut self,
        steps: &[Step],
        finish: Option<&(dyn Fn(u32, Duration) -> String + Sync)>,
    ) -> Result<u32, GuardError> {
        self.run_unit(steps, true, None, finish).await
    }

    /// Like [`run_transaction`](Self::run_transaction), with `start` run
    /// first in the same transaction, before any table lock (e.g. a
    /// transaction-level runner lock and a history check, behind a pooler).
    /// A `start` that fails with `55P03` (lock not available) is a lost race:
    /// retried with backoff under the deadline. Any other error fails the unit.
    pub async fn run_transaction_started(
        &mut self,
        steps: &[Step],
        start: &str,
        finish: Option<&(dyn Fn(u32, Duration) -> String + Sync)>,
    ) -> Result<u32, GuardError> {
        self.run_unit(steps, true, Some(start), finish).await
    }

    /// Runs one statement that cannot run inside a transaction block, guarded the same way.
    pub async fn run_outside_transaction(&mut self, step: &Step) -> Result<u32, GuardError> {
        self.run_unit(std::slice::from_ref(step), false, None, None)
            .await
    }

    async fn run_unit(
        &mut self,
        steps: &[Step],
        in_transaction: bool,
        start: Option<&str>,
        finish: Option<&(dyn Fn(u32, Duration) -> String + Sync)>,
    ) -> Result<u32, GuardError> {
        let mut retry = Retry::new(&self.policy, self.started);
        let mut unit = Unit {
            plan: policy::Plan::new(steps, in_transaction, self.policy.lock_timeout),
            guard: self,
            steps,
            in_transaction,
            start,
            finish,
            started: Instant::now(),
            nowait_losses: 0,
            resolved: Vec::new(),
            holders: Vec::new(),
            long_lived: Vec::new(),
        };
        retry::drive(&mut retry, &mut unit).await
    }

    /// Sleeps `d`, never past the deadline; an interrupt ends it early.
    async fn sleep(&mut self, d: Duration) -> Result<(), GuardError> {
        let d = d.min(self.remaining());
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            signal = next_interrupt(&mut self.interrupt) => Err(GuardError::Interrupted(signal)),
        }
    }
}

/// Runs `work` unless an interrupt arrives first, which is then returned
/// and `work` dropped: for waits that leave nothing queued on the server
/// when abandoned (connecting, polling for the runner lock). A closed
/// channel means nobody can interrupt any more: `work` then runs to its end.
pub async fn unless_interrupted<T>(
    interrupt: &watch::Receiver<Option<Interrupt>>,
    work: impl std::future::Future<Output = T>,
) -> Result<T, Interrupt> {
    tokio::pin!(work);
    let mut interrupt = interrupt.clone();
    let signal = tokio::select! {
        done = &mut work => return Ok(done),
        signal = interrupt.wait_for(Option::is_some) => signal.ok().and_then(|s| *s),
    };
    match signal {
        Some(signal) => Err(signal),
        None => Ok(work.await),
    }
}

/// Resolves when an interrupt arrives (at once if one already has). A closed
/// channel means nobody can interrupt any more: that never resolves.
pub async fn next_interrupt(rx: &mut watch::Receiver<Option<Interrupt>>) -> Interrupt {
    let signal = rx.wait_for(|s| s.is_some()).await.ok().and_then(|s| *s);
    match signal {
        Some(signal) => signal,
        None => std::future::pending().await,
    }
}

/// One guarded transaction (or statement outside one) as a [`retry::Unit`]:
/// looking is the guard's look, an attempt is one transaction.
struct Unit<'a> {
    guard: &'a mut Guard,
    steps: &'a [Step],
    in_transaction: bool,
    start: Option<&'a str>,
    finish: Option<&'a (dyn Fn(u32, Duration) -> String + Sync)>,
    /// When the unit began, for `finish`'s duration.
    started: Instant,
    plan: policy::Plan,
    /// Attempts lost to `NOWAIT`, before the ones that queue briefly.
    nowait_losses: u32,
    /// What the last look resolved and found.
    resolved: Vec<Resolved>,
    holders: Vec<Holder>,
    long_lived: Vec<Holder>,
}

impl retry::Unit for Unit<'_> {
    type End = Result<u32, GuardError>;

    async fn look(&mut self) -> ControlFlow<Self::End, Vec<Holder>> {
        if let Some(signal) = *self.guard.interrupt.borrow() {
            return Break(Err(GuardError::Interrupted(signal)));
        }
        let (resolved, holders) = match self.guard.look(&mut self.plan).await {
            Ok(looked) => looked,
            Err(e) => return Break(Err(e)),
        };
        self.long_lived = holders
            .iter()
            .filter(|h| self.plan.is_long_lived(h))
            .cloned()
            .collect();
        self.resolved = resolved;
        self.holders = holders;
        Continue(self.long_lived.clone())
    }

    fn waiting(&mut self, holders: Vec<Holder>, wait: Duration) {
        (self.guard.on_event)(Event::Waiting {
            holders: &holders,
            next_look: wait,
        });
        self.guard.report.blockers = holders;
    }

    async fn attempt(&mut self, number: u32, remaining: Duration) -> ControlFlow<Self::End, Lost> {
        let guard = &mut *self.guard;
        guard.report.attempts += 1;
        // The first attempt of a unit may run a moment past the deadline;
        // later ones stop at it.
        let budget = match number {
            1 => remaining.max(FIRST_ATTEMPT_FLOOR),
            _ => remaining,
        };
        guard.attempt_until = Instant::now() + budget;
        let nowait = self.in_transaction && self.nowait_losses < NOWAIT_TRIES;
        let lock_wait = (!nowait).then(|| {
            let fallback = number.saturating_sub(self.nowait_losses + 1);
            policy::fallback_lock_wait(fallback, &self.holders, guard.policy.lock_timeout)
        });
        if number > 1 || !guard.quiet_first_attempts {
            (guard.on_event)(Event::Attempt { number, nowait });
        }
        let outcome = if self.in_transaction {
            let finish_sql = self.finish.map(|f| f(number, self.started.elapsed()));
            let sql = attempt::Sql {
                start: self.start,
                finish: finish_sql.as_deref(),
            };
            guard
                .attempt_transaction(self.steps, &self.resolved, lock_wait, sql)
                .await
        } else {
            guard.attempt_single(&self.steps[0]).await
        };
        match outcome {
            Err(e) => Break(Err(e)),
            Ok(Attempt::Done) => {
                guard.report.blockers.clear();
                Break(Ok(number))
            }
            Ok(Attempt::Busy) => {
                (guard.on_event)(Event::LostRace {
                    number,
                    watch: &Watch::default(),
                });
                Continue(Lost::default())
            }
            Ok(Attempt::LostRace(watch)) => {
                if nowait {
                    self.nowait_losses += 1;
                }
                (guard.on_event)(Event::LostRace {
                    number,
                    watch: &watch,
                });
                self.plan.waited_for(&watch);
                Continue(Lost { quick: nowait })
            }
        }
    }

    fn give_up(&mut self, reason: String) -> Self::End {
        let (holders, long_lived) = (
            std::mem::take(&mut self.holders),
            std::mem::take(&mut self.long_lived),
        );
        Err(self.guard.give_up(holders, long_lived, &reason))
    }

    async fn pause(&mut self, d: Duration) -> ControlFlow<Self::End> {
        match self.guard.sleep(d).await {
            Ok(()) => Continue(()),
            Err(e) => Break(Err(e)),
        }
    }
}
