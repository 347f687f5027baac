//! The demo's fourth act (`locksmith demo --replica`): a hot standby of the
//! throwaway primary (`pg_basebackup -R`, a second server streaming from it),
//! the application reading `academic_partners` there, and a long report
//! ([`REPORT`]) on it every [`REPORT_EVERY`]. The story's ALTER takes its
//! lock on the primary at once; the standby replays that lock, waits for the
//! report, and every read of the table there queues behind the replay. The
//! guard watching the standby (`apply --replica`) waits for a gap between
//! reports instead, so the standby's reads keep flowing (docs/standby.md).
//!
//! Both halves start their migration just after a report has started on the
//! standby, the moment the plain ALTER does the most harm. What counts is
//! the standby's worst read ([`StandbyHalf`]).

use std::time::{Duration, Instant};

use locksmith_pg::ConnectionSettings;
use serde::Serialize;

use super::{
    run, watch, GuardEvents, Migration, Outcome, Show, COOL_DOWN, MAX_CONNECTIONS, WARM_UP,
};
use crate::cluster::Cluster;
use crate::incident::{Incident, APP_ROLE, TABLE};
use crate::scene::Scene;
use crate::traffic::{Query, Traffic, TrafficProfile};
use crate::{wait, Error};

/// The report on the standby: it reads the table for 2.5 s.
pub const REPORT: &str = "SELECT count(*), pg_sleep(2.5) FROM academic_partners";
/// A report starts this often, leaving a gap of about half a second between two.
pub const REPORT_EVERY: Duration = Duration::from_secs(3);
/// The reports' `application_name` on the standby.
const REPORT_NAME: &str = "reports";

/// One half of the standby act, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct StandbyHalf {
    /// The longest any read of the table on the standby waited.
    pub worst_read_ms: u64,
    /// 99th percentile of the standby's reads.
    pub p99_ms: u64,
    /// Reads of the table sent to the standby.
    pub reads: usize,
    /// Whether the migration completed.
    pub completed: bool,
    /// How long the migration ran on the primary (with the guard: its
    /// wait for a gap between reports included).
    pub migration_ms: u64,
    /// From the migration's start until the standby had replayed it.
    pub replayed_ms: Option<u64>,
}

/// Starts a hot standby of `primary` (default `max_standby_streaming_delay`,
/// 30 s: replay waits for a standby reader up to that long). Blocks its
/// worker thread for the base backup: call it on a multi-thread runtime.
pub fn start(primary: &Cluster) -> Result<Cluster, Error> {
    tokio::task::block_in_place(|| primary.start_standby(&[("max_connections", MAX_CONNECTIONS)]))
}

/// Runs one half of the act: stages the incident in `dbname` on `primary`,
/// waits for `standby` to have it, starts the reports and the reads there,
/// and runs `migration` on the primary just after a report has started.
pub async fn play(
    primary: &Cluster,
    standby: &Cluster,
    dbname: &str,
    migration: Migration,
    events: GuardEvents,
    show: &mut (dyn FnMut(Show<'_>) + Send),
) -> Result<(StandbyHalf, Outcome), Error> {
    let incident = Incident::stage(primary, dbname).await?;
    let monitor = standby.settings(dbname, "locksmith-demo-monitor");
    // The standby has replayed the staging.
    wait::readable(&monitor, TABLE).await?;
    let (role, password) = APP_ROLE;
    let app = ConnectionSettings::loopback(standby.port(), role, password, dbname, "web-app");
    let reports = Traffic::start(
        app.with_application_name(REPORT_NAME),
        TrafficProfile {
            rate: 1.0 / REPORT_EVERY.as_secs_f64(),
            pool_size: 2,
            queries: vec![Query {
                sql: REPORT.into(),
                share: 1.0,
            }],
            keys: 1,
            gateway_timeout: Duration::from_secs(60),
        },
    );
    let scene = Scene {
        traffic: TrafficProfile::default(),
        leaks: None,
        leak_name: String::new(),
        warm_up: WARM_UP,
        cool_down: COOL_DOWN,
    };
    let watcher = monitor.connect().await?;
    let started_report = report_started(monitor.clone());
    let admin = incident.admin.clone();
    // The live line runs on until the standby has replayed the migration:
    // that is when the reads queued behind the replay are answered.
    let migrate = async move {
        let outcome = run(admin, migration, events, started_report).await?;
        let replayed = match outcome.completed() {
            true => Some(replayed(&watcher, outcome.took).await?),
            false => None,
        };
        Ok((outcome, replayed))
    };
    let played = scene
        .play(&app, async |traffic, _| {
            watch(&monitor, false, traffic, migrate, show).await
        })
        .await;
    reports.stop().await;
    let played = played?;
    let (outcome, replayed_ms) = played.result?;
    let report = played.report;
    Ok((
        StandbyHalf {
            worst_read_ms: report.max_stall_ms,
            p99_ms: report.p99_ms,
            reads: report.requests,
            completed: outcome.completed(),
            migration_ms: outcome.took.as_millis() as u64,
            replayed_ms,
        },
        outcome,
    ))
}

/// Returns once a report has just started on the standby.
async fn report_started(monitor: ConnectionSettings) -> Result<(), Error> {
    let client = monitor.connect().await?;
    wait::until(wait::BOUND, "a report to start on the standby", || async {
        // Running for 100 to 400 ms: it holds the table, and will for about 2 s more.
        client
            .query_one(
                "SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = $1 \
                 AND state = 'active' \
                 AND clock_timestamp() - query_start BETWEEN interval '100 ms' AND interval '400 ms'",
                &[&REPORT_NAME],
            )
            .await
            .is_ok_and(|r| r.get::<_, bool>(0))
    })
    .await
}

/// Waits until the standby has replayed the migration (its constraint is
/// there); ms since the migration started, `took` ago. Replay stalled
/// behind a report ends when the report does, so the reads queued behind it
/// are all in the result.
async fn replayed(client: &locksmith_pg::Connection, took: Duration) -> Result<u64, Error> {
    let started = Instant::now() - took;
    wait::until(
        wait::BOUND,
        "the standby to replay the migration",
        || async {
            client
                .query_one(
                    "SELECT count(*) > 0 FROM pg_constraint \
                 WHERE conname = 'unique_informal_name_academic_partner'",
                    &[],
                )
                .await
                .is_ok_and(|r| r.get::<_, bool>(0))
        },
    )
    .await?;
    Ok(started.elapsed().as_millis() as u64)
}
