//! Tracing a statement that refuses a transaction block (`CREATE INDEX
//! CONCURRENTLY`, `VACUUM`, `DETACH PARTITION … CONCURRENTLY`, …): its locks
//! are gone by the time it returns, so they are observed while it waits.
//!
//! Each table the model names is held by a session of its own in `ACCESS
//! EXCLUSIVE` mode (`LOCK TABLE ONLY`), which conflicts with every mode. The
//! statement starts and queues; an observer session reads from `pg_locks`
//! which lock it waits for (and what it already holds), then releases that
//! table only, and so on until the statement has passed every table. A table
//! it never waits for is one it does not lock. Indexes cannot be held with
//! `LOCK TABLE`, so locks on them are not observed (the note says so).
//! Must not leave a holder behind: each is rolled back or dropped.

use std::collections::HashMap;
use std::time::Duration;

use crate::Connection;
use locksmith_core::analysis::{quote_qualified, Statement};
use locksmith_core::lock::LockMode;

use super::catalog::{self, Relation};
use super::compare::normalize;
use super::Method;
use crate::{ConnectionSettings, Error};

/// How long a statement may take after its tables were released.
const FINISH_TIMEOUT: Duration = Duration::from_secs(120);

/// What a second-session trace saw.
pub(super) struct Run {
    pub method: Method,
    /// Relation oid → strongest mode waited for or held.
    pub observed: Vec<(i64, LockMode)>,
    pub note: Option<String>,
    pub error: Option<String>,
    /// The tables that were held, hence compared with the model.
    pub compared: Option<Vec<String>>,
}

struct Holder {
    name: String,
    oid: i64,
    client: Connection,
}

pub(super) async fn trace(
    settings: &ConnectionSettings,
    client: &Connection,
    pid: i32,
    s: &Statement,
    relations: &HashMap<i64, Relation>,
) -> Result<Run, Error> {
    let by_name: HashMap<&str, (i64, &Relation)> = relations
        .iter()
        .map(|(oid, r)| (r.name.as_str(), (*oid, r)))
        .collect();
    let mut holders = Vec::new();
    let mut unheld = Vec::new();
    for l in &s.locks {
        let name = normalize(&l.relation);
        match by_name.get(name) {
            Some((oid, r)) if matches!(r.kind, 'r' | 'p') => {
                if holders.iter().any(|h: &Holder| h.oid == *oid) {
                    continue;
                }
                let holder = settings
                    .with_application_name("locksmith trace holder")
                    .connect()
                    .await?;
                holder
                    .batch_execute(&format!(
                        "BEGIN; LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE",
                        quote_qualified(name)
                    ))
                    .await
                    .map_err(|e| Error::query(format!("holding {name} for the trace"), e))?;
                holders.push(Holder {
                    name: name.to_string(),
                    oid: *oid,
                    client: holder,
                });
            }
            _ => unheld.push(name.to_string()),
        }
    }
    let compared: Vec<String> = holders.iter().map(|h| h.name.clone()).collect();
    let observer = settings
        .with_application_name("locksmith trace observer")
        .connect()
        .await?;

    let mut observed: HashMap<i64, LockMode> = HashMap::new();
    let exec = client.batch_execute(&s.sql);
    tokio::pin!(exec);
    let mut done = None;
    while !holders.is_empty() {
        tokio::select! {
            r = &mut exec => { done = Some(r); break; }
            w = wait_for_wait(&observer, pid) => w?,
        }
        let locks = catalog::locks(&observer, pid).await?;
        let mut waited = None;
        for l in &locks {
            let m = observed.entry(l.oid).or_insert(l.mode);
            *m = (*m).max(l.mode);
            if !l.granted {
                if let Some(i) = holders.iter().position(|h| h.oid == l.oid) {
                    waited = Some((i, l.mode));
                }
            }
        }
        match waited {
            // Let that mode through but keep stopping stronger ones, so a
            // statement that asks for a weak lock first (VACUUM looks the
            // table up under AccessShareLock) is seen asking for the strong one.
            Some((i, mode)) => match stopper(mode) {
                Some(next) => {
                    let granted = hold(settings, &observer, &holders[i], next).await?;
                    release(&holders[i].client, &holders[i].name).await?;
                    let (client, r) = granted.await.expect("the holder task does not panic");
                    r.map_err(|e| {
                        Error::query(format!("holding {} for the trace", holders[i].name), e)
                    })?;
                    holders[i].client = client;
                }
                None => {
                    let h = holders.remove(i);
                    release(&h.client, &h.name).await?;
                }
            },
            // Waiting for something else (an older transaction: ours): let one go.
            None => {
                let h = holders.remove(0);
                release(&h.client, &h.name).await?;
            }
        }
    }
    let result = match done {
        Some(r) => r,
        None => match tokio::time::timeout(FINISH_TIMEOUT, &mut exec).await {
            Ok(r) => r,
            Err(_) => {
                settings.cancel(&client.cancel_token()).await?;
                exec.await
            }
        },
    };
    let error = result.err().map(|e| crate::describe_sql_error(&e));
    let mut notes = Vec::new();
    if !unheld.is_empty() {
        notes.push(format!(
            "traced from second sessions; {} cannot be held with LOCK TABLE, so its locks were not observed",
            unheld.join(", ")
        ));
    }
    let method = if compared.is_empty() {
        notes.insert(
            0,
            "cannot run inside a transaction block and names no table a second session could \
             hold; it ran, but its locks were not observed"
                .into(),
        );
        Method::NotTraced
    } else {
        Method::SecondSession
    };
    Ok(Run {
        method,
        observed: observed.into_iter().collect(),
        note: (!notes.is_empty()).then(|| notes.join("; ")),
        error,
        compared: (!compared.is_empty()).then_some(compared),
    })
}

