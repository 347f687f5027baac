//! LS304: `BEGIN` inside a transaction, or `COMMIT` of the transaction the
//! migration tool opened.

use crate::analysis::{StatementKind, TransactionControl};
use crate::lint::{declare_rule, Context, Violation};

declare_rule! {
    /// ## What it does
    /// Flags `BEGIN` when a transaction is already open (an earlier `BEGIN`,
    /// or the transaction the migration tool wraps each file in), and
    /// `COMMIT`/`ROLLBACK` in a wrapped file that did not open its own.
    ///
    /// ## Why is this bad?
    /// PostgreSQL has no nested transactions: the second `BEGIN` is ignored
    /// with a warning, and the first `COMMIT` ends the *outer* transaction.
    /// Everything after it runs in autocommit — statements the author meant
    /// to be atomic are not, and the tool's own bookkeeping (its version
    /// row) commits separately from the schema change.
    ///
    /// ## Example
    /// ```sql
    /// BEGIN;
    /// ALTER TABLE users ADD COLUMN note text;
    /// BEGIN;
    /// ALTER TABLE orders ADD COLUMN note text;
    /// COMMIT;
    /// ```
    ///
    /// ## Use instead
    /// One transaction (or none, when the tool opens it):
    /// ```sql
    /// BEGIN;
    /// ALTER TABLE users ADD COLUMN note text;
    /// COMMIT;
    /// ```
    pub struct NestingTransactions {
        id: "LS304",
        name: "nesting-transactions",
        severity: Warning,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    let StatementKind::Transaction(control) = ctx.statement.kind else {
        return Vec::new();
    };
    let state = ctx.state;
    match (control, state.begin_line) {
        (TransactionControl::Begin, Some(line)) => vec![Violation::new(format!(
            "a transaction is already open (BEGIN on line {line}): PostgreSQL ignores this BEGIN, and the first COMMIT ends the outer transaction"
        ))],
        (TransactionControl::Begin, None) if state.wrapped => vec![Violation::new(
            "the migration tool already runs this file in a transaction: PostgreSQL ignores this BEGIN, and its COMMIT ends the tool's transaction, so what follows runs in autocommit",
        )],
        (TransactionControl::Commit | TransactionControl::Rollback, None) if state.wrapped => {
            vec![Violation::new(
                "this ends the transaction the migration tool opened for the file: what follows runs in autocommit, and the tool's own bookkeeping commits apart from it",
            )]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::NestingTransactions as R;
    use crate::analysis::{analyze, TransactionState, MAX_PG_VERSION};
    use crate::lint::testing::{lint_errors, lint_ok};
    use crate::lint::{Check, Context};

    #[test]
    fn nested_begin() {
        let v = lint_errors(&R::RULE, "BEGIN;\nSELECT 1;\nBEGIN;");
        assert!(v[0].message.contains("line 1"), "{}", v[0].message);
        lint_ok(
            &R::RULE,
            "BEGIN; SELECT 1; COMMIT; BEGIN; SELECT 2; COMMIT;",
        );
    }

    #[test]
    fn wrapped_files() {
        let Check::Statement(check) = R::RULE.check else {
            unreachable!()
        };
        let fired = |sql: &str| {
            let mut state = TransactionState::wrapped();
            let mut n = 0;
            for s in analyze(sql, MAX_PG_VERSION).unwrap() {
                n += check(&Context {
                    statement: &s,
                    state: &state,
                    pg_version: MAX_PG_VERSION,
                })
                .len();
                state.apply(&s);
            }
            n
        };
        assert_eq!(fired("BEGIN; SELECT 1; COMMIT;"), 1);
        assert_eq!(fired("SELECT 1; COMMIT;"), 1);
        assert_eq!(fired("SELECT 1;"), 0);
    }
}
