//! The plain run: statements as `psql -f` runs them, one by one in
//! autocommit with no lock timeout, cancelled on the server at a cap. The
//! one engine for "the migration as people run it today", used by `demo`
//! (the story's ALTER) and by rehearsals.

use std::time::{Duration, Instant};

use locksmith_pg::ConnectionSettings;

use crate::Error;

/// How a plain run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlainEnd {
    /// Every statement completed.
    Applied,
    /// Statement `n` (0-based) was still running at the cap and was cancelled on the server.
    Cancelled(usize),
    /// Statement `n` failed, with the server's message.
    Failed(usize, String),
}

/// A plain run: how it ended, how long it took, and each statement's window
/// (ms since `origin`; `None` for statements never started).
#[derive(Debug, Clone)]
pub struct PlainRun {
    /// How it ended.
    pub end: PlainEnd,
    /// From the first statement to the end.
    pub took: Duration,
    /// Per statement, its start and end.
    pub windows: Vec<Option<(u64, u64)>>,
}

impl PlainRun {
    /// One sentence for reports, `what` naming the statement ("the ALTER", "statement 2").
    pub fn summary(&self, what: &dyn Fn(usize) -> String) -> String {
        let took = locksmith_core::duration::human(self.took);
        match &self.end {
            PlainEnd::Applied => format!("applied in {took}"),
            PlainEnd::Cancelled(i) => format!(
                "{} was still running after {took} and was cancelled on the server (as Ctrl-C in psql does)",
                what(*i)
            ),
            PlainEnd::Failed(i, e) => format!("{} failed: {e}", what(*i)),
        }
    }
}

/// Runs `statements` as `psql -f` does: one by one in autocommit, no lock
/// timeout, stopping at the first error; whatever still runs after `cap`
/// is cancelled on the server (what Ctrl-C in psql does; killing the
/// client would leave it queued). Used by `demo` and by rehearsals.
pub async fn plain(
    settings: &ConnectionSettings,
    statements: &[&str],
    cap: Duration,
    origin: Instant,
) -> Result<PlainRun, Error> {
    let client = settings.connect().await?;
    let token = client.cancel_token();
    let started = Instant::now();
    let mut windows = vec![None; statements.len()];
    let mut end = PlainEnd::Applied;
    for (i, sql) in statements.iter().enumerate() {
        let from = origin.elapsed().as_millis() as u64;
        let run = client.batch_execute(sql);
        tokio::pin!(run);
        let left = cap.saturating_sub(started.elapsed());
        let result = tokio::select! {
            r = &mut run => r,
            _ = tokio::time::sleep(left) => {
                settings.cancel(&token).await?;
                run.await
            }
        };
        windows[i] = Some((from, origin.elapsed().as_millis() as u64));
        match result {
            Ok(()) => continue,
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) => {
                end = PlainEnd::Cancelled(i);
            }
            Err(e) => end = PlainEnd::Failed(i, locksmith_pg::describe_sql_error(&e)),
        }
        break;
    }
    Ok(PlainRun {
        end,
        took: started.elapsed(),
        windows,
    })
}
