//! The guard: run DDL without ever making traffic wait longer than a budget.
//!
//! Each unit of work (a migration in one transaction, or one statement that
//! cannot run in a transaction) goes through the same loop:
//! 1. **Look** ([`look`]): find sessions holding locks that conflict with the
//!    plan. Long-lived ones (idle in transaction, or older than the budget)
//!    are waited out *without queueing*, with backoff — or, under
//!    `terminate_idle_after`, terminated if idle in transaction that long.
//! 2. **Attempt**: `BEGIN`, `lock_timeout` and `statement_timeout` set on the
//!    server (so it gives up by itself if we die), `LOCK … NOWAIT` in a fixed
//!    order, the statements, the history row, `COMMIT`. After a few NOWAIT
//!    losses to a stream of short transactions, the `LOCK` waits at most the
//!    budget instead. A [`watchdog`] on a second connection cancels any lock
//!    wait that outlives the budget.
//! 3. **Retry** on `55P03` with backoff and jitter until `max_attempts` or
//!    the deadline, then give up naming the blockers. Never an unbounded wait.
//!
//! Interrupts (Ctrl-C, SIGTERM) and the deadline cancel the in-flight
//! statement on the server and roll back, so no lock request of ours stays
//! queued. The guard knows nothing about files or history tables: callers
//! pass SQL and the locks it needs.
//!
//! For a migration tool that keeps its own connections (`locksmith run`),
//! [`sessions`] watches its sessions by `application_name` instead: the same
//! cancel-over-budget and terminate policy, applied from outside.

mod attempt;
pub mod backoff;
mod index_build;
pub mod look;
pub mod sessions;
pub mod watchdog;

use std::sync::Arc;
use std::time::{Duration, Instant};

use locksmith_core::analysis::{Statement, StatementKind};
use serde::Serialize;
use tokio::sync::watch;
use tokio_postgres::{CancelToken, Client};

use crate::{ConnectionSettings, Error};
use backoff::Backoff;
pub use look::Holder;
use watchdog::Watch;

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

/// How one attempt ended.
enum Attempt {
    Done,
    LostRace(Watch),
}

/// NOWAIT attempts lost in a row before the guard lets `LOCK` wait up to the budget.
const NOWAIT_TRIES: u32 = 5;

/// The first fallback attempt's wait for its locks. Each later one doubles
/// it, up to the budget: against a stream of short transactions a few tens
/// of milliseconds usually win, and that is all traffic then waits behind us.
const FIRST_FALLBACK_WAIT: Duration = Duration::from_millis(25);

/// The guard over one server; owns the migration connection and the sidecar.
pub struct Guard {
    settings: ConnectionSettings,
    client: Client,
    cancel: CancelToken,
    pid: i32,
    sidecar: Arc<Client>,
    policy: GuardPolicy,
    started: Instant,
    interrupt: watch::Receiver<Option<Interrupt>>,
    on_event: Box<dyn FnMut(Event<'_>) + Send>,
    /// What the guard did so far.
    pub report: GuardReport,
}

impl Guard {
    /// Opens the migration connection and the sidecar. The deadline starts now.
    pub async fn connect(
        settings: &ConnectionSettings,
        policy: GuardPolicy,
        interrupt: watch::Receiver<Option<Interrupt>>,
    ) -> Result<Guard, Error> {
        let client = settings.connect().await?;
        let sidecar = settings
            .with_application_name("locksmith-watchdog")
            .connect()
            .await?;
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(|e| Error::query("reading our backend pid", e))?
            .get(0);
        Ok(Guard {
            cancel: client.cancel_token(),
            settings: settings.clone(),
            client,
            pid,
            sidecar: Arc::new(sidecar),
            policy,
            started: Instant::now(),
            interrupt,
            on_event: Box::new(|_| {}),
            report: GuardReport::default(),
        })
    }

