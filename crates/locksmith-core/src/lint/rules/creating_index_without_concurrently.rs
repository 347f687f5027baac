//! LS102: `CREATE INDEX` without `CONCURRENTLY` blocks writes while it builds.

use crate::analysis::StatementKind;
use crate::lint::{declare_rule, Context, Violation};

use super::{insert_after_word, mode_on, online_fix, takes};

declare_rule! {
    /// ## What it does
    /// Flags `CREATE INDEX` without `CONCURRENTLY` on a table that already exists.
    ///
    /// ## Why is this bad?
    /// A plain `CREATE INDEX` holds a `ShareLock` on the table for the whole
    /// build, which blocks every `INSERT`, `UPDATE` and `DELETE` until the
    /// table has been read and sorted — minutes on a large table.
    ///
    /// ## Example
    /// ```sql
    /// CREATE INDEX orders_customer_id_idx ON orders (customer_id);
    /// ```
    ///
    /// ## Use instead
    /// ```sql
    /// CREATE INDEX CONCURRENTLY orders_customer_id_idx ON orders (customer_id);
    /// ```
    /// It takes only a `ShareUpdateExclusiveLock` (reads and writes go on),
    /// cannot run inside a transaction block, and leaves an `INVALID` index if
    /// it fails: drop that and try again.
    pub struct CreatingIndexWithoutConcurrently {
        id: "LS102",
        name: "creating-index-without-concurrently",
        severity: Error,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    match &ctx.statement.kind {
        StatementKind::CreateIndex {
            table,
            concurrently: false,
            ..
        } if !ctx.is_new(table) => {
            let message = format!(
                "CREATE INDEX {} while it builds the index",
                takes(mode_on(ctx, table), table)
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
    use super::CreatingIndexWithoutConcurrently as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn flags_and_fixes() {
        let v = lint_errors(&R::RULE, "create unique index i on t (a) where a > 0");
        assert_eq!(v[0].message, "CREATE INDEX takes ShareLock on `t`, which blocks writes (INSERT, UPDATE, DELETE) while it builds the index");
        assert_eq!(
            v[0].fix.as_deref(),
            Some("SET lock_timeout = '2s';\ncreate unique index CONCURRENTLY i on t (a) where a > 0;")
        );
    }

    #[test]
    fn new_tables_and_concurrently_are_fine() {
        lint_ok(&R::RULE, "CREATE INDEX CONCURRENTLY i ON t (a)");
        lint_ok(&R::RULE, "CREATE TABLE t (a int); CREATE INDEX i ON t (a)");
    }
}
