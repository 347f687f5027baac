//! The tracer's own findings for one statement, in lint's shape, so that
//! `trace` reports them beside lint's: a statement that failed on the
//! server, the server doing other than lint's model says, a statement not
//! traced (or not run because the live trace gave up blocked).

use locksmith_core::analysis::StatementKind;
use locksmith_core::lint::{Finding, Severity};

use super::{Method, StatementTrace, MODEL_MISMATCH, NOT_TRACED, STATEMENT_FAILED};

/// The findings of the trace `t` of a statement of kind `kind`.
pub fn findings(kind: &StatementKind, t: &StatementTrace) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(error) = &t.error {
        out.push(Finding {
            rule: STATEMENT_FAILED,
            severity: Severity::Error,
            message: format!("the statement failed on the server: {error}"),
            fix: None,
            size: None,
        });
    }
    if !t.differences.is_empty() {
        out.push(Finding {
            rule: MODEL_MISMATCH,
            severity: Severity::Warning,
            message: format!(
                "the server did not do what lint's model predicts: {}",
                t.differences.join("; ")
            ),
            fix: None,
            size: None,
        });
    }
    if t.method == Method::Blocked {
        let names: Vec<String> = t.blocked_by.iter().map(|h| h.label()).collect();
        out.push(Finding {
            rule: NOT_TRACED,
            severity: Severity::Error,
            message: format!(
                "{}{}; no lock request was left waiting, and the statements after it were not \
                 run: end {} or trace on the throwaway cluster (without --database-url)",
                t.note.as_deref().unwrap_or("gave up, blocked"),
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" (blocked by {})", names.join(", "))
                },
                if names.len() == 1 {
                    "that session"
                } else {
                    "those sessions"
                },
            ),
            fix: None,
            size: None,
        });
    }
    if t.method == Method::NotTraced && !matches!(kind, StatementKind::Transaction(_)) {
        out.push(Finding {
            rule: NOT_TRACED,
            severity: Severity::Warning,
            message: format!(
                "not traced: {}",
                t.note.as_deref().unwrap_or("no reason given")
            ),
            fix: None,
            size: None,
        });
    }
    out
}
