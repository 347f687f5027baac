//! LS201: renaming a column or table breaks the code that is running.

use crate::analysis::{RenameTarget, StatementKind};
use crate::lint::{declare_rule, Context, Violation};

use super::takes;

declare_rule! {
    /// ## What it does
    /// Flags `ALTER TABLE … RENAME COLUMN` and `ALTER TABLE … RENAME TO`
    /// (tables, views, materialized views, sequences), and the renames that
    /// break running code without locking a table: `ALTER SCHEMA … RENAME`
    /// and `ALTER TYPE … RENAME VALUE`.
    ///
    /// ## Why is this bad?
    /// During a deploy the old version of the application is still running,
    /// and its queries name the old column, table or schema (or write the old
    /// enum value): they fail the moment the rename commits. Renaming a
    /// column or table also needs an `AccessExclusiveLock`.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users RENAME COLUMN email TO email_address;
    /// ```
    ///
    /// ## Use instead
    /// Expand and contract: add the new column, write both, backfill, move
    /// the readers, and drop the old one in a later release:
    /// ```sql
    /// ALTER TABLE users ADD COLUMN email_address text;
    /// ```
    pub struct RenamingColumnOrTable {
        id: "LS201",
        name: "renaming-column-or-table",
        severity: Warning,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    let StatementKind::Rename {
        target,
        relation,
        new_name,
    } = &ctx.statement.kind
    else {
        return Vec::new();
    };
    if ctx.is_new(relation) {
        return Vec::new();
    }
    let (what, steps) = match target {
        RenameTarget::Column => ("renaming a column", format!(
            "expand and contract instead, over releases: add column `{new_name}`, keep both written (a trigger) and backfill it in batches, move the readers to `{new_name}`, then drop the old column in a later release"
        )),
        RenameTarget::Relation => ("renaming a table", format!(
            "to keep running code working, create a view under the old name in the same migration (`CREATE VIEW {} AS SELECT * FROM {}`, simple views take writes too) and drop it once no code uses the old name",
            super::q(relation),
            super::q(&sibling_name(relation, new_name))
        )),
        RenameTarget::Schema => {
            return vec![Violation::new(format!(
                "renaming schema `{relation}` (to `{new_name}`) breaks every running query that names `{relation}`"
            ))]
        }
        RenameTarget::EnumValue => {
            return vec![Violation::new(format!(
                "renaming a value of enum `{relation}` (to `{new_name}`) breaks every running query that reads or writes the old value"
            ))]
        }
        _ => return Vec::new(),
    };
    let lock = ctx
        .statement
        .lock_on(relation)
        .unwrap_or(crate::lock::LockMode::AccessExclusive);
    vec![Violation::new(format!(
        "{what} (to `{new_name}`) breaks every running query that uses the old name; it also {}; {steps}",
        takes(lock, relation)
    ))]
}

/// The renamed table's new name in its schema (`RENAME TO` takes a bare name).
fn sibling_name(relation: &str, new_name: &str) -> String {
    match relation.rsplit_once('.') {
        Some((schema, _)) => format!("{schema}.{new_name}"),
        None => new_name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::RenamingColumnOrTable as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn renames() {
        let v = lint_errors(&R::RULE, "ALTER TABLE t RENAME COLUMN a TO b");
        assert!(v[0].message.ends_with("expand and contract instead, over releases: add column `b`, keep both written (a trigger) and backfill it in batches, move the readers to `b`, then drop the old column in a later release"), "{}", v[0].message);
        let v = lint_errors(&R::RULE, "ALTER TABLE app.t RENAME TO u");
        assert!(
            v[0].message
                .contains("`CREATE VIEW app.t AS SELECT * FROM app.u`"),
            "{}",
            v[0].message
        );
        lint_ok(&R::RULE, "ALTER INDEX i RENAME TO j");
        let v = lint_errors(&R::RULE, "ALTER SCHEMA app RENAME TO app_v2");
        assert_eq!(
            v[0].message,
            "renaming schema `app` (to `app_v2`) breaks every running query that names `app`"
        );
        let v = lint_errors(&R::RULE, "ALTER TYPE mood RENAME VALUE 'sad' TO 'blue'");
        assert!(v[0]
            .message
            .starts_with("renaming a value of enum `mood` (to `blue`)"));
        lint_ok(&R::RULE, "ALTER TYPE mood ADD VALUE 'meh'");
        lint_ok(
            &R::RULE,
            "CREATE TABLE t (a int); ALTER TABLE t RENAME COLUMN a TO b",
        );
    }
}
