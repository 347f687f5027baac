//! LS202: dropping a column or table breaks the code that is running.

use crate::analysis::{AlterAction, StatementKind};
use crate::lint::{declare_rule, Context, Violation};

declare_rule! {
    /// ## What it does
    /// Flags `ALTER TABLE … DROP COLUMN` and `DROP TABLE` of objects this file
    /// did not create.
    ///
    /// ## Why is this bad?
    /// The application version still running during the deploy may read or
    /// write what is dropped, and fails as soon as the drop commits (an ORM
    /// that lists every column in its `INSERT` fails even if nothing reads
    /// the column). Both take an `AccessExclusiveLock`, and data is gone for good.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users DROP COLUMN legacy_flag;
    /// ```
    ///
    /// ## Use instead
    /// First deploy code that no longer uses it (for Rails, `ignored_columns`;
    /// for Django, a separate migration), then drop it in a later release with
    /// a suppression that says so:
    /// ```sql
    /// -- locksmith: ignore LS202 unused since release 42
    /// ALTER TABLE users DROP COLUMN legacy_flag;
    /// ```
    pub struct DroppingColumnOrTable {
        id: "LS202",
        name: "dropping-column-or-table",
        severity: Warning,
        check: check,
    }
}

/// The contract step of expand/contract, as the finding says it.
const CONTRACT: &str = "first release code that no longer reads or writes it (Rails: `ignored_columns` for a column; Django: remove the field or model in a release of its own), then drop it in a later release under `-- locksmith: ignore LS202 <why it is unused>`";

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    match &ctx.statement.kind {
        StatementKind::AlterTable { table, actions } if !ctx.is_new(table) => actions
            .iter()
            .filter_map(|a| match a {
                AlterAction::DropColumn { column } => Some(Violation::new(format!(
                    "dropping column `{column}` of `{table}` breaks running code that still uses it, and takes AccessExclusiveLock, which blocks all reads and writes; {CONTRACT}"
                ))),
                _ => None,
            })
            .collect(),
        StatementKind::Drop { object: "TABLE", names } => names
            .iter()
            .filter(|n| !ctx.is_new(n))
            .map(|n| {
                Violation::new(format!(
                    "dropping table `{n}` breaks running code that still uses it, and takes AccessExclusiveLock on it (and on tables its foreign keys reference); {CONTRACT}"
                ))
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::DroppingColumnOrTable as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn drops() {
        let v = lint_errors(&R::RULE, "ALTER TABLE t DROP COLUMN a");
        assert!(
            v[0].message.contains("then drop it in a later release"),
            "{}",
            v[0].message
        );
        assert_eq!(lint_errors(&R::RULE, "DROP TABLE a, b").len(), 2);
        lint_ok(&R::RULE, "CREATE TABLE t (a int); DROP TABLE t");
        lint_ok(&R::RULE, "DROP VIEW v");
    }
}
