//! LS901: an `ALTER TABLE` subcommand locksmith's model does not know.

use crate::analysis::AlterAction;
use crate::lint::{declare_rule, Context, Violation};

declare_rule! {
    /// ## What it does
    /// Reports an `ALTER TABLE` subcommand that locksmith's lock model does
    /// not cover (a newer PostgreSQL feature). It is assumed to take an
    /// `AccessExclusiveLock`.
    ///
    /// ## Why is this bad?
    /// The lock and rewrite shown for the statement are a guess; check it with
    /// `locksmith trace` on a throwaway database before deploying.
    ///
    /// ## Example
    /// ```sql
    /// -- (no subcommand of PostgreSQL 18 is unknown today)
    /// ```
    ///
    /// ## Use instead
    /// ```sql
    /// ALTER TABLE events ADD COLUMN note text;
    /// ```
    pub struct UnknownAlterSubcommand {
        id: "LS901",
        name: "unknown-alter-subcommand",
        severity: Warning,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    let crate::analysis::StatementKind::AlterTable { table, actions } = &ctx.statement.kind else {
        return Vec::new();
    };
    actions
        .iter()
        .filter_map(|a| match a {
            AlterAction::Unknown { subtype } => Some(Violation::new(format!(
                "locksmith does not know ALTER TABLE {subtype}: assuming it takes AccessExclusiveLock on `{table}`, which blocks all reads and writes"
            ))),
            _ => None,
        })
        .collect()
}
