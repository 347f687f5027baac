//! LS301: several `AccessExclusiveLock` statements in one transaction.

use crate::lint::{declare_rule, Context, Violation};
use crate::lock::LockMode;

declare_rule! {
    /// ## What it does
    /// Flags a statement that takes an `AccessExclusiveLock` inside a
    /// transaction that already holds one from an earlier statement.
    ///
    /// ## Why is this bad?
    /// Locks are held until `COMMIT`. Once the first `AccessExclusiveLock` is
    /// granted, every read and write of that table waits — not for one
    /// statement but for the rest of the transaction, including the time the
    /// next statements spend waiting for *their* locks. Two tables locked in
    /// sequence also invite deadlocks with the application.
    ///
    /// ## Example
    /// ```sql
    /// BEGIN;
    /// ALTER TABLE orders ADD COLUMN note text;
    /// ALTER TABLE customers ADD COLUMN note text;
    /// COMMIT;
    /// ```
    ///
    /// ## Use instead
    /// One short transaction per table, each under a `lock_timeout`:
    /// ```sql
    /// BEGIN;
    /// ALTER TABLE orders ADD COLUMN note text;
    /// COMMIT;
    /// BEGIN;
    /// ALTER TABLE customers ADD COLUMN note text;
    /// COMMIT;
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
    let takes_new = ctx.statement.locks.iter().any(|l| {
        l.mode == LockMode::AccessExclusive
            && !ctx.is_new(&l.relation)
            && !ctx.state.holds_access_exclusive(&l.relation)
    });
    if !takes_new {
        return Vec::new();
    }
    let held: Vec<String> = ctx
        .state
        .access_exclusive
        .iter()
        .map(|h| format!("`{}` (line {})", h.relation, h.line))
        .collect();
    vec![Violation::new(format!(
        "this transaction already holds AccessExclusiveLock on {}: all reads and writes of it wait until COMMIT, including while this statement waits for and holds its own AccessExclusiveLock",
        held.join(", ")
    ))]
}

#[cfg(test)]
mod tests {
    use super::HoldingAccessExclusiveAcrossStatements as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn second_strong_lock_in_a_transaction() {
        let v = lint_errors(
            &R::RULE,
            "BEGIN;\nALTER TABLE a ADD COLUMN x int;\nALTER TABLE b ADD COLUMN y int;",
        );
        assert!(v[0].message.contains("`a` (line 2)"), "{}", v[0].message);
        // Each held relation is named once, however many statements took it.
        let v = lint_errors(
            &R::RULE,
            "BEGIN;\nALTER TABLE a ADD COLUMN x int;\nALTER TABLE a ADD COLUMN y int;\nALTER TABLE a ADD COLUMN z int;\nALTER TABLE b ADD COLUMN y int;",
        );
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].message.matches("`a`").count(), 1, "{}", v[0].message);
        lint_ok(
            &R::RULE,
            "ALTER TABLE a ADD COLUMN x int; ALTER TABLE b ADD COLUMN y int;",
        );
        // The lock on `a` is already held: the second statement adds no wait.
        lint_ok(
            &R::RULE,
            "BEGIN; ALTER TABLE a ADD COLUMN x int; ALTER TABLE a ALTER COLUMN x SET DEFAULT 0;",
        );
        lint_ok(&R::RULE, "BEGIN; CREATE TABLE n (id int); ALTER TABLE n ADD COLUMN x int; ALTER TABLE a ADD COLUMN y int;");
    }
}
