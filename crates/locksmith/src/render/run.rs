//! Human text for `locksmith run`'s final report. The JSON is the shared
//! [`RunReport`] contract; only the prose differs from `apply`'s, because a
//! wrapped command is one opaque migration, not numbered files, and whether
//! it rolled back is the command's business, not ours to claim.

use std::fmt::Write;

use super::guard::{holder_line, RunReport, Status};
use super::style::Style;
use super::{age, one_line};

/// The report as a few lines for stderr.
pub fn human(report: &RunReport, command: &str, style: Style) -> String {
    let command = one_line(command, 80);
    let plural = |n: u32| if n == 1 { "" } else { "s" };
    let mut out = String::new();
    match report.status {
        Status::Applied => {
            let took = report
                .migrations
                .first()
                .map(|m| age(Some(m.duration_ms as i64)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{} `{command}` in {took} ({} attempt{})",
                style.green("applied:"),
                report.attempts,
                plural(report.attempts)
            );
            if !report.terminated.is_empty() {
                let _ = writeln!(out, "Terminated (idle in transaction past --terminate-idle-after, blocking the migration):");
                for h in &report.terminated {
                    let _ = writeln!(out, "  {}", holder_line(h));
                }
            }
        }
        Status::Blocked | Status::HoldExceeded => {
            let _ = writeln!(
                out,
                "{} `{command}` after {} attempt{}",
                style.red("locksmith run gave up:"),
                report.attempts,
                plural(report.attempts)
            );
            // A wrapped command has no folder: nothing of "where things stand" applies.
            out.push_str(&super::guard::human(report, "", style));
        }
        Status::Failed => {
            let _ = writeln!(
                out,
                "{} {}",
                style.red("locksmith run:"),
                report.error.as_deref().unwrap_or("failed")
            );
            if !report.terminated.is_empty() {
                let _ = writeln!(out, "Terminated before that:");
                for h in &report.terminated {
                    let _ = writeln!(out, "  {}", holder_line(h));
                }
            }
        }
    }
    out
}
