//! LS111: `ALTER TABLE` forms that copy the table: `SET TABLESPACE`,
//! `SET LOGGED/UNLOGGED`, `SET ACCESS METHOD`, `SET EXPRESSION`.

use crate::analysis::AlterAction;
use crate::lint::{declare_rule, Context, Violation};

use super::{alter_on_existing, mode_on, takes};

declare_rule! {
    /// ## What it does
    /// Flags `ALTER TABLE … SET TABLESPACE`, `SET LOGGED`, `SET UNLOGGED`,
    /// `SET ACCESS METHOD` and `ALTER COLUMN … SET EXPRESSION` on an existing table.
    ///
    /// ## Why is this bad?
    /// Each copies the whole table (and, for `SET TABLESPACE`, its files)
    /// under an `AccessExclusiveLock`: no reads, no writes until the copy is done.
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
            } => Some(what),
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
}
