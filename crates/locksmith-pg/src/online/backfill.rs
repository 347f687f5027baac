//! An `UPDATE` run in batches ([`Unit::batch`]): over ranges of the table's
//! key, each batch its own short transaction under the guard, with the
//! statement's own `WHERE` kept, so a writer waits on a row lock for one
//! batch at most instead of for the whole statement.
//!
//! Resumable: each batch records how far it got (`batch_after`, the last key
//! it covered) in `locksmith_online_steps` in its own transaction, so after
//! kill -9 the next run goes on after the last committed batch and never
//! updates a row twice (an `UPDATE … SET n = n + 1` stays right). The range
//! ends at the largest key when the run began (`batch_until`): rows inserted
//! later are left alone, as the statement itself would have left them.
//!
//! A table needs a key to be batched this way: its single-column primary
//! key, or a unique index on one `NOT NULL` column. By heap position
//! (`ctid`) a row that an earlier batch moved could be met, and updated,
//! again, so a table without a key is refused before anything runs.
//!
//! Must not decide what a batch may do (the plan did, in `locksmith-core`);
//! it only runs the batches, sizes them and records them.

use std::time::{Duration, Instant};

use locksmith_core::online::{BatchedUpdate, Unit};
use locksmith_core::quote::{ident, literal, qualified};

use super::STEPS_TABLE;
use crate::guard::{Event, Guard, GuardError, Step};
use crate::{Connection, Error};

/// How long one batch should hold its row locks: a writer that meets one of
/// its rows waits about this long at most. Half of the 100 ms a request may
/// be slowed (issue 21's goal): under load a batch overshoots its target,
/// and at 100 ms writers waited 104–132 ms over the baseline (retype
/// bench, 1M rows, load 6); the rate lost to the extra commits is small.
const TARGET: Duration = Duration::from_millis(50);
/// Keys in the first batch, before the rate is known.
const FIRST_BATCH: i64 = 500;
/// Bounds on a batch's keys, whatever the rate says.
const SMALLEST: i64 = 50;
const LARGEST: i64 = 50_000;
/// How often a paused backfill looks again whether it may go on.
const PAUSE_LOOK: Duration = Duration::from_millis(250);
/// Progress events at most this often (and after the last batch).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Why `table` cannot be batched (no key to range over), or `None`.
pub async fn unbatchable(
    client: &Connection,
    batch: &BatchedUpdate,
) -> Result<Option<String>, Error> {
    Ok(match key(client, &batch.table).await? {
        Some(_) => None,
        None => Some(no_key(batch)),
    })
}

fn no_key(batch: &BatchedUpdate) -> String {
    format!(
        "`{}` has no single-column primary key (or unique index on a NOT NULL column) to \
         run it in batches over: batches by heap position could meet a row an earlier batch \
         moved and update it twice. Add such a key first, or apply this UPDATE in a \
         migration of its own without --online, where --max-hold stops it should it make \
         writers wait longer",
        batch.table
    )
}

