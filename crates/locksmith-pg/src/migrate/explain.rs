//! What a run says when a migration does not apply, or must not start:
//! each message names the file and statement, says what was done and what
//! is left in place, and what to do next. Words only: the flow that decides
//! is `migrate`'s.

use locksmith_core::online::Unit;
use locksmith_core::plan::{Plan, PlanError, PlannedMigration};

use crate::{foreign, history};

/// The refusal when another tool's history is there and locksmith's is empty.
pub(super) fn adopt_hint(plan: &Plan, other: &foreign::ForeignHistory) -> String {
    let dir = plan.dir.display();
    let in_folder = plan.migrations.iter().any(|p| p.id == other.latest);
    let mut text = format!(
        "this database was migrated by {} ({} says version {} was applied last) and {} is empty: applying {dir} from its first migration would run migrations again. \
         Adopt it: record what is there without running it, then apply the rest:\n\n    locksmith apply {dir} --baseline {}\n",
        other.tool,
        other.table,
        other.latest,
        history::TABLE,
        other.latest
    );
    if other.dirty {
        text.push_str("\nNote: golang-migrate marked it dirty: its last migration failed halfway. Repair that first.\n");
    }
    if !in_folder {
        text.push_str(&format!(
            "\nNote: no migration in {dir} has version {}; pass the version of the last migration the database already has.\n",
            other.latest
        ));
    }
    text
}

/// Under `--online`, the first statement whose online plan builds an index
/// `CONCURRENTLY` on a partitioned table, which PostgreSQL refuses: refused
/// before anything runs, with the way it is done by hand.
pub(super) fn partition_refusal(
    p: &PlannedMigration,
    units: Option<&[Unit]>,
    partitioned: &[String],
) -> Option<PlanError> {
    use locksmith_core::analysis::StatementKind;
    let builds_on_parent = |s: &locksmith_core::analysis::Statement| match &s.kind {
        StatementKind::CreateIndex {
            table,
            concurrently: true,
            ..
        } => partitioned.iter().find(|t| *t == table),
        _ => None,
    };
    let units = units?;
    let table = units
        .iter()
        .flat_map(|u| &u.statements)
        .find_map(builds_on_parent)?;
    // Point at the statement of the file that led there.
    let written = p
        .statements
        .iter()
        .find(|s| s.locks.iter().any(|l| &l.relation == table))
        .or(p.statements.first())?;
    Some(PlanError {
        path: p.path.clone(),
        line: written.line,
        column: written.column,
        message: format!(
            "cannot run `{}` online: `{table}` is partitioned, and PostgreSQL builds no index \
             CONCURRENTLY on a partitioned table. Nothing was run. Do it partition by partition: \
             CREATE INDEX name ON ONLY {table} (…); then, for each partition, CREATE INDEX \
             CONCURRENTLY … ON the partition and ALTER INDEX name ATTACH PARTITION that index; \
             the parent's index is valid once every partition's is attached",
            locksmith_core::analysis::source::one_line(&written.sql, 80)
        ),
    })
}

/// What to say when online step `unit` (0-based) of `units` failed: the
/// steps before it stay done (each committed on its own), so the message
/// says what of them is in place — a `NOT VALID` constraint already checks
/// new rows — and how to remove it, besides how to resume.
pub(super) fn online_failed(
    file: &str,
    unit: usize,
    units: &[Unit],
    error: &crate::Error,
) -> String {
    let undone = matches!(error, crate::Error::Undone(_));
    let error = error.to_string();
    let error = error.trim_end_matches('.');
    let total = units.len();
    if undone {
        return format!(
            "{file}: online step {} of {total} failed: {error}. The migration is not recorded as applied; once the cause is dealt with, apply --online starts it over.",
            unit + 1
        );
    }
    let mut text = format!(
        "{file}: online step {} of {total} failed: {error}.",
        unit + 1
    );
    if unit == 0 {
        text.push_str(" Nothing of the migration was done");
    } else {
        text.push_str(&format!(
            " Steps 1–{unit} are done, each committed on its own, and stay in place:"
        ));
        for (i, u) in units[..unit].iter().enumerate() {
            for s in &u.statements {
                text.push_str(&format!("\n  step {}: {}", i + 1, left_in_place(s)));
            }
        }
        text.push_str("\nThe migration is not recorded as applied");
    }
    text.push_str(
        ". Run apply --online again to resume at the failed step once its cause is dealt with.",
    );
    text
}

