//! One attempt: the transaction (or single statement) that takes the locks
//! and runs the migration, watched by the sidecar, cancelled on the server on
//! interrupt or deadline. The retry loop that calls it is in the parent module.

use std::time::{Duration, Instant};

use locksmith_core::duration::to_pg_setting;
use locksmith_core::lock::LockMode;
use tokio_postgres::error::SqlState;
use tokio_postgres::SimpleQueryMessage;

use super::index_build::Existing;
use super::look::Resolved;
use super::watcher::{Backend, Limits, Watch, Watcher, XACT_MICROS};
use super::{next_interrupt, Attempt, Event, Guard, GuardError, Interrupt, RelationLock, Step};
use crate::settings::CHECK_VANISHED_CLIENT_LOCALLY;
use crate::{Connection, Error};

/// The caller's SQL around an attempt's statements, in the same transaction.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Sql<'a> {
    /// Run right after `BEGIN`, before any table lock.
    pub start: Option<&'a str>,
    /// Run last, before `COMMIT`.
    pub finish: Option<&'a str>,
}

impl Guard {
    pub(super) async fn attempt_transaction(
        &mut self,
        steps: &[Step],
        resolved: &[Resolved],
        lock_wait: Option<Duration>,
        around: Sql<'_>,
    ) -> Result<Attempt, GuardError> {
        let mut order: Vec<&Resolved> = resolved.iter().filter(|r| r.lockable).collect();
        // A fixed order, so two guarded migrations can never deadlock on each other.
        order.sort_by(|a, b| a.lock_name.cmp(&b.lock_name));
        // The transaction opens before any table lock, and says which backend
        // runs it and since when: behind a pooler the backend changes from one
        // transaction to the next, so the watchdog learns it here, every time.
        let mut opening = vec![
            "BEGIN".to_string(),
            format!(
                "SET LOCAL lock_timeout = '{}'",
                to_pg_setting(self.policy.lock_timeout)
            ),
            format!(
                "SET LOCAL statement_timeout = '{}'",
                to_pg_setting(self.attempt_left().max(Duration::from_secs(1)))
            ),
        ];
        if self.client.pooler().is_some() {
            opening.push(CHECK_VANISHED_CLIENT_LOCALLY.to_string());
        }
        opening.extend(around.start.map(str::to_string));
        opening.push(format!("SELECT pg_backend_pid(), {XACT_MICROS}"));
        let watched = match self.query_rows(&opening.join("; ")).await {
            Ok(rows) => watched_backend(&rows),
            Err(e) => {
                let _ = self.client.batch_execute("ROLLBACK").await;
                if matches!(&e, ExecError::Sql(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE))
                {
                    return Ok(Attempt::Busy);
                }
                return self.classify(e, Watch::default());
            }
        };
        // Our own statements travel in as few round trips as possible: the
        // lock is held from the LOCK until COMMIT, and traffic queues behind it.
        let mut opening = Vec::new();
        let locks = order.iter().map(|r| {
            let wait = if lock_wait.is_some() { "" } else { " NOWAIT" };
            format!(
                "LOCK TABLE {} IN {} MODE{wait}",
                r.lock_name,
                r.mode.sql_name()
            )
        });
        match lock_wait {
            // The statements keep the full budget for locks the plan did not name.
            Some(wait) if !order.is_empty() => {
                opening.push(format!(
                    "SET LOCAL lock_timeout = '{}'",
                    to_pg_setting(wait)
                ));
                opening.extend(locks);
                opening.push(format!(
                    "SET LOCAL lock_timeout = '{}'",
                    to_pg_setting(self.policy.lock_timeout)
                ));
            }
            _ => opening.extend(locks),
        }
        let mut sql = vec![opening.join("; ")];
        // The migration's statements one by one, so an error names the one that failed.
        sql.extend(steps.iter().map(|s| s.sql.clone()));
        sql.push(
            around
                .finish
                .into_iter()
                .chain(["COMMIT"])
                .collect::<Vec<_>>()
                .join("; "),
        );

        // A relation the unit itself creates has no traffic to block.
        let held: Vec<RelationLock> = traffic_blocking(steps)
            .into_iter()
            .filter(|l| resolved.iter().any(|r| r.name == l.relation))
            .collect();
        // Hot standbys replay our ACCESS EXCLUSIVE locks (the only WAL-logged mode).
        let replayed =
            !self.replicas.is_empty() && order.iter().any(|r| r.mode == LockMode::AccessExclusive);
        // Row locks block writers too, though no table lock shows it: the
        // watchdog stops us once writers have waited on them for max_hold.
        let dog = Watcher::backend(self.sidecar.clone(), watched, self.watch_limits());
        let mut result = Ok(());
        let mut held_since = None;
        let mut over_hold = None;
        let mut last = 0;
        for (i, statement) in sql.iter().enumerate() {
            // Cancelled for holding rows too long: send nothing more, COMMIT least of all.
            if dog.held_too_long() {
                break;
            }
            last = i;
            // From the moment the locks are ours, every statement runs with
            // what is left of the hold budget as its server-side timeout.
            let bound = held_since.map(|since: Instant| self.hold_left(since));
            let statement = match bound {
                Some(HoldLeft::Spent) => {
                    over_hold = Some((i - 1, false));
                    break;
                }
                Some(HoldLeft::Bounded(left)) => format!(
                    "SET LOCAL statement_timeout = '{}'; {statement}",
                    to_pg_setting(left)
                ),
                // Work that blocks no traffic (a VALIDATE, a batch) runs to
                // its end: the deadline bounds waiting for locks (each wait
                // is still bounded by lock_timeout and the watchdog), never
                // running work.
                _ if i == 1 && held.is_empty() => {
                    format!("SET LOCAL statement_timeout = 0; {statement}")
                }
                _ => statement.clone(),
            };
            let started = Instant::now();
            // No table to lock: nothing to send before the statements.
            result = match statement.is_empty() {
                true => Ok(()),
                // The deadline cuts the wait for the planned locks (the
                // first batch); after that the statements' own lock waits are
                // bounded by lock_timeout and the watchdog, and their work by
                // --max-hold when it blocks traffic: never by the deadline.
                false => self
                    .bounded(false, &statement, false, i == 0)
                    .await
                    .map(|_| ()),
            };
            if let (Err(e), Some(HoldLeft::Bounded(left))) = (&result, bound) {
                if is_own_timeout(e, started, left) {
                    over_hold = Some((i - 1, true));
                }
            }
            if result.is_err() {
                break;
            }
            if i == 0 && !held.is_empty() {
                held_since = Some(Instant::now());
            }
            if i == 0 && replayed {
                self.send_lock_record();
            }
        }
        let watch = dog.stop().await;
        self.note(&watch);
        // Writers waited on our row locks past max_hold: stopped, unless the COMMIT got through.
        if !watch.held_too_long.is_empty() && (result.is_err() || last + 1 < sql.len()) {
            let _ = self.client.batch_execute("ROLLBACK").await;
            let step = last.saturating_sub(1).min(steps.len().saturating_sub(1));
            let locks = if watch.held_rows {
                row_locks(steps)
            } else {
                held
            };
            return Err(self.hold_exceeded(step, locks));
        }
        // A cancel by the watchdog (a lock wait over budget) is a lost race, not a long hold.
        if let Some((step, _)) =
            over_hold.filter(|&(_, timed_out)| !(timed_out && watch.stopped_any()))
        {
            let _ = self.client.batch_execute("ROLLBACK").await;
            return Err(self.hold_exceeded(step.min(steps.len().saturating_sub(1)), held));
        }
        match result {
            Ok(()) => Ok(Attempt::Done),
            Err(e) => {
                let _ = self.client.batch_execute("ROLLBACK").await;
                self.classify(e, watch)
            }
        }
    }

