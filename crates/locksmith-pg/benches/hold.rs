//! Hold benchmark (issue 10): the story's migration on a big table, with a
//! reader every 30 ms. The guard bounds how long traffic waits *for* the lock;
//! this measures how long traffic waits while the lock is *held*: plain, under
//! the guard, under the guard with `--max-hold 500ms` (gives up), and online.
//! Rewrites the section "hold" of docs/benchmarks.md.
//!
//!     cargo bench -p pg-locksmith-pg --bench hold                    # 1M and 10M rows
//!     BENCH_ROWS=1000000 cargo bench -p pg-locksmith-pg --bench hold # one size

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use locksmith_core::analysis::analyze;
use locksmith_pg::guard::{Guard, GuardError, GuardPolicy, Step};
use locksmith_pg::ConnectionSettings;
use locksmith_sandbox::incident::{Incident, MIGRATION, TABLE};
use locksmith_sandbox::Cluster;
use tokio::sync::watch;

/// A reader every 30 ms for as long as it runs; the worst latency it saw.
struct Reader {
    stop: Arc<AtomicBool>,
    worst: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    async fn start(app: &ConnectionSettings) -> Reader {
        let client = app.connect().await.unwrap();
        let (stop, worst) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let task = {
            let (stop, worst) = (stop.clone(), worst.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let id = 1 + fastrand::i32(0..1000);
                    client
                        .query_one("SELECT name FROM academic_partners WHERE id = $1", &[&id])
                        .await
                        .unwrap();
                    worst.fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
            })
        };
        Reader { stop, worst, task }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.worst.load(Ordering::Relaxed)
    }
}

struct Row {
    label: &'static str,
    took_ms: u64,
    worst_ms: u64,
    applied: bool,
}

async fn constraint_exists(admin: &locksmith_pg::Connection) -> bool {
    admin
        .query_one(
            "SELECT count(*) > 0 FROM pg_constraint WHERE conname = 'unique_informal_name_academic_partner'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

async fn reset(admin: &locksmith_pg::Connection) {
    admin
        .batch_execute(
            "ALTER TABLE academic_partners DROP CONSTRAINT IF EXISTS unique_informal_name_academic_partner;
             DROP INDEX IF EXISTS unique_informal_name_academic_partner;
             DROP TABLE IF EXISTS locksmith_online_steps;",
        )
        .await
        .unwrap();
}

async fn measure(
    label: &'static str,
    incident: &Incident,
    admin: &locksmith_pg::Connection,
    run: impl std::future::Future<Output = ()>,
) -> Row {
    reset(admin).await;
    let reader = Reader::start(&incident.app).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    run.await;
    let took_ms = started.elapsed().as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let worst_ms = reader.stop().await;
    Row {
        label,
        took_ms,
        worst_ms,
        applied: constraint_exists(admin).await,
    }
}

async fn guarded(incident: &Incident, policy: GuardPolicy, online: bool) {
    let (_tx, rx) = watch::channel(None);
    let mut guard = Guard::connect(&incident.admin, policy, rx).await.unwrap();
    let statements = analyze(MIGRATION, 18).unwrap();
    if online {
        let units = locksmith_core::online::units(&statements, 18)
            .unwrap()
            .unwrap();
        let record = |_: u32, _: Duration| "SELECT 1".to_string();
        locksmith_pg::online::run(&mut guard, 1, &units, &record)
            .await
            .unwrap();
    } else {
        let steps: Vec<Step> = statements.iter().map(Step::from).collect();
        match guard.run_transaction(&steps, None).await {
            Ok(_) | Err(GuardError::HoldExceeded { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

async fn size(cluster: &Cluster, rows: u64) -> (Vec<Row>, u64) {
    let incident = Incident::stage(cluster, &format!("hold_{rows}"))
        .await
        .unwrap();
    let admin = incident.admin.connect().await.unwrap();
    let load = Instant::now();
    admin
        .batch_execute(&format!(
            "INSERT INTO {TABLE} (name, informal_name)
               SELECT 'University ' || i, 'uni-' || i FROM generate_series(251, {rows}) AS i"
        ))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("VACUUM ANALYZE {TABLE}"))
        .await
        .unwrap();
    let load_ms = load.elapsed().as_millis() as u64;
    let mut out = Vec::new();
    out.push(
        measure("baseline: no migration (1 s)", &incident, &admin, async {
            tokio::time::sleep(Duration::from_secs(1)).await
        })
        .await,
    );
    out.push(
        measure("plain ALTER (as psql runs it)", &incident, &admin, async {
            admin.batch_execute(MIGRATION).await.unwrap()
        })
        .await,
    );
    let roomy = GuardPolicy {
        max_hold: Duration::from_secs(3600),
        ..GuardPolicy::default()
    };
    out.push(
        measure(
            "guard, `--max-hold 1h`",
            &incident,
            &admin,
            guarded(&incident, roomy, false),
        )
        .await,
    );
    let tight = GuardPolicy {
        max_hold: Duration::from_millis(500),
        ..GuardPolicy::default()
    };
    out.push(
        measure(
            "guard, `--max-hold 500ms` (gives up)",
            &incident,
            &admin,
            guarded(&incident, tight, false),
        )
        .await,
    );
    out.push(
        measure(
            "guard, `--online`",
            &incident,
            &admin,
            guarded(&incident, GuardPolicy::default(), true),
        )
        .await,
    );
    (out, load_ms)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes = locksmith_sandbox::bench_doc::rows("1000000,10000000");
    let cluster = Cluster::start().unwrap();
    let mut section = String::from("## hold\n\n");
    section.push_str(
        "`cargo bench -p pg-locksmith-pg --bench hold` (source: `crates/locksmith-pg/benches/hold.rs`).\n",
    );
    section.push_str(&format!(
        "Machine: {}, PostgreSQL {} (sandbox, fsync off), profile {}. The story's migration \
         (`ADD CONSTRAINT … UNIQUE (informal_name)`) on a big `academic_partners`, one reader \
         every 30 ms (a primary-key lookup); one run per cell.\n\n",
        locksmith_sandbox::bench_doc::machine(),
        cluster.major(),
        locksmith_sandbox::bench_doc::profile(),
    ));
    for rows in sizes {
        let (results, load_ms) = size(&cluster, rows).await;
        section.push_str(&format!(
            "**{rows} rows** (loaded in {:.1} s, {:.0} rows/s)\n\n| run | time | worst read | applied |\n|---|---|---|---|\n",
            load_ms as f64 / 1000.0,
            rows as f64 / (load_ms.max(1) as f64 / 1000.0),
        ));
        for r in &results {
            section.push_str(&format!(
                "| {} | {} ms | {} ms | {} |\n",
                r.label,
                r.took_ms,
                r.worst_ms,
                if r.applied { "yes" } else { "no" }
            ));
            eprintln!(
                "{rows} rows: {} took {} ms, worst read {} ms",
                r.label, r.took_ms, r.worst_ms
            );
        }
        section.push('\n');
    }
    section.push_str(
        "Goals (issue 10): `--online` worst read within 100 ms of the baseline at both sizes; \
         `--max-hold 500ms` gives up within about 1 s with nothing applied.\n",
    );
    print!("{section}");
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md");
    locksmith_sandbox::bench_doc::write_section(&doc, "hold", &section).unwrap();
}
