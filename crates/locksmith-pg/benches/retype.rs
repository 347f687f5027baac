//! Online type change benchmark (issue 21): `accounts.id int` (a serial
//! primary key) referenced by `payments.account_id`, both N rows, changed to
//! `bigint` under four writers and a reader: the plain statements against
//! `apply --online` (`migrate::Runner`, the engine `apply` drives), each on
//! a fresh copy of the same loaded database, beside a no-migration baseline
//! measured in the same run. Every write is counted client-side and checked
//! against the tables afterwards (the ledger): a lost write fails the bench.
//! Rewrites the section "retype" of docs/benchmarks.md.
//!
//!     cargo bench -p pg-locksmith-pg --bench retype                    # 1M rows
//!     BENCH_ROWS=100000 cargo bench -p pg-locksmith-pg --bench retype  # one size

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use locksmith_core::plan::Plan;
use locksmith_pg::guard::Event as GuardEvent;
use locksmith_pg::migrate::{self, Event, Policy, Runner, Status};
use locksmith_pg::ConnectionSettings;
use locksmith_sandbox::Cluster;

const MIGRATION: &str = "ALTER TABLE accounts ALTER COLUMN id TYPE bigint;
ALTER TABLE payments ALTER COLUMN account_id TYPE bigint;
";
const WRITERS: usize = 4;
/// Traffic before and after the migration, so its edges are inside the window.
const EDGE: Duration = Duration::from_secs(1);

/// What the traffic saw over one window.
#[derive(Default)]
struct Seen {
    worst_read_ms: AtomicU64,
    worst_write_ms: AtomicU64,
    updates: AtomicU64,
    inserts: AtomicU64,
    failed: AtomicU64,
}

