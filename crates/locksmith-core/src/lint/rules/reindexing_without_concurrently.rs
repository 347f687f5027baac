//! LS104: `REINDEX` without `CONCURRENTLY` blocks writes (and reads that use the index).

use crate::analysis::StatementKind;
use crate::lint::{declare_rule, Context, Violation};

use super::{insert_after_word, online_fix};

declare_rule! {
    /// ## What it does
    /// Flags `REINDEX INDEX|TABLE|SCHEMA|DATABASE` without `CONCURRENTLY`.
    ///
    /// ## Why is this bad?
    /// `REINDEX` holds a `ShareLock` on the table, blocking writes, and an
    /// `AccessExclusiveLock` on each index it rebuilds, blocking every query
    /// that would use it, until the rebuild is done.
    ///
    /// ## Example
    /// ```sql
    /// REINDEX INDEX orders_customer_id_idx;
    /// ```
    ///
    /// ## Use instead
    /// ```sql
    /// REINDEX INDEX CONCURRENTLY orders_customer_id_idx;
    /// ```
    /// `CONCURRENTLY` (PostgreSQL 12+) takes only `ShareUpdateExclusiveLock`s;
    /// it cannot run inside a transaction block.
    pub struct ReindexingWithoutConcurrently {
        id: "LS104",
        name: "reindexing-without-concurrently",
        severity: Warning,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    match &ctx.statement.kind {
        StatementKind::Reindex {
            concurrently: false,
            target,
        } => {
            if target.as_deref().is_some_and(|t| ctx.is_new(t)) {
                return Vec::new();
            }
            let message = "REINDEX takes ShareLock on the table, which blocks writes, and AccessExclusiveLock on each index, which blocks the queries that use it, until the rebuild is done";
            let fix = insert_after_word(
                &ctx.statement.sql,
                &["INDEX", "TABLE", "SCHEMA", "DATABASE", "SYSTEM"],
                "CONCURRENTLY",
            );
            vec![Violation::new(message).with_fix_opt(online_fix(ctx).or(fix))]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::ReindexingWithoutConcurrently as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn flags_and_fixes() {
        let v = lint_errors(&R::RULE, "REINDEX TABLE orders");
        assert_eq!(
            v[0].fix.as_deref(),
            Some("SET lock_timeout = '2s';\nREINDEX TABLE CONCURRENTLY orders;")
        );
        lint_ok(&R::RULE, "REINDEX (VERBOSE) TABLE CONCURRENTLY orders");
    }
}
