//! `apply --online --abort`: removes what an unfinished online type change
//! added (the shadow column with its indexes and check, the trigger and its
//! function) and forgets its progress, so the table is as it was before the
//! change, in one guarded transaction. Only before the change's swap: after
//! it the column has its new type, and finishing (`apply --online`) is the
//! way out. Other unfinished online work (a batched `UPDATE` part done, an
//! index built) is not undone here: the refusal says what is in place.

use serde::Serialize;

use locksmith_core::analysis::split::retyped;
use locksmith_core::online::{retype, Unit};
use locksmith_core::plan::PlannedMigration;

use super::{Error, Ready, Runner};
use crate::guard::Step;
use crate::history;
use crate::online::{self, STEPS_TABLE};

/// What `--abort` did.
#[derive(Debug, Clone, Serialize)]
pub struct AbortReport {
    /// `aborted`, or `nothing` when no online change was unfinished.
    pub status: &'static str,
    /// The migration whose change was removed (`"2 accounts_id"`).
    pub migration: Option<String>,
    /// The statements that removed it.
    pub removed: Vec<String>,
    /// What happened, in a sentence.
    pub message: String,
}

impl Runner {
    /// Removes the unfinished online type change of the first pending
    /// migration that has one, leaving its table as it was before the change.
    pub async fn abort(&self, plan: locksmith_core::plan::Plan) -> Result<AbortReport, Error> {
        let mut ready = match self.ready(plan).await? {
            Ok(ready) => ready,
            Err(report) => {
                return Err(Error::RunnerBusy(report.error.unwrap_or_else(|| {
                    "another locksmith apply is running".to_string()
                })))
            }
        };
        let unfinished = unfinished_versions(&ready).await?;
        let found = ready.pending.iter().zip(&ready.units).find(|(&i, _)| {
            unfinished.contains(&history::row_version(&ready.plan.migrations[i].id))
        });
        let Some((&i, units)) = found else {
            super::pooled::unlock(&ready.guard).await?;
            return Ok(AbortReport {
                status: "nothing",
                migration: None,
                removed: Vec::new(),
                message: "No online change is unfinished: nothing to abort.".into(),
            });
        };
        let p = ready.plan.migrations[i].clone();
        let units = units.clone().unwrap_or_default();
        let removed = removal(&mut ready, &p, &units).await?;
        super::pooled::unlock(&ready.guard).await?;
        Ok(AbortReport {
            status: "aborted",
            migration: Some(p.to_string()),
            message: format!(
                "{}: the unfinished online change was removed ({} statements); its table is as it was before it. The migration is still pending.",
                p.file(),
                removed.len()
            ),
            removed,
        })
    }
}

/// Migrations (history keys) with online progress recorded.
async fn unfinished_versions(ready: &Ready) -> Result<Vec<i64>, Error> {
    // Versions in the progress table, if there is one.
    let rows = ready
        .guard
        .client()
        .query(&format!("SELECT DISTINCT version FROM {STEPS_TABLE}"), &[])
        .await;
    match rows {
        Ok(rows) => Ok(rows.iter().map(|r| r.get(0)).collect()),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            Ok(Vec::new())
        }
        Err(e) => Err(crate::Error::query(format!("reading {STEPS_TABLE}"), e).into()),
    }
}

/// Removes migration `p`'s unfinished type changes (planned as `units`);
/// the statements run, or why it cannot.
async fn removal(
    ready: &mut Ready,
    p: &PlannedMigration,
    units: &[Unit],
) -> Result<Vec<String>, Error> {
    let version = history::row_version(&p.id);
    let client = ready.guard.client();
    let refuse = |why: String| Err(Error::Pending(format!("{}: cannot abort: {why}", p.file())));
    let changes: Vec<_> = online::retype::kept_statements(client, version)
        .await?
        .into_iter()
        .filter_map(|j| p.statements.get(j).and_then(|s| retyped(&s.sql)))
        .collect();
    if changes.is_empty() {
        return refuse(format!(
            "its online progress is not a type change's: what its finished steps did stays in place \
             (a batched UPDATE's rows stay updated). Finish it with apply --online, or undo the steps \
             by hand and clear the progress: DELETE FROM {STEPS_TABLE} WHERE version = {version}"
        ));
    }
    for r in &changes {
        if !online::retype::shadow_exists(client, r).await? {
            return refuse(format!(
                "the swap of the type change of {}.{} is done: the column has its new type. Finish \
                 it with apply --online (only validations are left)",
                r.table, r.column
            ));
        }
    }
    // Steps done that are none of these changes' own stay as they are: say so.
    let done = online::check_progress(
        client,
        version,
        &units.iter().map(online::unit_checksum).collect::<Vec<_>>(),
    )
    .await?;
    let foreign: Vec<&str> = done
        .iter()
        .filter_map(|&d| units.get(d as usize))
        .filter(|u| !changes.iter().any(|r| retype::belongs(r, u)))
        .filter_map(|u| u.statements.first().map(|s| s.sql.as_str()))
        .collect();
    if !foreign.is_empty() {
        return refuse(format!(
            "steps other than the type change are done and would stay in place ({}). Finish the \
             migration with apply --online, or undo them by hand first",
            foreign.join("; ")
        ));
    }
    let mut statements = Vec::new();
    for r in &changes {
        let undo = retype::undo(r, ready.plan.pg_version)
            .map_err(|why| Error::Pending(format!("{}: cannot abort: {why}", p.file())))?;
        statements.extend(undo.statements);
    }
    let steps: Vec<Step> = statements.iter().map(Step::from).collect();
    let forget = format!("DELETE FROM {STEPS_TABLE} WHERE version = {version}");
    let finish = |_: u32, _: std::time::Duration| forget.clone();
    ready
        .guard
        .run_transaction(&steps, Some(&finish))
        .await
        .map_err(|e| match e {
            crate::guard::GuardError::Blocked { reason, .. } => {
                Error::RunnerBusy(format!("{}: aborting gave up: {reason}", p.file()))
            }
            e => Error::Pending(format!("{}: aborting failed: {e}", p.file())),
        })?;
    let mut removed: Vec<String> = statements.into_iter().map(|s| s.sql).collect();
    removed.push(format!(
        "DELETE FROM {STEPS_TABLE} WHERE version = {version}"
    ));
    Ok(removed)
}
