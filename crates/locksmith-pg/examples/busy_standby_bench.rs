//! What the guard does, and what a hot standby's readers feel, when that
//! standby is busy reading the migrated table: reports that come and go,
//! reports that never stop, and a steady stream of short reads.
//!
//! A primary and a streaming standby on this machine; per run a fresh
//! database, the readers below on the standby, a probe reading the table
//! there every 50 ms (its worst latency is the stall readers felt), and the
//! story's migration run by the guard watching the standby (`--replica`),
//! default budget (200 ms):
//! - **periodic reports**: a 2.5 s report starting every 3 s, the migration
//!   starting at a random moment of that cycle (issue 20, gap 10);
//! - **reports that never stop**: a 2.5 s report starting every 2 s, so one
//!   always holds the table;
//! - **short reads**: 200 reads of the table per second from a pool of 4.
//!
//! Run: `cargo run -p pg-locksmith-pg --example busy_standby_bench` (rewrites the
//! "busy-standby" section of `docs/standby.md`). Only loopback traffic,
//! bounded in count and time; the clusters are deleted at exit.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use locksmith_core::lock::LockMode;
use locksmith_pg::guard::{Guard, GuardError, GuardPolicy, RelationLock, Step};
use locksmith_sandbox::incident::{Incident, MIGRATION, TABLE};
use locksmith_sandbox::traffic::{Query, Traffic, TrafficProfile};
use locksmith_sandbox::{wait, Cluster};
use tokio::sync::watch;

/// A standby read slower than this counts as stalled.
const STALLED: Duration = Duration::from_secs(1);

#[derive(Clone, Copy)]
struct Scenario {
    label: &'static str,
    runs: usize,
    /// The readers on the standby: SQL, per second, pool.
    sql: &'static str,
    rate: f64,
    pool: usize,
    /// How long the guard may keep trying.
    deadline: Duration,
    /// Start the migration at a random moment within this long after the readers.
    phase: Duration,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        label: "periodic reports: 2.5 s every 3 s",
        runs: 10,
        sql: "SELECT count(*), pg_sleep(2.5) FROM academic_partners",
        rate: 1.0 / 3.0,
        pool: 2,
        deadline: Duration::from_secs(20),
        phase: Duration::from_secs(3),
    },
    Scenario {
        label: "reports that never stop: 2.5 s every 2 s",
        runs: 3,
        sql: "SELECT count(*), pg_sleep(2.5) FROM academic_partners",
        rate: 0.5,
        pool: 3,
        deadline: Duration::from_secs(10),
        phase: Duration::from_secs(2),
    },
    Scenario {
        label: "short reads: 200/s, pool of 4",
        runs: 3,
        sql: "SELECT count(*) FROM academic_partners",
        rate: 200.0,
        pool: 4,
        deadline: Duration::from_secs(30),
        phase: Duration::from_millis(500),
    },
];

struct Sample {
    applied: bool,
    attempts: u32,
    migration_ms: u64,
    worst_read_ms: u64,
}

/// Reads the table on `client` every 50 ms until `stop`; the worst latency.
fn probe(client: locksmith_pg::Connection, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let worst = AtomicU64::new(0);
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            client
                .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])
                .await
                .unwrap();
            worst.fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        worst.load(Ordering::Relaxed)
    })
}

