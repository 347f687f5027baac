//! LS106: `ADD FOREIGN KEY` / `ADD CHECK` validates every row under its lock.

use crate::analysis::{AlterAction, ConstraintKind};
use crate::lint::{declare_rule, Context, Violation};

use super::{alter_on_existing, cols, default_name, mode_on, online_fix, q, takes};

declare_rule! {
    /// ## What it does
    /// Flags `ADD CONSTRAINT … FOREIGN KEY`, `… CHECK` (and, on 18, `… NOT
    /// NULL`) without `NOT VALID` on a table that already exists, including
    /// `ADD COLUMN … REFERENCES`; and `VALIDATE CONSTRAINT` in an `ALTER
    /// TABLE` whose other subcommands take a stronger lock.
    ///
    /// ## Why is this bad?
    /// Without `NOT VALID` the new constraint is checked against every existing
    /// row while the lock is held: a `CHECK` holds an `AccessExclusiveLock`
    /// (no reads, no writes) and a foreign key a `ShareRowExclusiveLock` on
    /// *both* tables (no writes to either) for the whole scan. `VALIDATE
    /// CONSTRAINT` alone takes only `ShareUpdateExclusiveLock`, but combined
    /// with, say, `ADD COLUMN` it scans under that subcommand's
    /// `AccessExclusiveLock`.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id);
    /// ```
    ///
    /// ## Use instead
    /// Add it `NOT VALID` (new rows are checked at once, nothing is scanned),
    /// then validate in a second step that takes only a
    /// `ShareUpdateExclusiveLock`, which lets reads and writes go on:
    /// ```sql
    /// ALTER TABLE orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;
    /// ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_id_fkey;
    /// ```
    pub struct AddingConstraintWithoutNotValid {
        id: "LS106",
        name: "adding-constraint-without-not-valid",
        severity: Error,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    let Some((table, actions)) = alter_on_existing(ctx) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mode = mode_on(ctx, table);
    for action in actions {
        if let AlterAction::ValidateConstraint { name } = action {
            if mode > crate::lock::LockMode::ShareUpdateExclusive {
                out.push(Violation::new(format!(
                    "VALIDATE CONSTRAINT `{name}` checks every row while this ALTER TABLE {} (taken for its other subcommands); validate in a statement of its own, which takes only {}",
                    takes(mode, table),
                    crate::lock::LockMode::ShareUpdateExclusive
                )).with_fix(format!("ALTER TABLE {} VALIDATE CONSTRAINT {};", q(table), crate::analysis::quote_ident(name))));
            }
            continue;
        }
        let (constraints, new_column) = match action {
            AlterAction::AddConstraint(c) => (std::slice::from_ref(c), None),
            AlterAction::AddColumn {
                constraints,
                column,
                type_name,
                ..
            } => (constraints.as_slice(), Some((column, type_name))),
            _ => continue,
        };
        for c in constraints {
            let (word, suffix) = match c.kind {
                ConstraintKind::ForeignKey => ("FOREIGN KEY", "fkey"),
                ConstraintKind::Check => ("CHECK", "check"),
                ConstraintKind::NotNull => ("NOT NULL", "not_null"),
                _ => continue,
            };
            if c.not_valid {
                continue;
            }
            let mut message = format!(
                "ADD CONSTRAINT … {word} checks every existing row while it {}",
                takes(mode_on(ctx, table), table)
            );
            if let Some(r) = &c.references {
                message += &format!(
                    ", and takes {} on `{r}`",
                    crate::lock::LockMode::ShareRowExclusive
                );
            }
            let name = c.name.clone().unwrap_or_else(|| {
                default_name(table, &c.columns[..c.columns.len().min(1)], suffix)
            });
            let fix = (!c.definition.is_empty()).then(|| {
                let name = crate::analysis::quote_ident(&name);
                let mut sql = String::new();
                if let Some((column, type_name)) = new_column {
                    sql += &format!("ALTER TABLE {} ADD COLUMN {} {type_name};\n", q(table), cols(std::slice::from_ref(column)));
                }
                // NOT NULL constraints (18) take the column in their definition already.
                sql + &format!(
                    "ALTER TABLE {t} ADD CONSTRAINT {name} {} NOT VALID;\nALTER TABLE {t} VALIDATE CONSTRAINT {name};",
                    c.definition,
                    t = q(table)
                )
            });
            out.push(Violation::new(message).with_fix_opt(online_fix(ctx).or(fix)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::AddingConstraintWithoutNotValid as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn foreign_key() {
        let v = lint_errors(
            &R::RULE,
            "ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id)",
        );
        insta::assert_snapshot!(format!("{}\n---\n{}", v[0].message, v[0].fix.as_deref().unwrap()), @r"
            ADD CONSTRAINT … FOREIGN KEY checks every existing row while it takes ShareRowExclusiveLock on `orders`, which blocks writes (INSERT, UPDATE, DELETE), and takes ShareRowExclusiveLock on `customers`
            ---
            SET lock_timeout = '2s';
            ALTER TABLE orders ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY (customer_id) REFERENCES customers (id) NOT VALID;
            ALTER TABLE orders VALIDATE CONSTRAINT orders_customer_id_fkey;
            ");
    }

    #[test]
    fn check_and_inline_references() {
        let v = lint_errors(
            &R::RULE,
            "ALTER TABLE t ADD CONSTRAINT positive CHECK (amount > 0)",
        );
        assert_eq!(
            v[0].fix.as_deref(),
            Some("SET lock_timeout = '2s';\nALTER TABLE t ADD CONSTRAINT positive CHECK (amount > 0) NOT VALID;\nALTER TABLE t VALIDATE CONSTRAINT positive;")
        );
        let v = lint_errors(
            &R::RULE,
            "ALTER TABLE t ADD COLUMN u_id bigint REFERENCES u (id)",
        );
        assert!(v[0].fix.as_deref().unwrap().starts_with("ALTER TABLE t ADD COLUMN u_id bigint;\nALTER TABLE t ADD CONSTRAINT t_u_id_fkey FOREIGN KEY (u_id) REFERENCES u (id) NOT VALID;"), "{:?}", v[0].fix);
    }

    #[test]
    fn not_valid_and_new_tables_are_fine() {
        lint_ok(
            &R::RULE,
            "ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID",
        );
        lint_ok(
            &R::RULE,
            "CREATE TABLE t (a int); ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0)",
        );
        lint_ok(&R::RULE, "ALTER TABLE t VALIDATE CONSTRAINT c");
    }

    #[test]
    fn validate_under_a_stronger_lock() {
        let v = lint_errors(
            &R::RULE,
            "ALTER TABLE t VALIDATE CONSTRAINT c, ADD COLUMN d int",
        );
        assert_eq!(v[0].message, "VALIDATE CONSTRAINT `c` checks every row while this ALTER TABLE takes AccessExclusiveLock on `t`, which blocks all reads and writes (taken for its other subcommands); validate in a statement of its own, which takes only ShareUpdateExclusiveLock");
        lint_ok(
            &R::RULE,
            "ALTER TABLE t VALIDATE CONSTRAINT c, ALTER COLUMN a SET STATISTICS 100",
        );
    }
}
