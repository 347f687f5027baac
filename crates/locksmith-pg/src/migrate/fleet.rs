//! Fleets: the same [`Plan`] on many databases (a database per tenant, shard
//! or region), at most `parallel` at a time, with one report.
//!
//! A fleet is N [`Runner`]s, nothing more: each target gets its own runner
//! with its own connection settings, guard, runner lock and history, so every
//! database is guarded on its own server and nothing is coordinated beyond
//! that. What the fleet adds:
//! - [`parse_targets`]: the targets list, one connection string per line (URL
//!   or libpq `key=value`), read whole before anything connects: a bad line is
//!   an error at `FILE:LINE` and nothing runs anywhere;
//! - the schedule: at most `parallel` runners at once; `canary` targets
//!   first, the rest [`skipped`](TargetStatus::Skipped) if any of them did
//!   not apply; otherwise one target's failure never stops another;
//! - Ctrl-C and SIGTERM: no new target starts, the running runners get the
//!   interrupt (their statement in flight is cancelled on the server and
//!   rolled back), the report says which targets are done;
//! - [`FleetReport`] (serde: the `--targets` JSON contract), each target's
//!   outcome mapped from its [`RunReport`] or [`Error`];
//! - [`read_each`]: the commands that only read (`blockers --targets`,
//!   `doctor --targets`) on each target, into one report ([`Entries`]).
//!
//! A rerun is the way to resume: each database's own history says what is
//! pending there.
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use locksmith_core::plan::Plan;
//! use locksmith_pg::migrate::fleet::{self, Fleet};
//! use locksmith_pg::migrate::{self, Policy};
//!
//! let plan = Plan::new("migrations", migrate::read_folder("migrations")?, None)?;
//! let list = std::fs::read_to_string("targets.txt")?;
//! let targets = fleet::parse_targets("targets.txt", &list)?;
//! let report = Fleet::new(targets, Policy::default()).parallel(8).run(plan).await;
//! println!("{} applied", report.summary.applied);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use locksmith_core::plan::Plan;
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};

use super::{Error, Event, MigrationRecord, Policy, RunReport, Runner, Status};
use crate::guard::{Holder, Interrupt};
use crate::{redact, ConnectionSettings, ErrorKind};

/// One database of a fleet: a line of the targets list.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its line in the list (1-based).
    pub line: usize,
    /// The connection string as written, password redacted: what reports
    /// name the target by.
    pub label: String,
    /// Where to connect.
    pub settings: ConnectionSettings,
}

/// A targets list that cannot be used; nothing ran anywhere.
#[derive(Debug, thiserror::Error)]
pub enum TargetsError {
    /// A line that is not a connection string.
    #[error("{file}:{line}: {reason}")]
    Line {
        /// The list's name (`-` reads as `stdin`).
        file: String,
        /// 1-based.
        line: usize,
        /// Why, the password redacted.
        reason: String,
    },
    /// No target at all.
    #[error("{file}: no targets (one connection string per line, URL or key=value; blank lines and # comments are skipped)")]
    Empty {
        /// The list's name.
        file: String,
    },
}

impl TargetsError {
    /// Always bad input: the list must be fixed.
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::BadInput
    }
}

/// Reads a targets list: one connection string per line (URL or libpq
/// `key=value`, each resolved like `--database-url`, so what a line leaves
/// unset comes from libpq's variables); blank lines and lines starting with
/// `#` are skipped. `file` names the list in errors.
pub fn parse_targets(file: &str, text: &str) -> Result<Vec<Target>, TargetsError> {
    let mut targets = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let settings = ConnectionSettings::resolve(Some(line)).map_err(|e| TargetsError::Line {
            file: file.to_string(),
            line: n + 1,
            // The line itself is not repeated: it may hold a password in a
            // form redaction does not recognise.
            reason: match e {
                crate::Error::BadUrl { reason, .. } => format!(
                    "not a connection string ({reason}); expected a URL \
                     (postgresql://user@host:5432/db) or key=value pairs (host=db1 dbname=app)"
                ),
                e => e.to_string(),
            },
        })?;
        targets.push(Target {
            line: n + 1,
            label: redact(line),
            settings,
        });
    }
    if targets.is_empty() {
        return Err(TargetsError::Empty {
            file: file.to_string(),
        });
    }
    Ok(targets)
}

