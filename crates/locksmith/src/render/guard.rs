//! The report of a guarded run (`apply`, `run`): JSON contract and human text.

use std::fmt::Write;

use locksmith_pg::guard::{GuardReport, Holder};
use serde::Serialize;

use super::style::Style;
use super::{age, one_line};

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
    /// Present when a connection pooler is in between.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pooler: Option<super::PoolerJson>,
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
            pooler: None,
        }
    }
}

/// What to do about blockers, in the story's terms.
pub const ADVICE: &str = "\
What to do:
  - End these transactions in the application: a session idle in transaction holds its locks until it ends.
    SQLAlchemy: call scoped_session.remove() (or session.close()) at the end of every request.
  - Let the server end them: ALTER ROLE <app role> SET idle_in_transaction_session_timeout = '60s';
  - Or rerun with --terminate-idle-after 30s to end blockers idle in transaction that long (active queries are never touched).";

/// Human text for the report.
pub fn human(report: &RunReport, style: Style) -> String {
    let mut out = String::new();
    match report.status {
        Status::Applied if report.migrations.is_empty() => {
            let _ = writeln!(
                out,
                "{}",
                style.green("Nothing to apply: the database is up to date.")
            );
        }
        Status::Applied => {
            for m in &report.migrations {
                let _ = writeln!(
                    out,
                    "{} {} {} in {} ({} attempt{})",
                    style.green("applied"),
                    m.version_text.clone().unwrap_or(m.version.to_string()),
                    m.name,
                    age(Some(m.duration_ms as i64)),
                    m.attempts,
                    if m.attempts == 1 { "" } else { "s" }
                );
            }
        }
        Status::Blocked => {
            let _ = writeln!(
                out,
                "{}",
                style.red(
                    "Gave up: the migration stayed blocked. Nothing was left queued on the server."
                )
            );
        }
        Status::HoldExceeded => {
            let _ = writeln!(
                out,
                "{}",
                style.red("Stopped: a statement would hold a lock that blocks traffic for longer than --max-hold. Nothing of that migration was applied.")
            );
        }
        Status::Failed => {
            let _ = writeln!(out, "{}", style.red("Failed."));
        }
    }
    if let Some(e) = &report.error {
        let _ = writeln!(out, "  {e}");
    }
    if !report.terminated.is_empty() {
        let _ = writeln!(
            out,
            "Terminated (idle in transaction past --terminate-idle-after, blocking the migration):"
        );
        for h in &report.terminated {
            let _ = writeln!(out, "  {}", holder_line(h));
        }
    }
    if !report.blockers.is_empty() {
        let _ = writeln!(out, "Blocked by:");
        for h in &report.blockers {
            let _ = writeln!(out, "  {}", holder_line(h));
        }
        let _ = writeln!(out, "{ADVICE}");
    }
    out
}

/// One line naming a session: pid, application, client, state, ages, lock, last query.
pub fn holder_line(h: &Holder) -> String {
    format!(
        "{}pid {} \"{}\" {} user {}: {} for {}, transaction {}; {}; last query: {}",
        h.server
            .as_deref()
            .map(|s| format!("on standby {s}: "))
            .unwrap_or_default(),
        h.session.pid,
        h.session.application_name,
        h.session.client_addr.as_deref().unwrap_or("local"),
        h.session.usename.as_deref().unwrap_or("?"),
        h.session.state.as_deref().unwrap_or("?"),
        age(h.session.state_age_ms),
        age(h.session.xact_age_ms),
        holds(h),
        one_line(&h.session.query, 80),
    )
}

/// What a holder holds that is in our way: `holds RowExclusiveLock on t`.
fn holds(h: &Holder) -> String {
    let on = h.relation.as_deref().unwrap_or(&h.lock_type);
    match (h.lock_type.as_str(), h.mode.as_str()) {
        ("snapshot", _) => "holds a snapshot a concurrent build waits for".into(),
        (_, "") => format!("blocks our lock on {on}"),
        (_, mode) => format!("holds {mode} on {on}"),
    }
}
