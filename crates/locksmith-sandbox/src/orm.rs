//! Healthy ORM traffic: clients that each loop `BEGIN; SELECT …; (a few
//! milliseconds of application code) UPDATE …; COMMIT`, as a web app's
//! unit of work does. Between its statements every client is briefly *idle
//! in transaction*, holding its locks: the guard must race such holders, not
//! mistake them for the leaked sessions of [`crate::traffic::LeakedSessions`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use locksmith_pg::Connection;
use locksmith_pg::ConnectionSettings;

use crate::Error;

/// What the ORM clients saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrmReport {
    /// Transactions committed.
    pub committed: u64,
    /// Transactions that failed.
    pub errors: u64,
    /// The longest any one transaction took, pause included.
    pub worst: Duration,
    /// The 99th percentile of transaction times, pause included.
    pub p99: Duration,
}

/// Running ORM clients; stop them with [`OrmTraffic::stop`].
pub struct OrmTraffic {
    stop: Arc<AtomicBool>,
    clients: Vec<tokio::task::JoinHandle<(OrmReport, Vec<Duration>)>>,
}

impl OrmTraffic {
    /// Starts `clients` sessions on `table` (an `id` column from 1 to 250 and
    /// a `name` column), each pausing `pause` inside every transaction.
    pub async fn start(
        settings: &ConnectionSettings,
        clients: usize,
        table: &str,
        pause: Duration,
    ) -> Result<OrmTraffic, Error> {
        let table = locksmith_core::quote::qualified(table);
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::with_capacity(clients);
        for c in 0..clients {
            let client = settings.connect().await?;
            let (stop, table) = (stop.clone(), table.clone());
            tasks.push(tokio::spawn(async move {
                let mut report = OrmReport::default();
                let mut times = Vec::new();
                // Each client walks the rows from its own starting point.
                let mut id = (c as i32 * 31) % 250;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    id = id % 250 + 1;
                    match unit_of_work(&client, &table, id, pause).await {
                        Ok(()) => report.committed += 1,
                        Err(_) => {
                            report.errors += 1;
                            let _ = client.batch_execute("ROLLBACK").await;
                        }
                    }
                    times.push(started.elapsed());
                }
                (report, times)
            }));
        }
        Ok(OrmTraffic {
            stop,
            clients: tasks,
        })
    }

    /// Stops every client after its current transaction and sums up.
    pub async fn stop(self) -> OrmReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = OrmReport::default();
        let mut times = Vec::new();
        for task in self.clients {
            if let Ok((r, t)) = task.await {
                total.committed += r.committed;
                total.errors += r.errors;
                times.extend(t);
            }
        }
        times.sort_unstable();
        total.worst = times.last().copied().unwrap_or_default();
        total.p99 = times
            .get((times.len() * 99 / 100).min(times.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default();
        total
    }
}

/// One request's transaction: read, think, write, commit.
async fn unit_of_work(
    client: &Connection,
    table: &str,
    id: i32,
    pause: Duration,
) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!("BEGIN; SELECT * FROM {table} WHERE id = {id}"))
        .await?;
    tokio::time::sleep(pause).await;
    client
        .batch_execute(&format!(
            "UPDATE {table} SET name = name WHERE id = {id}; COMMIT"
        ))
        .await
}
