//! What going through PgBouncer costs: `locksmith apply` of a folder of small
//! transactional migrations, with the application's traffic on the same
//! route, straight to the server, through session pooling and through
//! transaction pooling; and the per-statement cost of a parameterised
//! [`Connection::query_one`] on each route.
//!
//! The apply runs the built binary (`target/<profile>/locksmith`, next to
//! this example's own folder), so build it first. Per run a fresh database
//! with a 200-row `items` table, the app reading it at 200 requests/s through
//! a pool of 3 connections (half its queries fail if one of our
//! `lock_timeout`/`statement_timeout` settings stayed on its backend), and
//! `apply` of 20 `ALTER TABLE items ADD COLUMN` files.
//!
//! Run: `cargo build -p pg-locksmith && cargo run -p pg-locksmith-pg --example
//! pooler_bench` (rewrites the "pooler" section of `docs/benchmarks.md`).
//! Only loopback traffic, bounded in count and time; the cluster and the
//! poolers are deleted at exit.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use locksmith_pg::ConnectionSettings;
use locksmith_sandbox::pooler::{PoolMode, Pooler, PoolerOptions};
use locksmith_sandbox::traffic::{summarise, Query, Sample, Traffic, TrafficProfile};
use locksmith_sandbox::{wait, Cluster};

const RUNS: usize = 9;
const MIGRATIONS: usize = 20;
const ROUND_TRIPS: usize = 1000;
/// The app's requests per second; it serves `WARM_UP` requests to open its
/// pool, `WARM_UP` more as the baseline, then `apply` starts.
const RATE: f64 = 200.0;
const WARM_UP: usize = 100;
const GATEWAY_TIMEOUT: Duration = Duration::from_secs(10);
/// Server connections per database in each pooling mode: in session pooling
/// each client keeps one (the app's 3 and locksmith's), in transaction
/// pooling they are shared.
const SESSION_POOL: u32 = 10;
const TRANSACTION_POOL: u32 = 4;
/// Fails (division by zero) on a backend where someone's timeouts stayed set.
const NO_LEAKED_SETTINGS: &str = "SELECT 1/(current_setting('lock_timeout') = '0' \
     AND current_setting('statement_timeout') = '0')::int";
const LOOKUP: &str = "SELECT id, name FROM items WHERE id = $1";

/// One way to reach the server.
struct Route<'a> {
    label: &'static str,
    pooler: Option<&'a Pooler>,
}

impl Route<'_> {
    fn settings(&self, cluster: &Cluster, db: &str, application_name: &str) -> ConnectionSettings {
        match self.pooler {
            Some(p) => p.settings(db, application_name),
            None => cluster.settings(db, application_name),
        }
    }

    fn url(&self, cluster: &Cluster, db: &str) -> String {
        match self.pooler {
            Some(p) => p.url(db),
            None => cluster.url(db),
        }
    }
}

struct ApplySample {
    apply_ms: u64,
    /// The app's requests that arrived while `apply` ran.
    during: Vec<Sample>,
    /// The app's requests that arrived before it started, its pool open (the route's baseline).
    before: Vec<Sample>,
    errors: usize,
    requests: usize,
}

/// `target/<profile>/locksmith`: this example runs from `target/<profile>/examples/`.
fn locksmith_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("this example's path");
    let binary = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|profile| profile.join("locksmith"))
        .expect("the target folder");
    assert!(
        binary.is_file(),
        "{} not found: build it first with `cargo build -p pg-locksmith`",
        binary.display()
    );
    binary
}

async fn database(cluster: &Cluster, name: &str) -> ConnectionSettings {
    let settings = cluster.create_database(name).await.expect("a database");
    settings
        .connect()
        .await
        .unwrap()
        .batch_execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text);
             INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 200) g;",
        )
        .await
        .unwrap();
    settings
}

