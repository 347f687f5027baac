//! The whole run of a migration source, as one library flow: what `apply`
//! does, and what a Rust program embeds.
//!
//! A [`Plan`] (every migration parsed and analysed once, in
//! `locksmith-core`) goes to a [`Runner`], which takes connection settings
//! and one [`Policy`] and does everything else:
//! 1. connects the [`Guard`] (and says so when a pooler is in between);
//! 2. plans again for the server's major version when none was given;
//! 3. watches the hot standbys given (or warns of unwatched ones);
//! 4. takes the runner lock, so concurrent deploys apply each migration once;
//! 5. reads the history (and another tool's, to refuse re-running a database
//!    it built), decides what is pending ([`pending::decide`]);
//! 6. refuses up front what cannot run safely: a statement with no online
//!    form under `online`, one that cannot run in a transaction block behind
//!    a pooler with no direct route, one whose table sizes say it would hold
//!    a traffic-blocking lock well past `max_hold`;
//! 7. runs each pending migration under the guard — one transaction with
//!    its history row, statement by statement, or its online plan — and
//!    stops at the first that does not apply;
//! 8. returns a [`RunReport`] (serde: the JSON contract) saying what was
//!    applied, who blocked it, and where things stand.
//!
//! Progress comes as [`Event`]s; Ctrl-C and SIGTERM come as one watch
//! channel, whose dropped sender means "never interrupted". Errors before
//! anything ran are an [`Error`] with a [`kind`](Error::kind); what happened
//! once migrations ran is in the report's status.
//!
//! It must not print, read arguments, or choose exit codes: that is the
//! binary's.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use locksmith_core::plan::Plan;
//! use locksmith_pg::migrate::{self, Policy, Runner, Status};
//! use locksmith_pg::ConnectionSettings;
//!
//! let plan = Plan::new("migrations", migrate::read_folder("migrations")?, None)?;
//! let runner = Runner::new(ConnectionSettings::resolve(None)?, Policy::default());
//! let report = runner.run(plan).await?;
//! if report.status != Status::Applied {
//!     eprintln!("{}", report.error.unwrap_or_default());
//! }
//! # Ok(()) }
//! ```

mod abort;
mod explain;
pub mod fleet;
mod folder;
pub mod hold;
mod lint_files;
mod pooled;
pub mod report;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use locksmith_core::online::Unit;
use locksmith_core::plan::{Plan, PlanError, PlannedMigration};
use locksmith_core::source::{pending, Kind, Migration, Version};
use tokio::sync::watch;

use crate::guard::{
    self, replica, unless_interrupted, Guard, GuardError, GuardPolicy, Interrupt, RelationLock,
    Step,
};
use crate::{foreign, history, ConnectionSettings, ErrorKind, Pooler};
pub use abort::AbortReport;
use explain::{adopt_hint, failure_message, online_failed, partition_refusal};
pub use folder::{read_folder, FolderError};
pub use lint_files::{fix_changes, lint_folder, write_changes, Fix, LintFile};
use pooled::Ran;
pub use report::{
    DryRun, MigrationRecord, OnlineStatement, OnlineUnit, PlannedLock, PlannedStatement,
    PoolerJson, RunReport, Status,
};

/// Everything a run may do, in one value: the guard's budget and what it
/// may do to blockers, plus how pending migrations are chosen and run.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The lock budget, retries, deadline, terminate policy and `max_hold`.
    pub guard: GuardPolicy,
    /// Run what would block traffic while it works as its online plan.
    pub online: bool,
    /// Hot standbys to watch; none: warn when some stream unwatched.
    pub replicas: Vec<ConnectionSettings>,
    /// Record every versioned migration up to this one as applied without
    /// running it (adopting a database another tool built).
    pub baseline: Option<Version>,
    /// Accept applied migrations whose file changed.
    pub allow_changed: bool,
    /// Apply a pending migration older than the latest applied.
    pub out_of_order: bool,
    /// When online backfills wait between batches.
    pub throttle: crate::online::Throttle,
}

/// How a pending migration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Its online plan, this many steps.
    Online(usize),
    /// One transaction with its history row.
    Transaction,
    /// Statement by statement, outside a transaction block.
    StatementByStatement,
}