    /// Receives progress events.
    pub fn on_event(&mut self, f: impl FnMut(Event<'_>) + Send + 'static) {
        self.on_event = Box::new(f);
    }

    /// The migration connection, for the caller's own bookkeeping queries.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The migration connection's backend pid.
    pub fn pid(&self) -> i32 {
        self.pid
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
        self.run_unit(steps, true, finish).await
    }

    /// Runs one statement that cannot run inside a transaction block, guarded the same way.
    pub async fn run_outside_transaction(&mut self, step: &Step) -> Result<u32, GuardError> {
        self.run_unit(std::slice::from_ref(step), false, None).await
    }

    async fn run_unit(
        &mut self,
        steps: &[Step],
        in_transaction: bool,
        finish: Option<&(dyn Fn(u32, Duration) -> String + Sync)>,
    ) -> Result<u32, GuardError> {
        let unit_started = Instant::now();
        let targets: Vec<RelationLock> =
            steps.iter().flat_map(|s| s.locks.iter().cloned()).collect();
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        let mut nowait_losses = 0;
        let mut unit_attempts = 0;
        loop {
            if let Some(signal) = *self.interrupt.borrow() {
                return Err(GuardError::Interrupted(signal));
            }
            if self.remaining().is_zero() {
                return Err(self
                    .give_up(
                        &targets,
                        "the deadline passed while the migration was still blocked",
                    )
                    .await);
            }
            let resolved = look::resolve(&self.sidecar, &targets).await?;
            let mut holders = look::conflicting_holders(&self.sidecar, &resolved).await?;
            self.apply_terminate_policy(&mut holders).await?;
            let long_lived: Vec<Holder> = holders
                .iter()
                .filter(|h| h.is_long_lived(self.policy.lock_timeout))
                .cloned()
                .collect();
            if !long_lived.is_empty() {
                let wait = look::next_look(
                    &long_lived,
                    backoff.next_delay(),
                    self.policy.terminate_idle_after,
                    self.remaining(),
                );
                (self.on_event)(Event::Waiting {
                    holders: &long_lived,
                    next_look: wait,
                });
                self.report.blockers = long_lived;
                self.sleep(wait).await?;
                continue;
            }
            if unit_attempts >= self.policy.max_attempts {
                return Err(self
                    .give_up(&targets, &format!("{} lock attempts failed", unit_attempts))
                    .await);
            }
            unit_attempts += 1;
            self.report.attempts += 1;
            let nowait = in_transaction && nowait_losses < NOWAIT_TRIES;
            // NOWAIT first; then LOCK waits, but briefly, growing towards the budget.
            let fallback = unit_attempts.saturating_sub(nowait_losses + 1).min(10);
            let lock_wait = (!nowait)
                .then(|| (FIRST_FALLBACK_WAIT * (1 << fallback)).min(self.policy.lock_timeout));
            (self.on_event)(Event::Attempt {
                number: unit_attempts,
                nowait,
            });
            let outcome = if in_transaction {
                let finish_sql = finish.map(|f| f(unit_attempts, unit_started.elapsed()));
                self.attempt_transaction(steps, &resolved, lock_wait, finish_sql.as_deref())
                    .await?
            } else {
                self.attempt_single(&steps[0]).await?
            };
            match outcome {
                Attempt::Done => {
                    self.report.blockers.clear();
                    return Ok(unit_attempts);
                }
                Attempt::LostRace(watch) => {
                    if nowait {
                        nowait_losses += 1;
                    }
                    (self.on_event)(Event::LostRace {
                        number: unit_attempts,
                        watch: &watch,
                    });
                    let delay = if nowait {
                        Duration::from_millis(5 + fastrand::u64(0..20))
                    } else {
                        backoff.next_delay()
                    };
                    self.sleep(delay).await?;
                }
            }
        }
    }

    async fn apply_terminate_policy(
        &mut self,
        holders: &mut Vec<Holder>,
    ) -> Result<(), GuardError> {
        let Some(threshold) = self.policy.terminate_idle_after else {
            return Ok(());
        };
        if let Some(hidden) = holders.iter().find(|h| !h.is_visible()) {
            // The policy depends on idle time, which this role cannot see.
            return Err(GuardError::Failed(Error::Permission {
                action: format!(
                    "see whether blocking session {} is idle in transaction (needed by --terminate-idle-after)",
                    hidden.pid
                ),
                needs: "pg_read_all_stats".into(),
            }));
        }
        let mut kept = Vec::with_capacity(holders.len());
        for h in holders.drain(..) {
            if h.may_terminate(threshold)
                && look::terminate_if_still_idle(&self.sidecar, h.pid, threshold).await?
            {
                (self.on_event)(Event::Terminated(&h));
                self.report.terminated.push(h);
            } else {
                kept.push(h);
            }
        }
        *holders = kept;
        Ok(())
    }

    async fn give_up(&mut self, targets: &[RelationLock], reason: &str) -> GuardError {
        // Name whoever holds conflicting locks now; fall back to the last seen.
        let now = match look::resolve(&self.sidecar, targets).await {
            Ok(resolved) => look::conflicting_holders(&self.sidecar, &resolved)
                .await
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        if !now.is_empty() {
            self.report.blockers = now;
        }
        GuardError::Blocked {
            reason: reason.to_string(),
            holders: self.report.blockers.clone(),
        }
    }

    async fn sleep(&mut self, d: Duration) -> Result<(), GuardError> {
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = self.interrupt.changed() => match *self.interrupt.borrow() {
                Some(signal) => Err(GuardError::Interrupted(signal)),
                None => Ok(()),
            },
        }
    }
}