async fn apply_once(
    cluster: &Cluster,
    route: &Route<'_>,
    db: &str,
    folder: &PathBuf,
) -> ApplySample {
    database(cluster, db).await;
    let profile = TrafficProfile {
        rate: RATE,
        pool_size: 3,
        queries: vec![
            Query {
                sql: NO_LEAKED_SETTINGS.into(),
                share: 1.0,
            },
            Query {
                sql: LOOKUP.into(),
                share: 1.0,
            },
        ],
        keys: 200,
        gateway_timeout: GATEWAY_TIMEOUT,
    };
    let traffic = Traffic::start(route.settings(cluster, db, "app"), profile);
    // The app's pool opens its connections first (authentication, slow in
    // a debug build); the baseline is what it sees once they are open.
    let served = |n: usize| {
        let traffic = &traffic;
        wait::until(wait::BOUND, "app traffic", move || async move {
            traffic.live().served >= n
        })
    };
    served(WARM_UP).await.unwrap();
    let warm = traffic.elapsed().as_millis() as u64;
    served(2 * WARM_UP).await.unwrap();
    let from = traffic.elapsed().as_millis() as u64;
    let started = Instant::now();
    let out = Command::new(locksmith_binary())
        .arg("apply")
        .arg(folder)
        .args(["--format", "json"])
        .env("DATABASE_URL", route.url(cluster, db))
        .env_remove("LOCKSMITH_DIRECT_URL")
        .env("NO_COLOR", "1")
        .output()
        .expect("running locksmith");
    let apply_ms = started.elapsed().as_millis() as u64;
    let until = traffic.elapsed().as_millis() as u64;
    let report = traffic.stop().await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}: {}{}",
        route.label,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
    let applied = json["migrations"].as_array().map_or(0, |m| m.len());
    assert_eq!(applied, MIGRATIONS, "{}: {json}", route.label);
    if !report.first_errors.is_empty() {
        eprintln!("{}: app errors: {:?}", route.label, report.first_errors);
    }
    let window = |range: std::ops::Range<u64>| {
        report
            .samples
            .iter()
            .filter(|s| range.contains(&s.at_ms))
            .copied()
            .collect()
    };
    ApplySample {
        apply_ms,
        during: window(from..until + 1),
        before: window(warm..from),
        errors: report.errors + report.timeouts,
        requests: report.requests,
    }
}

/// Milliseconds for `ROUND_TRIPS` parameterised lookups on one connection.
async fn round_trips(settings: &ConnectionSettings) -> f64 {
    let client = settings.connect().await.unwrap();
    let started = Instant::now();
    for i in 0..ROUND_TRIPS {
        let id = (i % 200) as i32 + 1;
        let row = client.query_one(LOOKUP, &[&id]).await.unwrap();
        assert_eq!(row.get::<_, i32>(0), id);
    }
    started.elapsed().as_secs_f64() * 1000.0
}

fn median<T: Copy + PartialOrd>(values: &[T]) -> T {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for n in 1..=MIGRATIONS {
        std::fs::write(
            dir.path().join(format!("{n:03}_add_c{n}.sql")),
            format!("ALTER TABLE items ADD COLUMN c{n} int;\n"),
        )
        .unwrap();
    }
    dir
}

