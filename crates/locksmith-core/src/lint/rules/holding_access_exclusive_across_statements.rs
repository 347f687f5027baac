//! LS301: a slow statement (a scan, a rewrite) in a transaction that holds
//! an `AccessExclusiveLock` from an earlier statement.

use crate::lint::{declare_rule, Context, Violation};
use crate::lock::LockMode;

declare_rule! {
    /// ## What it does
    /// Flags a statement that reads or rewrites a whole table (an index
    /// build, a validation, a table rewrite) inside a transaction that
    /// already holds an `AccessExclusiveLock` from an earlier statement.
    /// Instant statements after the lock (renames, `ADD COLUMN` without a
    /// volatile default, `SET DEFAULT`, dropping a constraint) are not
    /// flagged: they add no time to the hold.
    ///
    /// ## Why is this bad?
    /// Locks are held until `COMMIT`. Once the first `AccessExclusiveLock` is
    /// granted, every read and write of that table waits — not for one
    /// statement but for the rest of the transaction, so for as long as the
    /// slow statement after it takes to read the whole table.
    ///
    /// ## Example
    /// ```sql
    /// BEGIN;
    /// ALTER TABLE orders ADD COLUMN note text;
    /// CREATE INDEX orders_customer_idx ON orders (customer_id);
    /// COMMIT;
    /// ```
    ///
    /// ## Use instead
    /// The slow statement in a transaction of its own (or none), after the
    /// brief one committed; `lint --fix` moves it to a migration of its own:
    /// ```sql
    /// BEGIN;
    /// ALTER TABLE orders ADD COLUMN note text;
    /// COMMIT;
    /// CREATE INDEX CONCURRENTLY orders_customer_idx ON orders (customer_id);
    /// ```
    pub struct HoldingAccessExclusiveAcrossStatements {
        id: "LS301",
        name: "holding-access-exclusive-across-statements",
        severity: Warning,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    if !ctx.state.in_transaction() || ctx.state.access_exclusive.is_empty() {
        return Vec::new();
    }
    let s = ctx.statement;
    let slow = s.scans.iter().chain(&s.rewrites).find(|r| !ctx.is_new(r));
    let Some(slow) = slow else {
        return Vec::new();
    };
    let work = if s.rewrites.iter().any(|r| r == slow) {
        "rewrites"
    } else {
        "reads all of"
    };
    let held: Vec<String> = ctx
        .state
        .access_exclusive
        .iter()
        .map(|h| format!("`{}` (line {})", h.relation, h.line))
        .collect();
    vec![Violation::new(format!(
        "this transaction already holds {} on {}: all reads and writes of it wait until COMMIT, while this statement {work} `{slow}`",
        LockMode::AccessExclusive,
        held.join(", ")
    ))]
}

#[cfg(test)]
mod tests {
    use super::HoldingAccessExclusiveAcrossStatements as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn slow_statement_under_a_held_lock() {
        let v = lint_errors(
            &R::RULE,
            "BEGIN;\nALTER TABLE a ADD COLUMN x int;\nCREATE INDEX i ON b (y);",
        );
        assert!(v[0].message.contains("`a` (line 2)"), "{}", v[0].message);
        assert!(
            v[0].message.contains("reads all of `b`"),
            "{}",
            v[0].message
        );
        // Each held relation is named once, however many statements took it.
        let v = lint_errors(
            &R::RULE,
            "BEGIN;\nALTER TABLE a ADD COLUMN x int;\nALTER TABLE a ADD COLUMN y int;\nALTER TABLE a ADD CONSTRAINT c CHECK (x > 0);",
        );
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].message.matches("`a`").count(), 2, "{}", v[0].message);
        lint_ok(
            &R::RULE,
            "ALTER TABLE a ADD COLUMN x int; CREATE INDEX i ON a (x);",
        );
        lint_ok(
            &R::RULE,
            "BEGIN; CREATE TABLE n (id int); CREATE INDEX i ON n (id);",
        );
    }

    #[test]
    fn instant_statements_are_not_flagged() {
        // Renames and metadata-only changes add nothing to the hold.
        lint_ok(
            &R::RULE,
            "BEGIN; ALTER TABLE a RENAME COLUMN x TO y; ALTER TABLE b RENAME TO c; ALTER TABLE d ADD COLUMN z int; ALTER TABLE d ALTER COLUMN z SET DEFAULT 0; ALTER TABLE e DROP CONSTRAINT k;",
        );
    }
}
