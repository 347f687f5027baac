//! `locksmith demo`'s scenario: the incident replayed on a throwaway cluster.
//!
//! A 250-row `academic_partners` ([`crate::incident`]), open-loop request
//! traffic, [`LEAKERS`] sessions leaked idle in transaction, and the story's
//! ALTER run one of two ways ([`Migration`]): plain, as the story ran it (it
//! queues for its ACCESS EXCLUSIVE lock behind the leakers, every request
//! queues behind it, until it is cancelled on the server after the cap), or
//! under the same [`Guard`] `apply` and `run` use. [`play`] runs one half and
//! returns what the traffic saw ([`Half`]) and how the migration ended
//! ([`Outcome`]); [`standby`] is the fourth act, a hot standby's readers.
//!
//! This module plays and measures; it prints nothing: the binary draws the
//! live line ([`Show`]), the guard's events and the results.

pub mod standby;

use std::time::{Duration, Instant};

use locksmith_core::analysis;
use locksmith_pg::blockers::BlockerReport;
use locksmith_pg::guard::{self, Guard, GuardError, GuardPolicy, Holder, Step};
use locksmith_pg::snapshot::Snapshotter;
use locksmith_pg::ConnectionSettings;
use serde::Serialize;
use tokio::sync::watch;

use crate::bin_dir::BinDir;
use crate::cluster::{Cluster, ClusterOptions};
use crate::incident::{Incident, MIGRATION, TABLE};
use crate::rehearsal::{self, PlainEnd};
use crate::scene::Scene;
use crate::served::{served, Served, WorstSecond};
use crate::traffic::{LiveStats, Traffic, TrafficProfile};
use crate::Error;

/// The demo cluster's connection slots (a standby needs as many as its primary).
const MAX_CONNECTIONS: &str = "120";
/// Leaked sessions, as in the story's `watch ps` output.
pub const LEAKERS: usize = 3;
/// Traffic before the migration starts, so the baseline is visible.
const WARM_UP: Duration = Duration::from_millis(1000);
/// Traffic after the migration ends, so the recovery is visible.
const COOL_DOWN: Duration = Duration::from_millis(1500);

/// One half of the demo, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Half {
    /// The longest any request waited.
    pub max_stall_ms: u64,
    /// 99th percentile request latency.
    pub p99_ms: u64,
    /// Requests sent.
    pub requests: usize,
    /// How long the traffic ran (warm-up, migration, cool-down): the halves
    /// differ in length, so compare requests per second, not requests.
    pub traffic_ms: u64,
    /// Requests slower than the 5 s gateway timeout.
    pub timeouts: usize,
    /// Requests answered within the gateway timeout (of `requests` offered).
    pub served_in_time: usize,
    /// The second of traffic in which the fewest requests were answered in
    /// time: how many were, and how many arrived in it. The averages hide
    /// an outage; this shows it (0 of 40 while the ALTER queued).
    pub worst_second: WorstSecond,
    /// Whether the migration completed.
    pub completed: bool,
    /// Most connections the app held at once.
    pub peak_connections: usize,
    /// How long the migration ran (until done, cancelled or given up).
    pub migration_ms: u64,
}

/// How the story's migration is run.
#[derive(Debug, Clone)]
pub enum Migration {
    /// As the story ran it: no timeout, cancelled on the server after `cap`.
    Plain {
        /// How long it may wait.
        cap: Duration,
    },
    /// Under the guard, watching these hot standbys too (`--replica`).
    Guarded {
        /// The guard's budget, deadline and terminate policy.
        policy: GuardPolicy,
        /// Standbys to watch.
        replicas: Vec<ConnectionSettings>,
    },
}

/// How the migration of one half ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// How it ended.
    pub end: End,
    /// How long it ran: the one migration time the summary and the table both show.
    pub took: Duration,
}

impl Outcome {
    /// Whether the migration is in place.
    pub fn completed(&self) -> bool {
        matches!(self.end, End::Finished | End::Applied { .. })
    }
}

