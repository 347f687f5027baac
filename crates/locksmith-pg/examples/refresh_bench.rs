//! How much one `top` refresh costs on a busy server: 500 client connections
//! (idle, idle in transaction, and waiting on locks behind a queued ALTER) on
//! a throwaway cluster with `max_connections=600`; then the two snapshot
//! queries and the blocker graph, timed over 50 refreshes.
//!
//! Run: `cargo run -p pg-locksmith-pg --example refresh_bench` (prints a
//! markdown section for `docs/benchmarks.md`). Only loopback traffic, bounded
//! in count and time; the cluster is deleted at exit.

use std::time::{Duration, Instant};

use locksmith_pg::blockers::BlockerReport;
use locksmith_pg::snapshot::Snapshotter;
use locksmith_sandbox::cluster::ClusterOptions;
use locksmith_sandbox::incident::Incident;
use locksmith_sandbox::queue::Queue;
use locksmith_sandbox::Cluster;

const CONNECTIONS: usize = 500;
const LEAKED: usize = 100;
const WAITING_READERS: usize = 49;
const REFRESHES: usize = 50;

#[tokio::main]
async fn main() {
    let cluster = Cluster::start_with(ClusterOptions {
        settings: vec![("max_connections".into(), "600".into())],
        ..Default::default()
    })
    .expect("starting the cluster");
    let incident = Incident::stage(&cluster, "bench").await.expect("staging");
    let opened = Instant::now();

    // Idle in transaction, holding AccessShareLock on the table; the ALTER
    // queued behind them; readers queued behind the ALTER.
    let queue = Queue::form(&incident, LEAKED, WAITING_READERS)
        .await
        .expect("forming the lock queue");
    // The rest: idle connections, as a big pool leaves them.
    let idle_count = CONNECTIONS - LEAKED - 1 - WAITING_READERS;
    let mut idle = Vec::new();
    while idle.len() < idle_count {
        let batch: Vec<_> = (0..(idle_count - idle.len()).min(25))
            .map(|_| {
                let s = incident.app.with_application_name("web-pool");
                tokio::spawn(async move { s.connect().await.unwrap() })
            })
            .collect();
        for b in batch {
            idle.push(b.await.unwrap());
        }
    }
    let opened_in = opened.elapsed();

    let client = incident
        .admin
        .with_application_name("locksmith top")
        .connect()
        .await
        .unwrap();
    let snapshotter = Snapshotter::new(&client).await.unwrap();
    // Wait until every waiter is in the lock queue.
    loop {
        let snap = snapshotter.take(&client).await.unwrap();
        if snap
            .sessions
            .iter()
            .filter(|s| s.is_waiting_on_lock())
            .count()
            > WAITING_READERS
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut take = Vec::new();
    let mut graph = Vec::new();
    let mut last = None;
    for _ in 0..REFRESHES {
        let t = Instant::now();
        let snap = snapshotter.take(&client).await.unwrap();
        take.push(t.elapsed());
        let t = Instant::now();
        let report = BlockerReport::from_snapshot(&snap);
        let _ = report.tree();
        graph.push(t.elapsed());
        last = Some((snap, report));
    }
    let (snap, report) = last.unwrap();
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    let (tm, tp) = percentiles(&mut take);
    let (gm, gp) = percentiles(&mut graph);
    let mut section = String::from("## top refresh\n\n");
    section.push_str(&format!(
        "`cargo run -p pg-locksmith-pg --example refresh_bench` on {}, PostgreSQL {}, profile {}.\n\n",
        locksmith_sandbox::bench_doc::machine(),
        cluster.major(),
        locksmith_sandbox::bench_doc::profile()
    ));
    section.push_str(&format!(
        "{} connections (`max_connections=600`): {LEAKED} idle in transaction, 1 ALTER and {WAITING_READERS} SELECTs waiting on locks, {idle_count} idle; opened in {:.1} s.\n",
        snap.connections_used(),
        opened_in.as_secs_f64()
    ));
    section.push_str(&format!(
        "Each refresh read {} sessions and {} lock rows; the blocker graph found {} root blockers and {} waiting sessions.\n\n",
        snap.sessions.len(),
        snap.locks.len(),
        report.blockers.len(),
        report.waiting.len()
    ));
    section.push_str(&format!(
        "| {REFRESHES} refreshes | median | p95 |\n|---|---|---|\n"
    ));
    section.push_str(&format!(
        "| snapshot (2 queries) | {} | {} |\n",
        ms(tm),
        ms(tp)
    ));
    section.push_str(&format!(
        "| blocker graph + tree (pure) | {} | {} |\n",
        ms(gm),
        ms(gp)
    ));
    print!("{section}");
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md");
    locksmith_sandbox::bench_doc::write_section(&doc, "top-refresh", &section).unwrap();

    drop(idle);
    drop(queue);
}

fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at =
        |p: f64| samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    (at(0.5), at(0.95))
}
