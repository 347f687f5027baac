//! Running one migration's online plan ([`locksmith_core::online`]) under the
//! guard, resumably: each unit is recorded in `locksmith_online_steps` as it
//! completes (inside its own transaction when it has one), and a unit an
//! interrupted run already did is skipped — by that record, or by the unit's
//! own `done_when` query when the crash came between a statement that cannot
//! run in a transaction (`CREATE INDEX CONCURRENTLY`) and its record.
//!
//! A unit that is one `UPDATE` ([`Unit::batch`]) runs in key-range batches
//! instead ([`backfill`]), each batch recording how far it got, so a rerun
//! goes on after the last committed batch.
//!
//! The migration's row in the history table is written with the last unit,
//! in the same transaction, and its progress rows are deleted then: until
//! that commit the migration is not applied, and a rerun resumes it.
//!
//! Behind a pooler with no session runner lock ([`Exclusion::PerTransaction`]),
//! each unit's transaction starts with [`history::start_sql`] and its own
//! progress row as the "done" check, so each unit runs exactly once whichever
//! runner gets there first. (Units outside a transaction block need the
//! direct route there; `apply` refuses them up front.)

use std::time::{Duration, Instant};

mod backfill;
pub mod retype;
mod throttle;
pub use backfill::unbatchable;
pub use throttle::Throttle;

use crate::Connection;
use locksmith_core::online::Unit;

use crate::guard::{Guard, GuardError, Step};
use crate::history::{self, Record};
use crate::Error;

/// Progress of online migrations that have not finished yet.
pub const STEPS_TABLE: &str = "locksmith_online_steps";

/// What a finished run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OnlineRun {
    /// Lock attempts in all.
    pub attempts: u32,
    /// Units run now.
    pub ran: usize,
    /// Units skipped because an earlier run had done them.
    pub skipped: usize,
    /// Another runner recorded the migration (found by its last unit).
    pub recorded_elsewhere: bool,
}

/// How runners of the same migration exclude each other.
#[derive(Debug, Clone, Copy)]
pub enum Exclusion<'a> {
    /// The caller holds the session runner lock.
    Session,
    /// Each unit's transaction takes the runner lock and checks that
    /// neither the migration (`record`) nor the unit is done yet.
    PerTransaction(&'a Record<'a>),
}

/// A unit failed: which one (0-based), and why.
#[derive(Debug)]
pub struct UnitFailed {
    /// The unit.
    pub unit: usize,
    /// What went wrong.
    pub error: GuardError,
}

/// Runs `units` of migration `version`; `record(attempts, elapsed)` is the SQL
/// that records the whole migration, run in the last transaction.
/// The caller holds the session runner lock.
pub async fn run(
    guard: &mut Guard,
    version: i64,
    units: &[Unit],
    record: &(dyn Fn(u32, Duration) -> String + Sync),
) -> Result<OnlineRun, UnitFailed> {
    run_excluding(guard, version, units, record, Exclusion::Session).await
}

/// [`run`], with runners kept out by `exclusion`.
pub async fn run_excluding(
    guard: &mut Guard,
    version: i64,
    units: &[Unit],
    record: &(dyn Fn(u32, Duration) -> String + Sync),
    exclusion: Exclusion<'_>,
) -> Result<OnlineRun, UnitFailed> {
    let started = Instant::now();
    let fail = |unit| move |error| UnitFailed { unit, error };
    ensure_table(guard.client())
        .await
        .map_err(|e| fail(0)(e.into()))?;
    // A caller that plans by itself (a rehearsal) hands type changes unexpanded.
    let expanded;
    let units = match units.iter().any(|u| u.unexpanded().is_some()) {
        false => units,
        true => {
            let client = guard.client();
            let major = crate::trace::catalog::server_major(client)
                .await
                .map_err(|e| fail(0)(e.into()))?;
            expanded = match retype::expand(client, version, units.to_vec(), &[], major)
                .await
                .map_err(|e| fail(0)(e.into()))?
            {
                Ok(units) => units,
                Err(refused) => return Err(fail(0)(Error::NotOnline(refused.why).into())),
            };
            &expanded[..]
        }
    };
    let sums: Vec<String> = units.iter().map(unit_checksum).collect();
    let done = check_progress(guard.client(), version, &sums)
        .await
        .map_err(|e| fail(0)(e.into()))?;
    let mut run = OnlineRun::default();
    let last = units.len().saturating_sub(1);
    for (i, unit) in units.iter().enumerate() {
        let finishing = i == last;
        let already = done.contains(&(i as i32))
            || match &unit.done_when {
                Some(query) => is_done(guard.client(), query)
                    .await
                    .map_err(|e| fail(i)(e.into()))?,
                None => false,
            };
        let steps: Vec<Step> = unit.statements.iter().map(Step::from).collect();
        // --deadline bounds each step's wait for its locks, from its own start.
        guard.restart_deadline();
        guard.emit(crate::guard::Event::OnlineStep {
            number: i + 1,
            of: units.len(),
            sql: unit.statements.first().map_or("", |s| s.sql.as_str()),
            skipped: already,
        });
        if already {
            run.skipped += 1;
        } else {
            run.ran += 1;
        }
        if let (Some(batch), false) = (&unit.batch, already) {
            run.attempts += backfill::run(guard, version, i, unit, batch, &sums[i], units.len())
                .await
                .map_err(fail(i))?;
        } else if unit.transactional && !already {
            let progress = progress_sql(version, i, finishing, &sums[i]);
            let attempts_before = run.attempts;
            let finish = |attempts: u32, _: Duration| {
                if finishing {
                    format!(
                        "{}; {progress}",
                        record(attempts_before + attempts, started.elapsed())
                    )
                } else {
                    progress.clone()
                }
            };
            let ran = match exclusion {
                Exclusion::Session => guard.run_transaction(&steps, Some(&finish)).await,
                Exclusion::PerTransaction(migration) => {
                    let start = history::start_sql(migration, Some(&done_sql(version, i)));
                    guard
                        .run_transaction_started(&steps, &start, Some(&finish))
                        .await
                }
            };
            match ran {
                Ok(attempts) => run.attempts += attempts,
                Err(GuardError::Failed(e)) if e.sqlstate() == Some(history::ALREADY_APPLIED) => {
                    run.ran -= 1;
                    run.skipped += 1;
                    run.recorded_elsewhere = finishing;
                }
                Err(e) => return Err(fail(i)(e)),
            }
            continue;
        } else if !already {
            for step in &steps {
                run.attempts += guard.run_outside_transaction(step).await.map_err(fail(i))?;
            }
        }
        // Recorded after the fact: a crash before this is caught by `done_when`.
        let mut sql = vec!["BEGIN".to_string()];
        if finishing {
            sql.push(record(run.attempts, started.elapsed()));
        }
        sql.push(progress_sql(version, i, finishing, &sums[i]));
        sql.push("COMMIT".into());
        guard
            .client()
            .batch_execute(&sql.join("; "))
            .await
            .map_err(|e| fail(i)(Error::query("recording online progress", e).into()))?;
    }
    Ok(run)
}

