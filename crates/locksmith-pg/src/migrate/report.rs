//! What a migration run says when it ends: the report of `apply` (and of
//! `run`, which shares its shape), and the plan `apply --dry-run` prints.
//! Serde types only: the JSON contract is these structs; the binary renders
//! the human text from the same values.

use locksmith_core::analysis::RelationLock;
use serde::Serialize;

use crate::guard::{GuardReport, Holder, Interrupt};
use crate::Pooler;

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Everything pending was applied (or nothing was pending).
    Applied,
    /// Gave up because still blocked.
    Blocked,
    /// A statement would hold (or held) a traffic-blocking lock longer than
    /// `--max-hold`; stopped and rolled back, or refused before running.
    #[serde(rename = "hold_exceeded")]
    HoldExceeded,
    /// Something else failed.
    Failed,
}

/// One applied (or attempted) migration.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationRecord {
    /// Version number (for `run`, and versions that are not one integer: 0).
    pub version: i64,
    /// The version when it is not one integer (`1.1`, `R__views`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_text: Option<String>,
    /// Name.
    pub name: String,
    /// Lock attempts it took.
    pub attempts: u32,
    /// Wall time, including waiting.
    pub duration_ms: u64,
}

/// The whole report, as `--format json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// applied | blocked | hold_exceeded | failed.
    pub status: Status,
    /// Lock attempts in all.
    pub attempts: u32,
    /// Migrations applied in this run, in order.
    pub migrations: Vec<MigrationRecord>,
    /// Who blocked us (when blocked: who still does).
    pub blockers: Vec<Holder>,
    /// Sessions terminated under `--terminate-idle-after`.
    pub terminated: Vec<Holder>,
    /// Most sessions that queued behind one of our lock requests.
    pub max_queued_behind: i64,
    /// What went wrong, when something did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Pending migrations another runner applied while this one ran (behind
    /// a pooler, found by each migration's own transaction); not run here.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub applied_elsewhere: Vec<MigrationRecord>,
    /// When the run stopped before the end: the migration it stopped at
    /// (`7 add_email`) and those still pending after it, so the user knows
    /// where things stand and what a rerun will do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
    /// Migrations still pending after the one it stopped at, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// Present when a connection pooler is in between.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pooler: Option<PoolerJson>,
    /// The signal that stopped the run (Ctrl-C, SIGTERM), if one did: the
    /// statement in flight was cancelled on the server and rolled back.
    #[serde(skip)]
    pub interrupted: Option<Interrupt>,
}

impl RunReport {
    /// A report from the guard's account of what it did.
    pub fn new(
        status: Status,
        guard: &GuardReport,
        migrations: Vec<MigrationRecord>,
        error: Option<String>,
    ) -> Self {
        RunReport {
            status,
            attempts: guard.attempts,
            migrations,
            blockers: if status == Status::Applied {
                Vec::new()
            } else {
                guard.labelled(&guard.blockers)
            },
            terminated: guard.labelled(&guard.terminated),
            max_queued_behind: guard.max_queued_behind,
            error,
            applied_elsewhere: Vec::new(),
            stopped_at: None,
            pending: Vec::new(),
            pooler: None,
            interrupted: None,
        }
    }
}

/// The `pooler` key of every command's JSON report: present when a
/// connection pooler is in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PoolerJson {
    /// Always true: the key is absent without a pooler.
    pub detected: bool,
    /// Whether `--direct-url` / `LOCKSMITH_DIRECT_URL` gave locksmith's own
    /// connections a route straight to the server.
    pub direct: bool,
    /// The process id the connection was announced under (the pooler's own).
    pub key_pid: i32,
    /// The server backend that answered locksmith's first query.
    pub backend_pid: i32,
}

impl PoolerJson {
    /// The key's value for `pooler`.
    pub fn new(pooler: Pooler, direct: bool) -> PoolerJson {
        PoolerJson {
            detected: true,
            direct,
            key_pid: pooler.key_pid,
            backend_pid: pooler.backend_pid,
        }
    }

    /// The key's value for `connection`: `None` without a pooler.
    pub fn of(connection: &crate::Connection, direct: bool) -> Option<PoolerJson> {
        connection.pooler().map(|p| PoolerJson::new(p, direct))
    }
}

/// The plan of what a run would do, as `apply --dry-run --format json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct DryRun {
    /// Always `planned`.
    pub status: &'static str,
    /// Versions recorded as applied without running (`--baseline`): a
    /// number when the version is one, else its text.
    pub baseline: Vec<serde_json::Value>,
    /// Pending migrations, in the order they would run.
    pub migrations: Vec<PlannedMigration>,
}

/// One pending migration of a [`DryRun`].
#[derive(Debug, Clone, Serialize)]
pub struct PlannedMigration {
    /// A number when the version is one, else its text (`1.1`, `R__views`).
    pub version: serde_json::Value,
    /// Name.
    pub name: String,
    /// Its file, relative to the folder.
    pub file: String,
    /// One transaction with its history row, or statement by statement.
    pub in_transaction: bool,
    /// What it would run.
    pub statements: Vec<PlannedStatement>,
    /// Sessions holding conflicting locks now.
    pub blockers: Vec<Holder>,
    /// With `--online`, the steps that run instead of the statements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online: Option<Vec<OnlineUnit>>,
}

/// One step of an online plan.
#[derive(Debug, Clone, Serialize)]
pub struct OnlineUnit {
    /// Runs in one transaction (else outside any, statement by statement).
    pub transaction: bool,
    /// Runs in batches over ranges of the table's key, one transaction each
    /// (an `UPDATE`, a type change's fill).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub batched: bool,
    /// Skipped when this query says an interrupted run already did it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_when: Option<String>,
    /// The statements.
    pub statements: Vec<OnlineStatement>,
}

/// A statement of an online step, with its locks.
#[derive(Debug, Clone, Serialize)]
pub struct OnlineStatement {
    /// The SQL.
    pub sql: String,
    /// The locks, as the analysis has them.
    pub locks: Vec<RelationLock>,
}

/// One statement and the locks it takes.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStatement {
    /// 1-based line in its file.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// The statement.
    pub sql: String,
    /// Locks on existing relations.
    pub locks: Vec<PlannedLock>,
    /// On a statement that rewrites, reads or indexes an existing table: its
    /// size, the estimated hold and the verdict (`rows`, `bytes`,
    /// `estimated_hold_ms`, `verdict` in JSON).
    #[serde(flatten)]
    pub hold: Option<PlannedHold>,
}

/// The size verdict on a planned statement (`crate::throughput::Sizes::verdict`).
#[derive(Debug, Clone, Serialize)]
pub struct PlannedHold {
    /// Rows, bytes, estimated hold.
    #[serde(flatten)]
    pub size: locksmith_core::lint::live::Size,
    /// Which risk dominates, in a sentence.
    pub verdict: String,
}

/// A lock a statement takes.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedLock {
    /// The relation.
    pub relation: String,
    /// `pg_locks` spelling, e.g. `AccessExclusiveLock`.
    pub mode: &'static str,
}