/// Four writers (an update of one account's balance, then a payment for
/// it) and a reader (one account by key every 20 ms), until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Traffic {
    async fn start(settings: &ConnectionSettings, rows: i32) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Seen::default());
        let mut tasks = Vec::new();
        for _ in 0..WRITERS {
            let client = settings.connect().await.unwrap();
            let (stop, seen) = (stop.clone(), seen.clone());
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let id = 1 + fastrand::i32(0..rows);
                    let t = Instant::now();
                    let updated = client
                        .execute(
                            "UPDATE accounts SET balance = balance + 1 WHERE id = $1",
                            &[&id],
                        )
                        .await;
                    let inserted = client
                        .execute(
                            "INSERT INTO payments (account_id, amount) VALUES ($1, 1)",
                            &[&id],
                        )
                        .await;
                    seen.worst_write_ms
                        .fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                    match updated {
                        Ok(1) => seen.updates.fetch_add(1, Ordering::Relaxed),
                        _ => seen.failed.fetch_add(1, Ordering::Relaxed),
                    };
                    match inserted {
                        Ok(1) => seen.inserts.fetch_add(1, Ordering::Relaxed),
                        _ => seen.failed.fetch_add(1, Ordering::Relaxed),
                    };
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
        let client = settings.connect().await.unwrap();
        let (stop2, seen2) = (stop.clone(), seen.clone());
        tasks.push(tokio::spawn(async move {
            while !stop2.load(Ordering::Relaxed) {
                let id = 1 + fastrand::i32(0..rows);
                let t = Instant::now();
                if client
                    .query_one("SELECT balance FROM accounts WHERE id = $1", &[&id])
                    .await
                    .is_err()
                {
                    seen2.failed.fetch_add(1, Ordering::Relaxed);
                }
                seen2
                    .worst_read_ms
                    .fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
        Traffic { stop, seen, tasks }
    }

    async fn stop(self) -> Arc<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        self.seen
    }
}

struct Row {
    label: &'static str,
    took_ms: u64,
    worst_read_ms: u64,
    worst_write_ms: u64,
    writes: u64,
    failed: u64,
    lost: i64,
    rows_per_second: Option<f64>,
    bigint: bool,
}

/// A fresh copy of the loaded database `template`.
async fn copy(cluster: &Cluster, template: &str, name: &str) -> ConnectionSettings {
    let admin = cluster
        .settings("postgres", "bench")
        .connect()
        .await
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
        .await
        .unwrap();
    cluster.settings(name, "bench")
}

/// One window: traffic, then `run` after [`EDGE`], then [`EDGE`] more; the
/// ledger checked against the tables.
async fn window<F, Fut>(
    label: &'static str,
    settings: &ConnectionSettings,
    rows: i32,
    run: F,
) -> Row
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Option<f64>>,
{
    let traffic = Traffic::start(settings, rows).await;
    tokio::time::sleep(EDGE).await;
    let started = Instant::now();
    let rows_per_second = run().await;
    let took_ms = started.elapsed().as_millis() as u64;
    tokio::time::sleep(EDGE).await;
    let seen = traffic.stop().await;
    let client = settings.connect().await.unwrap();
    let balance: i64 = client
        .query_one("SELECT sum(balance)::int8 FROM accounts", &[])
        .await
        .unwrap()
        .get(0);
    let payments: i64 = client
        .query_one("SELECT count(*) FROM payments", &[])
        .await
        .unwrap()
        .get(0);
    let bigint: bool = client
        .query_one(
            "SELECT format_type(atttypid, atttypmod) = 'bigint' FROM pg_attribute
              WHERE attrelid = 'payments'::regclass AND attname = 'account_id'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (updates, inserts) = (
        seen.updates.load(Ordering::Relaxed) as i64,
        seen.inserts.load(Ordering::Relaxed) as i64,
    );
    Row {
        label,
        took_ms,
        worst_read_ms: seen.worst_read_ms.load(Ordering::Relaxed),
        worst_write_ms: seen.worst_write_ms.load(Ordering::Relaxed),
        writes: (updates + inserts) as u64,
        failed: seen.failed.load(Ordering::Relaxed),
        lost: (updates - balance).abs() + (i64::from(rows) + inserts - payments).abs(),
        rows_per_second,
        bigint,
    }
}

/// `apply --online` of [`MIGRATION`] through the engine; the fill's best rows/s.
async fn online(settings: &ConnectionSettings) -> Option<f64> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("1_bigint.sql"), MIGRATION).unwrap();
    let plan = Plan::new(dir.path(), migrate::read_folder(dir.path()).unwrap(), None).unwrap();
    let rate = Arc::new(Mutex::new(None::<f64>));
    let seen = rate.clone();
    let policy = Policy {
        online: true,
        ..Policy::default()
    };
    let report = Runner::new(settings.clone(), policy)
        .on_event(move |e| {
            if let Event::Guard(GuardEvent::Backfill {
                rows_per_second, ..
            }) = e
            {
                let mut best = seen.lock().unwrap();
                *best = Some(best.unwrap_or(0.0).max(rows_per_second));
            }
        })
        .run(plan)
        .await
        .unwrap();
    assert_eq!(report.status, Status::Applied, "{:?}", report.error);
    let best = *rate.lock().unwrap();
    best
}

async fn size(cluster: &Cluster, rows: i32) -> (Vec<Row>, u64) {
    let loaded = format!("retype_{rows}");
    let admin = cluster.create_database(&loaded).await.unwrap();
    let client = admin.connect().await.unwrap();
    let load = Instant::now();
    client
        .batch_execute(&format!(
            "CREATE TABLE accounts (id serial PRIMARY KEY, balance int NOT NULL DEFAULT 0);
             CREATE TABLE payments (id serial PRIMARY KEY,
                                    account_id int NOT NULL REFERENCES accounts (id),
                                    amount int NOT NULL);
             INSERT INTO accounts (balance) SELECT 0 FROM generate_series(1, {rows});
             INSERT INTO payments (account_id, amount) SELECT i, 1 FROM generate_series(1, {rows}) AS i;
             CREATE INDEX payments_account_id_idx ON payments (account_id);"
        ))
        .await
        .unwrap();
    // VACUUM runs alone: a multi-statement query is one transaction.
    for table in ["accounts", "payments"] {
        client
            .batch_execute(&format!("VACUUM ANALYZE {table}"))
            .await
            .unwrap();
    }
    drop(client);
    let load_ms = load.elapsed().as_millis() as u64;
    // The template must have no session left when it is copied.
    let postgres = cluster
        .settings("postgres", "bench")
        .connect()
        .await
        .unwrap();
    locksmith_sandbox::wait::until(
        locksmith_sandbox::wait::BOUND,
        "the load's session to end",
        || async {
            let left: i64 = postgres
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                    &[&loaded],
                )
                .await
                .unwrap()
                .get(0);
            left == 0
        },
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    let baseline = copy(cluster, &loaded, &format!("{loaded}_baseline")).await;
    out.push(
        window("baseline: no migration (5 s)", &baseline, rows, || async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            None
        })
        .await,
    );
    let plain = copy(cluster, &loaded, &format!("{loaded}_plain")).await;
    let plain_client = plain.connect().await.unwrap();
    out.push(
        window(
            "plain `ALTER … TYPE bigint` on both",
            &plain,
            rows,
            || async {
                plain_client.batch_execute(MIGRATION).await.unwrap();
                None
            },
        )
        .await,
    );
    let on = copy(cluster, &loaded, &format!("{loaded}_online")).await;
    out.push(window("`apply --online`", &on, rows, || online(&on)).await);
    (out, load_ms)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes: Vec<i32> = std::env::var("BENCH_ROWS")
        .unwrap_or_else(|_| "1000000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("BENCH_ROWS: comma-separated row counts")
        })
        .collect();
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cluster = Cluster::start().unwrap();
    let mut section = String::from("## retype\n\n");
    section.push_str(
        "`cargo bench -p pg-locksmith-pg --bench retype` (source: `crates/locksmith-pg/benches/retype.rs`).\n",
    );
    section.push_str(&format!(
        "Machine: {}, PostgreSQL {} (sandbox, fsync off), profile {}. `accounts.id` (serial \
         primary key) referenced by `payments.account_id`, N rows each, both changed from \
         `integer` to `bigint`; {WRITERS} writers (an `UPDATE` of one account, then an `INSERT` \
         of a payment, 5 ms apart) and a reader (one account by key every 20 ms); {} of \
         traffic on each side of the migration. Each run on its own copy of the loaded \
         database. Writes are counted by the clients and checked against the tables after \
         (lost: the difference). One run per cell.\n\n",
        locksmith_sandbox::bench_doc::machine(),
        cluster.major(),
        locksmith_sandbox::bench_doc::profile(),
        locksmith_core::duration::human(EDGE),
    ));
    for rows in sizes {
        let (results, load_ms) = size(&cluster, rows).await;
        section.push_str(&format!(
            "**{rows} rows** each (loaded in {:.1} s)\n\n\
             | run | time | worst read | worst write | writes | failed | lost | fill rows/s | bigint |\n\
             |---|---|---|---|---|---|---|---|---|\n",
            load_ms as f64 / 1000.0,
        ));
        for r in &results {
            section.push_str(&format!(
                "| {} | {} ms | {} ms | {} ms | {} | {} | {} | {} | {} |\n",
                r.label,
                r.took_ms,
                r.worst_read_ms,
                r.worst_write_ms,
                r.writes,
                r.failed,
                r.lost,
                r.rows_per_second
                    .map(|r| format!("{r:.0}"))
                    .unwrap_or_else(|| "–".into()),
                if r.bigint { "yes" } else { "no" },
            ));
            eprintln!(
                "{rows} rows: {} took {} ms, worst read {} ms, worst write {} ms, lost {}",
                r.label, r.took_ms, r.worst_read_ms, r.worst_write_ms, r.lost
            );
            assert_eq!(r.lost, 0, "{}: writes were lost", r.label);
        }
        section.push('\n');
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    section.push_str(&format!(
        "Load average (1, 5, 15 min) before: {}; after: {}. Goal (issue 21): the online run's \
         worst read and write within 100 ms of the baseline's; 0 failed and 0 lost writes.\n",
        load_before
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        load_after
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    ));
    print!("{section}");
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md");
    locksmith_sandbox::bench_doc::write_section(&doc, "retype", &section).unwrap();
}