/// Runs unit `unit` of migration `version` in batches, going on after the
/// batches an interrupted run committed; returns the lock attempts made.
pub(super) async fn run(
    guard: &mut Guard,
    version: i64,
    unit: usize,
    u: &Unit,
    batch: &BatchedUpdate,
    checksum: &str,
    steps: usize,
) -> Result<u32, GuardError> {
    let client = guard.client();
    let Some(k) = key(client, &batch.table).await? else {
        // A backfill that runs as its own statement outside a transaction
        // (batched by heap pages, idempotent) does without a key.
        if let (false, Some(s)) = (u.transactional, u.statements.first()) {
            return guard.run_outside_transaction(&Step::from(s)).await;
        }
        // Checked before anything ran; dropped since.
        return Err(Error::NotOnline(no_key(batch)).into());
    };
    let k = ident(&k);
    let table = qualified(&batch.table);
    let (mut after, until, mut done) = match progress(client, version, unit, checksum, steps)
        .await?
    {
        Some(p) => p,
        None => {
            // The largest key now: rows inserted from here on are not the statement's.
            let until: Option<String> = client
                .query_opt(
                    // Named apart from the key: ORDER BY the key, not its text.
                    &format!("SELECT {k}::text AS last FROM {table} ORDER BY {k} DESC LIMIT 1"),
                    &[],
                )
                .await
                .map_err(|e| Error::query(format!("reading the largest key of {table}"), e))?
                .map(|r| r.get(0));
            let Some(until) = until else {
                return Ok(0);
            };
            client
                .execute(
                    &format!(
                        "INSERT INTO {STEPS_TABLE} (version, unit, checksum, done, batch_until, rows_done)
                         VALUES ($1, $2, $3, false, $4, 0)"
                    ),
                    &[&version, &(unit as i32), &checksum, &until],
                )
                .await
                .map_err(|e| Error::query("recording where the batches end", e))?;
            (None, until, 0)
        }
    };
    let total = estimated_rows(client, &table).await.max(done);
    let locks = u
        .statements
        .first()
        .map(|s| s.locks.clone())
        .unwrap_or_default();
    let mut size = FIRST_BATCH;
    let started = Instant::now();
    let done_before = done;
    let mut shown = Instant::now();
    let mut attempts = 0;
    let mut was_paused = false;
    guard.quiet_first_attempts(true);
    let ran = async {
        while after.as_deref() != Some(until.as_str()) {
            // Throttled between batches, never inside one.
            while let Some(why) = super::throttle::paused(guard).await? {
                if shown.elapsed() >= PROGRESS_EVERY || !was_paused {
                    shown = Instant::now();
                    guard.emit(Event::Backfill {
                        table: &batch.table,
                        rows_done: done,
                        rows_total: total.max(done),
                        rows_per_second: (done - done_before) as f64
                            / started.elapsed().as_secs_f64().max(0.001),
                        paused: Some(&why),
                    });
                }
                was_paused = true;
                guard.pause(PAUSE_LOOK).await?;
            }
            was_paused = false;
            // Each batch waits for its locks at most --deadline, however long the fill runs.
            guard.restart_deadline();
            let from = after
                .as_ref()
                .map(|a| format!("{k} > {} AND ", literal(a)))
                .unwrap_or_default();
            // The last key of the next `size` keys, and how many there are.
            let row = guard
                .client()
                .query_one(
                    &format!(
                        "SELECT (array_agg({k}::text ORDER BY {k} DESC))[1], count(*)
                           FROM (SELECT {k} FROM {table} WHERE {from}{k} <= {until}
                                 ORDER BY {k} LIMIT {size}) s",
                        until = literal(&until)
                    ),
                    &[],
                )
                .await
                .map_err(|e| Error::query(format!("finding the next batch of {table}"), e))?;
            let (next, keys): (Option<String>, i64) = (row.get(0), row.get(1));
            let next = next.unwrap_or_else(|| until.clone());
            let condition = batch
                .condition
                .as_ref()
                .map(|c| format!("({c}) AND "))
                .unwrap_or_default();
            let sql = format!(
                "{} WHERE {condition}{from}{k} <= {}",
                batch.update,
                literal(&next)
            );
            let record = format!(
                "UPDATE {STEPS_TABLE} SET batch_after = {}, rows_done = rows_done + {keys}, done_at = now()
                  WHERE version = {version} AND unit = {unit}",
                literal(&next)
            );
            let finish = |_: u32, _: Duration| record.clone();
            let step = Step {
                sql,
                locks: locks.clone(),
                builds_index: None,
            };
            let took = Instant::now();
            let ran = guard
                .run_transaction(std::slice::from_ref(&step), Some(&finish))
                .await;
            attempts += match ran {
                Ok(attempts) => attempts,
                Err(e) => {
                    let Some(message) = data_exception(&e) else {
                        return Err(e);
                    };
                    let rows = failing_rows(guard.client(), batch, &k, &table, &from, &next).await;
                    let Some(r) = &u.retype else {
                        return Err(e);
                    };
                    return Err(undo(guard, version, r, &message, &k, &rows).await);
                }
            };
            size = next_size(size, keys, took.elapsed());
            done += keys;
            after = Some(next);
            if shown.elapsed() < PROGRESS_EVERY && after.as_deref() != Some(until.as_str()) {
                continue;
            }
            shown = Instant::now();
            let elapsed = started.elapsed().as_secs_f64();
            let rate = (done - done_before) as f64 / elapsed.max(0.001);
            guard.emit(Event::Backfill {
                table: &batch.table,
                rows_done: done,
                rows_total: total.max(done),
                rows_per_second: rate,
                paused: None,
            });
        }
        Ok::<u32, GuardError>(attempts)
    }
    .await;
    guard.quiet_first_attempts(false);
    ran
}

/// The server's message when `e` is a value the statement could not
/// convert or compute (SQLSTATE class 22, a data exception).
fn data_exception(e: &GuardError) -> Option<String> {
    let GuardError::Failed(Error::Query { source, .. }) = e else {
        return None;
    };
    let db = source.as_db_error()?;
    db.code()
        .code()
        .starts_with("22")
        .then(|| db.message().to_string())
}

/// The keys of up to five rows of the failed batch (after `from`, up to
/// `next`) on which the statement fails, each tried alone in a
/// subtransaction of a block that is rolled back whatever happens.
async fn failing_rows(
    client: &Connection,
    batch: &BatchedUpdate,
    k: &str,
    table: &str,
    from: &str,
    next: &str,
) -> Vec<String> {
    let condition = batch
        .condition
        .as_ref()
        .map(|c| format!("({c}) AND "))
        .unwrap_or_default();
    let block = format!(
        "DO $locksmith$
DECLARE r record; bad text[] := '{{}}';
BEGIN
  FOR r IN SELECT {k} AS key FROM {table} WHERE {from}{k} <= {next} ORDER BY {k} LOOP
    BEGIN
      {update} WHERE {condition}{k} = r.key;
    EXCEPTION WHEN data_exception THEN
      bad := bad || r.key::text;
      EXIT WHEN cardinality(bad) >= 5;
    END;
  END LOOP;
  RAISE EXCEPTION USING MESSAGE = array_to_string(bad, ', '), ERRCODE = 'LSROW';
END
$locksmith$",
        next = literal(next),
        update = batch.update,
    );
    match client.batch_execute(&block).await {
        Err(e) => match e.as_db_error() {
            Some(db) if db.code().code() == "LSROW" && !db.message().is_empty() => {
                db.message().split(", ").map(str::to_string).collect()
            }
            _ => Vec::new(),
        },
        Ok(()) => Vec::new(),
    }
}

