//! The sidecar: a second connection that watches one backend while an
//! attempt runs. If that backend waits on a lock longer than the budget (a
//! lock the plan did not cover, a driver that ignored `lock_timeout`), the
//! watchdog cancels it on the server. It also records whom we waited for
//! and how many sessions queued behind us: the traffic we made wait.
//!
//! Behind a connection pooler a backend is ours only for one transaction,
//! so an attempt's transaction is watched by pid *and* transaction start
//! ([`Watched`]), and the cancel checks both in the same statement.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::signal::{self, Condition, Signal};
use crate::Connection;
use tokio::sync::watch;

use super::look::WaitedFor;

/// What the watchdog saw during one attempt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Watch {
    /// The longest continuous lock wait observed.
    pub longest_wait: Duration,
    /// Sessions we waited for, each as first seen blocking us.
    pub waited_for: Vec<WaitedFor>,
    /// Most sessions queued behind us at once.
    pub max_queued_behind: i64,
    /// Whether the watchdog cancelled our statement.
    pub cancelled: bool,
    /// Whether it cancelled our statement because writers waited on our row
    /// locks longer than the hold budget (see [`Watchdog::start_holding`]).
    pub held_too_long: bool,
}

/// A running watchdog; [`Watchdog::finish`] stops it and returns what it saw.
pub struct Watchdog {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    seen: Arc<Mutex<Watch>>,
}

/// How often a sidecar looks. Small against the budget, light on the server:
/// one lookup in `pg_stat_activity` per poll.
pub(crate) const POLL: Duration = Duration::from_millis(25);

/// What one poll reads about a watched backend `a`: pid, whether it waits on a
/// lock, whom for (`pg_blocking_pids`, only when waiting), and how many
/// sessions wait behind it. Shared by this watchdog and [`super::sessions`].
pub(crate) const WAIT_COLUMNS: &str = "a.pid, coalesce(a.wait_event_type = 'Lock', false),
    CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) END,
    (SELECT count(*) FROM pg_stat_activity w
      WHERE w.wait_event_type = 'Lock' AND a.pid = ANY(pg_blocking_pids(w.pid)))";

/// When each watched backend started waiting on a lock, as seen poll by poll.
#[derive(Debug, Default)]
pub(crate) struct WaitClocks {
    since: HashMap<i32, Instant>,
}

impl WaitClocks {
    /// `pid` waits now: how long it has waited. A new wait began somewhere
    /// between the last look and this one, so it counts from half a poll ago.
    pub(crate) fn waiting(&mut self, pid: i32) -> Duration {
        self.since
            .entry(pid)
            .or_insert_with(|| Instant::now() - POLL / 2)
            .elapsed()
    }

    /// Forgets the backends that no longer wait.
    pub(crate) fn keep_only(&mut self, waiting: &[i32]) {
        self.since.retain(|pid, _| waiting.contains(pid));
    }

    /// Starts `pid`'s clock over (after cancelling it).
    pub(crate) fn reset(&mut self, pid: i32) {
        self.since.remove(&pid);
    }

    /// Past the budget by a grace of two polls: the server's own
    /// `lock_timeout` should fire first; this is for when it did not.
    pub(crate) fn over_budget(waited: Duration, budget: Duration) -> bool {
        waited > budget + POLL * 2
    }
}

/// Cancels `pid`'s statement on the server: the one remedy that works even
/// when its client is stuck or its driver ignored `lock_timeout`.
pub(crate) async fn cancel(sidecar: &Connection, pid: i32) {
    let _ = signal::send(sidecar, Signal::Cancel, pid, Condition::Exists).await;
}

/// A backend's transaction start as exact microseconds since the epoch, the
/// same expression on both sides of [`cancel_transaction`]'s comparison.
pub(crate) const XACT_MICROS: &str = "(extract(epoch FROM now()) * 1000000)::bigint";

/// Cancels `pid`'s statement only while it still runs the transaction that
/// started at `xact` ([`XACT_MICROS`]), in one statement: behind a pooler the
/// backend serves another client as soon as our transaction ends, and a
/// cancel must never reach a transaction that is not ours.
pub(crate) async fn cancel_transaction(sidecar: &Connection, pid: i32, xact: i64) {
    let _ = signal::send(sidecar, Signal::Cancel, pid, Condition::InTransaction(xact)).await;
}

/// The backend a watchdog watches: its pid and, when the attempt is a
/// transaction, when that transaction started ([`XACT_MICROS`]): then only
/// that transaction is looked at and cancelled, never what the backend runs
/// for someone else later (a pooled backend).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watched {
    /// The backend.
    pub pid: i32,
    /// Our transaction's start on it, in microseconds since the epoch.
    pub xact: Option<i64>,
}

impl Watchdog {
    /// Starts watching `watched` (our backend) over `sidecar`, cancelling any
    /// lock wait longer than `budget`.
    pub fn start(sidecar: Arc<Connection>, watched: Watched, budget: Duration) -> Watchdog {
        Watchdog::start_holding(sidecar, watched, budget, None)
    }

