//! Hot standbys the guard watches too (`--replica URL`).
//!
//! A standby replays the primary's `ACCESS EXCLUSIVE` locks: its startup
//! process takes the same lock when the lock's WAL record arrives, waits for
//! the standby's own readers of the table (up to `max_standby_streaming_delay`,
//! 30 s by default, or forever), stops all replay meanwhile, and every new read
//! of the table on the standby queues behind it — the incident again, on the
//! replica. Rolling back on the primary does not help once the record is
//! there: replay is stuck *at* the lock record and reaches the abort only after
//! the readers end (measured; see docs/locks.md). So the only safe moment is
//! before the lock is taken: the look covers each standby's sessions holding a
//! lock that conflicts with the plan's `ACCESS EXCLUSIVE` locks (the only mode
//! WAL-logged; relation oids are the primary's on a physical standby), and
//! every one of them is waited out ([`standby_waits_out`]): none is raced,
//! since nothing bounds how long replay would wait for it. The terminate
//! policy applies to them as to the primary's sessions. While only standby
//! queries are in the way, the guard looks again within
//! [`LOOK_AGAIN_WITHIN`], to find a gap between them. Once the lock is taken,
//! its record is sent to the standbys at once
//! ([`Guard::send_lock_record`](super::Guard)), so that a standby query
//! starting during the migration's hold queues behind replay instead of
//! making replay wait for it. What this promises and costs: docs/standby.md.
//!
//! Must not touch a standby session that does not conflict, nor an active
//! query (only sessions idle in transaction past `--terminate-idle-after`).

use crate::Connection;
use locksmith_core::lock::LockMode;

use std::time::Duration;

use super::look::{self, Holder, Resolved};
use super::policy::{terminate_idle, Policed};
use super::{Event, Guard, GuardError};
use crate::{ConnectionSettings, Error};

/// One watched standby.
pub(crate) struct Replica {
    /// `host:port`, as reports name it.
    pub name: String,
    pub client: Connection,
}

/// Connects to each hot standby to watch (the one way both the guard and
/// `run`'s session watch do it). Fails when one cannot be reached or is not
/// a standby.
pub(crate) async fn watch(replicas: &[ConnectionSettings]) -> Result<Vec<Replica>, Error> {
    let mut watched = Vec::with_capacity(replicas.len());
    for settings in replicas {
        let (name, client) =
            connect_standby(&settings.with_application_name("locksmith-watchdog")).await?;
        watched.push(Replica { name, client });
    }
    Ok(watched)
}

impl Guard {
    /// Watches these hot standbys too: each look also covers their sessions.
    /// Fails when one cannot be reached or is not a standby.
    pub async fn watch_replicas(&mut self, replicas: &[ConnectionSettings]) -> Result<(), Error> {
        self.replicas.extend(watch(replicas).await?);
        Ok(())
    }

    /// Standby sessions holding a lock that conflicts with the plan's
    /// `ACCESS EXCLUSIVE` locks, after the terminate policy: each named with
    /// its server ([`in_the_way`]).
    pub(super) async fn replica_holders(
        &mut self,
        resolved: &[Resolved],
    ) -> Result<Vec<Holder>, GuardError> {
        let threshold = self.policy.terminate_idle_after;
        let policed = in_the_way(&self.replicas, resolved, threshold)
            .await
            .map_err(GuardError::Failed)?;
        for h in policed.terminated {
            (self.on_event)(Event::Terminated(&h));
            self.report.terminated.push(h);
        }
        match policed.failed {
            Some(e) => Err(GuardError::Failed(e)),
            None => Ok(policed.kept),
        }
    }
}

/// Each standby's sessions holding a lock that conflicts with the `ACCESS
/// EXCLUSIVE` locks among `targets` (the only mode a standby replays;
/// relation oids are the primary's on a physical standby), each named with
/// its server, after the terminate policy under `threshold`: the one standby
/// look of the guard and of `run`'s session watch. A standby that cannot be
/// read is an error naming it, and so is a termination that failed there
/// (`failed`: a refused signal, or a session whose state the role may not
/// see, as on the primary).
pub(crate) async fn in_the_way(
    replicas: &[Replica],
    targets: &[Resolved],
    threshold: Option<Duration>,
) -> Result<Policed, Error> {
    let replayed: Vec<Resolved> = targets
        .iter()
        .filter(|r| r.mode == LockMode::AccessExclusive)
        .cloned()
        .collect();
    let mut all = Policed::default();
    if replayed.is_empty() {
        return Ok(all);
    }
    for replica in replicas {
        // Named with the standby; a missing grant stays one, of the standby's role.
        let named = |e: Error| match e {
            Error::Permission { action, needs } => Error::Permission {
                action: format!("{action} on standby {}", replica.name),
                needs,
            },
            e => Error::Replica {
                server: replica.name.clone(),
                reason: e.to_string(),
            },
        };
        let mut holders = look::conflicting_holders(&replica.client, &replayed)
            .await
            .map_err(named)?;
        for h in &mut holders {
            h.server = Some(replica.name.clone());
        }
        let Some(threshold) = threshold else {
            all.kept.extend(holders);
            continue;
        };
        let policed = terminate_idle(&replica.client, holders, threshold).await;
        all.kept.extend(policed.kept);
        all.terminated.extend(policed.terminated);
        if all.failed.is_none() {
            all.failed = policed.failed.map(named);
        }
    }
    Ok(all)
}