async fn one(primary: &Cluster, standby: &Cluster, db: &str, s: Scenario) -> Sample {
    let incident = Incident::stage(primary, db).await.expect("staging");
    let check = standby.settings(db, "check");
    wait::readable(&check, TABLE).await.expect("standby replay");
    let check = check.connect().await.unwrap();
    let readers = Traffic::start(
        standby.settings(db, "standby-reader"),
        TrafficProfile {
            rate: s.rate,
            pool_size: s.pool,
            queries: vec![Query {
                sql: s.sql.into(),
                share: 1.0,
            }],
            keys: 1,
            gateway_timeout: Duration::from_secs(60),
        },
    );
    let stop = Arc::new(AtomicBool::new(false));
    let probe = probe(
        standby.settings(db, "probe").connect().await.unwrap(),
        stop.clone(),
    );
    tokio::time::sleep(s.phase.mul_f64(fastrand::f64())).await;

    let started = Instant::now();
    let (_tx, rx) = watch::channel(None);
    let policy = GuardPolicy {
        deadline: s.deadline,
        ..GuardPolicy::default()
    };
    let mut guard = Guard::connect(&incident.admin, policy, rx).await.unwrap();
    guard
        .watch_replicas(&[standby.settings(db, "locksmith")])
        .await
        .unwrap();
    let step = Step {
        sql: MIGRATION.into(),
        locks: vec![RelationLock {
            relation: TABLE.into(),
            mode: LockMode::AccessExclusive,
        }],
        builds_index: None,
    };
    let applied = match guard.run_transaction(&[step], None).await {
        Ok(_) => true,
        Err(GuardError::Blocked { .. }) => false,
        Err(e) => panic!("{e}"),
    };
    let migration_ms = started.elapsed().as_millis() as u64;
    if applied {
        // Until the standby has replayed it: a stalled replay stalls the probe until then.
        wait::until(wait::BOUND, "the standby to replay the migration", || async {
            check
                .query_one(
                    "SELECT count(*) > 0 FROM pg_constraint WHERE conname = 'unique_informal_name_academic_partner'",
                    &[],
                )
                .await
                .unwrap()
                .get::<_, bool>(0)
        })
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let worst_read_ms = probe.await.unwrap();
    readers.stop().await;
    Sample {
        applied,
        attempts: guard.report.attempts,
        migration_ms,
        worst_read_ms,
    }
}

fn row(label: &str, samples: &[Sample]) -> String {
    let median_max = |mut v: Vec<u64>| {
        v.sort_unstable();
        format!("{} / {}", v[v.len() / 2], v[v.len() - 1])
    };
    let applied = samples.iter().filter(|s| s.applied).count();
    let stalled = samples
        .iter()
        .filter(|s| s.worst_read_ms >= STALLED.as_millis() as u64)
        .count();
    format!(
        "| {label} | {applied} of {} | {} | {} | {} | {stalled} |\n",
        samples.len(),
        median_max(samples.iter().map(|s| s.migration_ms).collect()),
        median_max(samples.iter().map(|s| u64::from(s.attempts)).collect()),
        median_max(samples.iter().map(|s| s.worst_read_ms).collect()),
    )
}

#[tokio::main]
async fn main() {
    let primary = Cluster::start().expect("starting the primary");
    let standby = primary.start_standby(&[]).expect("starting the standby");
    let mut table = String::new();
    for (n, scenario) in SCENARIOS.iter().enumerate() {
        let mut samples = Vec::new();
        for i in 0..scenario.runs {
            samples.push(one(&primary, &standby, &format!("busy_{n}_{i}"), *scenario).await);
            eprintln!(
                "{}: run {} of {} done",
                scenario.label,
                i + 1,
                scenario.runs
            );
        }
        table.push_str(&row(scenario.label, &samples));
    }
    let machine = format!(
        "{}, PostgreSQL {} (sandbox, fsync off), profile {}",
        locksmith_sandbox::bench_doc::machine(),
        primary.major(),
        locksmith_sandbox::bench_doc::profile(),
    );
    let mut section = String::new();
    section.push_str("## Measured\n\n");
    section.push_str(
        "`cargo run -p pg-locksmith-pg --example busy_standby_bench` (source: `crates/locksmith-pg/examples/busy_standby_bench.rs`).\n",
    );
    section.push_str(&format!(
        "Machine: {machine}. A primary and a streaming hot standby (`max_standby_streaming_delay` 30 s, the default); \
         the readers named in each row on the standby, and a probe reading the table there every 50 ms. The story's \
         migration (`ADD CONSTRAINT … UNIQUE`) by the guard watching the standby, default budget (200 ms), deadline \
         20 s (10 s when reports never stop, 30 s for short reads), started at a random moment of the readers' \
         cycle. Times are median / max in ms; a run is *stalled* when a probe read took {} s or more.\n\n",
        STALLED.as_secs()
    ));
    section.push_str(
        "| standby readers | applied | migration time | attempts | worst standby read | stalled runs |\n\
         |---|---|---|---|---|---|\n",
    );
    section.push_str(&table);
    print!("{section}");
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/standby.md");
    locksmith_sandbox::bench_doc::write_section(&doc, "busy-standby", &section).unwrap();
}
