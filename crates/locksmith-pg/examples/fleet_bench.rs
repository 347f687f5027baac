//! What a fleet costs: 200 databases on two throwaway servers, two
//! migrations each (`ALTER TABLE … ADD COLUMN`, `CREATE TABLE`), applied by
//! [`Fleet`] at `parallel` 1, 4 and 16: wall time, time per target, and the
//! peak of client connections on each server (polled from
//! `pg_stat_activity` every 10 ms), against the goal of at most 2 per
//! running target and 200 databases in at most 60 s at 16.
//!
//! Between runs every database is put back as it was (history table, the
//! column and the table dropped), so each run applies both migrations
//! everywhere.
//!
//! Run: `cargo run -p locksmith-pg --example fleet_bench` (rewrites the
//! "fleet" section of `docs/benchmarks.md`). Only loopback traffic; the
//! clusters are deleted at exit.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use locksmith_core::plan::Plan;
use locksmith_pg::migrate::fleet::{self, Fleet, FleetEvent, TargetStatus};
use locksmith_pg::migrate::{self, Policy};
use locksmith_sandbox::cluster::ClusterOptions;
use locksmith_sandbox::Cluster;

const DATABASES: usize = 200;
const PARALLEL: [usize; 3] = [1, 4, 16];
const MIGRATIONS: [(&str, &str); 2] = [
    (
        "001_note.sql",
        "ALTER TABLE accounts ADD COLUMN note text;\n",
    ),
    (
        "002_audit.sql",
        "CREATE TABLE audit (id int PRIMARY KEY, at timestamptz);\n",
    ),
];

struct Row {
    parallel: usize,
    wall: Duration,
    applied: usize,
    per_target: Vec<u64>,
    peaks: Vec<i64>,
    /// The most targets running at once on each server.
    most: [usize; 2],
}