/// One done step as it stands, with how to remove what it added.
fn left_in_place(s: &locksmith_core::analysis::Statement) -> String {
    use locksmith_core::analysis::StatementKind;
    use locksmith_core::analysis::{quote_ident, quote_qualified, source::one_line, AlterAction};
    let shown = one_line(&s.sql, 120);
    match &s.kind {
        StatementKind::AlterTable { table, actions } => match actions.as_slice() {
            [AlterAction::AddConstraint(c)] => match &c.name {
                Some(name) if c.not_valid => format!(
                    "{shown} — NOT VALID, it already rejects new rows that break it; \
                     ALTER TABLE {} DROP CONSTRAINT {} removes it",
                    quote_qualified(table),
                    quote_ident(name)
                ),
                Some(name) => format!(
                    "{shown} — ALTER TABLE {} DROP CONSTRAINT {} removes it",
                    quote_qualified(table),
                    quote_ident(name)
                ),
                None => shown,
            },
            _ => shown,
        },
        StatementKind::CreateIndex {
            name: Some(name), ..
        } => format!(
            "{shown} — DROP INDEX CONCURRENTLY {} removes it",
            quote_ident(name)
        ),
        _ => shown,
    }
}

/// `resumable`: a no-transaction migration recorded each statement's
/// progress (behind a pooler), so a rerun starts at the failed one.
pub(super) fn failure_message(
    p: &PlannedMigration,
    err: &crate::Error,
    done: usize,
    resumable: bool,
) -> String {
    if p.in_transaction {
        let next = if needs_no_fix(err) {
            "nothing in it needs fixing: run apply again"
        } else if err.sqlstate() == Some("42501") {
            "the migration is fine, the role is not allowed to run it: grant the role the \
             privilege (or run apply as a role that has it), then run apply again"
        } else {
            "fix the migration and run apply again"
        };
        return format!(
            "{}: {}. The whole migration was rolled back and not recorded; {next}.",
            p.file(),
            err.to_string().trim_end_matches('.')
        );
    }
    let failed = &p.statements[done.min(p.statements.len().saturating_sub(1))];
    let err = err.to_string();
    let err = err.trim_end_matches('.');
    if resumable {
        return format!(
            "{}:{}:{}: {err}. Statements before it ({done} of {}) were applied and recorded as \
             progress; the migration was not recorded. Fix this statement and run apply again: \
             it resumes here.",
            p.path.display(),
            failed.line,
            failed.column,
            p.statements.len()
        );
    }
    format!(
        "{}:{}:{}: {err}. Statements before it ({done} of {}) were applied; the migration was not recorded. \
         Make the applied statements idempotent (IF NOT EXISTS) or remove them, then run apply again.",
        p.path.display(),
        failed.line,
        failed.column,
        p.statements.len()
    )
}

/// A failure a rerun may get past unchanged: the connection or the server
/// went away (SQLSTATE class 08, 57, 58, or no server error at all), a
/// deadlock or serialization failure (40), a lack of resources (53).
fn needs_no_fix(err: &crate::Error) -> bool {
    match err.sqlstate() {
        Some(code) => ["08", "40", "53", "57", "58"]
            .iter()
            .any(|class| code.starts_with(class)),
        None => matches!(
            err,
            crate::Error::Connect { .. } | crate::Error::Query { .. }
        ),
    }
}