/// Undoes type change `r` after its fill met values that do not convert
/// (`message`, on the rows keyed `rows`): the shadow column, its trigger and
/// indexes dropped and the progress forgotten, in one guarded transaction.
async fn undo(
    guard: &mut Guard,
    version: i64,
    r: &locksmith_core::online::Retyped,
    message: &str,
    k: &str,
    rows: &[String],
) -> GuardError {
    let rows = match rows {
        [] => String::new(),
        rows => format!(" (rows where {k} = {})", rows.join(", ")),
    };
    let failed = format!(
        "the values of {}.{} do not all convert to {}: {message}{rows}",
        r.table, r.column, r.type_sql
    );
    let major = match crate::trace::catalog::server_major(guard.client()).await {
        Ok(major) => major,
        Err(e) => return e.into(),
    };
    let unit = match locksmith_core::online::retype::undo(r, major) {
        Ok(unit) => unit,
        Err(why) => return Error::NotOnline(format!("{failed}; {why}")).into(),
    };
    let steps: Vec<Step> = unit.statements.iter().map(Step::from).collect();
    let forget = format!("DELETE FROM {STEPS_TABLE} WHERE version = {version}");
    let finish = |_: u32, _: Duration| forget.clone();
    match guard.run_transaction(&steps, Some(&finish)).await {
        Ok(_) => Error::Undone(format!(
            "{failed}. The change was undone before its swap: the shadow column, its trigger and \
             its indexes are dropped, and {} is as it was. Fix those rows (or give a USING \
             expression that converts them)",
            r.table
        ))
        .into(),
        Err(e) => {
            let sql: Vec<&str> = steps.iter().map(|s| s.sql.as_str()).collect();
            Error::NotOnline(format!(
                "{failed}. Undoing the change failed too ({e}); these remove what it added: {}; {forget}",
                sql.join("; ")
            ))
            .into()
        }
    }
}

/// The next batch's size: as many keys as the last rate covers in [`TARGET`],
/// at most twice the last (a cold cache makes the first batches slow).
fn next_size(size: i64, keys: i64, took: Duration) -> i64 {
    if keys < size {
        return size;
    }
    let rate = keys as f64 / took.as_secs_f64().max(0.001);
    let fit = (rate * TARGET.as_secs_f64()) as i64;
    fit.clamp(SMALLEST, (size * 2).min(LARGEST))
}

/// An interrupted run's place in unit `unit`: the last key it covered, the
/// end, the keys covered. An edited statement is not resumed.
async fn progress(
    client: &Connection,
    version: i64,
    unit: usize,
    checksum: &str,
    steps: usize,
) -> Result<Option<(Option<String>, String, i64)>, Error> {
    // Where an interrupted run of this batched unit stopped.
    let row = client
        .query_opt(
            &format!(
                "SELECT batch_after, batch_until, rows_done, checksum FROM {STEPS_TABLE}
                  WHERE version = $1 AND unit = $2 AND NOT done"
            ),
            &[&version, &(unit as i32)],
        )
        .await
        .map_err(|e| Error::query(format!("reading {STEPS_TABLE}"), e))?;
    let Some(row) = row else { return Ok(None) };
    if row.get::<_, Option<String>>(3).as_deref() != Some(checksum) {
        return Err(Error::EditedMidway {
            step: unit + 1,
            steps,
            version,
        });
    }
    Ok(Some((row.get(0), row.get(1), row.get(2))))
}

/// The table's batching key: its single-column primary key, else a valid,
/// non-partial unique index on one `NOT NULL` column; `None` without one.
async fn key(client: &Connection, table: &str) -> Result<Option<String>, Error> {
    // The one column of the table's primary key or of a plain unique index on a NOT NULL column.
    client
        .query_opt(
            "SELECT a.attname::text FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
              WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indisvalid
                AND i.indnatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attnotnull
              ORDER BY i.indisprimary DESC, i.indexrelid LIMIT 1",
            &[&qualified(table)],
        )
        .await
        .map(|r| r.map(|r| r.get(0)))
        .map_err(|e| Error::query(format!("reading the key of {table}"), e))
}

/// The planner's row count for `table` (0 when never analysed).
async fn estimated_rows(client: &Connection, table: &str) -> i64 {
    // reltuples: -1 (never vacuumed or analysed) counts as unknown.
    client
        .query_one(
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass($1)",
            &[&table],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or(0)
}
