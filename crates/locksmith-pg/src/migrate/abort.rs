//! `apply --online --abort`: takes back what an unfinished online migration
//! did, step by step in reverse, each under the guard, and forgets its
//! progress, so the migration is pending again and the schema as before it:
//! an index it built `CONCURRENTLY` (or left invalid, cut off) dropped
//! `CONCURRENTLY`, a constraint added `NOT VALID` dropped, a type change
//! before its swap removed with its shadow column, trigger and function
//! ([`locksmith_core::online::undo`] plans it).
//!
//! Refused before anything runs, saying what to do, where taking a step
//! back would lose or invent something: a batched `UPDATE` that changed
//! rows, a column added (writers may have filled it), a type change past
//! its swap (finishing, `apply --online`, is the way out there).

use serde::Serialize;

use locksmith_core::analysis::split::retyped;
use locksmith_core::online::undo::{self, Progress};
use locksmith_core::online::Unit;
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
    /// The migration whose unfinished work was taken back (`"2 accounts_id"`).
    pub migration: Option<String>,
    /// The statements that removed it.
    pub removed: Vec<String>,
    /// What happened, in a sentence.
    pub message: String,
}

impl Runner {
    /// Takes back the unfinished online work of the first pending migration
    /// that has some, leaving the schema as it was before it; the migration
    /// stays pending.
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
        let mut found = ready.pending.iter().zip(&ready.units).find(|(&i, _)| {
            unfinished.contains(&history::row_version(&ready.plan.migrations[i].id))
        });
        // No progress recorded, but the first pending migration's first step,
        // a concurrent build, was cut off: its invalid index is there.
        if found.is_none() {
            if let Some((i, Some(units))) = ready.pending.first().zip(ready.units.first()) {
                if cut_off_build(ready.guard.client(), units).await? {
                    found = Some((i, &ready.units[0]));
                }
            }
        }
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
                "{}: the unfinished online change was removed ({} statements); the schema is as it was before it. The migration is still pending: apply --online runs it from its first step.",
                p.file(),
                removed.len()
            ),
            removed,
        })
    }
}

/// Whether the first of `units` builds an index `CONCURRENTLY` whose invalid
/// remains are there: a build cut off before anything was recorded.
async fn cut_off_build(client: &crate::Connection, units: &[Unit]) -> Result<bool, Error> {
    use locksmith_core::analysis::StatementKind;
    let Some(StatementKind::CreateIndex {
        name: Some(name),
        table,
        concurrently: true,
        ..
    }) = units
        .first()
        .filter(|u| !u.transactional)
        .and_then(|u| u.statements.first())
        .map(|s| &s.kind)
    else {
        return Ok(false);
    };
    let mut parts = locksmith_core::quote::split_qualified(table);
    parts.pop();
    parts.push(name.clone());
    let index: Vec<String> = parts
        .iter()
        .map(|p| locksmith_core::quote::ident(p))
        .collect();
    // An invalid index of that name beside the table.
    client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass($1) AND NOT indisvalid)",
            &[&index.join(".")],
        )
        .await
        .map(|r| r.get(0))
        .map_err(|e| crate::Error::query(format!("looking for the index {name}"), e).into())
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

/// Takes back migration `p`'s unfinished online work (planned as `units`);
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
    for r in &changes {
        if !online::retype::shadow_exists(client, r).await? {
            return refuse(format!(
                "the swap of the type change of {}.{} is done: the column has its new type. Finish \
                 it with apply --online (only validations are left)",
                r.table, r.column
            ));
        }
    }
    let touched = touched(client, version, units).await?;
    let forget_all = format!("DELETE FROM {STEPS_TABLE} WHERE version = {version}");
    let steps = match undo::plan(units, &touched, &changes, ready.plan.pg_version) {
        Ok(steps) => steps,
        Err(refused) => {
            let mut by_hand = refused.by_hand;
            by_hand.push(forget_all);
            return refuse(format!(
                "{}. Nothing was undone. To give the migration up by hand instead, after dealing \
                 with the above: {}",
                refused.steps.join("; "),
                by_hand.join("; ")
            ));
        }
    };
    let mut removed = Vec::new();
    let failed = |e: crate::guard::GuardError| match e {
        crate::guard::GuardError::Blocked { reason, .. } => {
            Error::RunnerBusy(format!("{}: aborting gave up: {reason}", p.file()))
        }
        e => Error::Pending(format!(
            "{}: aborting failed: {e}. What was taken back so far stays so; run apply --online \
             --abort again to go on",
            p.file()
        )),
    };
    for step in &steps {
        let forget = forget_sql(version, &step.units);
        let guarded: Vec<Step> = step.statements.iter().map(Step::from).collect();
        if step.statements.is_empty() || !step.transactional {
            // Forgotten first: a rerun of the migration then checks the
            // unit's work again instead of skipping it.
            ready
                .guard
                .client()
                .batch_execute(&forget)
                .await
                .map_err(|e| crate::Error::query("forgetting online progress", e))?;
            for s in &guarded {
                ready
                    .guard
                    .run_outside_transaction(s)
                    .await
                    .map_err(failed)?;
            }
        } else {
            let finish = |_: u32, _: std::time::Duration| forget.clone();
            ready
                .guard
                .run_transaction(&guarded, Some(&finish))
                .await
                .map_err(failed)?;
        }
        removed.extend(step.statements.iter().map(|s| s.sql.clone()));
    }
    // The rest: the kept facts of a type change, a batched unit's place.
    ready
        .guard
        .client()
        .batch_execute(&forget_all)
        .await
        .map_err(|e| crate::Error::query("forgetting online progress", e))?;
    removed.push(forget_all);
    Ok(removed)
}

/// Forgets the progress of `units` of migration `version`.
fn forget_sql(version: i64, units: &[usize]) -> String {
    let list: Vec<String> = units.iter().map(usize::to_string).collect();
    format!(
        "DELETE FROM {STEPS_TABLE} WHERE version = {version} AND unit IN ({})",
        list.join(", ")
    )
}

/// How far an unfinished run of migration `version` got: the units it
/// recorded as done, and the one after them, which may have started.
async fn touched(
    client: &crate::Connection,
    version: i64,
    units: &[Unit],
) -> Result<Vec<(usize, Progress)>, Error> {
    let done = online::check_progress(
        client,
        version,
        &units.iter().map(online::unit_checksum).collect::<Vec<_>>(),
    )
    .await?;
    let mut touched: Vec<(usize, Progress)> =
        done.iter().map(|&d| (d as usize, Progress::Done)).collect();
    if let Some(next) = (0..units.len()).find(|&i| !done.contains(&(i as i32))) {
        // Batches of it that committed, if it is a batched UPDATE.
        let row = client
            .query_opt(
                &format!(
                    "SELECT coalesce(rows_done, 0) > 0 OR batch_after IS NOT NULL FROM {STEPS_TABLE}
                      WHERE version = $1 AND unit = $2 AND NOT done"
                ),
                &[&version, &(next as i32)],
            )
            .await
            .map_err(|e| crate::Error::query(format!("reading {STEPS_TABLE}"), e))?;
        let changed_rows = row.is_some_and(|r| r.get(0));
        touched.push((next, Progress::Started { changed_rows }));
    }
    Ok(touched)
}
