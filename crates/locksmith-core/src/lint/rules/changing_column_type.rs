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
    /// `apply --online` runs it through a shadow column (trigger, batched
    /// fill, concurrent indexes, one short swap; docs/online.md). By hand,
    /// the same expand/contract, e.g.:
    /// ```sql
    /// ALTER TABLE events ADD COLUMN id_new bigint;
    /// -- backfill in batches: UPDATE events SET id_new = id WHERE id BETWEEN … AND …;
    /// -- then, in a short transaction: swap the names, move the default and the key.
    /// ```
    ///
    /// A `serial` column changed to `bigint` keeps a sequence `AS integer`:
    /// ids still stop at 2³¹−1. Widen it too (`ALTER SEQUENCE events_id_seq
    /// AS bigint`); this rule says so.
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
            was_serial,
        } = action
        else {
            continue;
        };
        // The plain statement's silent trap: the serial's sequence keeps its
        // old type, and ids still run out at its maximum.
        if *was_serial && matches!(type_name.as_str(), "bigint" | "int8" | "integer" | "int4") {
            out.push(
                Violation::new(format!(
                    "`{column}` is a serial: changing it to {type_name} leaves its sequence of the old type, so new ids still stop at the old maximum (2147483647 for integer); widen the sequence too: ALTER SEQUENCE … AS {type_name} (apply --online does it with the change)"
                ))
            );
        }
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

    /// The rule's violations on `sql`, with the schema `earlier` files built.
    fn after(earlier: &str, sql: &str) -> Vec<crate::lint::Violation> {
        let stmts = crate::analysis::analyze_after(earlier, sql, 18).unwrap();
        let crate::lint::Check::Statement(check) = R::RULE.check else {
            panic!("a statement rule");
        };
        check(&crate::lint::Context {
            statement: &stmts[0],
            state: &crate::analysis::TransactionState::default(),
            pg_version: 18,
        })
    }

    #[test]
    fn a_serial_changed_to_bigint_says_its_sequence_stays_capped() {
        let v = after(
            "CREATE TABLE events (id serial PRIMARY KEY, n int);",
            "ALTER TABLE events ALTER COLUMN id TYPE bigint",
        );
        assert!(
            v.iter()
                .any(|v| v.message.contains("leaves its sequence of the old type")),
            "{v:#?}"
        );
        let v = after(
            "CREATE TABLE events (id serial PRIMARY KEY, n int);",
            "ALTER TABLE events ALTER COLUMN n TYPE bigint",
        );
        assert!(
            !v.is_empty() && !v.iter().any(|v| v.message.contains("sequence")),
            "{v:#?}"
        );
    }

    #[test]
    fn widening_a_known_varchar_is_fine() {
        lint_ok(
            &R::RULE,
            "CREATE TABLE t (a varchar(10)); COMMIT; ALTER TABLE t ALTER COLUMN a TYPE varchar(20)",
        );
    }
}
