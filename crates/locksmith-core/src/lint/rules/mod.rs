//! The rules, one file each: a documented unit struct, its check, its tests.
//! Helpers shared by several rules live here; rule-specific logic stays in
//! the rule's file.

pub mod adding_constraint_without_not_valid;
pub mod adding_domain_constraint;
pub mod adding_json_column;
pub mod adding_required_column;
pub mod adding_serial_column;
pub mod adding_unique_constraint;
pub mod adding_volatile_default;
pub mod changing_column_type;
pub mod concurrently_in_transaction;
pub mod creating_index_without_concurrently;
pub mod dropping_column_or_table;
pub mod dropping_index_without_concurrently;
pub mod holding_access_exclusive_across_statements;
pub mod holding_lock_on_large_table;
pub mod lock_model_mismatch;
pub mod locking_table_maintenance;
pub mod missing_lock_timeout;
pub mod nesting_transactions;
pub mod querying_while_holding_access_exclusive;
pub mod queueing_behind_open_transactions;
pub mod refreshing_matview_without_concurrently;
pub mod reindexing_without_concurrently;
pub mod renaming_column_or_table;
pub mod requiring_newer_postgres;
pub mod rewriting_table;
pub mod setting_not_null;
pub mod statement_failed;
pub mod statement_not_traced;
pub mod unknown_alter_subcommand;
pub mod unmatched_ignore;
pub mod updating_whole_table;

use crate::analysis::{quote_qualified, AlterAction, StatementKind};
use crate::lock::LockMode;

use super::Context;

/// "takes AccessExclusiveLock on `t`, which blocks all reads and writes".
pub(crate) fn takes(mode: LockMode, relation: &str) -> String {
    format!(
        "takes {mode} on `{relation}`, which blocks {}",
        mode.blocks()
    )
}

/// The table and subcommands of an `ALTER TABLE` on a relation the file did
/// not create (a table created in the same migration has no traffic yet).
pub(crate) fn alter_on_existing<'a>(ctx: &Context<'a>) -> Option<(&'a str, &'a [AlterAction])> {
    match &ctx.statement.kind {
        StatementKind::AlterTable { table, actions } if !ctx.is_new(table) => {
            Some((table, actions))
        }
        _ => None,
    }
}

/// The lock the statement takes on `table` (AccessExclusive if unknown).
pub(crate) fn mode_on(ctx: &Context<'_>, table: &str) -> LockMode {
    ctx.statement
        .lock_on(table)
        .unwrap_or(LockMode::AccessExclusive)
}

pub(crate) use crate::online::default_name;

/// A relation name ready for generated SQL.
pub(crate) fn q(name: &str) -> String {
    quote_qualified(name)
}

/// A column list ready for generated SQL: `(a, "Weird")`.
pub(crate) fn cols(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| crate::analysis::quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) use crate::online::insert_after_word;

/// The statement's fix as the online plan writes it: exactly the steps
/// `apply --online` runs, as a script ([`crate::online::script`]). `None`
/// when the plan has no steps for it (the rule then gives its own).
pub(crate) fn online_fix(ctx: &Context<'_>) -> Option<String> {
    match crate::online::plan(ctx.statement, &ctx.state.created, ctx.pg_version) {
        crate::online::Online::Steps(steps) => {
            Some(crate::online::script(&steps, ctx.state.in_transaction()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_after_the_first_matching_word() {
        assert_eq!(
            insert_after_word("create unique index i on t (a)", &["INDEX"], "CONCURRENTLY")
                .as_deref(),
            Some("create unique index CONCURRENTLY i on t (a)")
        );
        assert_eq!(
            insert_after_word(
                "REINDEX (VERBOSE) TABLE t",
                &["TABLE", "INDEX"],
                "CONCURRENTLY"
            )
            .as_deref(),
            Some("REINDEX (VERBOSE) TABLE CONCURRENTLY t")
        );
        assert_eq!(insert_after_word("DROP TABLE t", &["INDEX"], "X"), None);
    }

    #[test]
    fn default_names_follow_postgres() {
        assert_eq!(
            default_name("app.users", &["a".into(), "b".into()], "key"),
            "users_a_b_key"
        );
        assert_eq!(default_name(&"x".repeat(70), &[], "pkey").len(), 63);
    }
}