    /// What is left of the hold budget for locks taken at `since`. The
    /// deadline does not shorten it: it bounds waiting, not holding.
    fn hold_left(&self, since: Instant) -> HoldLeft {
        let left = self.policy.max_hold.saturating_sub(since.elapsed());
        if left.is_zero() {
            HoldLeft::Spent
        } else {
            HoldLeft::Bounded(left.max(Duration::from_millis(1)))
        }
    }

    fn hold_exceeded(&self, step: usize, locks: Vec<RelationLock>) -> GuardError {
        GuardError::HoldExceeded {
            step,
            locks,
            max_hold: self.policy.max_hold,
        }
    }

    pub(super) async fn attempt_single(&mut self, step: &Step) -> Result<Attempt, GuardError> {
        match self.prepare_index_build(step).await? {
            Some(Existing::Built(name)) => {
                (self.on_event)(Event::IndexAlreadyBuilt(&name));
                return Ok(Attempt::Done);
            }
            Some(Existing::Absent | Existing::Invalid(_)) => {}
            None => return Ok(Attempt::LostRace(Box::default())),
        }
        // A statement outside a transaction holds its locks only while it runs,
        // so its own timeout is the hold bound when those locks block traffic.
        let held = traffic_blocking(std::slice::from_ref(step));
        let bound = if held.is_empty() {
            HoldLeft::Unbounded
        } else {
            self.hold_left(Instant::now())
        };
        // Work that blocks no traffic (a concurrent build) runs to its end:
        // its lock waits are bounded by lock_timeout and the watchdog, and
        // the deadline bounds waiting, never running work.
        let timeout = match bound {
            HoldLeft::Bounded(left) => to_pg_setting(left),
            _ => "0".to_string(),
        };
        let timeouts = format!(
            "SET lock_timeout = '{}'; SET statement_timeout = '{timeout}'",
            to_pg_setting(self.policy.lock_timeout),
        );
        // Session settings: this connection is never a pooled one (see `outside_client`).
        self.outside_client()
            .batch_execute(&timeouts)
            .await
            .map_err(|e| Error::query("setting timeouts", e))?;
        let watched = Backend {
            pid: self.outside_pid(),
            xact: None,
        };
        let dog = Watcher::backend(self.sidecar.clone(), watched, self.watch_limits());
        let started = Instant::now();
        // Its lock waits are bounded by lock_timeout and the watchdog, its
        // hold by --max-hold: the deadline, which bounds waiting, does not
        // cut the work short.
        let result = self
            .bounded(true, &step.sql, false, false)
            .await
            .map(|_| ());
        let watch = dog.stop().await;
        self.note(&watch);
        let _ = self
            .outside_client()
            .batch_execute("RESET lock_timeout; RESET statement_timeout")
            .await;
        if let (Err(e), HoldLeft::Bounded(left)) = (&result, bound) {
            if is_own_timeout(e, started, left) && !watch.stopped_any() {
                return Err(self.hold_exceeded(0, held));
            }
        }
        if result.is_err() && !watch.held_too_long.is_empty() {
            let locks = if watch.held_rows {
                row_locks(std::slice::from_ref(step))
            } else {
                held
            };
            return Err(self.hold_exceeded(0, locks));
        }
        match result {
            Ok(()) => Ok(Attempt::Done),
            Err(e) => {
                // Clean up first, but report the build's own error (e.g. the duplicate key).
                let cleanup = self.drop_invalid_index(step).await;
                match self.classify(e, watch) {
                    Err(e) => Err(e),
                    Ok(attempt) => cleanup.map(|_| attempt),
                }
            }
        }
    }

