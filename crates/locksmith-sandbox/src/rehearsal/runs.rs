//! The three runs of a rehearsal. Each gets a fresh copy of the loaded
//! database, leaked sessions and traffic started a second before the
//! migration and stopped a second after it, and records per statement the
//! window in which it held (or queued for) its locks.
//!
//! - **naive**: statement by statement in autocommit, as `psql -f` runs a
//!   file, with no timeout; a statement still running after the cap is
//!   cancelled on the server (what Ctrl-C in psql does), and the run stops.
//! - **guarded**: the [`Guard`] `apply` uses: one transaction when every
//!   statement can run in one, else statement by statement.
//! - **online**: `locksmith_pg::online::run` over the plan of
//!   `locksmith_core::online::units`, exactly as `apply --online` drives it.
//!
//! The locks listed per statement are observed by `locksmith_pg::trace` on a
//! copy of the schema without rows (locks do not depend on the data).

use std::time::{Duration, Instant};

use locksmith_core::analysis::{RelationLock, Statement};
use locksmith_core::online::{self, Unit};
use locksmith_pg::guard::GuardPolicy;
use locksmith_pg::trace::{self, Target};
use locksmith_pg::ConnectionSettings;
use serde::Serialize;

use super::guarded::guarded;
use super::plain::{plain, PlainEnd};
use crate::scene::Scene;
use crate::traffic::{Sample, TrafficProfile};
use crate::{Cluster, Error};

/// Traffic before the migration starts, so the baseline is visible.
const WARM_UP: Duration = Duration::from_millis(1000);
/// Traffic after the migration ends, so the recovery is visible.
const COOL_DOWN: Duration = Duration::from_millis(1000);

/// Which way the migration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Way {
    /// As psql would: no lock timeout, capped.
    Naive,
    /// Under the guard.
    Guarded,
    /// Under the guard, as its online plan.
    Online,
}

impl Way {
    /// The name in the JSON report and the database name.
    pub fn name(self) -> &'static str {
        match self {
            Way::Naive => "naive",
            Way::Guarded => "guarded",
            Way::Online => "online",
        }
    }
}

/// What to rehearse, and how.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The migration, analysed.
    pub statements: Vec<Statement>,
    /// The PostgreSQL major version the online plan is made for.
    pub pg_version: u32,
    /// The simulated application.
    pub traffic: TrafficProfile,
    /// Sessions left idle in transaction, each having read `leak_table`.
    pub leaks: usize,
    /// The table the leaked sessions read.
    pub leak_table: Option<String>,
    /// How long the naive run may take before it is cancelled.
    pub cap: Duration,
    /// The guard's policy for the guarded and online runs.
    pub policy: GuardPolicy,
    /// The loaded database each run copies.
    pub template: String,
    /// The database with the schema and no rows, which the tracer copies.
    pub schema_template: String,
}

/// One statement as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct StatementRun {
    /// Its SQL.
    pub sql: String,
    /// The relation locks it took, observed.
    pub locks: Vec<RelationLock>,
    /// How long it held (or queued for) them: its transaction from its
    /// winning lock attempt to its end; 0 when it did not run.
    pub hold_ms: u64,
    /// Whether it ran at all: false when an earlier statement stopped the
    /// run, or when the guard gave up before winning its locks (its `locks`
    /// are then the ones it would have taken).
    pub ran: bool,
    /// When that began, in ms from the start of the traffic (for the timeline).
    #[serde(skip)]
    pub start_ms: Option<u64>,
}

/// One run's result; the JSON report prints the serialized fields.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    /// The longest any request waited.
    pub max_stall_ms: u64,
    /// 99th percentile request latency.
    pub p99_ms: u64,
    /// Requests sent.
    pub requests: usize,
    /// Requests slower than the gateway timeout.
    pub timeouts: usize,
    /// Whether the migration completed.
    pub completed: bool,
    /// Per statement: SQL, locks, hold.
    pub statements: Vec<StatementRun>,
    /// Which way it ran.
    #[serde(skip)]
    pub way: Way,
    /// What happened, in a sentence (what the guard did).
    #[serde(skip)]
    pub outcome: String,
    /// Why it stopped before applying the migration; `None` when it applied.
    #[serde(skip)]
    pub stop: Option<Stop>,
    /// Every request, for the timeline.
    #[serde(skip)]
    pub samples: Vec<Sample>,
    /// The migration's window, in ms from the start of the traffic.
    #[serde(skip)]
    pub migration_ms: (u64, u64),
}