/// How one target ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetStatus {
    /// Pending migrations were applied.
    Applied,
    /// Nothing was pending.
    UpToDate,
    /// Gave up: stayed blocked until the deadline, or a statement would hold
    /// a traffic-blocking lock past `max_hold`; rolled back.
    GaveUp,
    /// A migration failed (rolled back), or the run could not start there
    /// (the history and the folder disagree, a query failed).
    Failed,
    /// The server could not be reached, or refused the login or TLS.
    Unreachable,
    /// Not started: a canary did not apply, or Ctrl-C/SIGTERM came first.
    Skipped,
}

impl TargetStatus {
    /// As the JSON contract spells it: `up_to_date`, `gave_up`, ….
    pub fn as_str(self) -> &'static str {
        match self {
            TargetStatus::Applied => "applied",
            TargetStatus::UpToDate => "up_to_date",
            TargetStatus::GaveUp => "gave_up",
            TargetStatus::Failed => "failed",
            TargetStatus::Unreachable => "unreachable",
            TargetStatus::Skipped => "skipped",
        }
    }

    /// Applied or up to date.
    pub fn is_success(self) -> bool {
        matches!(self, TargetStatus::Applied | TargetStatus::UpToDate)
    }
}

/// One target's outcome, as the JSON contract has it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// The connection string, password redacted.
    pub target: String,
    /// How it ended.
    pub status: TargetStatus,
    /// Migrations applied there in this run, as their files are named
    /// (`001_audit`), in order.
    pub applied: Vec<String>,
    /// Who blocked it (when it gave up: who still does), as a single
    /// `apply`'s report names them.
    pub blockers: Vec<Holder>,
    /// What went wrong, when something did.
    pub error: Option<String>,
    /// Wall time of its run (0 when skipped).
    pub duration_ms: u64,
    /// Its line in the targets list.
    #[serde(skip)]
    pub line: usize,
}

/// How many targets ended each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Applied.
    pub applied: usize,
    /// Up to date.
    pub up_to_date: usize,
    /// Gave up.
    pub gave_up: usize,
    /// Failed.
    pub failed: usize,
    /// Unreachable.
    pub unreachable: usize,
    /// Skipped.
    pub skipped: usize,
}

impl Summary {
    /// Counts `targets` by status.
    pub fn of(targets: &[TargetReport]) -> Summary {
        let mut s = Summary::default();
        for t in targets {
            *match t.status {
                TargetStatus::Applied => &mut s.applied,
                TargetStatus::UpToDate => &mut s.up_to_date,
                TargetStatus::GaveUp => &mut s.gave_up,
                TargetStatus::Failed => &mut s.failed,
                TargetStatus::Unreachable => &mut s.unreachable,
                TargetStatus::Skipped => &mut s.skipped,
            } += 1;
        }
        s
    }
}

/// The whole fleet's report: `--format json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct FleetReport {
    /// Every target, in the order of the list.
    pub targets: Vec<TargetReport>,
    /// Counts by status.
    pub summary: Summary,
    /// The signal that stopped the fleet, if one did.
    #[serde(skip)]
    pub interrupted: Option<Interrupt>,
}

/// What happened, for live progress.
#[derive(Debug)]
pub enum FleetEvent<'a> {
    /// A target's runner starts.
    Started {
        /// Its index in the list of targets (0-based).
        index: usize,
        /// Its label.
        target: &'a str,
    },
    /// Something its runner reported.
    Run {
        /// Its index.
        index: usize,
        /// Its label.
        target: &'a str,
        /// The runner's event.
        event: Event<'a>,
    },
    /// A target ended (or was skipped).
    Finished {
        /// Its index.
        index: usize,
        /// How.
        report: &'a TargetReport,
    },
}