/// The ways a half's migration ends.
#[derive(Debug, Clone)]
pub enum End {
    /// The plain ALTER finished.
    Finished,
    /// The guard applied it: its attempts, the sessions it terminated and
    /// the most sessions that ever queued behind it.
    Applied {
        /// Lock attempts.
        attempts: u32,
        /// Sessions the terminate policy ended.
        terminated: usize,
        /// The most sessions queued behind it at once.
        max_queued: i64,
    },
    /// The plain ALTER, still waiting at the cap, cancelled on the server.
    Cancelled,
    /// The plain ALTER failed, with the server's message.
    Failed(String),
    /// The guard gave up, nothing left queued.
    GaveUp {
        /// Attempts exhausted, or deadline reached.
        reason: String,
        /// Who held conflicting locks then.
        holders: Vec<Holder>,
    },
}

/// What the binary may show while a half runs.
pub enum Show<'a> {
    /// Four times a second: the traffic so far and how many sessions wait for a lock.
    Live {
        /// Since the migration started.
        elapsed: Duration,
        /// The traffic so far.
        traffic: LiveStats,
        /// Sessions waiting for a lock now.
        waiting: usize,
    },
    /// Once, when a queue has formed: the moment to diagnose.
    Queue(&'a BlockerReport),
}

/// Receives the guard's progress events (the guard runs in a task of its own).
pub type GuardEvents = Box<dyn FnMut(guard::Event<'_>) + Send + Sync>;

/// A throwaway cluster for the demo from the binaries `bin`, with enough
/// connection slots that the app's pool, the leakers and diagnosis all fit.
pub async fn start_cluster(bin: BinDir) -> Result<Cluster, Error> {
    let options = ClusterOptions {
        bin: Some(bin),
        settings: vec![("max_connections".into(), MAX_CONNECTIONS.into())],
    };
    Cluster::start_async(options).await
}

/// Runs one half on `cluster`: stages the incident in the database
/// `dbname`, leaks the sessions, starts the traffic, runs `migration` while
/// `show` receives the live state, cools down; what the traffic saw and
/// how the migration ended.
pub async fn play(
    cluster: &Cluster,
    dbname: &str,
    migration: Migration,
    events: GuardEvents,
    show: &mut (dyn FnMut(Show<'_>) + Send),
) -> Result<(Half, Outcome), Error> {
    let incident = Incident::stage(cluster, dbname).await?;
    let scene = Scene {
        traffic: TrafficProfile::default(),
        leaks: Some((LEAKERS, TABLE.to_string())),
        leak_name: "web-app (leaked scoped_session)".into(),
        warm_up: WARM_UP,
        cool_down: COOL_DOWN,
    };
    let played = scene
        .play(&incident.app, async |traffic, _| {
            let migrate = run(incident.admin.clone(), migration, events, async { Ok(()) });
            watch(&incident.admin, true, traffic, migrate, show).await
        })
        .await?;
    let outcome = played.result?;
    let report = played.report;
    let traffic_ms = played.work_ms.1 + COOL_DOWN.as_millis() as u64;
    let Served {
        in_time: served_in_time,
        worst_second,
    } = served(&report.samples, traffic_ms, scene.traffic.gateway_timeout);
    Ok((
        Half {
            max_stall_ms: report.max_stall_ms,
            p99_ms: report.p99_ms,
            requests: report.requests,
            traffic_ms,
            timeouts: report.timeouts,
            served_in_time,
            worst_second,
            completed: outcome.completed(),
            peak_connections: report.peak_connections + LEAKERS,
            migration_ms: outcome.took.as_millis() as u64,
        },
        outcome,
    ))
}

/// Runs `migrate` in a task of its own while showing the live state of the
/// server `monitor` reaches and, with `tree`, once the queue has formed
/// there, the blocker tree; returns its outcome.
async fn watch<T: Send + 'static>(
    monitor: &ConnectionSettings,
    tree: bool,
    traffic: &Traffic,
    migrate: impl std::future::Future<Output = Result<T, Error>> + Send + 'static,
    show: &mut (dyn FnMut(Show<'_>) + Send),
) -> Result<T, Error> {
    let monitor = monitor
        .with_application_name("locksmith-demo-monitor")
        .connect()
        .await?;
    let snapshotter = Snapshotter::new(&monitor).await?;
    let started = Instant::now();
    let mut migration = tokio::spawn(migrate);
    let mut tree_shown = !tree;
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            done = &mut migration => {
                return done.map_err(|e| Error::Command {
                    what: "the migration task".into(),
                    output: e.to_string(),
                })?;
            }
            _ = ticker.tick() => {
                let snapshot = snapshotter.take(&monitor).await?;
                let waiting = snapshot.sessions.iter().filter(|s| s.is_waiting_on_lock()).count();
                show(Show::Live { elapsed: started.elapsed(), traffic: traffic.live(), waiting });
                // Show the tree once the queue has formed: that is the moment to diagnose.
                if !tree_shown && waiting > 5 && started.elapsed() > Duration::from_secs(2) {
                    tree_shown = true;
                    show(Show::Queue(&BlockerReport::from_snapshot(&snapshot)));
                }
            }
        }
    }
}

/// The migration of one half, as a future the watch can spawn: first
/// `ready` (the standby act waits there for a report to start), then the
/// story's ALTER, plain or guarded.
async fn run(
    admin: ConnectionSettings,
    migration: Migration,
    events: GuardEvents,
    ready: impl std::future::Future<Output = Result<(), Error>>,
) -> Result<Outcome, Error> {
    ready.await?;
    match migration {
        Migration::Plain { cap } => plain(&admin, cap).await,
        Migration::Guarded { policy, replicas } => guarded(&admin, policy, &replicas, events).await,
    }
}

/// The story's way: the ALTER with no timeout, cancelled on the server after
/// `cap` — the same plain run `rehearse` makes.
async fn plain(admin: &ConnectionSettings, cap: Duration) -> Result<Outcome, Error> {
    let settings = admin.with_application_name("alembic");
    let run = rehearsal::plain(&settings, &[MIGRATION], cap, Instant::now()).await?;
    Ok(Outcome {
        took: run.took,
        end: match run.end {
            PlainEnd::Applied => End::Finished,
            PlainEnd::Cancelled(_) => End::Cancelled,
            PlainEnd::Failed(_, e) => End::Failed(e),
        },
    })
}

/// The guarded way: the same [`Guard`] `apply` and `run` use.
async fn guarded(
    admin: &ConnectionSettings,
    policy: GuardPolicy,
    replicas: &[ConnectionSettings],
    events: GuardEvents,
) -> Result<Outcome, Error> {
    let (_never, interrupt) = watch::channel(None);
    let settings = admin.with_application_name("locksmith");
    let mut guard = Guard::connect(&settings, policy, interrupt).await?;
    guard.on_event(events);
    guard.watch_replicas(replicas).await?;
    // The same analysis `apply` plans with: the ALTER takes AccessExclusiveLock on the table.
    let statements =
        analysis::analyze(MIGRATION, analysis::MAX_PG_VERSION).map_err(|e| Error::Command {
            what: "parsing the incident's migration".into(),
            output: e.to_string(),
        })?;
    let step = Step::from(&statements[0]);
    let started = Instant::now();
    let result = guard.run_transaction(&[step], None).await;
    let took = started.elapsed();
    let end = match result {
        Ok(attempts) => End::Applied {
            attempts,
            terminated: guard.report.terminated.len(),
            max_queued: guard.report.max_queued_behind,
        },
        Err(GuardError::Blocked { holders, reason }) => End::GaveUp { reason, holders },
        Err(e) => return Err(e.into()),
    };
    Ok(Outcome { end, took })
}
