//! A run behind a connection pooler (PgBouncer, RDS Proxy), in any pooling
//! mode: nothing of ours may outlive a transaction on a pooled backend.
//!
//! Without a direct route (`--direct-url`), runners exclude each other inside
//! each migration's own transaction ([`history::start_sql`]); a
//! no-transaction migration runs statement by statement, each in a
//! transaction of its own with its progress row, so each runs exactly once;
//! a statement that cannot run in a transaction block is refused before
//! anything runs. With a direct route, the runner lock and such statements
//! go straight to the server, as without a pooler.

use std::time::{Duration, Instant};

use locksmith_core::online::Unit;
use locksmith_core::plan::PlannedMigration;

use super::record;
use crate::guard::{Guard, GuardError, Step};
use crate::{history, online, Pooler};

/// How a pending migration ended when it did not fail.
pub(super) enum Ran {
    /// Applied here, after this many lock attempts.
    Here(u32),
    /// Another runner recorded it first (behind a pooler): not run here.
    Elsewhere,
}

/// How this run keeps other runners out: behind a pooler without a direct
/// route there is no session lock (it would stay on a pooled backend), and
/// each migration's transaction takes the lock for itself (`true`).
/// Otherwise the session lock on the guard's [`session_client`](Guard::session_client).
pub(super) fn per_transaction(guard: &Guard) -> bool {
    guard.pooler().is_some() && guard.session_client().is_none()
}

/// Releases the session runner lock, when this run holds one.
pub(super) async fn unlock(guard: &Guard) -> Result<(), crate::Error> {
    match guard.session_client() {
        Some(client) if !per_transaction(guard) => history::unlock_runners(client).await,
        _ => Ok(()),
    }
}

/// Behind `pooler` with no direct route: the first pending statement that
/// cannot run inside a transaction block, refused before anything runs.
pub(super) fn outside_transaction(
    pending: &[&PlannedMigration],
    plans: &[Option<Vec<Unit>>],
    pooler: &Pooler,
) -> Option<String> {
    let why = format!(
        "cannot run inside a transaction block, and the connection goes through {pooler}. \
             A pooler may hand each statement outside a transaction to another backend, where \
             nothing bounds its lock wait and a retry cannot tell whether it already ran. \
             Nothing was run. Give locksmith a route straight to the server for such statements: \
             --direct-url URL (or LOCKSMITH_DIRECT_URL)"
    );
    for (p, plan) in pending.iter().zip(plans) {
        match plan {
            Some(units) => {
                let unit = units.iter().find(|u| !u.transactional)?;
                let sql = unit.statements.first().map_or("", |s| s.sql.as_str());
                return Some(format!(
                    "{}: its online plan runs `{}`, which {why}.",
                    p.path.display(),
                    first_line(sql)
                ));
            }
            None => {
                if let Some(s) = p.statements.iter().find(|s| !s.transactional) {
                    return Some(format!(
                        "{}:{}:{}: `{}` {why}.",
                        p.path.display(),
                        s.line,
                        s.column,
                        first_line(&s.sql)
                    ));
                }
            }
        }
    }
    None
}

fn first_line(sql: &str) -> &str {
    sql.lines().next().unwrap_or("").trim()
}

/// Behind a pooler without a direct route: runs `p` with the runner lock and
/// the history check inside its transaction; a no-transaction migration runs
/// statement by statement, each in a transaction of its own that records its
/// progress, so each runs exactly once (every statement was checked to run
/// in a transaction block). On failure, also says how many statements completed.
pub(super) async fn apply(
    guard: &mut Guard,
    p: &PlannedMigration,
) -> Result<Ran, (GuardError, usize)> {
    let started = Instant::now();
    let migration = record(p);
    let elsewhere = |e: &GuardError| matches!(e, GuardError::Failed(e) if e.sqlstate() == Some(history::ALREADY_APPLIED));
    let record =
        |attempts: u32, elapsed: Duration| history::insert_sql(&migration, elapsed, attempts);
    if p.in_transaction {
        let steps: Vec<Step> = p.statements.iter().map(Step::from).collect();
        let start = history::start_sql(&migration, None);
        return match guard
            .run_transaction_started(&steps, &start, Some(&record))
            .await
        {
            Ok(attempts) => Ok(Ran::Here(attempts)),
            Err(e) if elsewhere(&e) => Ok(Ran::Elsewhere),
            Err(e) => Err((e, 0)),
        };
    }
    online::ensure_table(guard.client())
        .await
        .map_err(|e| (GuardError::Failed(e), 0))?;
    let version = history::row_version(&p.id);
    let sums: Vec<String> = p
        .statements
        .iter()
        .map(|s| online::statements_checksum(std::iter::once(s.sql.as_str())))
        .collect();
    online::check_progress(guard.client(), version, &sums)
        .await
        .map_err(|e| (GuardError::Failed(e), 0))?;
    let last = p.statements.len().saturating_sub(1);
    let mut attempts = 0;
    let mut ran = Ran::Elsewhere;
    for (i, s) in p.statements.iter().enumerate() {
        let start = history::start_sql(&migration, Some(&online::done_sql(version, i)));
        let finishing = i == last;
        let before = attempts;
        let finish = |n: u32, _: Duration| {
            let progress = online::progress_sql(version, i, finishing, &sums[i]);
            match finishing {
                true => format!("{}; {progress}", record(before + n, started.elapsed())),
                false => progress,
            }
        };
        match guard
            .run_transaction_started(&[Step::from(s)], &start, Some(&finish))
            .await
        {
            Ok(n) => {
                attempts += n;
                ran = Ran::Here(attempts);
            }
            // Done by another runner: the statement, or the whole migration.
            Err(e) if elsewhere(&e) => {
                if finishing {
                    ran = Ran::Elsewhere;
                }
            }
            Err(e) => return Err((e, i)),
        }
    }
    Ok(ran)
}
