//! Test helpers for rules, in squawk's spirit: `lint_errors(rule, sql)` gives
//! the rule's violations on the last statement of `sql`, with the
//! transaction state built from the statements before it; `lint_ok` asserts none.

use crate::analysis::{analyze, TransactionState, MAX_PG_VERSION};

use super::{Context, Rule, Violation};

/// The rule's violations across every statement of `sql`.
pub fn violations(rule: &Rule, sql: &str, pg_version: u32) -> Vec<Violation> {
    let stmts = analyze(sql, pg_version).unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut state = TransactionState::default();
    let super::Check::Statement(check) = rule.check else {
        panic!("{} is not a statement rule", rule.id);
    };
    let mut out = Vec::new();
    for s in &stmts {
        out.extend(check(&Context {
            statement: s,
            state: &state,
            pg_version,
        }));
        state.apply(s);
    }
    out
}

/// Asserts the rule reports something, and returns what.
#[track_caller]
pub fn lint_errors(rule: &Rule, sql: &str) -> Vec<Violation> {
    let v = violations(rule, sql, MAX_PG_VERSION);
    assert!(!v.is_empty(), "{} should fire on:\n{sql}", rule.id);
    v
}

/// Asserts the rule reports nothing.
#[track_caller]
pub fn lint_ok(rule: &Rule, sql: &str) {
    let v = violations(rule, sql, MAX_PG_VERSION);
    assert!(
        v.is_empty(),
        "{} should not fire on:\n{sql}\n{v:#?}",
        rule.id
    );
}
