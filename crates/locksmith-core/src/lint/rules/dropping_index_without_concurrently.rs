//! LS103: `DROP INDEX` without `CONCURRENTLY` takes an `AccessExclusiveLock`
//! on the index's table.

use crate::analysis::StatementKind;
use crate::lint::{declare_rule, Context, Violation};

use super::{insert_after_word, online_fix};

declare_rule! {
    /// ## What it does
    /// Flags `DROP INDEX` without `CONCURRENTLY`, for an index this file did not create.
    ///
    /// ## Why is this bad?
    /// `DROP INDEX` takes an `AccessExclusiveLock` on the index's table, which
    /// blocks all reads and writes. The drop itself is quick, but the lock
    /// request waits behind every open transaction on the table, and all new
    /// queries wait behind it.
    ///
    /// ## Example
    /// ```sql
    /// DROP INDEX orders_customer_id_idx;
    /// ```
    ///
    /// ## Use instead
    /// ```sql
    /// DROP INDEX CONCURRENTLY orders_customer_id_idx;
    /// ```
    /// It waits for running transactions without blocking new ones; it cannot
    /// run inside a transaction block.
    pub struct DroppingIndexWithoutConcurrently {
        id: "LS103",
        name: "dropping-index-without-concurrently",
        severity: Warning,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    match &ctx.statement.kind {
        StatementKind::DropIndex {
            indexes,
            concurrently: false,
        } if !indexes.iter().all(|i| ctx.is_new(i)) => {
            let message = format!(
                "DROP INDEX {} takes AccessExclusiveLock on its table, which blocks all reads and writes",
                indexes.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
            );
            vec![Violation::new(message).with_fix_opt(
                online_fix(ctx)
                    .or_else(|| insert_after_word(&ctx.statement.sql, &["INDEX"], "CONCURRENTLY")),
            )]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::DroppingIndexWithoutConcurrently as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn flags_and_fixes() {
        let v = lint_errors(&R::RULE, "DROP INDEX IF EXISTS i");
        assert_eq!(
            v[0].fix.as_deref(),
            Some("SET lock_timeout = '2s';\nDROP INDEX CONCURRENTLY IF EXISTS i;")
        );
        lint_ok(&R::RULE, "DROP INDEX CONCURRENTLY i");
    }
}
