//! LS107: `SET NOT NULL` scans the table under an `AccessExclusiveLock`.

use crate::analysis::{quote_ident, AlterAction};
use crate::lint::{declare_rule, Context, Violation};

use super::{alter_on_existing, default_name, mode_on, q, takes};

declare_rule! {
    /// ## What it does
    /// Flags `ALTER COLUMN … SET NOT NULL` on an existing table, unless a
    /// validated `CHECK (column IS NOT NULL)` earlier in the file proves it.
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
    actions
        .iter()
        .filter_map(|a| match a {
            AlterAction::SetNotNull {
                column,
                proven: false,
            } => Some(column),
            _ => None,
        })
        .map(|column| {
            let message = format!(
                "SET NOT NULL on `{column}` scans the whole table while it {}",
                takes(mode_on(ctx, table), table)
            );
            let check = quote_ident(&default_name(
                table,
                std::slice::from_ref(column),
                "not_null",
            ));
            let (t, c) = (q(table), quote_ident(column));
            let fix = format!(
                "ALTER TABLE {t} ADD CONSTRAINT {check} CHECK ({c} IS NOT NULL) NOT VALID;\n\
                 ALTER TABLE {t} VALIDATE CONSTRAINT {check};\n\
                 ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL;\n\
                 ALTER TABLE {t} DROP CONSTRAINT {check};"
            );
            Violation::new(message).with_fix(fix)
        })
        .collect()
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
        ALTER TABLE users ADD CONSTRAINT users_email_not_null CHECK (email IS NOT NULL) NOT VALID;
        ALTER TABLE users VALIDATE CONSTRAINT users_email_not_null;
        ALTER TABLE users ALTER COLUMN email SET NOT NULL;
        ALTER TABLE users DROP CONSTRAINT users_email_not_null;
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
    fn unvalidated_check_does_not_prove_it() {
        lint_errors(&R::RULE, "ALTER TABLE u ADD CONSTRAINT c CHECK (e IS NOT NULL) NOT VALID; ALTER TABLE u ALTER COLUMN e SET NOT NULL");
    }
}