/// The mode that lets a request for `granted` (and any weaker one) through
/// and stops as many stronger modes as possible; `None` past the top.
fn stopper(granted: LockMode) -> Option<LockMode> {
    LockMode::ALL
        .into_iter()
        .filter(|m| {
            LockMode::ALL
                .iter()
                .all(|w| *w > granted || !m.conflicts_with(*w))
        })
        .max_by_key(|m| m.conflicting_modes().count())
        .filter(|m| m.conflicting_modes().count() > 0)
}

/// Queues a new holder of `holder`'s table in `mode` behind the current one;
/// the task ends, handing back its client, once the lock is granted.
async fn hold(
    settings: &ConnectionSettings,
    observer: &Connection,
    holder: &Holder,
    mode: LockMode,
) -> Result<Granted, Error> {
    let next = settings
        .with_application_name("locksmith trace holder")
        .connect()
        .await?;
    let next_pid = catalog::backend_pid(&next).await?;
    let sql = format!(
        "BEGIN; LOCK TABLE ONLY {} IN {} MODE",
        quote_qualified(&holder.name),
        mode.sql_name()
    );
    let task = tokio::spawn(async move {
        let r = next.batch_execute(&sql).await;
        (next, r)
    });
    // Release the current holder only once the new one queues behind the statement.
    while !task.is_finished() && !catalog::waiting(observer, next_pid).await? {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(task)
}

type Granted = tokio::task::JoinHandle<(Connection, Result<(), tokio_postgres::Error>)>;

async fn release(client: &Connection, name: &str) -> Result<(), Error> {
    client
        .batch_execute("ROLLBACK")
        .await
        .map_err(|e| Error::query(format!("releasing {name}"), e))
}

/// Returns once backend `pid` waits for a lock (polling every 5 ms).
async fn wait_for_wait(observer: &Connection, pid: i32) -> Result<(), Error> {
    loop {
        if catalog::waiting(observer, pid).await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
