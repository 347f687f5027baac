//! LS302: an `UPDATE`/`DELETE` of every row, worst inside a DDL transaction.

use crate::analysis::StatementKind;
use crate::lint::{declare_rule, Context, Severity, Violation};

declare_rule! {
    /// ## What it does
    /// Flags `UPDATE` and `DELETE` without `WHERE` on an existing table — an
    /// error when the transaction already holds an `AccessExclusiveLock`.
    ///
    /// ## Why is this bad?
    /// One statement writes every row: it row-locks them all until `COMMIT`
    /// (concurrent updates of any row wait), doubles the table on disk, and
    /// may run for minutes. Inside a transaction that already altered a table,
    /// that table stays unreadable for the whole backfill.
    ///
    /// ## Example
    /// ```sql
    /// BEGIN;
    /// ALTER TABLE users ADD COLUMN active boolean;
    /// UPDATE users SET active = true;
    /// COMMIT;
    /// ```
    ///
    /// ## Use instead
    /// Commit the schema change, then backfill in batches, each its own transaction:
    /// ```sql
    /// ALTER TABLE users ADD COLUMN active boolean;
    /// UPDATE users SET active = true WHERE id BETWEEN 1 AND 10000 AND active IS NULL;
    /// ```
    pub struct UpdatingWholeTable {
        id: "LS302",
        name: "updating-whole-table",
        severity: Warning,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    let StatementKind::Dml {
        command,
        table,
        whole_table: true,
    } = &ctx.statement.kind
    else {
        return Vec::new();
    };
    if ctx.is_new(table) {
        return Vec::new();
    }
    if ctx.state.in_transaction() && !ctx.state.access_exclusive.is_empty() {
        let held: Vec<String> = ctx
            .state
            .access_exclusive
            .iter()
            .map(|h| format!("`{}`", h.relation))
            .collect();
        return vec![Violation::new(format!(
            "{command} of every row of `{table}` inside a transaction that holds AccessExclusiveLock on {}: all reads and writes of it wait until the whole {command} commits",
            held.join(", ")
        ))
        .with_severity(Severity::Error)];
    }
    vec![Violation::new(format!(
        "{command} of every row of `{table}` in one transaction row-locks the whole table until it commits: concurrent writes of those rows wait; do it in batches"
    ))]
}

#[cfg(test)]
mod tests {
    use super::UpdatingWholeTable as R;
    use crate::lint::testing::{lint_errors, lint_ok};
    use crate::lint::Severity;

    #[test]
    fn whole_table() {
        let v = lint_errors(
            &R::RULE,
            "BEGIN; ALTER TABLE u ADD COLUMN a int; UPDATE u SET a = 1;",
        );
        assert_eq!(v[0].severity, Some(Severity::Error));
        let v = lint_errors(&R::RULE, "DELETE FROM u");
        assert_eq!(v[0].severity, None);
        lint_ok(&R::RULE, "UPDATE u SET a = 1 WHERE id < 100");
    }
}
