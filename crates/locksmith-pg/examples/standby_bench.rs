//! What a hot standby's readers feel while the story's migration runs on the
//! primary and a report query runs on the standby: the ALTER run plainly, by
//! the guard without `--replica`, and by the guard watching the standby.
//!
//! A primary and a streaming standby on this machine; per run a fresh
//! database, a report (`SELECT count(*), pg_sleep(3)` on the table) running
//! on the standby, and standby traffic reading the table every 50 ms. The
//! plain ALTER and the guard without the standby both take the lock at once:
//! the standby's replay waits for the report and its reads queue behind it.
//! With the standby watched, the guard waits the report out first.
//!
//! Run: `cargo run -p pg-locksmith-pg --example standby_bench` (rewrites the
//! "standby" section of `docs/benchmarks.md`). Only loopback traffic, bounded
//! in count and time; the clusters are deleted at exit.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use locksmith_core::lock::LockMode;
use locksmith_pg::guard::{Guard, GuardPolicy, RelationLock, Step};
use locksmith_sandbox::incident::{Incident, MIGRATION, TABLE};
use locksmith_sandbox::{wait, Cluster};
use tokio::sync::watch;

const RUNS: usize = 3;
/// How long the standby's report runs.
const REPORT_SECONDS: u32 = 3;

#[derive(Clone, Copy, PartialEq)]
enum How {
    Plain,
    Guard,
    GuardReplica,
}

struct Sample {
    migration_ms: u64,
    worst_read_ms: u64,
}

async fn one(primary: &Cluster, standby: &Cluster, db: &str, how: How) -> Sample {
    let incident = Incident::stage(primary, db).await.expect("staging");
    let standby_settings = standby.settings(db, "standby-traffic");
    wait::readable(&standby_settings, TABLE)
        .await
        .expect("standby replay");

    let report = standby
        .settings(db, "standby-report")
        .connect()
        .await
        .unwrap();
    let running = tokio::spawn(async move {
        report
            .batch_execute(&format!(
                "SELECT count(*), pg_sleep({REPORT_SECONDS}) FROM {TABLE}"
            ))
            .await
    });
    let check = standby.settings(db, "check").connect().await.unwrap();
    // Older than the budget: the guard would race it on a primary.
    wait::until(wait::BOUND, "the report to run a while", || async {
        check
            .query_one(
                "SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name = 'standby-report'
                 AND state = 'active' AND now() - query_start > interval '300 ms'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, bool>(0)
    })
    .await
    .unwrap();

    let reader = standby_settings.connect().await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let worst = Arc::new(AtomicU64::new(0));
    let reads = {
        let (stop, worst) = (stop.clone(), worst.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                reader
                    .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])
                    .await
                    .unwrap();
                worst.fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };

    let started = Instant::now();
    match how {
        How::Plain => {
            let admin = incident.admin.connect().await.unwrap();
            admin.batch_execute(MIGRATION).await.unwrap();
        }
        How::Guard | How::GuardReplica => {
            let (_tx, rx) = watch::channel(None);
            let mut guard = Guard::connect(&incident.admin, GuardPolicy::default(), rx)
                .await
                .unwrap();
            if how == How::GuardReplica {
                guard
                    .watch_replicas(&[standby.settings(db, "locksmith")])
                    .await
                    .unwrap();
            }
            let step = Step {
                sql: MIGRATION.into(),
                locks: vec![RelationLock {
                    relation: TABLE.into(),
                    mode: LockMode::AccessExclusive,
                }],
                builds_index: None,
            };
            guard.run_transaction(&[step], None).await.unwrap();
        }
    }
    let migration_ms = started.elapsed().as_millis() as u64;
    // Until the report has ended and the standby has replayed the constraint.
    running.await.unwrap().unwrap();
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
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    reads.await.unwrap();
    Sample {
        migration_ms,
        worst_read_ms: worst.load(Ordering::Relaxed),
    }
}

fn row(label: &str, samples: &mut [Sample]) -> String {
    let median_max = |mut v: Vec<u64>| {
        v.sort_unstable();
        format!("{} / {}", v[v.len() / 2], v[v.len() - 1])
    };
    format!(
        "| {label} | {} | {} |\n",
        median_max(samples.iter().map(|s| s.migration_ms).collect()),
        median_max(samples.iter().map(|s| s.worst_read_ms).collect()),
    )
}

#[tokio::main]
async fn main() {
    let primary = Cluster::start().expect("starting the primary");
    let standby = primary.start_standby(&[]).expect("starting the standby");
    let (mut plain, mut guard, mut replica) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..RUNS {
        plain.push(one(&primary, &standby, &format!("plain_{i}"), How::Plain).await);
        guard.push(one(&primary, &standby, &format!("guard_{i}"), How::Guard).await);
        replica.push(
            one(
                &primary,
                &standby,
                &format!("replica_{i}"),
                How::GuardReplica,
            )
            .await,
        );
        eprintln!("run {} of {RUNS} done", i + 1);
    }
    let machine = format!(
        "{}, PostgreSQL {} (sandbox, fsync off), profile {}",
        locksmith_sandbox::bench_doc::machine(),
        primary.major(),
        locksmith_sandbox::bench_doc::profile(),
    );
    let mut section = String::new();
    section.push_str("## standby\n\n");
    section.push_str(
        "`cargo run -p pg-locksmith-pg --example standby_bench` (source: `crates/locksmith-pg/examples/standby_bench.rs`).\n",
    );
    section.push_str(&format!(
        "Machine: {machine}. A primary and a streaming hot standby; on the standby a {REPORT_SECONDS} s report \
         query on the table (started before the migration, running longer than the budget) and a reader of the \
         table every 50 ms. {RUNS} runs each; cells are median / max in ms.\n\n"
    ));
    section.push_str("| migration | migration time | worst standby read |\n|---|---|---|\n");
    section.push_str(&row("plain ALTER", &mut plain));
    section.push_str(&row("guard, defaults (standby not watched)", &mut guard));
    section.push_str(&row("guard `--replica URL`", &mut replica));
    section.push_str(
        "\nWithout the standby watched, the ALTER takes its lock at once on the primary; the standby's replay \
         waits for the report, and every standby read of the table waits behind the replay. Watching it, the \
         guard waits the report out before locking: the migration takes longer, the standby's readers do not wait.\n",
    );
    print!("{section}");
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md");
    locksmith_sandbox::bench_doc::write_section(&doc, "standby", &section).unwrap();
}
