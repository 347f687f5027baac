//! LS113: `VACUUM FULL`, `CLUSTER` and `TRUNCATE` hold an `AccessExclusiveLock`.

use crate::analysis::StatementKind;
use crate::lint::{declare_rule, Context, Violation};

use super::takes;

declare_rule! {
    /// ## What it does
    /// Flags `VACUUM FULL`, `CLUSTER` and `TRUNCATE` in a migration.
    ///
    /// ## Why is this bad?
    /// All three take an `AccessExclusiveLock`. `VACUUM FULL` and `CLUSTER`
    /// hold it while they copy the whole table; `TRUNCATE` is quick, but its
    /// lock request still queues behind every open transaction on the table,
    /// and all queries queue behind it.
    ///
    /// ## Example
    /// ```sql
    /// VACUUM FULL events;
    /// ```
    ///
    /// ## Use instead
    /// Plain `VACUUM` (no rewrite, `ShareUpdateExclusiveLock`); to give space
    /// back online, use `pg_repack` or `pg_squeeze`; for `TRUNCATE`, delete
    /// in batches or run it under a short `lock_timeout`:
    /// ```sql
    /// VACUUM (ANALYZE) events;
    /// ```
    pub struct LockingTableMaintenance {
        id: "LS113",
        name: "locking-table-maintenance",
        severity: Warning,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    let (command, tables): (&str, Vec<&String>) = match &ctx.statement.kind {
        StatementKind::Vacuum {
            full: true, tables, ..
        } => ("VACUUM FULL", tables.iter().collect()),
        StatementKind::Cluster { table } => ("CLUSTER", table.iter().collect()),
        StatementKind::Truncate { tables } => ("TRUNCATE", tables.iter().collect()),
        _ => return Vec::new(),
    };
    let tables: Vec<&String> = tables.into_iter().filter(|t| !ctx.is_new(t)).collect();
    let message = match (command, tables.as_slice()) {
        (_, []) if matches!(ctx.statement.kind, StatementKind::Truncate { .. }) => return Vec::new(),
        (_, []) => format!("{command} with no table takes AccessExclusiveLock on every table it processes, which blocks all reads and writes"),
        ("TRUNCATE", ts) => format!("TRUNCATE {}", ts.iter().map(|t| takes(crate::lock::LockMode::AccessExclusive, t)).collect::<Vec<_>>().join("; ")),
        (_, ts) => format!(
            "{command} rewrites the table while it {}",
            ts.iter().map(|t| takes(crate::lock::LockMode::AccessExclusive, t)).collect::<Vec<_>>().join("; ")
        ),
    };
    vec![Violation::new(message)]
}

#[cfg(test)]
mod tests {
    use super::LockingTableMaintenance as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn the_three() {
        lint_errors(&R::RULE, "VACUUM (FULL) t");
        lint_errors(&R::RULE, "CLUSTER t USING i");
        lint_errors(&R::RULE, "TRUNCATE t");
        lint_ok(&R::RULE, "VACUUM t");
        lint_ok(&R::RULE, "CREATE TABLE t (a int); TRUNCATE t");
    }
}
