//! LS109: `ADD COLUMN … DEFAULT <volatile>` rewrites the table.

use crate::analysis::{quote_ident, AlterAction, ColumnDefault};
use crate::lint::{declare_rule, Context, Severity, Violation};

use super::{alter_on_existing, mode_on, online_fix, q, takes};

declare_rule! {
    /// ## What it does
    /// Flags `ADD COLUMN` with a volatile default such as `random()`,
    /// `gen_random_uuid()` or `clock_timestamp()` (a warning when the default
    /// calls a function locksmith does not know).
    ///
    /// ## Why is this bad?
    /// Since PostgreSQL 11 a constant or stable default (`0`, `now()`) is
    /// stored once in the catalog and the table is not touched. A volatile one
    /// must be computed per row, so the whole table is rewritten under an
    /// `AccessExclusiveLock`: no reads, no writes until it is done.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();
    /// ```
    ///
    /// ## Use instead
    /// Add the column without a default, set the default for new rows, and
    /// backfill existing rows in batches:
    /// ```sql
    /// ALTER TABLE users ADD COLUMN token uuid;
    /// ALTER TABLE users ALTER COLUMN token SET DEFAULT gen_random_uuid();
    /// ```
    pub struct AddingVolatileDefault {
        id: "LS109",
        name: "adding-volatile-default",
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
        let AlterAction::AddColumn {
            column,
            type_name,
            default,
            serial: false,
            ..
        } = action
        else {
            continue;
        };
        let lock = takes(mode_on(ctx, table), table);
        let (function, uncertain) = match default {
            ColumnDefault::Volatile(f) => (f, false),
            ColumnDefault::Unknown(f) => (f, true),
            _ => continue,
        };
        let message = if uncertain {
            format!("the default of `{column}` calls {function}: if it is volatile, every row is rewritten while the statement {lock}")
        } else {
            format!("the volatile default {function} of `{column}` is computed for every row: the table is rewritten while the statement {lock}")
        };
        let (t, c) = (q(table), quote_ident(column));
        let default_sql = ctx
            .statement
            .sql
            .to_ascii_lowercase()
            .find(" default ")
            .and_then(|_| default_expression(&ctx.statement.sql));
        let fix = default_sql.filter(|_| actions.len() == 1).map(|expr| {
            format!("ALTER TABLE {t} ADD COLUMN {c} {type_name};\nALTER TABLE {t} ALTER COLUMN {c} SET DEFAULT {expr};")
        });
        let v = Violation::new(message).with_fix_opt(online_fix(ctx).or(fix));
        out.push(if uncertain {
            v.with_severity(Severity::Warning)
        } else {
            v
        });
    }
    out
}

/// The text after `DEFAULT`, up to the next column constraint keyword, for a
/// one-column `ADD COLUMN`.
fn default_expression(sql: &str) -> Option<String> {
    let lower = sql.to_ascii_lowercase();
    let start = lower.find(" default ")? + " default ".len();
    let rest = &sql[start..];
    let lower_rest = &lower[start..];
    let end = [
        " not null",
        " null",
        " constraint ",
        " check",
        " references",
        " unique",
        " primary key",
    ]
    .iter()
    .filter_map(|k| lower_rest.find(k))
    .min()
    .unwrap_or(rest.len());
    Some(rest[..end].trim().to_string()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::AddingVolatileDefault as R;
    use crate::lint::testing::{lint_errors, lint_ok};
    use crate::lint::Severity;

    #[test]
    fn volatile_and_unknown() {
        let v = lint_errors(
            &R::RULE,
            "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid() NOT NULL",
        );
        // The online plan: the column, its default, a batched backfill, NOT NULL proven.
        let fix = v[0].fix.as_deref().unwrap();
        assert!(
            fix.starts_with("SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN token uuid;\nALTER TABLE users ALTER COLUMN token SET DEFAULT gen_random_uuid();\nDO $locksmith$"),
            "{fix}"
        );
        assert!(
            fix.ends_with("DROP CONSTRAINT IF EXISTS users_token_not_null_check;"),
            "{fix}"
        );
        let v = lint_errors(
            &R::RULE,
            "ALTER TABLE users ADD COLUMN x int DEFAULT my_counter()",
        );
        assert_eq!(v[0].severity, Some(Severity::Warning));
    }

    #[test]
    fn constants_and_stable_defaults_are_fine() {
        lint_ok(
            &R::RULE,
            "ALTER TABLE users ADD COLUMN n int DEFAULT 0 NOT NULL",
        );
        lint_ok(
            &R::RULE,
            "ALTER TABLE users ADD COLUMN at timestamptz DEFAULT now()",
        );
        lint_ok(&R::RULE, "ALTER TABLE users ADD COLUMN id2 bigserial");
    }
}
