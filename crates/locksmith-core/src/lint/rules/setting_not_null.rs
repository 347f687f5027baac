//! LS107: `SET NOT NULL` scans the table under an `AccessExclusiveLock`.

use crate::analysis::{quote_ident, AlterAction, ConstraintKind};
use crate::lint::{declare_rule, Context, Violation};

use super::{alter_on_existing, default_name, mode_on, online_fix, q, takes};

declare_rule! {
    /// ## What it does
    /// Flags `ALTER COLUMN … SET NOT NULL` on an existing table, unless the
    /// column is known to hold no NULL (declared `NOT NULL`, or a validated
    /// `CHECK (column IS NOT NULL)` in the files linted). Also `ADD PRIMARY
    /// KEY … USING INDEX` on an index (created in the files linted) whose
    /// columns are not known `NOT NULL`: it sets `NOT NULL` the same way.
    ///
    /// ## Why is this bad?
    /// PostgreSQL reads the whole table to prove there is no `NULL` while it
    /// holds an `AccessExclusiveLock`: no reads, no writes, for the length of
    /// a full scan. Since PostgreSQL 12 the scan is skipped when a valid
    /// `CHECK (column IS NOT NULL)` constraint already proves it.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users ALTER COLUMN email SET NOT NULL;
    /// ```
    ///
    /// ## Use instead
    /// Prove it with a constraint validated under a weak lock first:
    /// ```sql
    /// ALTER TABLE users ADD CONSTRAINT users_email_not_null CHECK (email IS NOT NULL) NOT VALID;
    /// ALTER TABLE users VALIDATE CONSTRAINT users_email_not_null;
    /// ALTER TABLE users ALTER COLUMN email SET NOT NULL;
    /// ALTER TABLE users DROP CONSTRAINT users_email_not_null;
    /// ```
    pub struct SettingNotNull {
        id: "LS107",
        name: "setting-not-null",
        severity: Error,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    let Some((table, actions)) = alter_on_existing(ctx) else {
        return Vec::new();
    };
    let lock = takes(mode_on(ctx, table), table);
    let mut out = Vec::new();
    for action in actions {
        match action {
            AlterAction::SetNotNull {
                column,
                proven: false,
            } => {
                let column = std::slice::from_ref(column);
                let set = format!(
                    "ALTER TABLE {} ALTER COLUMN {} SET NOT NULL;",
                    q(table),
                    quote_ident(&column[0])
                );
                out.push(
                    Violation::new(format!(
                        "SET NOT NULL on `{}` scans the whole table while it {lock}",
                        column[0]
                    ))
                    .with_fix(online_fix(ctx).unwrap_or_else(|| proven_first(table, column, &set))),
                );
            }
            // PRIMARY KEY … USING INDEX sets NOT NULL on its columns the same way
            // (without USING INDEX the index build is LS101's finding).
            AlterAction::AddConstraint(c)
                if c.kind == ConstraintKind::PrimaryKey
                    && c.using_index.is_some()
                    && !c.unproven_not_null.is_empty() =>
            {
                let names: Vec<String> = c
                    .unproven_not_null
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect();
                let fix = (actions.len() == 1).then(|| {
                    proven_first(
                        table,
                        &c.unproven_not_null,
                        &format!("{};", ctx.statement.sql),
                    )
                });
                out.push(
                    Violation::new(format!(
                        "ADD PRIMARY KEY … USING INDEX sets NOT NULL on {}, which scans the whole table while it {lock}",
                        names.join(", ")
                    ))
                    .with_fix_opt(fix),
                );
            }
            _ => {}
        }
    }
    out
}

/// `statement` preceded by a validated `CHECK (col IS NOT NULL)` for each
/// column (so it needs no scan) and followed by dropping them again.
pub(crate) fn proven_first(table: &str, columns: &[String], statement: &str) -> String {
    let t = q(table);
    let checks: Vec<(String, String)> = columns
        .iter()
        .map(|c| {
            let check = quote_ident(&default_name(
                table,
                std::slice::from_ref(c),
                "not_null_check",
            ));
            (check, quote_ident(c))
        })
        .collect();
    let mut sql = String::new();
    for (check, c) in &checks {
        sql +=
            &format!("ALTER TABLE {t} ADD CONSTRAINT {check} CHECK ({c} IS NOT NULL) NOT VALID;\n");
    }
    for (check, _) in &checks {
        sql += &format!("ALTER TABLE {t} VALIDATE CONSTRAINT {check};\n");
    }
    sql += statement;
    for (check, _) in &checks {
        sql += &format!("\nALTER TABLE {t} DROP CONSTRAINT {check};");
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::SettingNotNull as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn flags_with_the_check_dance() {
        let v = lint_errors(
            &R::RULE,
            "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
        );
        insta::assert_snapshot!(v[0].fix.as_deref().unwrap(), @r"
            SET lock_timeout = '2s';
            ALTER TABLE users ADD CONSTRAINT users_email_not_null_check CHECK (email IS NOT NULL) NOT VALID;
            ALTER TABLE users VALIDATE CONSTRAINT users_email_not_null_check;
            ALTER TABLE users ALTER COLUMN email SET NOT NULL;
            ALTER TABLE users DROP CONSTRAINT IF EXISTS users_email_not_null_check;
            ");
    }

    #[test]
    fn the_fix_itself_passes() {
        let fix = lint_errors(
            &R::RULE,
            "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
        )[0]
        .fix
        .clone()
        .unwrap();
        lint_ok(&R::RULE, &fix);
    }

    #[test]
    fn primary_key_using_an_index_sets_not_null() {
        let sql = "CREATE UNIQUE INDEX CONCURRENTLY users_pkey ON users (id);\nALTER TABLE users ADD CONSTRAINT users_pkey PRIMARY KEY USING INDEX users_pkey";
        let v = lint_errors(&R::RULE, sql);
        assert_eq!(v[0].message, "ADD PRIMARY KEY … USING INDEX sets NOT NULL on `id`, which scans the whole table while it takes AccessExclusiveLock on `users`, which blocks all reads and writes");
        insta::assert_snapshot!(v[0].fix.as_deref().unwrap(), @r"
            ALTER TABLE users ADD CONSTRAINT users_id_not_null_check CHECK (id IS NOT NULL) NOT VALID;
            ALTER TABLE users VALIDATE CONSTRAINT users_id_not_null_check;
            ALTER TABLE users ADD CONSTRAINT users_pkey PRIMARY KEY USING INDEX users_pkey;
            ALTER TABLE users DROP CONSTRAINT users_id_not_null_check;
            ");
        // Proven first, or on an index lint knows nothing of: nothing to say.
        lint_ok(
            &R::RULE,
            &format!(
                "CREATE UNIQUE INDEX CONCURRENTLY users_pkey ON users (id);\n{}",
                v[0].fix.as_deref().unwrap()
            ),
        );
        lint_ok(
            &R::RULE,
            "ALTER TABLE users ADD CONSTRAINT users_pkey PRIMARY KEY USING INDEX users_pkey",
        );
    }

    #[test]
    fn unvalidated_check_does_not_prove_it() {
        lint_errors(&R::RULE, "ALTER TABLE u ADD CONSTRAINT c CHECK (e IS NOT NULL) NOT VALID; ALTER TABLE u ALTER COLUMN e SET NOT NULL");
    }
}
