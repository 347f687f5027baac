//! LS105: a statement that cannot run in a transaction block, inside one.

use crate::lint::{declare_rule, Context, Violation};

declare_rule! {
    /// ## What it does
    /// Flags `CREATE INDEX CONCURRENTLY`, `DROP INDEX CONCURRENTLY`, `REINDEX
    /// CONCURRENTLY`, `DETACH PARTITION … CONCURRENTLY`, `VACUUM` and the like
    /// after a `BEGIN` (or in a file the migration tool runs in one transaction).
    ///
    /// ## Why is this bad?
    /// PostgreSQL refuses them inside a transaction block (`ERROR: … cannot run
    /// inside a transaction block`), so the migration fails half-way — or the
    /// author removes `CONCURRENTLY` to make it pass, and the lock it avoided
    /// comes back.
    ///
    /// ## Example
    /// ```sql
    /// BEGIN;
    /// CREATE INDEX CONCURRENTLY orders_customer_id_idx ON orders (customer_id);
    /// COMMIT;
    /// ```
    ///
    /// ## Use instead
    /// Run it on its own, outside the transaction (most migration tools have a
    /// per-migration switch for that, e.g. alembic's `autocommit_block()`):
    /// ```sql
    /// CREATE INDEX CONCURRENTLY orders_customer_id_idx ON orders (customer_id);
    /// ```
    pub struct ConcurrentlyInTransaction {
        id: "LS105",
        name: "concurrently-in-transaction",
        severity: Error,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    if ctx.statement.transactional || !ctx.state.in_transaction() {
        return Vec::new();
    }
    let since = match ctx.state.begin_line {
        Some(line) => format!("the transaction opened on line {line}"),
        None => "the transaction the migration tool wraps the file in".to_string(),
    };
    vec![Violation::new(format!(
        "this statement cannot run inside a transaction block, and runs inside {since}: PostgreSQL will reject it"
    ))]
}

#[cfg(test)]
mod tests {
    use super::ConcurrentlyInTransaction as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn inside_and_outside() {
        let v = lint_errors(&R::RULE, "BEGIN;\nVACUUM t;");
        assert!(v[0].message.contains("line 1"));
        lint_ok(
            &R::RULE,
            "BEGIN; SELECT 1; COMMIT; CREATE INDEX CONCURRENTLY i ON t (a);",
        );
    }
}
