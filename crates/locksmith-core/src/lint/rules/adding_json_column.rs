//! LS203: a `json` column breaks running `SELECT DISTINCT` / `UNION` queries.

use crate::analysis::AlterAction;
use crate::lint::{declare_rule, Context, Violation};

use super::{alter_on_existing, cols, q};

declare_rule! {
    /// ## What it does
    /// Flags `ALTER TABLE … ADD COLUMN … json` on a table that already exists.
    ///
    /// ## Why is this bad?
    /// The `json` type has no equality operator. Running queries that compare
    /// whole rows of the table — `SELECT DISTINCT *`, `UNION`, `GROUP BY`
    /// over all columns — start failing with `could not identify an
    /// equality operator for type json` the moment the column exists.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE events ADD COLUMN payload json;
    /// ```
    ///
    /// ## Use instead
    /// `jsonb`, which has equality (and indexes):
    /// ```sql
    /// ALTER TABLE events ADD COLUMN payload jsonb;
    /// ```
    pub struct AddingJsonColumn {
        id: "LS203",
        name: "adding-json-column",
        severity: Warning,
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
                column, type_name, ..
            } if type_name == "json" => Some(
                Violation::new(format!(
                    "`{column}` is json, which has no equality operator: running `SELECT DISTINCT`, `UNION` or whole-row `GROUP BY` queries on `{table}` fail once it exists; use jsonb"
                ))
                .with_fix(format!(
                    "ALTER TABLE {} ADD COLUMN {} jsonb;",
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
    use super::AddingJsonColumn as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn json_but_not_jsonb() {
        let v = lint_errors(&R::RULE, "ALTER TABLE events ADD COLUMN payload json");
        assert_eq!(
            v[0].fix.as_deref(),
            Some("ALTER TABLE events ADD COLUMN payload jsonb;")
        );
        lint_ok(&R::RULE, "ALTER TABLE events ADD COLUMN payload jsonb");
        lint_ok(
            &R::RULE,
            "CREATE TABLE e (id int); ALTER TABLE e ADD COLUMN payload json",
        );
    }
}
