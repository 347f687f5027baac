//! What a wrapped run says when it ends: the shared guard report
//! ([`RunReport`]) plus what only a wrapped command has. Serde types only:
//! these structs are the JSON contract of `locksmith run --format json`.

use serde::Serialize;

use super::plan::RunPlan;
use super::route::PoolerReport;
use crate::guard::watcher::CancelledWait;
use crate::migrate::RunReport;

/// The report of a wrapped run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every guarded run's keys (`status`, `attempts`, `blockers`, …); its
    /// own `pooler` stays empty, this report's is [`Report::pooler`].
    #[serde(flatten)]
    pub run: RunReport,
    /// Present when a connection pooler is in between: how the command's
    /// sessions were found, and what that cannot cover.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pooler: Option<PoolerReport>,
    /// The command's statements locksmith cancelled, in all attempts.
    pub cancelled_by_locksmith: Vec<CancelRecord>,
    /// The wrapped command's own exit code (last attempt), apart from
    /// locksmith's: e.g. psql's 3 is not "gave up blocked" (status `blocked`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_exit_code: Option<u8>,
    /// What was committed by an attempt a statement of which failed on a lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed: Option<String>,
    /// What the command was planned to do, when its SQL could be read first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<RunPlan>,
    /// The command as run, passwords hidden (for the human report).
    #[serde(skip)]
    pub command: String,
}

/// One statement of the command cancelled by locksmith, in the report
/// (`cancelled_by_locksmith`): never the command's own failure.
#[derive(Debug, Clone, Serialize)]
pub struct CancelRecord {
    /// The attempt it happened in.
    pub attempt: u32,
    /// The statement, backend, wait and blockers.
    #[serde(flatten)]
    pub wait: CancelledWait,
}
