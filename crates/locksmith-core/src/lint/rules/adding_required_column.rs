//! LS115: `ADD COLUMN … NOT NULL` without a default, on a table with rows.

use crate::analysis::{AlterAction, ColumnDefault};
use crate::lint::{declare_rule, Context, Violation};

use super::{alter_on_existing, cols, q};

declare_rule! {
    /// ## What it does
    /// Flags `ALTER TABLE … ADD COLUMN … NOT NULL` without a `DEFAULT` (nor
    /// an identity, serial or generated value) on a table that already exists.
    ///
    /// ## Why is this bad?
    /// Every existing row would get NULL in a column that forbids it: on any
    /// table with a row PostgreSQL refuses with `column … contains null
    /// values`. It passes on an empty development database and fails in
    /// production, mid-deploy.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users ADD COLUMN plan text NOT NULL;
    /// ```
    ///
    /// ## Use instead
    /// Give it a constant default (no rewrite since PostgreSQL 11), or add it
    /// nullable, backfill, and set `NOT NULL` through a validated check:
    /// ```sql
    /// ALTER TABLE users ADD COLUMN plan text NOT NULL DEFAULT 'free';
    /// ```
    pub struct AddingRequiredColumn {
        id: "LS115",
        name: "adding-required-column",
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
            AlterAction::AddColumn {
                column,
                type_name,
                default: ColumnDefault::None,
                serial: false,
                identity: false,
                generated_stored: false,
                not_null: true,
                ..
            } => Some(
                Violation::new(format!(
                    "`{column}` is NOT NULL with no default: on a table with any row, PostgreSQL refuses the statement (`column \"{column}\" of relation \"{table}\" contains null values`)"
                ))
                .with_fix(format!(
                    "ALTER TABLE {} ADD COLUMN {} {type_name};",
                    q(table),
                    cols(std::slice::from_ref(column))
                )),
            ),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::AddingRequiredColumn as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn not_null_without_a_default() {
        let v = lint_errors(&R::RULE, "ALTER TABLE users ADD COLUMN plan text NOT NULL");
        assert_eq!(v[0].message, "`plan` is NOT NULL with no default: on a table with any row, PostgreSQL refuses the statement (`column \"plan\" of relation \"users\" contains null values`)");
        lint_ok(
            &R::RULE,
            "ALTER TABLE users ADD COLUMN plan text NOT NULL DEFAULT 'free'",
        );
        lint_ok(
            &R::RULE,
            "ALTER TABLE users ADD COLUMN n bigint GENERATED ALWAYS AS IDENTITY NOT NULL",
        );
        lint_ok(&R::RULE, "ALTER TABLE users ADD COLUMN plan text");
        lint_ok(
            &R::RULE,
            "CREATE TABLE t (id int); ALTER TABLE t ADD COLUMN plan text NOT NULL",
        );
    }
}
