//! When a backfill waits before its next batch, as gh-ost throttles: while a
//! watched hot standby (`--replica`) replays more than `max_lag` behind,
//! while more than `max_active` backends are active on the primary, while
//! the pause file exists. Checked before every batch; a batch in flight is
//! never stopped for it.
//!
//! Must not sleep or report: it only says why to wait, and the batch loop
//! ([`super::backfill`]) waits and reports.

use std::path::PathBuf;
use std::time::Duration;

use locksmith_core::duration::human;

use crate::guard::Guard;
use crate::Error;

/// What makes a backfill wait between batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Throttle {
    /// Pause while a watched standby's replay lags more than this.
    pub max_lag: Duration,
    /// Pause while more than this many backends are active (off when `None`).
    pub max_active: Option<u32>,
    /// Pause while this file exists.
    pub pause_file: Option<PathBuf>,
}

impl Default for Throttle {
    /// gh-ost's default lag budget, one second; the rest off.
    fn default() -> Self {
        Throttle {
            max_lag: Duration::from_secs(1),
            max_active: None,
            pause_file: None,
        }
    }
}

/// Why the next batch must wait, or `None` when it may run.
pub(super) async fn paused(guard: &Guard) -> Result<Option<String>, Error> {
    let throttle = guard.throttle();
    if let Some(file) = throttle.pause_file.as_ref().filter(|f| f.exists()) {
        return Ok(Some(format!("{} exists (--pause-file)", file.display())));
    }
    if let Some(max) = throttle.max_active {
        // Active client backends other than this run's own connections.
        let active: i64 = guard
            .client()
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                  WHERE state = 'active' AND backend_type = 'client backend'
                    AND pid <> pg_backend_pid() AND application_name <> 'locksmith-watchdog'",
                &[],
            )
            .await
            .map_err(|e| Error::query("counting active backends", e))?
            .get(0);
        if active > i64::from(max) {
            return Ok(Some(format!(
                "{active} backends are active (over --max-active {max})"
            )));
        }
    }
    for replica in guard.replicas() {
        // Replay lag: none when all WAL received is replayed, else the age of
        // the last replayed commit (of the standby's start, when it has
        // replayed none since: behind at least that long, as far as it can tell).
        let lag: f64 = replica
            .client
            .query_one(
                "SELECT CASE WHEN pg_last_wal_receive_lsn() IS NULL
                              OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                         ELSE extract(epoch FROM now() - coalesce(pg_last_xact_replay_timestamp(),
                                                                  pg_postmaster_start_time()))
                         END::float8",
                &[],
            )
            .await
            .map_err(|e| Error::query(format!("reading the replay lag of {}", replica.name), e))?
            .get(0);
        let lag = Duration::from_secs_f64(lag.max(0.0));
        if lag > throttle.max_lag {
            return Ok(Some(format!(
                "standby {} replays {} behind (over --max-lag {})",
                replica.name,
                human(lag),
                human(throttle.max_lag)
            )));
        }
    }
    Ok(None)
}