/// Runs the migration `way` on a fresh copy of `plan.template`.
pub async fn rehearse(cluster: &Cluster, plan: &Plan, way: Way) -> Result<Run, Error> {
    run_way(cluster, plan, way).await.map_err(|e| Error::Run {
        way: way.name(),
        source: Box::new(e),
    })
}

async fn run_way(cluster: &Cluster, plan: &Plan, way: Way) -> Result<Run, Error> {
    let units = match way {
        Way::Online => match online::units(&plan.statements, plan.pg_version) {
            Ok(Some(units)) => units,
            Ok(None) => as_written(&plan.statements),
            Err(refusal) => {
                return Ok(refused(plan, &refusal.why, refusal.index));
            }
        },
        _ => as_written(&plan.statements),
    };
    let statements: Vec<Statement> = match way {
        Way::Naive => plan.statements.clone(),
        _ => units.iter().flat_map(|u| u.statements.clone()).collect(),
    };
    // Traced as they run: psql commits each statement, the guard each unit.
    let groups: Vec<Vec<Statement>> = match way {
        Way::Naive => statements.iter().map(|s| vec![s.clone()]).collect(),
        _ => units.iter().map(|u| u.statements.clone()).collect(),
    };
    let locks = observed_locks(cluster, plan, way, &groups).await;

    let db = crate::shared::unique_name(&format!("rehearse_{}", way.name()));
    let admin = cluster.settings("postgres", "locksmith-rehearse");
    let client = admin.connect().await?;
    client
        .batch_execute(&format!(
            "CREATE DATABASE {} TEMPLATE {}",
            locksmith_core::quote::ident(&db),
            locksmith_core::quote::ident(&plan.template)
        ))
        .await
        .map_err(|e| Error::Sql {
            context: "copying the loaded database".into(),
            source: e,
        })?;
    let scene = Scene {
        traffic: plan.traffic.clone(),
        leaks: plan.leak_table.clone().map(|t| (plan.leaks, t)),
        leak_name: "web-app (leaked session)".into(),
        warm_up: WARM_UP,
        cool_down: COOL_DOWN,
    };
    let settings = cluster.settings(&db, "locksmith");
    let played = scene
        .play(
            &cluster.settings(&db, "web-app"),
            async |_, origin| match way {
                Way::Naive => naive(&settings, &statements, plan.cap, origin).await,
                _ => guarded(&settings, plan, way, &units, origin).await,
            },
        )
        .await?;
    let Ending {
        stop,
        outcome,
        windows,
    } = played.result?;
    let report = played.report;
    Ok(Run {
        max_stall_ms: report.max_stall_ms,
        p99_ms: report.p99_ms,
        requests: report.requests,
        timeouts: report.timeouts,
        completed: stop.is_none(),
        statements: statements
            .iter()
            .zip(locks)
            .zip(windows)
            .map(|((s, locks), w)| StatementRun {
                sql: s.sql.clone(),
                locks,
                hold_ms: w.map_or(0, |(a, b)| b.saturating_sub(a)),
                ran: w.is_some(),
                start_ms: w.map(|(a, _)| a),
            })
            .collect(),
        way,
        outcome,
        stop,
        samples: report.samples,
        migration_ms: played.work_ms,
    })
}

/// The migration as one unit per run of transactional statements, and one
/// per statement that cannot run in a transaction (how `apply` runs it).
fn as_written(statements: &[Statement]) -> Vec<Unit> {
    if statements.iter().all(|s| s.transactional) {
        return vec![Unit {
            statements: statements.to_vec(),
            done_when: None,
            transactional: true,
            batch: None,
            retype: None,
        }];
    }
    statements
        .iter()
        .map(|s| Unit {
            statements: vec![s.clone()],
            done_when: None,
            transactional: s.transactional,
            batch: None,
            retype: None,
        })
        .collect()
}