    /// What the watch of an attempt enforces: the budget on lock waits, the
    /// hold bound on locks others wait for (row locks above all: table locks
    /// are bounded by `statement_timeout` first). Blockers are the look's to
    /// terminate.
    fn watch_limits(&self) -> Limits {
        Limits {
            budget: self.policy.lock_timeout,
            terminate_idle_after: None,
            max_hold: Some(self.policy.max_hold),
        }
    }

    fn note(&mut self, watch: &Watch) {
        self.report.max_queued_behind = self.report.max_queued_behind.max(watch.max_queued_behind);
        self.report.longest_wait_ms = self
            .report
            .longest_wait_ms
            .max(watch.longest_wait.as_millis() as u64);
    }

    fn classify(&mut self, e: ExecError, watch: Watch) -> Result<Attempt, GuardError> {
        match e {
            ExecError::Interrupted(signal) => Err(GuardError::Interrupted(signal)),
            ExecError::Deadline => Ok(Attempt::LostRace(Box::new(watch))),
            ExecError::Sql(e) => {
                let code = e.code();
                if code == Some(&SqlState::LOCK_NOT_AVAILABLE)
                    || (code == Some(&SqlState::QUERY_CANCELED) && watch.stopped_any())
                {
                    Ok(Attempt::LostRace(Box::new(watch)))
                } else {
                    Err(GuardError::Failed(Error::query("a statement failed", e)))
                }
            }
        }
    }

    /// Time left for the attempt in flight.
    fn attempt_left(&self) -> Duration {
        self.attempt_until
            .saturating_duration_since(std::time::Instant::now())
    }

    /// The connection for statements outside a transaction block: the
    /// direct one behind a pooler, else the migration connection.
    pub(super) fn outside_client(&self) -> &Connection {
        self.outside.as_ref().map_or(&self.client, |o| &o.conn)
    }

    /// [`outside_client`](Self::outside_client)'s backend pid.
    pub(super) fn outside_pid(&self) -> i32 {
        self.outside.as_ref().map_or(self.pid, |o| o.pid)
    }