/// What happened, for live progress lines.
#[derive(Debug)]
pub enum Event<'a> {
    /// Something the guard did (waiting, an attempt, a termination, …).
    Guard(guard::Event<'a>),
    /// A connection pooler is in between; `direct`: a direct route was given.
    Pooler {
        /// The pooler.
        pooler: Pooler,
        /// Whether `--direct-url` gave the runner lock and statements outside
        /// a transaction block a route straight to the server.
        direct: bool,
    },
    /// Standbys stream from this primary and none was given to watch.
    UnwatchedStandbys(i64),
    /// Migrations recorded as applied without running (`baseline`).
    Baselined {
        /// How many.
        count: usize,
        /// Up to which version.
        version: &'a Version,
    },
    /// A pending migration starts.
    Applying {
        /// Which.
        migration: &'a PlannedMigration,
        /// How it runs.
        mode: Mode,
    },
    /// Another runner applied this one meanwhile (behind a pooler): not run here.
    AppliedElsewhere(&'a PlannedMigration),
    /// The file wraps its statements in `BEGIN` … `COMMIT`, and its online
    /// plan runs them as this many steps, each committed on its own.
    SplitsTransaction {
        /// Which.
        migration: &'a PlannedMigration,
        /// Steps of its online plan.
        steps: usize,
    },
}

/// Why a run did not start (nothing of the migrations ran).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The folder could not be read as migrations.
    #[error(transparent)]
    Folder(#[from] FolderError),
    /// A statement cannot be planned (syntax, or no online form).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The history and the folder disagree (a changed migration, one out of
    /// order, a baseline that does not fit); the message says which file.
    #[error("{0}")]
    Pending(String),
    /// Another tool's history is there and locksmith's is empty: running
    /// from the first migration would run migrations again.
    #[error("{0}")]
    Adopt(String),
    /// A statement cannot run safely on this route (e.g. outside a
    /// transaction block behind a pooler with no direct route).
    #[error("{0}")]
    Route(String),
    /// Another runner held the runner lock until the deadline (a dry run,
    /// which has no report to say it in).
    #[error("{0}")]
    RunnerBusy(String),
    /// Ctrl-C or SIGTERM before anything ran.
    #[error("interrupted ({}) {when}; nothing was run", match .signal { Interrupt::Interrupt => "Ctrl-C", Interrupt::Terminate => "SIGTERM" })]
    Interrupted {
        /// Which signal.
        signal: Interrupt,
        /// What the run was doing.
        when: &'static str,
    },
    /// The guard could not start: the server unreachable, or a statement
    /// pooler in the way with no direct route.
    #[error(transparent)]
    Connect(#[from] guard::ConnectError),
    /// The server: unreachable, refused, or a query failed.
    #[error(transparent)]
    Server(#[from] crate::Error),
}

impl Error {
    /// What kind of failure this is, for the caller's exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Folder(_) | Error::Plan(_) | Error::Pending(_) | Error::Adopt(_) => {
                ErrorKind::BadInput
            }
            Error::Route(_) => ErrorKind::BadInput,
            Error::RunnerBusy(_) => ErrorKind::Blocked,
            Error::Interrupted { signal, .. } => ErrorKind::Interrupted(*signal),
            Error::Connect(e) => e.kind(),
            Error::Server(e) => e.kind(),
        }
    }
}

