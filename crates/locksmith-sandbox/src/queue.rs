//! The incident frozen at its worst moment, with real sessions: sessions
//! leaked idle in transaction, the story's ALTER queued behind them for its
//! ACCESS EXCLUSIVE lock, and readers queued behind the ALTER. What
//! `blockers`, `top`, `doctor` and their benchmarks diagnose.

use std::time::{Duration, Instant};

use locksmith_pg::Connection;
use tokio::task::JoinHandle;
use tokio_postgres::Row;

use crate::incident::{Incident, MIGRATION, TABLE};
use crate::traffic::LeakedSessions;
use crate::Error;

/// The lock queue, held until dropped (the ALTER and readers keep waiting).
pub struct Queue {
    /// The idle-in-transaction sessions at its root (`application_name` "leaky-app").
    pub leaked: LeakedSessions,
    /// The queued ALTER (`application_name` "alembic"); ends with an error once cancelled.
    pub alter: JoinHandle<Result<(), tokio_postgres::Error>>,
    /// Its backend pid.
    pub alter_pid: i32,
    /// The readers queued behind the ALTER (`application_name` "web-request"), each `SELECT count(*)`.
    pub readers: Vec<JoinHandle<Result<Vec<Row>, tokio_postgres::Error>>>,
    /// Their backend pids, in the order they queued.
    pub reader_pids: Vec<i32>,
}

impl Queue {
    /// Builds the queue on a staged incident: `leakers` idle sessions, the ALTER,
    /// then `readers` SELECTs, each waited for until it is really queued.
    pub async fn form(incident: &Incident, leakers: usize, readers: usize) -> Result<Queue, Error> {
        let leaked = LeakedSessions::open(
            &incident.app.with_application_name("leaky-app"),
            leakers,
            TABLE,
        )
        .await?;
        let admin = incident.admin.connect().await?;
        let migrator = incident
            .admin
            .with_application_name("alembic")
            .connect()
            .await?;
        let alter_pid = backend_pid(&migrator).await?;
        let alter = tokio::spawn(async move { migrator.batch_execute(MIGRATION).await });
        wait_until_waiting(&admin, &[alter_pid]).await?;
        let mut queue = Queue {
            leaked,
            alter,
            alter_pid,
            readers: Vec::new(),
            reader_pids: Vec::new(),
        };
        for _ in 0..readers {
            let reader = incident
                .app
                .with_application_name("web-request")
                .connect()
                .await?;
            let pid = backend_pid(&reader).await?;
            queue.readers.push(tokio::spawn(async move {
                reader
                    .query("SELECT count(*) FROM academic_partners", &[])
                    .await
            }));
            queue.reader_pids.push(pid);
        }
        wait_until_waiting(&admin, &queue.reader_pids).await?;
        Ok(queue)
    }
}

async fn backend_pid(client: &Connection) -> Result<i32, Error> {
    Ok(client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(|e| Error::Sql {
            context: "reading a backend pid".into(),
            source: e,
        })?
        .get(0))
}

/// Waits (up to 20 s) until every one of `pids` waits on a lock.
pub async fn wait_until_waiting(admin: &Connection, pids: &[i32]) -> Result<(), Error> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // How many of them wait on a heavyweight lock now.
        let n: i64 = admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1) AND wait_event_type = 'Lock'", &[&pids])
            .await
            .map_err(|e| Error::Sql { context: "watching the lock queue form".into(), source: e })?
            .get(0);
        if n as usize == pids.len() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout(format!(
                "only {n} of {} sessions queued for a lock within 20 s",
                pids.len()
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
