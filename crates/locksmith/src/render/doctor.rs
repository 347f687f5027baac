//! The doctor report for people: findings worst first, each with why and
//! the fix, then the server log's telltale lines with what they mean.

use std::fmt::Write;

use locksmith_core::server_log::LogSummary;
use locksmith_pg::audit::{Finding, Severity};

use super::style::Style;

/// Renders findings and log summaries as text.
pub fn human(findings: &[Finding], log: &[LogSummary], style: Style) -> String {
    let mut out = String::new();
    if findings.is_empty() {
        let _ = writeln!(
            out,
            "{}",
            style.green("No settings or sessions make a lock-queue outage likely.")
        );
    }
    for f in findings {
        let label = match f.severity {
            Severity::Error => style.red("error  "),
            Severity::Warning => style.yellow("warning"),
            Severity::Info => style.dim("info   "),
        };
        let _ = writeln!(
            out,
            "{label} {} {}",
            style.bold(&f.message),
            style.dim(&format!("[{}]", f.id))
        );
        let _ = writeln!(out, "        why: {}", f.why);
        for (i, line) in f.fix.lines().enumerate() {
            let label = if i == 0 { "fix:" } else { "    " };
            let _ = writeln!(out, "        {label} {line}");
        }
    }
    if !log.is_empty() {
        let _ = writeln!(out, "\n{}", style.bold("Server log:"));
    }
    for s in log {
        let pids: Vec<String> = s.pids.iter().map(|p| p.to_string()).collect();
        let _ = writeln!(
            out,
            "  {} ×{}  first {}  last {}  pids {}",
            style.bold(s.kind.id()),
            s.count,
            s.first.as_deref().unwrap_or("?"),
            s.last.as_deref().unwrap_or("?"),
            pids.join(", ")
        );
        if !s.locks.is_empty() {
            let _ = writeln!(out, "      waited for: {}", s.locks.join("; "));
        }
        if !s.holding.is_empty() || !s.queue.is_empty() {
            let list = |v: &[i32]| {
                v.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let _ = writeln!(
                out,
                "      holding the lock: {}; wait queue: {}",
                list(&s.holding),
                list(&s.queue)
            );
        }
        let _ = writeln!(out, "      {}", style.dim(s.meaning));
    }
    out
}