#[tokio::main]
async fn main() {
    let options = ClusterOptions {
        settings: vec![("max_connections".into(), "200".into())],
        ..ClusterOptions::default()
    };
    let servers = [
        Cluster::start_with(options.clone()).expect("a throwaway server"),
        Cluster::start_with(options).expect("a second throwaway server"),
    ];
    let started = Instant::now();
    let mut per_server: Vec<Vec<String>> = Vec::new();
    for (s, server) in servers.iter().enumerate() {
        let admin = server
            .create_database("fleet_template")
            .await
            .unwrap()
            .connect()
            .await
            .unwrap();
        admin
            .batch_execute("CREATE TABLE accounts (id int PRIMARY KEY)")
            .await
            .unwrap();
        drop(admin);
        let postgres = server
            .settings("postgres", "bench")
            .connect()
            .await
            .unwrap();
        let mut urls = Vec::new();
        for i in 0..DATABASES / servers.len() {
            let name = format!("tenant_{s}_{i:03}");
            postgres
                .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE fleet_template"))
                .await
                .unwrap();
            urls.push(server.url(&name));
        }
        per_server.push(urls);
    }
    // Interleaved, as a list of tenants spread over servers would be: both
    // servers busy at once. Target i is on server i % 2.
    let urls: Vec<String> = (0..DATABASES / 2)
        .flat_map(|i| [per_server[0][i].clone(), per_server[1][i].clone()])
        .collect();
    let setup = started.elapsed();
    let list = urls.join("\n");
    let targets = fleet::parse_targets("bench", &list).unwrap();

    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in MIGRATIONS {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    let plan = Plan::new(dir.path(), migrate::read_folder(dir.path()).unwrap(), None).unwrap();

    let mut rows = Vec::new();
    for parallel in PARALLEL {
        reset(&urls).await;
        let stop = Arc::new(AtomicBool::new(false));
        let pollers: Vec<_> = servers
            .iter()
            .map(|s| peak_connections(s, stop.clone()))
            .collect();
        let fleet_targets = targets
            .iter()
            .map(|t| fleet::Target {
                settings: t.settings.with_application_name("locksmith apply"),
                ..t.clone()
            })
            .collect();
        // The most targets running at once on each server, from the fleet's events.
        let mut running = [0usize; 2];
        let most = Arc::new(std::sync::Mutex::new([0usize; 2]));
        let seen = most.clone();
        let began = Instant::now();
        let report = Fleet::new(fleet_targets, Policy::default())
            .parallel(parallel)
            .on_event(move |e| match e {
                FleetEvent::Started { index, .. } => {
                    running[index % 2] += 1;
                    let mut most = seen.lock().unwrap();
                    most[index % 2] = most[index % 2].max(running[index % 2]);
                }
                FleetEvent::Finished { index, report }
                    if report.status != TargetStatus::Skipped =>
                {
                    running[index % 2] -= 1;
                }
                _ => {}
            })
            .run(plan.clone())
            .await;
        let most = *most.lock().unwrap();
        let wall = began.elapsed();
        stop.store(true, Ordering::SeqCst);
        let mut peaks = Vec::new();
        for p in pollers {
            peaks.push(p.await.unwrap());
        }
        let applied = report
            .targets
            .iter()
            .filter(|t| t.status == TargetStatus::Applied && t.applied.len() == 2)
            .count();
        if applied != DATABASES {
            let odd: Vec<_> = report
                .targets
                .iter()
                .filter(|t| t.status != TargetStatus::Applied)
                .take(3)
                .collect();
            panic!("not every database applied at parallel {parallel}: {odd:#?}");
        }
        let mut per_target: Vec<u64> = report.targets.iter().map(|t| t.duration_ms).collect();
        per_target.sort_unstable();
        eprintln!(
            "parallel {parallel}: {:.1} s, peaks {peaks:?}",
            wall.as_secs_f64()
        );
        rows.push(Row {
            parallel,
            wall,
            applied,
            per_target,
            peaks,
            most,
        });
    }
    write_doc(&rows, setup, servers[0].major());
}

/// Every database back to before the migrations.
async fn reset(urls: &[String]) {
    for url in urls {
        let client = locksmith_pg::ConnectionSettings::resolve(Some(url))
            .unwrap()
            .with_application_name("bench-reset")
            .connect()
            .await
            .unwrap();
        client
            .batch_execute(
                "DROP TABLE IF EXISTS locksmith_migrations, audit;
                 ALTER TABLE accounts DROP COLUMN IF EXISTS note;",
            )
            .await
            .unwrap();
    }
}

/// Polls `server`'s client connections (other than this poller) until
/// `stop`, and returns the most seen at once.
fn peak_connections(server: &Cluster, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<i64> {
    let settings = server.settings("postgres", "bench-poller");
    tokio::spawn(async move {
        let client = settings.connect().await.unwrap();
        let peak = AtomicI64::new(0);
        while !stop.load(Ordering::SeqCst) {
            let n: i64 = client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' \
                     AND pid <> pg_backend_pid()",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            peak.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        peak.load(Ordering::SeqCst)
    })
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn write_doc(rows: &[Row], setup: Duration, major: u32) {
    let mut section = format!(
        "## fleet\n\n`cargo run -p locksmith-pg --example fleet_bench` on {}, PostgreSQL {}, profile {}.\n\n\
         {DATABASES} databases on two throwaway servers ({} each, made from a template in {:.1} s, listed alternately so both are busy at once), \
         two migrations each (`ALTER TABLE accounts ADD COLUMN`, `CREATE TABLE`), applied by \
         `migrate::fleet::Fleet` (what `apply --targets` runs) under the default policy. \
         Peak connections: client backends on each server, polled every 10 ms.\n\n\
         | `--parallel` | wall time | applied | time per target (median / p95 / max) | peak connections (server 1 / 2) | most targets running (server 1 / 2) | connections per running target |\n\
         |---|---|---|---|---|---|---|\n",
        locksmith_sandbox::bench_doc::machine(),
        major,
        locksmith_sandbox::bench_doc::profile(),
        DATABASES / 2,
        setup.as_secs_f64(),
    );
    for r in rows {
        let per_target = (0..2)
            .map(|s| r.peaks[s] as f64 / r.most[s].max(1) as f64)
            .fold(0.0, f64::max);
        section.push_str(&format!(
            "| {} | {:.1} s | {}/{DATABASES} | {} / {} / {} ms | {} / {} | {} / {} | {:.2} |\n",
            r.parallel,
            r.wall.as_secs_f64(),
            r.applied,
            percentile(&r.per_target, 0.5),
            percentile(&r.per_target, 0.95),
            r.per_target.last().copied().unwrap_or(0),
            r.peaks[0],
            r.peaks[1],
            r.most[0],
            r.most[1],
            per_target,
        ));
    }
    let at_16 = rows.iter().find(|r| r.parallel == 16).map(|r| r.wall);
    section.push_str(&format!(
        "\nGoals (issue 24): 200 databases in at most 60 s at `--parallel 16` ({}); at most 2 \
         connections per running target (the last column: each server's peak over the most targets \
         that ran on it at once, the worse server; a peak may catch a finished target's backends \
         still exiting as the next target's open).\n",
        match at_16 {
            Some(w) if w <= Duration::from_secs(60) => format!("met: {:.1} s", w.as_secs_f64()),
            Some(w) => format!("not met: {:.1} s", w.as_secs_f64()),
            None => "not run".into(),
        }
    ));
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md");
    locksmith_sandbox::bench_doc::write_section(&doc, "fleet", &section).unwrap();
    print!("{section}");
}