#[tokio::main]
async fn main() {
    locksmith_binary();
    let cluster = Cluster::start().expect("starting the cluster");
    let pooler = |mode, pool_size| {
        Pooler::start_with(
            &cluster,
            PoolerOptions {
                pool_size,
                ..PoolerOptions::new(mode)
            },
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let session = pooler(PoolMode::Session, SESSION_POOL);
    let transaction = pooler(PoolMode::Transaction, TRANSACTION_POOL);
    let routes = [
        Route {
            label: "direct",
            pooler: None,
        },
        Route {
            label: "PgBouncer, session pooling",
            pooler: Some(&session),
        },
        Route {
            label: "PgBouncer, transaction pooling",
            pooler: Some(&transaction),
        },
    ];
    let migrations = folder();
    let folder = migrations.path().to_path_buf();

    let mut applies: Vec<Vec<ApplySample>> = routes.iter().map(|_| Vec::new()).collect();
    for i in 0..RUNS {
        for (r, route) in routes.iter().enumerate() {
            let db = format!("apply_{r}_{i}");
            applies[r].push(apply_once(&cluster, route, &db, &folder).await);
        }
        eprintln!("apply run {} of {RUNS} done", i + 1);
    }

    database(&cluster, "round_trips").await;
    let mut trips: Vec<Vec<f64>> = routes.iter().map(|_| Vec::new()).collect();
    for _ in 0..RUNS {
        for (r, route) in routes.iter().enumerate() {
            trips[r].push(round_trips(&route.settings(&cluster, "round_trips", "bench")).await);
        }
    }

    let machine = format!(
        "{}, PostgreSQL {} (sandbox, fsync off), profile {}",
        locksmith_sandbox::bench_doc::machine(),
        cluster.major(),
        locksmith_sandbox::bench_doc::profile(),
    );
    let mut section = String::new();
    section.push_str("## pooler\n\n");
    section.push_str(
        "`cargo build -p pg-locksmith && cargo run -p pg-locksmith-pg --example pooler_bench` \
         (source: `crates/locksmith-pg/examples/pooler_bench.rs`).\n",
    );
    section.push_str(&format!(
        "Machine: {machine}. PgBouncer on the same machine (pool of {SESSION_POOL} server connections \
         per database in session pooling, {TRANSACTION_POOL} in transaction pooling).\n\n"
    ));
    section.push_str(&format!(
        "**apply** of {MIGRATIONS} transactional migrations (`ALTER TABLE items ADD COLUMN cN int`, one \
         file each) on a fresh 200-row table, by the `locksmith` binary (process start included), with \
         the app on the same route: {RATE} requests/s through its pool of 3 connections, half of them \
         failing if one of locksmith's timeouts stayed on their backend. The app serves {WARM_UP} requests \
         to open its pool, {WARM_UP} more as the baseline (\"before\"), then apply starts. {RUNS} runs per route: apply time is the median; latencies (ms) are the worst \
         and p99 of the requests that arrived during the {RUNS} applies together, and of the baselines; \
         app errors count every request of every run.\n\n"
    ));
    section.push_str(
        "| route | apply time | per migration | during apply: worst / p99 | before: worst / p99 | app errors / requests |\n\
         |---|---|---|---|---|---|\n",
    );
    let worst_p99 = |samples: &[ApplySample], pick: fn(&ApplySample) -> &Vec<Sample>| {
        let all: Vec<Sample> = samples
            .iter()
            .flat_map(|s| pick(s).iter().copied())
            .collect();
        let report = summarise(all, GATEWAY_TIMEOUT, 0);
        format!(
            "{} / {} ({} requests)",
            report.max_stall_ms, report.p99_ms, report.requests
        )
    };
    for (route, samples) in routes.iter().zip(&applies) {
        let apply_ms = median(&samples.iter().map(|s| s.apply_ms).collect::<Vec<_>>());
        let errors: usize = samples.iter().map(|s| s.errors).sum();
        let requests: usize = samples.iter().map(|s| s.requests).sum();
        section.push_str(&format!(
            "| {} | {apply_ms} ms | {:.1} ms | {} | {} | {errors} / {requests} |\n",
            route.label,
            apply_ms as f64 / MIGRATIONS as f64,
            worst_p99(samples, |s| &s.during),
            worst_p99(samples, |s| &s.before),
        ));
    }
    section.push_str(&format!(
        "\n**Round trips**: {ROUND_TRIPS} `Connection::query_one` calls of `{LOOKUP}` (an `int4` \
         parameter, sent unnamed: parse, bind and execute in one round trip) on one connection, no \
         other traffic; median of {RUNS} runs.\n\n"
    ));
    section.push_str(&format!(
        "| route | {ROUND_TRIPS} calls | per call |\n|---|---|---|\n"
    ));
    for (route, samples) in routes.iter().zip(&trips) {
        let ms = median(samples);
        section.push_str(&format!(
            "| {} | {ms:.0} ms | {:.0} µs |\n",
            route.label,
            ms * 1000.0 / ROUND_TRIPS as f64
        ));
    }
    print!("{section}");
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md");
    locksmith_sandbox::bench_doc::write_section(&doc, "pooler", &section).unwrap();
}
