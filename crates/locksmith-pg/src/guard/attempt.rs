//! One attempt: the transaction (or single statement) that takes the locks
//! and runs the migration, watched by the sidecar, cancelled on the server on
//! interrupt or deadline. The retry loop that calls it is in the parent module.

use std::time::Duration;

use locksmith_core::duration::to_pg_setting;
use tokio_postgres::error::SqlState;

use super::look::Resolved;
use super::watchdog::{Watch, Watchdog};
use super::{next_interrupt, Attempt, Event, Guard, GuardError, Interrupt, Step};
use crate::Error;

impl Guard {
    pub(super) async fn attempt_transaction(
        &mut self,
        steps: &[Step],
        resolved: &[Resolved],
        lock_wait: Option<Duration>,
        finish: Option<&str>,
    ) -> Result<Attempt, GuardError> {
        let mut order: Vec<&Resolved> = resolved.iter().filter(|r| r.lockable).collect();
        // A fixed order, so two guarded migrations can never deadlock on each other.
        order.sort_by(|a, b| a.lock_name.cmp(&b.lock_name));
        // Our own statements travel in as few round trips as possible: the
        // lock is held from the LOCK until COMMIT, and traffic queues behind it.
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
            finish
                .into_iter()
                .chain(["COMMIT"])
                .collect::<Vec<_>>()
                .join("; "),
        );

        let dog = Watchdog::start(
            self.sidecar.clone(),
            vec![self.pid],
            self.policy.lock_timeout,
        );
        let mut result = Ok(());
        for statement in &sql {
            result = self.exec(statement).await;
            if result.is_err() {
                break;
            }
        }
        let watch = dog.finish().await;
        self.note(&watch);
        match result {
            Ok(()) => Ok(Attempt::Done),
            Err(e) => {
                let _ = self.client.batch_execute("ROLLBACK").await;
                self.classify(e, watch)
            }
        }
    }

    pub(super) async fn attempt_single(&mut self, step: &Step) -> Result<Attempt, GuardError> {
        let timeouts = format!(
            "SET lock_timeout = '{}'; SET statement_timeout = '{}'",
            to_pg_setting(self.policy.lock_timeout),
            to_pg_setting(self.attempt_left().max(Duration::from_secs(1)))
        );
        self.client
            .batch_execute(&timeouts)
            .await
            .map_err(|e| Error::query("setting timeouts", e))?;
        let dog = Watchdog::start(
            self.sidecar.clone(),
            vec![self.pid],
            self.policy.lock_timeout,
        );
        let result = self.exec(&step.sql).await;
        let watch = dog.finish().await;
        self.note(&watch);
        let _ = self
            .client
            .batch_execute("RESET lock_timeout; RESET statement_timeout")
            .await;
        match result {
            Ok(()) => Ok(Attempt::Done),
            Err(e) => {
                // Clean up first, but report the build's own error (e.g. the duplicate key).
                let cleanup = match &step.builds_index {
                    Some(index) => self.drop_invalid_index(index).await,
                    None => Ok(()),
                };
                match self.classify(e, watch) {
                    Err(e) => Err(e),
                    Ok(attempt) => cleanup.map(|_| attempt),
                }
            }
        }
    }

    /// A failed `CREATE INDEX CONCURRENTLY` leaves an INVALID index behind,
    /// which would make the retry fail with "already exists" and slows writes.
    async fn drop_invalid_index(&mut self, index: &str) -> Result<(), GuardError> {
        // Whether the index exists and is invalid, with its quoted name.
        let row = self
            .client
            .query_opt(
                "SELECT i.indexrelid::regclass::text FROM pg_index i
                 WHERE i.indexrelid = to_regclass($1) AND NOT i.indisvalid",
                &[&index],
            )
            .await
            .map_err(|e| Error::query("looking for an invalid index", e))?;
        if let Some(row) = row {
            let name: String = row.get(0);
            // Separate calls: several statements in one simple query form an implicit
            // transaction block, where DROP INDEX CONCURRENTLY cannot run.
            let sql = [
                format!(
                    "SET lock_timeout = '{}'",
                    to_pg_setting(self.policy.lock_timeout)
                ),
                format!("DROP INDEX CONCURRENTLY IF EXISTS {name}"),
                "RESET lock_timeout".to_string(),
            ];
            for statement in sql {
                self.client
                    .batch_execute(&statement)
                    .await
                    .map_err(|e| Error::query(format!("dropping the invalid index {name}"), e))?;
            }
            (self.on_event)(Event::DroppedInvalidIndex(&name));
        }
        Ok(())
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
            ExecError::Deadline => Ok(Attempt::LostRace(watch)),
            ExecError::Sql(e) => {
                let code = e.code();
                if code == Some(&SqlState::LOCK_NOT_AVAILABLE)
                    || (code == Some(&SqlState::QUERY_CANCELED) && watch.cancelled)
                {
                    Ok(Attempt::LostRace(watch))
                } else {
                    Err(GuardError::Failed(Error::query(
                        "the migration failed and was rolled back",
                        e,
                    )))
                }
            }
        }
    }

    /// Time left for the attempt in flight.
    fn attempt_left(&self) -> Duration {
        self.attempt_until
            .saturating_duration_since(std::time::Instant::now())
    }

    /// Runs one statement; an interrupt or the attempt's end (the deadline)
    /// cancels it on the server.
    async fn exec(&mut self, sql: &str) -> Result<(), ExecError> {
        let deadline = tokio::time::sleep(self.attempt_left());
        let run = self.client.batch_execute(sql);
        tokio::pin!(run, deadline);
        let mut stop = self.interrupt.clone();
        let cause = tokio::select! {
            r = &mut run => return r.map_err(ExecError::Sql),
            signal = next_interrupt(&mut stop) => ExecError::Interrupted(signal),
            _ = &mut deadline => ExecError::Deadline,
        };
        // Cancel on the server: dropping our side would leave the request queued.
        let _ = self.settings.cancel(&self.cancel).await;
        let _ = run.await;
        Err(cause)
    }
}

enum ExecError {
    Sql(tokio_postgres::Error),
    Interrupted(Interrupt),
    Deadline,
}
