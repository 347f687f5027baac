//! LS111: `ALTER TABLE` forms that copy the table: `SET TABLESPACE`,
//! `SET LOGGED/UNLOGGED`, `SET ACCESS METHOD`, `SET EXPRESSION`, and
//! `ADD COLUMN` of a domain with constraints.

use crate::analysis::AlterAction;
use crate::lint::{declare_rule, Context, Violation};

use super::{alter_on_existing, mode_on, takes};

declare_rule! {
    /// ## What it does
    /// Flags `ALTER TABLE … SET TABLESPACE`, `SET LOGGED`, `SET UNLOGGED`,
    /// `SET ACCESS METHOD` and `ALTER COLUMN … SET EXPRESSION` on an existing
    /// table, and `ADD COLUMN` of a domain type that has a `CHECK` or `NOT
    /// NULL` constraint (when the domain was created or altered in the files
    /// linted; an unknown type is assumed to be no such domain).
    ///
    /// ## Why is this bad?
    /// Each copies the whole table (and, for `SET TABLESPACE`, its files)
    /// under an `AccessExclusiveLock`: no reads, no writes until the copy is
    /// done. A new column of a constrained domain is checked against every
    /// row, which PostgreSQL does by rewriting the table.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE events SET LOGGED;
    /// ```
    ///
    /// ## Use instead
    /// Do it in a maintenance window, or build the new table alongside (for
    /// example with logical replication or `pg_repack`) and switch over:
    /// ```sql
    /// -- in a maintenance window, under a lock budget:
    /// SET lock_timeout = '2s';
    /// ```
    pub struct RewritingTable {
        id: "LS111",
        name: "rewriting-table",
        severity: Error,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    let Some((table, actions)) = alter_on_existing(ctx) else {
        return Vec::new();
    };
    actions
        .iter()
        .filter_map(|a| match a {
            AlterAction::Other {
                what,
                rewrites: true,
                ..
            } => Some(what.to_string()),
            AlterAction::AddColumn {
                column,
                checked_domain: Some(domain),
                ..
            } => Some(format!(
                "ADD COLUMN `{column}` of domain `{domain}`, which has constraints,"
            )),
            _ => None,
        })
        .map(|what| {
            Violation::new(format!(
                "{what} rewrites the whole table while it {}",
                takes(mode_on(ctx, table), table)
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::RewritingTable as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn rewrites() {
        let v = lint_errors(&R::RULE, "ALTER TABLE t SET TABLESPACE fast");
        assert_eq!(v[0].message, "SET TABLESPACE rewrites the whole table while it takes AccessExclusiveLock on `t`, which blocks all reads and writes");
        lint_ok(&R::RULE, "ALTER TABLE t SET (fillfactor = 70)");
    }

    #[test]
    fn column_of_a_checked_domain() {
        let v = lint_errors(
            &R::RULE,
            "CREATE DOMAIN positive AS int CHECK (VALUE > 0); ALTER TABLE t ADD COLUMN n positive",
        );
        assert_eq!(v[0].message, "ADD COLUMN `n` of domain `positive`, which has constraints, rewrites the whole table while it takes AccessExclusiveLock on `t`, which blocks all reads and writes");
        lint_ok(
            &R::RULE,
            "CREATE DOMAIN label AS text; ALTER TABLE t ADD COLUMN n label",
        );
        lint_ok(&R::RULE, "ALTER TABLE t ADD COLUMN n some_type");
    }
}
