//! LS108: `ALTER COLUMN … TYPE` that rewrites the table and its indexes.

use crate::analysis::{AlterAction, Coercion};
use crate::lint::{declare_rule, Context, Severity, Violation};

use super::{alter_on_existing, mode_on, takes};

declare_rule! {
    /// ## What it does
    /// Flags `ALTER COLUMN … TYPE` unless the change is known to be
    /// binary-coercible (e.g. `varchar(20)` → `varchar(50)` or `text`, for a
    /// column whose type the files linted declared, or the live catalog
    /// reported with `--database-url`). When the current type is unknown and
    /// the change *could* be catalog-only, it is a warning.
    ///
    /// ## Why is this bad?
    /// Most type changes rewrite the whole table and rebuild its indexes under
    /// an `AccessExclusiveLock`: no reads, no writes, for as long as copying
    /// the table takes. `int` → `bigint` is the classic.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE events ALTER COLUMN id TYPE bigint;
    /// ```
    ///
    /// ## Use instead
    /// Add a new column, fill it in batches, and switch over
    /// (expand/contract), e.g.:
    /// ```sql
    /// ALTER TABLE events ADD COLUMN id_new bigint;
    /// -- backfill in batches: UPDATE events SET id_new = id WHERE id BETWEEN … AND …;
    /// -- then, in a short transaction: swap the names, move the default and the key.
    /// ```
    pub struct ChangingColumnType {
        id: "LS108",
        name: "changing-column-type",
        severity: Error,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    let Some((table, actions)) = alter_on_existing(ctx) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for action in actions {
        let AlterAction::AlterColumnType {
            column,
            type_name,
            coercion,
        } = action
        else {
            continue;
        };
        let lock = takes(mode_on(ctx, table), table);
        match coercion {
            Coercion::Binary => {}
            Coercion::Rewrite => out.push(Violation::new(format!(
                "changing `{column}` to {type_name} rewrites the table and rebuilds its indexes while it {lock}"
            ))),
            Coercion::Unknown => out.push(
                Violation::new(format!(
                    "changing `{column}` to {type_name} rewrites the table and its indexes while it {lock}, unless the current type is binary-coercible to it (e.g. varchar → text)"
                ))
                .with_severity(Severity::Warning),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::ChangingColumnType as R;
    use crate::lint::testing::{lint_errors, lint_ok};
    use crate::lint::Severity;

    #[test]
    fn rewrite_is_an_error_unknown_a_warning() {
        let v = lint_errors(&R::RULE, "ALTER TABLE events ALTER COLUMN id TYPE bigint");
        assert_eq!(v[0].severity, None);
        let v = lint_errors(&R::RULE, "ALTER TABLE events ALTER COLUMN name TYPE text");
        assert_eq!(v[0].severity, Some(Severity::Warning));
    }

    #[test]
    fn widening_a_known_varchar_is_fine() {
        lint_ok(
            &R::RULE,
            "CREATE TABLE t (a varchar(10)); COMMIT; ALTER TABLE t ALTER COLUMN a TYPE varchar(20)",
        );
    }
}