type Handler = Arc<Mutex<Box<dyn FnMut(FleetEvent<'_>) + Send>>>;

/// Runs one [`Plan`] on many targets.
pub struct Fleet {
    targets: Vec<Target>,
    policy: Policy,
    parallel: usize,
    canary: usize,
    interrupts: watch::Receiver<Option<Interrupt>>,
    events: Handler,
}

impl Fleet {
    /// A fleet of `targets` under one policy: 4 at a time, no canary, never
    /// interrupted, no events, until told otherwise.
    pub fn new(targets: Vec<Target>, policy: Policy) -> Fleet {
        let (_, never) = watch::channel(None);
        Fleet {
            targets,
            policy,
            parallel: 4,
            canary: 0,
            interrupts: never,
            events: Arc::new(Mutex::new(Box::new(|_| {}))),
        }
    }

    /// At most `n` targets at a time (at least 1).
    pub fn parallel(mut self, n: usize) -> Fleet {
        self.parallel = n.max(1);
        self
    }

    /// The first `n` targets run first; if any of them does not end applied
    /// or up to date, the rest are skipped.
    pub fn canary(mut self, n: usize) -> Fleet {
        self.canary = n;
        self
    }

    /// Ctrl-C and SIGTERM: no new target starts once the channel turns
    /// `Some`, and every running runner gets it. A dropped sender means never.
    pub fn interrupts(mut self, interrupts: watch::Receiver<Option<Interrupt>>) -> Fleet {
        self.interrupts = interrupts;
        self
    }

    /// Receives progress events, from every target's runner.
    pub fn on_event(self, f: impl FnMut(FleetEvent<'_>) + Send + 'static) -> Fleet {
        *self.events.lock().unwrap_or_else(|e| e.into_inner()) = Box::new(f);
        self
    }

    fn emit(&self, event: FleetEvent<'_>) {
        (self.events.lock().unwrap_or_else(|e| e.into_inner()))(event);
    }

    /// Runs `plan` on every target and says how each ended.
    ///
    /// Each runner is a task of its own on the runtime's threads.
    pub async fn run(self, plan: Plan) -> FleetReport {
        self.run_all(plan).await
    }

    async fn run_all(self, plan: Plan) -> FleetReport {
        let total = self.targets.len();
        let mut done: Vec<Option<TargetReport>> = vec![None; total];
        let canary = self.canary.min(total);
        self.wave(0..canary, &plan, &mut done).await;
        let failed_canary = done[..canary]
            .iter()
            .flatten()
            .find(|r| !r.status.is_success())
            .map(|r| format!("canary target {} ended {}", r.target, r.status.as_str()));
        // Interrupted during the canaries: the next wave skips everything
        // for that reason, not for the canary's.
        match failed_canary.filter(|_| self.interrupts.borrow().is_none()) {
            Some(reason) => {
                for i in canary..total {
                    self.skip(i, &mut done, format!("not started: {reason}"));
                }
            }
            None => self.wave(canary..total, &plan, &mut done).await,
        }
        let interrupted = *self.interrupts.borrow();
        let targets: Vec<TargetReport> = done.into_iter().flatten().collect();
        FleetReport {
            summary: Summary::of(&targets),
            targets,
            interrupted,
        }
    }

    /// Runs targets `range`, at most `parallel` at a time, filling `done`.
    async fn wave(
        &self,
        range: std::ops::Range<usize>,
        plan: &Plan,
        done: &mut [Option<TargetReport>],
    ) {
        let ended = |index: usize, ran: Result<(Result<RunReport, Error>, Duration), JoinError>| {
            let (result, elapsed) = ran.unwrap_or_else(|e| {
                // A runner that panicked is a bug; it ends its own target
                // only, and says so.
                let error = Error::Route(format!(
                    "locksmith stopped unexpectedly on this target (a bug; please report it): {e}"
                ));
                (Err(error), Duration::ZERO)
            });
            let report = target_report(&self.targets[index], plan, result, elapsed);
            self.emit(FleetEvent::Finished {
                index,
                report: &report,
            });
            report
        };
        let mut reports = Vec::new();
        let not_started = schedule(
            range.clone(),
            self.parallel,
            || self.interrupts.borrow().is_some(),
            |index| self.start(index, plan),
            |index, ran| reports.push((index, ended(index, ran))),
        )
        .await;
        for (index, report) in reports {
            done[index] = Some(report);
        }
        if let Some(signal) = *self.interrupts.borrow() {
            let reason = format!("not started: {}", interrupted_by(signal));
            for i in not_started..range.end {
                self.skip(i, done, reason.clone());
            }
        }
    }

    /// Target `index`'s run, to be spawned.
    fn start(
        &self,
        index: usize,
        plan: &Plan,
    ) -> impl Future<Output = (Result<RunReport, Error>, Duration)> + 'static {
        let target = &self.targets[index];
        self.emit(FleetEvent::Started {
            index,
            target: &target.label,
        });
        let events = self.events.clone();
        let label = target.label.clone();
        let runner = Runner::new(target.settings.clone(), self.policy.clone())
            .interrupts(self.interrupts.clone())
            .on_event(move |event| {
                (events.lock().unwrap_or_else(|e| e.into_inner()))(FleetEvent::Run {
                    index,
                    target: &label,
                    event,
                })
            });
        let plan = plan.clone();
        async move {
            let started = Instant::now();
            let result = runner.run(plan).await;
            (result, started.elapsed())
        }
    }

    /// Records target `index` as not started, for `reason`.
    fn skip(&self, index: usize, done: &mut [Option<TargetReport>], reason: String) {
        let target = &self.targets[index];
        let report = TargetReport {
            target: target.label.clone(),
            status: TargetStatus::Skipped,
            applied: Vec::new(),
            blockers: Vec::new(),
            error: Some(reason),
            duration_ms: 0,
            line: target.line,
        };
        self.emit(FleetEvent::Finished {
            index,
            report: &report,
        });
        done[index] = Some(report);
    }
}

/// Runs `work(i)` for each `i` of `range`, at most `parallel` at a time,
/// each a task of its own, and hands each result to `done`
/// as it ends (`Err`: the task panicked). Starts nothing more once `stop()`
/// says so; returns the first index not started. The one scheduler of
/// fleets: [`Fleet`]'s waves and [`each`].
async fn schedule<T: Send + 'static, F: Future<Output = T> + Send + 'static>(
    range: std::ops::Range<usize>,
    parallel: usize,
    mut stop: impl FnMut() -> bool,
    mut work: impl FnMut(usize) -> F,
    mut done: impl FnMut(usize, Result<T, JoinError>),
) -> usize {
    let mut tasks = JoinSet::new();
    let mut index: HashMap<tokio::task::Id, usize> = HashMap::new();
    let mut next = range.start;
    loop {
        while tasks.len() < parallel.max(1) && next < range.end && !stop() {
            let task = tasks.spawn(work(next));
            index.insert(task.id(), next);
            next += 1;
        }
        match tasks.join_next_with_id().await {
            None => return next,
            Some(Ok((id, value))) => {
                done(index.remove(&id).expect("every task is indexed"), Ok(value))
            }
            Some(Err(e)) => done(
                index.remove(&e.id()).expect("every task is indexed"),
                Err(e),
            ),
        }
    }
}

/// Runs `work` on every target, at most `parallel` at a time, and returns
/// what each gave, in list order: for the commands that only read
/// (`blockers --targets`, `doctor --targets`), which need no canary, history
/// or interrupt handling. `work` returns a future that owns what it needs
/// (clone the settings), each a task of its own like the runners.
pub async fn each<T: Send + 'static, F: Future<Output = T> + Send + 'static>(
    targets: &[Target],
    parallel: usize,
    work: impl Fn(&Target) -> F,
) -> Vec<T> {
    let mut results: Vec<Option<T>> = targets.iter().map(|_| None).collect();
    let scheduled = schedule(
        0..targets.len(),
        parallel,
        || false,
        |i| work(&targets[i]),
        |i, value| match value {
            Ok(value) => results[i] = Some(value),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        },
    );
    scheduled.await;
    results
        .into_iter()
        .map(|r| r.expect("every target ran"))
        .collect()
}

/// A target's entry in the report of a command that only reads
/// (`blockers --targets`, `doctor --targets`): the single command's report
/// with `target` added, or `error` when the target could not be read.
#[derive(Debug, Serialize)]
pub struct Entry<T> {
    /// The target's label (password redacted).
    pub target: String,
    /// What was read there.
    #[serde(flatten)]
    pub report: Option<T>,
    /// Why nothing could be read there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `{"targets": [...]}`: every target's [`Entry`], in list order.
#[derive(Debug, Serialize)]
pub struct Entries<T> {
    /// One per target.
    pub targets: Vec<Entry<T>>,
}

impl<T> Entries<T> {
    /// The reports that could be read.
    pub fn reports(&self) -> impl Iterator<Item = &T> {
        self.targets.iter().flat_map(|e| &e.report)
    }

    /// Whether some target could not be read.
    pub fn any_unread(&self) -> bool {
        self.targets.iter().any(|e| e.error.is_some())
    }
}

/// Reads every target with `read` (handed its settings), at most
/// `parallel` at a time, into entries in list order ([`each`]); a target
/// that could not be read keeps its error's text.
pub async fn read_each<T, E, F>(
    targets: &[Target],
    parallel: usize,
    read: impl Fn(ConnectionSettings) -> F,
) -> Entries<T>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
    F: Future<Output = Result<T, E>> + Send + 'static,
{
    let results = each(targets, parallel, |t| read(t.settings.clone())).await;
    Entries {
        targets: targets
            .iter()
            .zip(results)
            .map(|(t, result)| {
                let (report, error) = match result {
                    Ok(report) => (Some(report), None),
                    Err(e) => (None, Some(e.to_string())),
                };
                Entry {
                    target: t.label.clone(),
                    report,
                    error,
                }
            })
            .collect(),
    }
}

/// "interrupted (Ctrl-C)".
fn interrupted_by(signal: Interrupt) -> &'static str {
    match signal {
        Interrupt::Interrupt => "interrupted (Ctrl-C)",
        Interrupt::Terminate => "interrupted (SIGTERM)",
    }
}

/// One target's outcome from its runner's.
fn target_report(
    target: &Target,
    plan: &Plan,
    result: Result<RunReport, Error>,
    elapsed: Duration,
) -> TargetReport {
    let mut report = TargetReport {
        target: target.label.clone(),
        status: TargetStatus::Failed,
        applied: Vec::new(),
        blockers: Vec::new(),
        error: None,
        duration_ms: elapsed.as_millis() as u64,
        line: target.line,
    };
    match result {
        Ok(run) => {
            report.applied = run
                .migrations
                .iter()
                .map(|m| applied_name(plan, m))
                .collect();
            report.status = match run.status {
                Status::Applied if report.applied.is_empty() => TargetStatus::UpToDate,
                Status::Applied => TargetStatus::Applied,
                Status::Blocked | Status::HoldExceeded => TargetStatus::GaveUp,
                Status::Failed => TargetStatus::Failed,
            };
            report.blockers = run.blockers;
            report.error = run.error;
        }
        Err(e) => {
            report.status = match e.kind() {
                ErrorKind::Unreachable => TargetStatus::Unreachable,
                // Stopped while connecting or waiting for the runner lock:
                // nothing ran there.
                ErrorKind::Interrupted(_) => TargetStatus::Skipped,
                ErrorKind::Blocked => TargetStatus::GaveUp,
                ErrorKind::BadInput | ErrorKind::Permission | ErrorKind::Failed => {
                    TargetStatus::Failed
                }
            };
            report.error = Some(e.to_string());
        }
    }
    report
}

/// An applied migration as its file is named, without extensions
/// (`001_audit` for `001_audit.up.sql`).
fn applied_name(plan: &Plan, record: &MigrationRecord) -> String {
    let id = record
        .version_text
        .clone()
        .unwrap_or_else(|| record.version.to_string());
    let Some(p) = plan
        .migrations
        .iter()
        .find(|p| p.id == id && p.migration.name == record.name)
    else {
        return format!("{id}_{}", record.name);
    };
    let path = p.migration.path.as_str();
    let path = path.strip_suffix(".sql").unwrap_or(path);
    let path = path.strip_suffix(".up").unwrap_or(path);
    match Path::new(path).file_name() {
        Some(name) if !path.contains('/') => name.to_string_lossy().into_owned(),
        _ => path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_targets_list_skips_blanks_and_comments_and_redacts_passwords() {
        let list = "# tenants\n\npostgresql://app:s3cret@db1:5432/t01\n  host=db2 dbname=t02 user=app password=s3cret  \n";
        let targets = parse_targets("targets.txt", list).unwrap();
        let labels: Vec<(usize, &str)> =
            targets.iter().map(|t| (t.line, t.label.as_str())).collect();
        assert_eq!(
            labels,
            [
                (3, "postgresql://app:***@db1:5432/t01"),
                (4, "host=db2 dbname=t02 user=app password=***")
            ]
        );
        assert_eq!(targets[1].settings.dbname(), "t02");
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_line() {
        let list = "postgresql://db1/t01\n# fine\npostgresql://app:s3cret@db2:notaport/t02\n";
        let e = parse_targets("targets.txt", list).unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("targets.txt:3: "), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(e.kind(), ErrorKind::BadInput);
        let e = parse_targets("-", "just some words\n").unwrap_err();
        assert!(e.to_string().starts_with("-:1: "), "{e}");
    }

    #[test]
    fn an_empty_list_is_refused() {
        let e = parse_targets("t.txt", "# nothing\n\n").unwrap_err();
        assert!(matches!(e, TargetsError::Empty { .. }), "{e}");
    }

    #[test]
    fn statuses_and_summary_keys_are_the_contract() {
        let statuses = [
            TargetStatus::Applied,
            TargetStatus::UpToDate,
            TargetStatus::GaveUp,
            TargetStatus::Failed,
            TargetStatus::Unreachable,
            TargetStatus::Skipped,
        ];
        let names: Vec<String> = statuses
            .iter()
            .map(|s| {
                serde_json::to_value(s)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "applied",
                "up_to_date",
                "gave_up",
                "failed",
                "unreachable",
                "skipped"
            ]
        );
        for (status, name) in statuses.iter().zip(&names) {
            assert_eq!(status.as_str(), name);
        }
        let summary = serde_json::to_value(Summary::default()).unwrap();
        let keys: Vec<&String> = summary.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 6);
        for name in &names {
            assert!(summary.get(name).is_some(), "{name}");
        }
    }
}
