//! The account of a wrapped run across its attempts: what the watch saw
//! (blockers, cancels, terminations, its failed actions), folded in after
//! each attempt and announced as events, and the [`Report`] it ends with.
//!
//! It must not decide what happens next: that is the attempt loop's
//! ([`super::flow`]).

use std::time::Instant;

use super::plan::RunPlan;
use super::{CancelRecord, Event, PoolerReport, Report, Wrapped};
use crate::guard::watcher::{WantedLock, Watch, Watcher};
use crate::guard::{GuardReport, Holder, Interrupt};
use crate::migrate::{MigrationRecord, RunReport, Status};

/// The run so far, across attempts.
pub(super) struct Run<'a> {
    pub(super) wrapped: &'a Wrapped,
    /// The command as given, passwords hidden.
    pub(super) command: String,
    /// The same on one line, for messages.
    pub(super) shown: String,
    /// The command as started (psql told to stop on error).
    pub(super) cmd: Vec<String>,
    pub(super) pooled: bool,
    pub(super) direct: bool,
    pub(super) started: Instant,
    pub(super) report: GuardReport,
    /// Locks the command waited for, in any attempt: what a retry looks at first.
    pub(super) wanted: Vec<WantedLock>,
    /// Failed actions of the watchdog (e.g. termination not permitted), each once.
    pub(super) errors: Vec<String>,
    /// The route, for the report's `pooler` key.
    pub(super) pooler: Option<PoolerReport>,
    /// The command's statements locksmith cancelled, in all attempts.
    pub(super) cancels: Vec<CancelRecord>,
    /// The wrapped command's own exit code in the last attempt, once one ended.
    pub(super) command_exit_code: Option<u8>,
    /// What the last attempt committed before a statement of it failed on a lock.
    pub(super) committed: Option<String>,
    /// The plan read before the first attempt, if one could be.
    pub(super) plan: Option<RunPlan>,
}

impl Run<'_> {
    /// What the attempt since `mark` committed, as the watch saw it.
    pub(super) async fn committed_since(
        &self,
        dog: &Watcher,
        mark: i64,
        watch: &Watch,
    ) -> Option<String> {
        dog.committed_since(mark, &watch.xids)
            .await
            .unwrap_or_else(|e| Some(format!("cannot tell ({e})")))
    }

    /// Records and announces the statements the watch cancelled in `attempt`.
    pub(super) fn absorb_cancels(&mut self, attempt: u32, watch: &Watch) {
        for wait in &watch.cancels {
            self.wrapped.emit(Event::Cancelled(wait));
            self.cancels.push(CancelRecord {
                attempt,
                wait: wait.clone(),
            });
        }
    }

    /// Folds what the watchdog saw into the run's account, announcing terminations.
    pub(super) fn absorb(&mut self, watch: &Watch) {
        for h in &watch.terminated {
            self.wrapped.emit(Event::Terminated(h));
            self.report.terminated.push(h.clone());
        }
        for e in &watch.errors {
            if !self.errors.contains(e) {
                self.wrapped.emit(Event::Warning(e));
                self.errors.push(e.clone());
            }
        }
        for w in &watch.wanted {
            if !self.wanted.contains(w) {
                self.wanted.push(w.clone());
            }
        }
        // Who the command waited for, minus those since terminated.
        let live: Vec<Holder> = watch
            .blockers
            .iter()
            .filter(|b| {
                !self
                    .report
                    .terminated
                    .iter()
                    .any(|t| t.session.pid == b.session.pid)
            })
            .cloned()
            .collect();
        if !live.is_empty() {
            self.report.blockers = live;
        }
        self.report.max_queued_behind = self.report.max_queued_behind.max(watch.max_queued_behind);
        self.report.longest_wait_ms = self
            .report
            .longest_wait_ms
            .max(watch.longest_wait.as_millis() as u64);
    }

    /// The final report, with the watch's failed actions added to its error.
    pub(super) fn finish(&mut self, status: Status, error: Option<String>) -> Report {
        let error = match (error, self.errors.is_empty()) {
            (Some(e), false) => Some(format!("{e}; {}", self.errors.join("; "))),
            (None, false) => Some(self.errors.join("; ")),
            (e, true) => e,
        };
        let migrations = if status == Status::Applied {
            vec![MigrationRecord {
                version: 0,
                version_text: None,
                name: self.command.clone(),
                attempts: self.report.attempts,
                duration_ms: self.started.elapsed().as_millis() as u64,
            }]
        } else {
            Vec::new()
        };
        Report {
            run: RunReport::new(status, &self.report, migrations, error),
            pooler: self.pooler.clone(),
            cancelled_by_locksmith: std::mem::take(&mut self.cancels),
            command_exit_code: self.command_exit_code,
            committed: self.committed.clone(),
            plan: self.plan.clone(),
            command: self.command.clone(),
        }
    }

    /// Ctrl-C or SIGTERM: the command's statements were cancelled.
    pub(super) fn interrupted(&mut self, signal: Interrupt) -> Report {
        let name = if signal == Interrupt::Interrupt {
            "Ctrl-C"
        } else {
            "SIGTERM"
        };
        let mut report = self.finish(
            Status::Failed,
            Some(format!(
                "interrupted ({name}); the command's statements were cancelled on the server"
            )),
        );
        report.run.interrupted = Some(signal);
        report
    }
}