fn refused(plan: &Plan, why: &str, index: usize) -> Run {
    Run {
        max_stall_ms: 0,
        p99_ms: 0,
        requests: 0,
        timeouts: 0,
        completed: false,
        statements: Vec::new(),
        way: Way::Online,
        outcome: format!(
            "not rehearsed: statement {} has no online form: {why}",
            index + 1
        ),
        samples: Vec::new(),
        migration_ms: (0, 0),
        stop: Some(Stop::NoOnlineForm),
    }
    .with_plan_statements(plan)
}

impl Run {
    fn with_plan_statements(mut self, plan: &Plan) -> Run {
        self.statements = plan
            .statements
            .iter()
            .map(|s| StatementRun {
                sql: s.sql.clone(),
                locks: s.locks.clone(),
                hold_ms: 0,
                ran: false,
                start_ms: None,
            })
            .collect();
        self
    }
}

/// The locks each statement takes, traced on a rowless copy of the schema;
/// the analysis' prediction where the trace could not observe them.
async fn observed_locks(
    cluster: &Cluster,
    plan: &Plan,
    way: Way,
    groups: &[Vec<Statement>],
) -> Vec<Vec<RelationLock>> {
    let predicted: Vec<Vec<RelationLock>> =
        groups.iter().flatten().map(|s| s.locks.clone()).collect();
    let db = crate::shared::unique_name(&format!("rehearse_trace_{}", way.name()));
    let Ok(client) = cluster
        .settings("postgres", "locksmith-rehearse")
        .connect()
        .await
    else {
        return predicted;
    };
    let created = client
        .batch_execute(&format!(
            "CREATE DATABASE {} TEMPLATE {}",
            locksmith_core::quote::ident(&db),
            locksmith_core::quote::ident(&plan.schema_template)
        ))
        .await;
    if created.is_err() {
        return predicted;
    }
    let settings = cluster.settings(&db, "locksmith trace");
    match trace::trace(&settings, Target::Sandbox, "", groups).await {
        Ok(files) if files.len() == groups.len() => files
            .into_iter()
            .flatten()
            .zip(predicted)
            .map(|(t, p)| {
                if t.method == trace::Method::NotTraced {
                    p
                } else {
                    t.locks
                }
            })
            .collect(),
        _ => predicted,
    }
}

/// Per statement, its lock window in ms from the start of the traffic
/// (`None`: it did not run).
pub(super) type Windows = Vec<Option<(u64, u64)>>;

/// Why a run stopped before applying the migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The guard gave up because sessions held conflicting locks all along:
    /// nothing ran, traffic was spared; ending those sessions would help.
    Blocked,
    /// A statement held a traffic-blocking lock longer than `--max-hold`
    /// and was rolled back: its online form is what would help.
    HeldTooLong,
    /// The plain run was still running at the cap and was cancelled.
    Cancelled,
    /// The online plan has no online form for a statement.
    NoOnlineForm,
    /// A statement failed.
    Failed,
}

/// How a run ended.
pub(super) struct Ending {
    /// Why it stopped early; `None` when every statement completed.
    pub stop: Option<Stop>,
    /// What happened, in a sentence.
    pub outcome: String,
    /// Per statement, when it held (or queued for) its locks.
    pub windows: Windows,
}

/// psql's way, with the cap.
async fn naive(
    settings: &ConnectionSettings,
    statements: &[Statement],
    cap: Duration,
    origin: Instant,
) -> Result<Ending, Error> {
    let sqls: Vec<&str> = statements.iter().map(|s| s.sql.as_str()).collect();
    let run = plain(&settings.with_application_name("psql"), &sqls, cap, origin).await?;
    Ok(Ending {
        stop: match run.end {
            PlainEnd::Applied => None,
            PlainEnd::Cancelled(_) => Some(Stop::Cancelled),
            PlainEnd::Failed(..) => Some(Stop::Failed),
        },
        outcome: run.summary(&|i| format!("statement {}", i + 1)),
        windows: run.windows,
    })
}
