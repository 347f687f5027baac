//! The sidecar: a second connection that watches one backend while an
//! attempt runs. If that backend waits on a lock longer than the budget (a
//! lock the plan did not cover, a driver that ignored `lock_timeout`), the
//! watchdog cancels it on the server. It also records whom we waited for
//! and how many sessions queued behind us: the traffic we made wait.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_postgres::Client;

/// What the watchdog saw during one attempt.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Watch {
    /// The longest continuous lock wait observed.
    pub longest_wait: Duration,
    /// Pids we waited for.
    pub waited_for: Vec<i32>,
    /// Most sessions queued behind us at once.
    pub max_queued_behind: i64,
    /// Whether the watchdog cancelled our statement.
    pub cancelled: bool,
}

/// A running watchdog; [`Watchdog::finish`] stops it and returns what it saw.
pub struct Watchdog {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    seen: Arc<Mutex<Watch>>,
}

/// How often the sidecar looks. Small against the budget, light on the server:
/// one indexed lookup in `pg_stat_activity` per poll.
const POLL: Duration = Duration::from_millis(25);

impl Watchdog {
    /// Starts watching `pids` (our backends) over `sidecar`, cancelling any
    /// lock wait longer than `budget`.
    pub fn start(sidecar: Arc<Client>, pids: Vec<i32>, budget: Duration) -> Watchdog {
        let (stop, mut stopped) = watch::channel(false);
        let seen = Arc::new(Mutex::new(Watch::default()));
        let task = {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut waiting_since: Option<Instant> = None;
                loop {
                    tokio::select! {
                        _ = stopped.changed() => return,
                        _ = tokio::time::sleep(POLL) => {}
                    }
                    // Our backends' lock waits: who blocks them and how many queue behind them.
                    let rows = sidecar
                        .query(
                            "SELECT a.pid, a.wait_event_type = 'Lock',
                                    CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) END,
                                    (SELECT count(*) FROM pg_stat_activity w
                                      WHERE w.wait_event_type = 'Lock' AND a.pid = ANY(pg_blocking_pids(w.pid)))
                             FROM pg_stat_activity a WHERE a.pid = ANY($1)",
                            &[&pids],
                        )
                        .await;
                    let Ok(rows) = rows else { continue };
                    let mut any_waiting = None;
                    for row in &rows {
                        let waiting: Option<bool> = row.get(1);
                        let behind: i64 = row.get(3);
                        let mut s = seen.lock().unwrap();
                        s.max_queued_behind = s.max_queued_behind.max(behind);
                        if waiting == Some(true) {
                            any_waiting = Some(row.get::<_, i32>(0));
                            for b in row.get::<_, Option<Vec<i32>>>(2).unwrap_or_default() {
                                if !s.waited_for.contains(&b) {
                                    s.waited_for.push(b);
                                }
                            }
                        }
                    }
                    match (any_waiting, waiting_since) {
                        (Some(pid), Some(since)) => {
                            let waited = since.elapsed();
                            {
                                let mut s = seen.lock().unwrap();
                                s.longest_wait = s.longest_wait.max(waited);
                            }
                            // Grace of two polls: lock_timeout on the server should fire first.
                            if waited > budget + POLL * 2 {
                                // Cancel our own backend on the server: the one remedy that works
                                // even when our client is stuck.
                                let _ = sidecar
                                    .execute("SELECT pg_cancel_backend($1)", &[&pid])
                                    .await;
                                seen.lock().unwrap().cancelled = true;
                                waiting_since = None;
                            }
                        }
                        (Some(_), None) => waiting_since = Some(Instant::now() - POLL / 2),
                        (None, _) => waiting_since = None,
                    }
                }
            })
        };
        Watchdog { stop, task, seen }
    }

    /// Stops the watchdog and returns what it saw.
    pub async fn finish(self) -> Watch {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        let seen = self.seen.lock().unwrap().clone();
        seen
    }
}