type Handler = Arc<Mutex<Box<dyn FnMut(Event<'_>) + Send>>>;

/// Runs a [`Plan`] against one database under one [`Policy`].
pub struct Runner {
    settings: ConnectionSettings,
    policy: Policy,
    interrupts: watch::Receiver<Option<Interrupt>>,
    events: Handler,
}

/// A run made ready: connected, locked, the history read, refusals checked.
struct Ready {
    guard: Guard,
    plan: Plan,
    /// Indices into the plan's migrations.
    baselined: Vec<usize>,
    pending: Vec<usize>,
    /// The pending migrations as the server will meet them (its catalog's
    /// column types), for the hold estimate.
    judged: Vec<PlannedMigration>,
    /// With `online`, each pending migration's plan (`None`: as written).
    units: Vec<Option<Vec<Unit>>>,
    per_transaction: bool,
    pooler: Option<PoolerJson>,
}

impl Runner {
    /// A runner for the database `settings` name, never interrupted and
    /// reporting no events until told otherwise.
    pub fn new(settings: ConnectionSettings, policy: Policy) -> Runner {
        let (_, never) = watch::channel(None);
        Runner {
            settings,
            policy,
            interrupts: never,
            events: Arc::new(Mutex::new(Box::new(|_| {}))),
        }
    }

    /// Stops the run when the channel turns `Some` (the binary feeds it
    /// Ctrl-C and SIGTERM): the statement in flight is cancelled on the
    /// server and rolled back. A dropped sender means never.
    pub fn interrupts(mut self, interrupts: watch::Receiver<Option<Interrupt>>) -> Runner {
        self.interrupts = interrupts;
        self
    }

    /// Receives progress events.
    pub fn on_event(self, f: impl FnMut(Event<'_>) + Send + 'static) -> Runner {
        *self.events.lock().unwrap_or_else(|e| e.into_inner()) = Box::new(f);
        self
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn emit(&self, event: Event<'_>) {
        (self.events.lock().unwrap_or_else(|e| e.into_inner()))(event);
    }

    /// Applies what is pending of `plan`, in order, and says how it ended.
    pub async fn run(&self, plan: Plan) -> Result<RunReport, Error> {
        let ready = match self.ready(plan).await? {
            Ok(ready) => ready,
            Err(report) => return Ok(report),
        };
        let pooler = ready.pooler;
        let mut report = self.apply(ready).await?;
        report.pooler = pooler;
        Ok(report)
    }

    /// What [`run`](Self::run) would do now, with who would block each
    /// migration: nothing is run, nothing recorded.
    pub async fn dry_run(&self, plan: Plan) -> Result<DryRun, Error> {
        let ready = match self.ready(plan).await? {
            Ok(ready) => ready,
            Err(report) => {
                return Err(Error::RunnerBusy(report.error.unwrap_or_else(|| {
                    "another locksmith apply is running".to_string()
                })))
            }
        };
        let migrations = &ready.plan.migrations;
        // Sizes and throughput once for the whole plan; a read that fails
        // leaves the plan without verdicts rather than failing it.
        let pending = ready
            .pending
            .iter()
            .flat_map(|&i| &migrations[i].statements);
        let sizes = crate::throughput::Sizes::read(ready.guard.client(), pending)
            .await
            .ok();
        let mut dry = DryRun {
            status: "planned",
            baseline: ready
                .baselined
                .iter()
                .map(|&i| version_json(&migrations[i]))
                .collect(),
            migrations: Vec::new(),
        };
        for (&i, units) in ready.pending.iter().zip(&ready.units) {
            let p = &migrations[i];
            let targets: Vec<RelationLock> = p
                .statements
                .iter()
                .flat_map(|s| s.locks.iter().cloned())
                .collect();
            dry.migrations.push(report::PlannedMigration {
                version: version_json(p),
                name: p.migration.name.clone(),
                file: p.migration.path.clone(),
                in_transaction: p.in_transaction,
                statements: p
                    .statements
                    .iter()
                    .map(|s| PlannedStatement {
                        line: s.line,
                        column: s.column,
                        sql: s.sql.clone(),
                        locks: s
                            .locks
                            .iter()
                            .map(|l| PlannedLock {
                                relation: l.relation.clone(),
                                mode: l.mode.pg_name(),
                            })
                            .collect(),
                        hold: sizes
                            .as_ref()
                            .and_then(|z| z.verdict(s, ready.plan.pg_version))
                            .map(|v| report::PlannedHold {
                                size: v.size,
                                verdict: v.message,
                            }),
                    })
                    .collect(),
                blockers: ready.guard.holders_for(&targets).await?,
                online: units.as_deref().map(online_plan),
            });
        }
        pooled::unlock(&ready.guard).await?;
        Ok(dry)
    }

    /// Steps 1–6 of the flow: `Err(report)` when the runner lock stayed taken.
    async fn ready(&self, plan: Plan) -> Result<Result<Ready, RunReport>, Error> {
        let connecting = Guard::connect(
            &self.settings,
            self.policy.guard.clone(),
            self.interrupts.clone(),
        );
        let mut guard = unless_interrupted(&self.interrupts, connecting)
            .await
            .map_err(|signal| Error::Interrupted {
                signal,
                when: "while connecting",
            })??;
        let events = self.events.clone();
        guard
            .on_event(move |e| (events.lock().unwrap_or_else(|e| e.into_inner()))(Event::Guard(e)));
        guard.set_throttle(self.policy.throttle.clone());
        let per_transaction = pooled::per_transaction(&guard);
        let pooler = guard.pooler().map(|pooler| {
            let direct = !per_transaction;
            self.emit(Event::Pooler { pooler, direct });
            PoolerJson::new(pooler, direct)
        });
        // Lock levels differ between majors: the files are judged for the
        // server they run on (planned already, so a syntax error stopped the
        // run before it connected).
        let mut plan = plan;
        plan.for_server(crate::trace::catalog::server_major(guard.client()).await?)?;
        if self.policy.replicas.is_empty() {
            let streaming = replica::streaming_standbys(guard.client())
                .await
                .unwrap_or(0);
            if streaming > 0 {
                self.emit(Event::UnwatchedStandbys(streaming));
            }
        } else {
            guard.watch_replicas(&self.policy.replicas).await?;
        }

        // Serialise runners before touching any table; a second deploy waits
        // here, then finds nothing to do.
        let deadline = self.policy.guard.deadline;
        let waiting = async {
            match guard.session_client() {
                Some(client) => history::lock_runners(client, deadline).await,
                None => Ok(true),
            }
        };
        let got = unless_interrupted(&self.interrupts, waiting)
            .await
            .map_err(|signal| Error::Interrupted {
                signal,
                when: "while waiting for another locksmith apply to finish",
            })??;
        if !got {
            // Name the session that holds it: a runner killed with -9 can
            // leave its server session (and the lock) behind.
            let holder = match guard.session_client() {
                Some(client) => history::runner_lock_holder(client)
                    .await?
                    .map(|h| format!(": {h}"))
                    .unwrap_or_default(),
                None => String::new(),
            };
            let mut report = RunReport::new(
                Status::Blocked,
                &guard.report,
                Vec::new(),
                Some(format!(
                    "another locksmith apply held the runner lock until the deadline{holder}"
                )),
            );
            report.pooler = pooler;
            return Ok(Err(report));
        }

        let existed = history::exists(guard.client()).await?;
        let applied = match existed {
            true => {
                history::ensure_table(guard.client(), self.policy.guard.lock_timeout).await?;
                history::applied(guard.client()).await?
            }
            false => Vec::new(),
        };
        if applied.is_empty() && self.policy.baseline.is_none() {
            if let Some(other) = foreign::find(guard.client()).await? {
                return Err(Error::Adopt(adopt_hint(&plan, &other)));
            }
        }
        let names: pending::RecordedNames = applied
            .iter()
            .map(|a| (a.id.clone(), a.name.clone()))
            .collect();
        let recorded: Vec<pending::Recorded> = applied
            .into_iter()
            .map(|a| pending::Recorded {
                id: a.id,
                checksum: a.checksum,
            })
            .collect();
        let options = pending::Options {
            baseline: self.policy.baseline.clone(),
            allow_changed: self.policy.allow_changed,
            out_of_order: self.policy.out_of_order,
        };
        let migrations: Vec<Migration> = plan
            .migrations
            .iter()
            .map(|p| p.migration.clone())
            .collect();
        let decided = pending::decide_knowing_names(&migrations, &recorded, &names, &options);
        let decision = decided.map_err(|e| {
            // Errors about a file start with its path, relative to the folder.
            Error::Pending(match &e {
                pending::PendingError::Changed { .. }
                | pending::PendingError::Collision { .. }
                | pending::PendingError::OutOfOrder { .. } => {
                    format!("{}{}{e}", plan.dir.display(), std::path::MAIN_SEPARATOR)
                }
                _ => format!("{}: {e}", plan.dir.display()),
            })
        })?;
        // What runs is also judged by what the server's catalog says about
        // the tables (a type change rewrites or not): a statement the files
        // alone cannot tell about is refused under --online, and its hold
        // estimated, as what it is.
        let mut live = locksmith_core::analysis::Schema::default();
        let touched = plan.relations(&decision.run);
        crate::tables::learn_schema(guard.client(), &touched, &mut live).await?;
        let judged = plan.judged_live(&decision.run, live)?;
        let mut units = Vec::with_capacity(decision.run.len());
        for (&i, live) in decision.run.iter().zip(&judged) {
            if !self.policy.online {
                units.push(None);
                continue;
            }
            live.online(plan.pg_version)?;
            // What runs is the files' own plan, so a resumed run plans what
            // the first one did; but a type change rewrites when the catalog
            // said so when the change began (its kept facts), else now.
            let p = &plan.migrations[i];
            let version = history::row_version(&p.id);
            let kept = crate::online::retype::kept_statements(guard.client(), version).await?;
            let mut files = p.clone();
            for (j, (s, now)) in files
                .statements
                .iter_mut()
                .zip(&live.statements)
                .enumerate()
            {
                let Some(table) = crate::online::retype::type_change(s) else {
                    continue;
                };
                s.rewrites = match kept.contains(&j) {
                    true => vec![table],
                    false => now.rewrites.clone(),
                };
            }
            let Some(planned) = files.online(plan.pg_version)? else {
                units.push(None);
                continue;
            };
            // A type change becomes its shadow-column steps, from the catalog's facts.
            match crate::online::retype::expand(
                guard.client(),
                version,
                planned,
                &p.statements,
                plan.pg_version,
            )
            .await?
            {
                Ok(expanded) => units.push(Some(expanded)),
                Err(refused) => {
                    let s = &refused.statement;
                    return Err(Error::Plan(PlanError {
                        path: p.path.clone(),
                        line: s.line,
                        column: s.column,
                        message: format!(
                            "cannot run `{}` online: {}. Nothing was run.",
                            locksmith_core::analysis::source::one_line(&s.sql, 80),
                            refused.why.trim_end_matches('.')
                        ),
                    }));
                }
            }
        }
        if self.policy.online {
            let partitioned = crate::tables::partitioned(guard.client(), &touched).await?;
            for (&i, units) in decision.run.iter().zip(&units) {
                let p = &plan.migrations[i];
                if let Some(refusal) = partition_refusal(p, units.as_deref(), &partitioned) {
                    return Err(Error::Plan(refusal));
                }
            }
        }
        // A batched UPDATE needs a key to range over, and the session runner
        // lock (its batches resume from their own progress): refused here,
        // before anything ran.
        for (&i, units) in decision.run.iter().zip(&units) {
            let p = &plan.migrations[i];
            for unit in units.iter().flatten() {
                // (One that runs outside a transaction has its own way without a key.)
                let Some(batch) = unit.batch.as_ref().filter(|_| unit.transactional) else {
                    continue;
                };
                let why = match per_transaction {
                    true => Some(
                        "its batches resume from their own progress, which needs the session \
                         runner lock: give --direct-url, a route straight to the server"
                            .to_string(),
                    ),
                    false => crate::online::unbatchable(guard.client(), batch).await?,
                };
                if let (Some(why), Some(s)) = (why, unit.statements.first()) {
                    return Err(Error::Plan(PlanError {
                        path: p.path.clone(),
                        line: s.line,
                        column: s.column,
                        message: format!(
                            "cannot run `{}` online: {why}. Nothing was run.",
                            locksmith_core::analysis::source::one_line(&s.sql, 80)
                        ),
                    }));
                }
            }
        }
        if let Some(pooler) = guard.pooler().filter(|_| !guard.runs_outside_directly()) {
            let pending: Vec<&PlannedMigration> =
                decision.run.iter().map(|&i| &plan.migrations[i]).collect();
            if let Some(refusal) = pooled::outside_transaction(&pending, &units, &pooler) {
                return Err(Error::Route(refusal));
            }
        }
        if !existed {
            history::ensure_table(guard.client(), self.policy.guard.lock_timeout).await?;
        }
        Ok(Ok(Ready {
            guard,
            plan,
            judged,
            baselined: decision.baseline,
            pending: decision.run,
            units,
            per_transaction,
            pooler,
        }))
    }

    /// Steps 6–8: the size check, the baseline, then each pending migration.
    async fn apply(&self, ready: Ready) -> Result<RunReport, Error> {
        let Ready {
            mut guard,
            plan,
            judged,
            baselined,
            pending,
            units,
            per_transaction,
            ..
        } = ready;
        let max_hold = self.policy.guard.max_hold;
        // Online steps are bounded by the server as they run; the up-front
        // estimate is for statements that run as written.
        let as_written: Vec<(&std::path::Path, &locksmith_core::analysis::Statement)> = judged
            .iter()
            .zip(&units)
            .filter(|(_, u)| u.is_none())
            .flat_map(|(p, _)| p.statements.iter().map(move |s| (p.path.as_path(), s)))
            .collect();
        if let Some(refusal) =
            hold::refuse_before_running(guard.client(), &as_written, plan.pg_version, max_hold)
                .await
        {
            pooled::unlock(&guard).await?;
            let mut report = RunReport::new(
                Status::HoldExceeded,
                &guard.report,
                Vec::new(),
                Some(refusal),
            );
            report.pending = pending
                .iter()
                .map(|&i| plan.migrations[i].to_string())
                .collect();
            return Ok(report);
        }

        if !baselined.is_empty() {
            let chosen: Vec<&PlannedMigration> =
                baselined.iter().map(|&i| &plan.migrations[i]).collect();
            record_baseline(&guard, &chosen).await?;
            if let Some(version) = &self.policy.baseline {
                self.emit(Event::Baselined {
                    count: chosen.len(),
                    version,
                });
            }
        }

        let mut records = Vec::new();
        let mut elsewhere = Vec::new();
        for (n, (&i, plan_units)) in pending.iter().zip(&units).enumerate() {
            let p = &plan.migrations[i];
            let mode = match plan_units {
                Some(units) => Mode::Online(units.len()),
                None if p.in_transaction => Mode::Transaction,
                None => Mode::StatementByStatement,
            };
            if let (Mode::Online(steps), true) = (mode, p.explicit_transaction) {
                if steps > 1 {
                    self.emit(Event::SplitsTransaction {
                        migration: p,
                        steps,
                    });
                }
            }
            self.emit(Event::Applying { migration: p, mode });
            let started = Instant::now();
            let result = match plan_units {
                Some(units) => apply_online(&mut guard, p, units, per_transaction).await,
                None if per_transaction => pooled::apply(&mut guard, p).await,
                None => apply_one(&mut guard, p).await.map(Ran::Here),
            };
            match result {
                Ok(Ran::Here(attempts)) => records.push(migration_record(p, attempts, started)),
                Ok(Ran::Elsewhere) => {
                    self.emit(Event::AppliedElsewhere(p));
                    elsewhere.push(migration_record(p, 0, started));
                }
                Err((e, done)) => {
                    let (status, message) = match &e {
                        GuardError::Blocked { reason, .. } => {
                            (Status::Blocked, format!("{}: {reason}", p.file()))
                        }
                        GuardError::Interrupted(_) => {
                            (Status::Failed, format!("{}: {e}", p.file()))
                        }
                        GuardError::Failed(err @ crate::Error::EditedMidway { .. }) => {
                            (Status::Failed, format!("{}: {err}", p.file()))
                        }
                        GuardError::Failed(err) if plan_units.is_some() => {
                            let units = plan_units.as_deref().unwrap_or_default();
                            (Status::Failed, online_failed(p.file(), done, units, err))
                        }
                        GuardError::Failed(err) => (
                            Status::Failed,
                            failure_message(p, err, done, per_transaction),
                        ),
                        GuardError::HoldExceeded { step, locks, .. } => {
                            let at = if p.in_transaction { *step } else { done };
                            let statement =
                                &p.statements[at.min(p.statements.len().saturating_sub(1))];
                            let message = hold::stopped(
                                guard.client(),
                                &p.path,
                                statement,
                                locks,
                                plan.pg_version,
                                max_hold,
                            )
                            .await;
                            (Status::HoldExceeded, message)
                        }
                    };
                    let mut report = RunReport::new(status, &guard.report, records, Some(message));
                    report.applied_elsewhere = elsewhere;
                    report.stopped_at = Some(p.to_string());
                    report.pending = pending[n + 1..]
                        .iter()
                        .map(|&j| plan.migrations[j].to_string())
                        .collect();
                    if let GuardError::Interrupted(signal) = e {
                        report.interrupted = Some(signal);
                    }
                    return Ok(report);
                }
            }
        }
        pooled::unlock(&guard).await?;
        let mut report = RunReport::new(Status::Applied, &guard.report, records, None);
        report.applied_elsewhere = elsewhere;
        Ok(report)
    }
}

/// A migration's history row.
fn record(p: &PlannedMigration) -> history::Record<'_> {
    history::Record {
        id: &p.id,
        name: &p.migration.name,
        checksum: &p.migration.checksum,
        repeatable: p.migration.kind == Kind::Repeatable,
    }
}

/// The report's record: the version when it is one integer, else 0 and the
/// version's text (`1.1`, `R__views`).
fn migration_record(p: &PlannedMigration, attempts: u32, started: Instant) -> MigrationRecord {
    let number = p.migration.version().and_then(Version::as_i64);
    MigrationRecord {
        version: number.unwrap_or(0),
        version_text: number.is_none().then(|| p.id.clone()),
        name: p.migration.name.clone(),
        attempts,
        duration_ms: started.elapsed().as_millis() as u64,
    }
}

/// The version as dry-run JSON shows it: a number when it is one.
fn version_json(p: &PlannedMigration) -> serde_json::Value {
    match p.id.parse::<i64>() {
        Ok(n) => n.into(),
        Err(_) => p.id.clone().into(),
    }
}

/// An online plan as the dry run shows it.
fn online_plan(units: &[Unit]) -> Vec<OnlineUnit> {
    units
        .iter()
        .map(|u| OnlineUnit {
            transaction: u.transactional,
            batched: u.batch.is_some(),
            done_when: u.done_when.clone(),
            statements: u
                .statements
                .iter()
                .map(|s| OnlineStatement {
                    sql: s.sql.clone(),
                    locks: s.locks.clone(),
                })
                .collect(),
        })
        .collect()
}

/// Records the baseline migrations as applied (0 attempts, 0 ms), in one transaction.
async fn record_baseline(guard: &Guard, baselined: &[&PlannedMigration]) -> Result<(), Error> {
    let mut sql = String::from("BEGIN;\n");
    for p in baselined {
        sql.push_str(&history::insert_sql(&record(p), Duration::ZERO, 0));
        sql.push_str(";\n");
    }
    sql.push_str("COMMIT;");
    guard
        .client()
        .batch_execute(&sql)
        .await
        .map_err(|e| crate::Error::query("recording the --baseline migrations", e).into())
}

/// Runs one migration; on failure, also says how many statements completed
/// (only possible outside a transaction).
async fn apply_one(guard: &mut Guard, p: &PlannedMigration) -> Result<u32, (GuardError, usize)> {
    let started = Instant::now();
    let steps: Vec<Step> = p.statements.iter().map(Step::from).collect();
    if p.in_transaction {
        let row = record(p);
        let finish =
            |attempts: u32, elapsed: Duration| history::insert_sql(&row, elapsed, attempts);
        return guard
            .run_transaction(&steps, Some(&finish))
            .await
            .map_err(|e| (e, 0));
    }
    let mut attempts = 0;
    for (i, step) in steps.iter().enumerate() {
        attempts += guard
            .run_outside_transaction(step)
            .await
            .map_err(|e| (e, i))?;
    }
    let sql = history::insert_sql(&record(p), started.elapsed(), attempts);
    guard.client().batch_execute(&sql).await.map_err(|e| {
        (
            GuardError::Failed(crate::Error::query("recording the migration", e)),
            steps.len(),
        )
    })?;
    Ok(attempts)
}

/// Runs `p` as its online plan; on failure, also says which unit failed.
async fn apply_online(
    guard: &mut Guard,
    p: &PlannedMigration,
    units: &[Unit],
    per_transaction: bool,
) -> Result<Ran, (GuardError, usize)> {
    use crate::online::{self, Exclusion};
    let migration = record(p);
    let finish =
        |attempts: u32, elapsed: Duration| history::insert_sql(&migration, elapsed, attempts);
    let exclusion = match per_transaction {
        true => Exclusion::PerTransaction(&migration),
        false => Exclusion::Session,
    };
    online::run_excluding(
        guard,
        history::row_version(&p.id),
        units,
        &finish,
        exclusion,
    )
    .await
    .map(|run| match run.recorded_elsewhere {
        true => Ran::Elsewhere,
        false => Ran::Here(run.attempts),
    })
    .map_err(|f| (f.error, f.unit))
}