    /// [`start`](Self::start), and, with `max_hold`, also cancels our
    /// statement once sessions have waited on our row locks (an `UPDATE` of
    /// many rows) that long without a break: the hold bound for locks that
    /// no table lock shows.
    pub fn start_holding(
        sidecar: Arc<Connection>,
        watched: Watched,
        budget: Duration,
        max_hold: Option<Duration>,
    ) -> Watchdog {
        let (stop, mut stopped) = watch::channel(false);
        let seen = Arc::new(Mutex::new(Watch::default()));
        let task = {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut clocks = WaitClocks::default();
                let mut row_waits_since: Option<Instant> = None;
                loop {
                    tokio::select! {
                        _ = stopped.changed() => return,
                        _ = tokio::time::sleep(POLL) => {}
                    }
                    // Our backends' lock waits: who blocks them, how many queue behind
                    // them, when (server clock), on what lock, and each blocker's
                    // virtual transaction (to tell, later, whether a session our
                    // role may not inspect is still in the transaction that blocked us).
                    let sql = format!(
                        "SELECT {WAIT_COLUMNS}, extract(epoch FROM clock_timestamp())::float8,
                            w.locktype, w.relation,
                            CASE WHEN a.wait_event_type = 'Lock' THEN ARRAY(
                                SELECT (SELECT v.virtualtransaction FROM pg_locks v WHERE v.pid = b LIMIT 1)
                                FROM unnest(pg_blocking_pids(a.pid)) WITH ORDINALITY AS u(b, i) ORDER BY i) END,
                            (SELECT count(*) FROM pg_locks r WHERE NOT r.granted
                               AND r.locktype IN ('transactionid', 'tuple')
                               AND a.pid = ANY(pg_blocking_pids(r.pid)))
                         FROM pg_stat_activity a
                         LEFT JOIN LATERAL (
                             SELECT l.locktype,
                                 CASE WHEN l.database = (SELECT oid FROM pg_database
                                                         WHERE datname = current_database())
                                      THEN l.relation::regclass::text END AS relation
                             FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted LIMIT 1
                         ) w ON true
                         WHERE a.pid = $1 AND ($2::int8 IS NULL
                            OR (extract(epoch FROM a.xact_start) * 1000000)::bigint = $2)"
                    );
                    let Ok(rows) = sidecar.query(&sql, &[&watched.pid, &watched.xact]).await else {
                        continue;
                    };
                    let mut waiting = Vec::new();
                    let row_waiters: i64 = rows.iter().map(|r| r.get::<_, i64>(8)).sum();
                    match (max_hold, row_waiters > 0) {
                        (Some(max_hold), true) => {
                            let since =
                                *row_waits_since.get_or_insert_with(|| Instant::now() - POLL / 2);
                            if since.elapsed() > max_hold {
                                match watched.xact {
                                    Some(xact) => {
                                        cancel_transaction(&sidecar, watched.pid, xact).await
                                    }
                                    None => cancel(&sidecar, watched.pid).await,
                                }
                                let mut s = seen.lock().unwrap();
                                s.cancelled = true;
                                s.held_too_long = true;
                            }
                        }
                        _ => row_waits_since = None,
                    }
                    for row in &rows {
                        let pid: i32 = row.get(0);
                        let behind: i64 = row.get(3);
                        let mut s = seen.lock().unwrap();
                        s.max_queued_behind = s.max_queued_behind.max(behind);
                        if row.get::<_, bool>(1) {
                            waiting.push(pid);
                            let vxids = row
                                .get::<_, Option<Vec<Option<String>>>>(7)
                                .unwrap_or_default();
                            let blockers = row.get::<_, Option<Vec<i32>>>(2).unwrap_or_default();
                            for (i, b) in blockers.into_iter().enumerate() {
                                if !s.waited_for.iter().any(|w| w.pid == b) {
                                    s.waited_for.push(WaitedFor {
                                        pid: b,
                                        seen_at: row.get(4),
                                        lock_type: row
                                            .get::<_, Option<String>>(5)
                                            .unwrap_or_else(|| "relation".into()),
                                        relation: row.get(6),
                                        vxid: vxids.get(i).cloned().flatten(),
                                    });
                                }
                            }
                        }
                    }
                    clocks.keep_only(&waiting);
                    for pid in waiting {
                        let waited = clocks.waiting(pid);
                        {
                            let mut s = seen.lock().unwrap();
                            s.longest_wait = s.longest_wait.max(waited);
                        }
                        if WaitClocks::over_budget(waited, budget) {
                            match watched.xact {
                                Some(xact) => cancel_transaction(&sidecar, pid, xact).await,
                                None => cancel(&sidecar, pid).await,
                            }
                            seen.lock().unwrap().cancelled = true;
                            clocks.reset(pid);
                        }
                    }
                }
            })
        };
        Watchdog { stop, task, seen }
    }

    /// Whether it has cancelled our statement for holding row locks too
    /// long: the caller must not send another statement of the attempt.
    pub fn held_too_long(&self) -> bool {
        self.seen.lock().unwrap().held_too_long
    }

    /// Stops the watchdog and returns what it saw.
    pub async fn finish(self) -> Watch {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let seen = self.seen.lock().unwrap().clone();
        seen
    }
}