/// A query returning a row when unit `i` of `version` is recorded as done.
pub fn done_sql(version: i64, i: usize) -> String {
    format!("SELECT FROM {STEPS_TABLE} WHERE version = {version} AND unit = {i} AND done")
}

/// Records unit `i` as done, with the checksum of what it ran
/// ([`unit_checksum`]); with the last unit, forgets the migration's progress instead.
pub fn progress_sql(version: i64, i: usize, finishing: bool, checksum: &str) -> String {
    if finishing {
        format!("DELETE FROM {STEPS_TABLE} WHERE version = {version}")
    } else {
        format!(
            "INSERT INTO {STEPS_TABLE} (version, unit, checksum) VALUES ({version}, {i}, {}) \
             ON CONFLICT (version, unit) DO UPDATE SET done = true, done_at = now()",
            locksmith_core::quote::literal(checksum)
        )
    }
}

/// What identifies a unit's work: the checksum of its statements, so a
/// resumed run can tell a step it recorded from a different one now at the
/// same place (the file was edited after a failed run).
pub fn unit_checksum(unit: &Unit) -> String {
    statements_checksum(unit.statements.iter().map(|s| s.sql.as_str()))
}

/// The checksum of statements run as one step, in order.
pub fn statements_checksum<'a>(statements: impl Iterator<Item = &'a str>) -> String {
    let text: Vec<&str> = statements.collect();
    locksmith_core::source::checksum(&text.join(";\n"))
}

/// The units of migration `version` an interrupted run recorded as done,
/// after checking that each is still the step now planned at its place
/// (`checksums`, one per unit): resuming past a step that changed would
/// record the migration as applied without running what it now says.
pub async fn check_progress(
    client: &Connection,
    version: i64,
    checksums: &[String],
) -> Result<Vec<i32>, Error> {
    let done = done_units(client, version).await?;
    for (unit, recorded) in &done {
        let now = checksums.get(*unit as usize);
        let same = match (recorded, now) {
            // Recorded by a locksmith that kept no checksum: cannot tell.
            (None, Some(_)) => true,
            (Some(recorded), Some(now)) => recorded == now,
            (_, None) => false,
        };
        if !same {
            return Err(Error::EditedMidway {
                step: *unit as usize + 1,
                steps: checksums.len(),
                version,
            });
        }
    }
    Ok(done.into_iter().map(|(unit, _)| unit).collect())
}

/// Creates the progress table if it does not exist, in a transaction of its
/// own (`SET LOCAL`: nothing stays on a pooled backend); a runner creating it
/// at the same moment is waited out.
pub async fn ensure_table(client: &Connection) -> Result<(), Error> {
    // Created once, empty most of the time; a short lock_timeout like the history table's.
    history::create_in_own_transaction(
        client,
        &format!("creating {STEPS_TABLE}"),
        &format!(
            "SET LOCAL lock_timeout = '2s';
             CREATE TABLE IF NOT EXISTS {STEPS_TABLE} (
               version bigint NOT NULL,
               unit integer NOT NULL,
               done_at timestamptz NOT NULL DEFAULT now(),
               checksum text,
               PRIMARY KEY (version, unit)
             );
             ALTER TABLE {STEPS_TABLE} ADD COLUMN IF NOT EXISTS checksum text,
               ADD COLUMN IF NOT EXISTS done boolean NOT NULL DEFAULT true,
               ADD COLUMN IF NOT EXISTS batch_after text,
               ADD COLUMN IF NOT EXISTS batch_until text,
               ADD COLUMN IF NOT EXISTS rows_done bigint,
               ADD COLUMN IF NOT EXISTS facts text"
        ),
    )
    .await
}

async fn done_units(
    client: &Connection,
    version: i64,
) -> Result<Vec<(i32, Option<String>)>, Error> {
    // The units of this migration that an interrupted run completed, with what each ran.
    let rows = client
        .query(
            &format!(
                "SELECT unit, checksum FROM {STEPS_TABLE} WHERE version = $1 AND done ORDER BY unit"
            ),
            &[&version],
        )
        .await
        .map_err(|e| Error::query(format!("reading {STEPS_TABLE}"), e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

async fn is_done(client: &Connection, query: &str) -> Result<bool, Error> {
    // The unit's own check, from the plan: true when its effect is already there.
    client
        .query_one(query, &[])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::query("checking whether an online step is already done", e))
}