    /// Runs statements on the migration connection and returns the rows
    /// (simple protocol); an interrupt or the deadline cancels them on the server.
    async fn query_rows(&mut self, sql: &str) -> Result<Vec<SimpleQueryMessage>, ExecError> {
        self.bounded(false, sql, true, true).await
    }

    /// Runs `sql` on the migration connection, or with `outside` on
    /// [`outside_client`](Self::outside_client), bounded by interrupts and
    /// the attempt's end when `deadline` (the wait for the planned locks);
    /// `rows` keeps what it returns.
    async fn bounded(
        &mut self,
        outside: bool,
        sql: &str,
        rows: bool,
        deadline: bool,
    ) -> Result<Vec<SimpleQueryMessage>, ExecError> {
        let (client, cancel, settings) = match (&self.outside, outside) {
            (Some(o), true) => (&o.conn, &o.cancel, self.settings.direct()),
            _ => (&self.client, &self.cancel, &self.settings),
        };
        let limit = deadline.then(|| self.attempt_left());
        let deadline = async move {
            match limit {
                Some(left) => tokio::time::sleep(left).await,
                None => std::future::pending().await,
            }
        };
        let run = async move {
            match rows {
                true => client.simple_query(sql).await,
                false => client.batch_execute(sql).await.map(|()| Vec::new()),
            }
        };
        tokio::pin!(run, deadline);
        let mut stop = self.interrupt.clone();
        let cause = tokio::select! {
            r = &mut run => return r.map_err(ExecError::Sql),
            signal = next_interrupt(&mut stop) => ExecError::Interrupted(signal),
            _ = &mut deadline => ExecError::Deadline,
        };
        // Cancel on the server: dropping our side would leave the request
        // queued. Through a pooler the request reaches the backend serving
        // us at that moment, and only while it does.
        let _ = settings.cancel(cancel).await;
        let _ = run.await;
        Err(cause)
    }
}

/// The backend and transaction start the opening batch reported (its last
/// row). Should it be missing, nothing is watched: never a guess.
fn watched_backend(rows: &[SimpleQueryMessage]) -> Backend {
    let row = rows.iter().rev().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => {
            Some((row.get(0)?.parse().ok()?, row.get(1)?.parse().ok()?))
        }
        _ => None,
    });
    match row {
        Some((pid, xact)) => Backend {
            pid,
            xact: Some(xact),
        },
        None => Backend {
            pid: 0,
            xact: Some(0),
        },
    }
}

/// How much longer the locks may be held.
#[derive(Debug, Clone, Copy)]
enum HoldLeft {
    /// The budget is used up.
    Spent,
    /// At most this long; the server enforces it.
    Bounded(Duration),
    /// No hold bound applies (no traffic-blocking lock).
    Unbounded,
}

/// The traffic-blocking locks among `steps`' planned locks, each relation once.
fn traffic_blocking(steps: &[Step]) -> Vec<RelationLock> {
    let mut held: Vec<RelationLock> = Vec::new();
    for lock in steps.iter().flat_map(|s| &s.locks) {
        if !lock.mode.blocks_traffic() {
            continue;
        }
        match held.iter_mut().find(|h| h.relation == lock.relation) {
            Some(h) => h.mode = h.mode.max(lock.mode),
            None => held.push(lock.clone()),
        }
    }
    held
}

/// The tables whose rows `steps` change (`ROW EXCLUSIVE`), each once: what
/// writers waited on when the watchdog stopped us for holding rows too long.
fn row_locks(steps: &[Step]) -> Vec<RelationLock> {
    let mut rows: Vec<RelationLock> = Vec::new();
    for lock in steps.iter().flat_map(|s| &s.locks) {
        if lock.mode == LockMode::RowExclusive && !rows.iter().any(|r| r.relation == lock.relation)
        {
            rows.push(lock.clone());
        }
    }
    rows
}

/// Whether `e` is the server's `statement_timeout` we set to `bound`: a
/// `57014` after about that long. (A cancel by the watchdog or by an
/// interrupt comes as another `ExecError`, or with `watch.stopped_any()`.)
fn is_own_timeout(e: &ExecError, started: Instant, bound: Duration) -> bool {
    matches!(e, ExecError::Sql(e) if e.code() == Some(&SqlState::QUERY_CANCELED))
        && started.elapsed() + Duration::from_millis(5) >= bound.mul_f64(0.9)
}

enum ExecError {
    Sql(tokio_postgres::Error),
    Interrupted(Interrupt),
    Deadline,
}
