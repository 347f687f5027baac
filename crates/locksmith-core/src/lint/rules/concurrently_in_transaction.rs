//! LS105: a statement that cannot run in a transaction block (`…
//! CONCURRENTLY`, `VACUUM`, `CREATE DATABASE` …), inside one.

use crate::analysis::{AlterAction, StatementKind};
use crate::lint::{declare_rule, Context, Violation};

declare_rule! {
    /// ## What it does
    /// Flags `CREATE INDEX CONCURRENTLY`, `DROP INDEX CONCURRENTLY`, `REINDEX
    /// CONCURRENTLY`, `DETACH PARTITION … CONCURRENTLY`, `VACUUM`, `REINDEX
    /// SCHEMA`/`DATABASE`, `CREATE DATABASE`, `ALTER SYSTEM` and the like after
    /// a `BEGIN` (or in a file the migration tool runs in one transaction).
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
        name: "running-non-transactional-statement-in-transaction",
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
        "{} cannot run inside a transaction block, and runs inside {since}: PostgreSQL will reject it",
        command(ctx)
    ))]
}

/// The statement's command in SQL words, e.g. `VACUUM` or `CREATE INDEX CONCURRENTLY`.
fn command(ctx: &Context<'_>) -> String {
    let words = match &ctx.statement.kind {
        StatementKind::CreateIndex { .. } => "CREATE INDEX CONCURRENTLY",
        StatementKind::DropIndex { .. } => "DROP INDEX CONCURRENTLY",
        StatementKind::Reindex {
            concurrently: true, ..
        } => "REINDEX CONCURRENTLY",
        StatementKind::Vacuum { full: true, .. } => "VACUUM FULL",
        StatementKind::Vacuum { .. } => "VACUUM",
        StatementKind::Cluster { .. } => "CLUSTER without a table",
        StatementKind::AlterTable { actions, .. }
            if actions
                .iter()
                .any(|a| matches!(a, AlterAction::DetachPartition { .. })) =>
        {
            "DETACH PARTITION … CONCURRENTLY"
        }
        _ => {
            let first: Vec<&str> = ctx.statement.sql.split_whitespace().take(2).collect();
            return format!("`{}`", first.join(" ").to_ascii_uppercase());
        }
    };
    format!("`{words}`")
}

#[cfg(test)]
mod tests {
    use super::ConcurrentlyInTransaction as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn inside_and_outside() {
        let v = lint_errors(&R::RULE, "BEGIN;\nVACUUM t;");
        assert_eq!(v[0].message, "`VACUUM` cannot run inside a transaction block, and runs inside the transaction opened on line 1: PostgreSQL will reject it");
        let v = lint_errors(&R::RULE, "BEGIN; CREATE INDEX CONCURRENTLY i ON t (a);");
        assert!(v[0]
            .message
            .starts_with("`CREATE INDEX CONCURRENTLY` cannot"));
        let v = lint_errors(&R::RULE, "BEGIN; REINDEX SCHEMA app;");
        assert!(
            v[0].message.starts_with("`REINDEX SCHEMA` cannot"),
            "{}",
            v[0].message
        );
        lint_ok(
            &R::RULE,
            "BEGIN; SELECT 1; COMMIT; CREATE INDEX CONCURRENTLY i ON t (a);",
        );
    }
}
