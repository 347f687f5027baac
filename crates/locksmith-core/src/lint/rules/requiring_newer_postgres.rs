//! LS501: syntax the target server version does not support.

use crate::lint::{declare_rule, Context, Violation};

declare_rule! {
    /// ## What it does
    /// Flags features that need a newer PostgreSQL than the one linted for
    /// (`--pg-version`, or `pg_version` in `locksmith.toml`), e.g. `DETACH
    /// PARTITION … CONCURRENTLY` (14), `SET ACCESS METHOD` (15), `ALTER COLUMN
    /// … SET EXPRESSION` (17), virtual generated columns and `NOT NULL … NOT
    /// VALID` (18).
    ///
    /// ## Why is this bad?
    /// The migration fails on the server it is meant for, possibly half-way
    /// through; and on an older server the locks differ from the ones the
    /// newer syntax was chosen for (a `DETACH PARTITION` there takes an
    /// `AccessExclusiveLock`).
    ///
    /// ## Example
    /// ```sql
    /// -- lint for PostgreSQL 14
    /// ALTER TABLE events SET ACCESS METHOD heap;
    /// ALTER TABLE events ALTER COLUMN total SET EXPRESSION AS (price * quantity);
    /// ```
    ///
    /// ## Use instead
    /// Use what the target version supports, or raise `pg_version`:
    /// ```sql
    /// ALTER TABLE events ALTER COLUMN total DROP EXPRESSION;
    /// ```
    pub struct RequiringNewerPostgres {
        id: "LS501",
        name: "requiring-newer-postgres",
        severity: Error,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    ctx.statement
        .requires
        .iter()
        .map(|r| {
            Violation::new(format!(
                "{} needs PostgreSQL {} or newer; linting for {}",
                r.feature, r.min_version, ctx.pg_version
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::RequiringNewerPostgres as R;
    use crate::lint::testing::{lint_ok, violations};

    #[test]
    fn by_version() {
        let sql = "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY";
        let v = violations(&R::RULE, sql, 13);
        assert_eq!(
            v[0].message,
            "DETACH PARTITION … CONCURRENTLY needs PostgreSQL 14 or newer; linting for 13"
        );
        assert!(violations(&R::RULE, sql, 14).is_empty());
        lint_ok(&R::RULE, sql);
    }
}
