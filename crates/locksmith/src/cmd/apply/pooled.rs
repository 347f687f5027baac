//! `apply` behind a connection pooler (PgBouncer, RDS Proxy), in any pooling
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

use locksmith_pg::guard::{Guard, GuardError, Step};
use locksmith_pg::{history, Pooler};

use super::Planned;
use crate::render::PoolerJson;

/// How a pending migration ended when it did not fail.
pub(super) enum Ran {
    /// Applied here, after this many lock attempts.
    Here(u32),
    /// Another runner recorded it first (behind a pooler): not run here.
    Elsewhere,
}

/// How this run keeps other runners out.
pub(super) struct Runners {
    /// Behind a pooler without a direct route: no session lock (it would
    /// stay on a pooled backend); each migration's transaction takes the
    /// lock for itself. Otherwise the session lock on the guard's
    /// [`session_client`](Guard::session_client).
    pub(super) per_transaction: bool,
    /// For the report.
    pub(super) pooler: Option<PoolerJson>,
}

impl Runners {
    pub(super) async fn unlock(&self, guard: &Guard) -> Result<(), locksmith_pg::Error> {
        match guard.session_client() {
            Some(client) if !self.per_transaction => history::unlock_runners(client).await,
            _ => Ok(()),
        }
    }
}

/// Says (once, on stderr) when a pooler is in between, and decides how
/// runners exclude each other: the session lock on the direct connection
/// when a direct route was given, else each migration's own transaction.
pub(super) fn runners(guard: &Guard, quiet: bool) -> Runners {
    let Some(pooler) = guard.pooler() else {
        return Runners {
            per_transaction: false,
            pooler: None,
        };
    };
    let direct = guard.session_client().is_some();
    if !quiet {
        let how = match direct {
            true => {
                "the runner lock, the watchdog and statements outside a transaction block go \
                 straight to the server (--direct-url); migrations go through the pooler"
            }
            false => {
                "each migration takes the runner lock and checks the history inside its own \
                 transaction; a statement that cannot run in a transaction block needs \
                 --direct-url"
            }
        };
        eprintln!("through {pooler}: {how}");
    }
    Runners {
        per_transaction: !direct,
        pooler: Some(PoolerJson::new(pooler, direct)),
    }
}

/// Behind `pooler` with no direct route: the first pending statement that
/// cannot run inside a transaction block, refused before anything runs.
pub(super) fn outside_transaction(
    pending: &[Planned],
    plans: &[Option<Vec<locksmith_core::online::Unit>>],
    pooler: &Pooler,
) -> Option<miette::Report> {
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
                return Some(miette::miette!(
                    "{}: its online plan runs `{}`, which {why}.",
                    p.path.display(),
                    first_line(sql)
                ));
            }
            None => {
                if let Some(s) = p.steps.iter().find(|s| !s.transactional) {
                    return Some(miette::miette!(
                        "{}:{}:{}: `{}` {why}.",
                        p.path.display(),
                        s.line,
                        s.column,
                        first_line(&s.step.sql)
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
pub(super) async fn apply_pooled(
    guard: &mut Guard,
    p: &Planned,
) -> Result<Ran, (GuardError, usize)> {
    use locksmith_pg::online;
    let started = Instant::now();
    let migration = p.record();
    let elsewhere = |e: &GuardError| matches!(e, GuardError::Failed(e) if e.sqlstate() == Some(history::ALREADY_APPLIED));
    let record =
        |attempts: u32, elapsed: Duration| history::insert_sql(&migration, elapsed, attempts);
    if p.in_transaction {
        let steps: Vec<Step> = p.steps.iter().map(|s| s.step.clone()).collect();
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
    let last = p.steps.len().saturating_sub(1);
    let mut attempts = 0;
    let mut ran = Ran::Elsewhere;
    for (i, s) in p.steps.iter().enumerate() {
        let start = history::start_sql(&migration, Some(&online::done_sql(version, i)));
        let finishing = i == last;
        let before = attempts;
        let finish = |n: u32, _: Duration| {
            let progress = online::progress_sql(version, i, finishing);
            match finishing {
                true => format!("{}; {progress}", record(before + n, started.elapsed())),
                false => progress,
            }
        };
        match guard
            .run_transaction_started(std::slice::from_ref(&s.step), &start, Some(&finish))
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