impl Guard {
    /// Sends the WAL written so far, the lock record of the attempt in flight
    /// included, to the standbys now, without waiting for it. A transaction
    /// that has not committed flushes nothing, and walsenders send flushed
    /// WAL only: on a quiet primary the record would leave with our commit,
    /// and a standby query starting meanwhile (the migration's whole hold)
    /// would take the table there unseen, for replay to wait on however long
    /// it runs. Sent now, replay takes the lock within milliseconds of the
    /// look, and later standby reads queue behind it for our hold only (as
    /// they already do when other commits flush the WAL on a busy primary).
    /// A tiny committed transaction with an xid, on the sidecar, flushes it.
    /// Spawned, so the hold is not longer by its round trip; should it fail,
    /// the record leaves with our commit, as without it.
    pub(super) fn send_lock_record(&self) {
        let sidecar = self.sidecar.clone();
        tokio::spawn(async move {
            // `local`: flushed here even under synchronous_commit = off, without
            // waiting for a synchronous standby.
            let _ = sidecar
                .batch_execute(
                    "BEGIN; SET LOCAL synchronous_commit = local; SELECT pg_current_xact_id(); COMMIT",
                )
                .await;
        });
    }
}

/// Connects to a hot standby given with `--replica`: its `host:port` (as
/// reports name it) and the connection. Fails when it cannot be reached or is
/// not a standby (a primary given as a replica would be watched for nothing).
pub async fn connect_standby(settings: &ConnectionSettings) -> Result<(String, Connection), Error> {
    let client = settings.connect().await?;
    let name = server_name(settings);
    let standby: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(|e| Error::query(format!("asking {name} whether it is a standby"), e))?
        .get(0);
    if !standby {
        return Err(Error::Replica {
            server: name,
            reason: "given with --replica but not a hot standby (pg_is_in_recovery() is false)"
                .into(),
        });
    }
    Ok((name, client))
}

/// `user@host:port/db` → `host:port`.
fn server_name(settings: &ConnectionSettings) -> String {
    let described = settings.describe();
    described
        .split_once('@')
        .map_or(described.as_str(), |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The standby rule: a standby session holding a lock that the replay of
/// ours would conflict with is waited out, never raced, whatever its age.
/// On the primary a race is safe (`NOWAIT` gives up at once); replay cannot
/// give up: once our lock record arrives it waits for that session however
/// long it runs, rolling back on the primary does not free it (replay is
/// stuck before the abort record), and every read of the table there queues
/// behind it. A query that started a moment ago is no promise of a short one
/// (a report), so its age says nothing. See docs/standby.md for what this
/// costs when a standby's readers never stop.
pub fn standby_waits_out(h: &Holder) -> bool {
    h.server.is_some()
}

/// How soon the guard looks again while only standby queries are in its way
/// ([`comes_and_goes`]): readers there are waited out, never raced, so the
/// migration runs in a gap between them, and a gap between two reports may
/// last under a second. The backoff alone (growing to 5 s) would miss most.
/// A look is a few catalog reads on the primary and on each standby.
pub const LOOK_AGAIN_WITHIN: std::time::Duration = std::time::Duration::from_millis(250);

/// A standby session whose query will end by itself (not one idle in its
/// transaction, which may stay so for ever): worth looking again soon.
pub fn comes_and_goes(h: &Holder) -> bool {
    h.server.is_some() && !h.session.is_idle_in_transaction()
}

/// How many standbys stream from the primary `client` is connected to: a
/// guard that watches none of them should say so.
pub async fn streaming_standbys(client: &Connection) -> Result<i64, Error> {
    // Walsenders to standbys (not to pg_basebackup or logical subscribers' initial copy).
    client
        .query_one(
            "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::query("reading pg_stat_replication", e))
}
