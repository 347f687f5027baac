//! Rehearsal benchmark: how fast the synthetic load is (rows/s) and how long
//! a rehearsal takes, at 100k and 1M rows per table; writes the "rehearse"
//! section of docs/benchmarks.md. The same library path `locksmith rehearse` drives.
//!
//!     cargo run -p pg-locksmith-sandbox --example rehearse_bench

use std::time::{Duration, Instant};

use locksmith_core::analysis;
use locksmith_pg::guard::GuardPolicy;
use locksmith_sandbox::cluster::{Cluster, ClusterOptions};
use locksmith_sandbox::rehearsal::{self, mix, synth, Plan, Way};
use locksmith_sandbox::traffic::TrafficProfile;

const SCHEMA: &str = "CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, created_at timestamptz NOT NULL);
CREATE TABLE orders (
  id bigint PRIMARY KEY,
  account_id bigint NOT NULL REFERENCES accounts (id),
  total numeric(12,2) NOT NULL CHECK (total > 0),
  status text NOT NULL CHECK (status IN ('open', 'paid', 'shipped')),
  meta jsonb
);";
const MIGRATION: &str =
    "ALTER TABLE orders ADD COLUMN note text; CREATE INDEX orders_status_idx ON orders (status);";

struct Row {
    rows: i64,
    load: Duration,
    runs: Vec<(Way, Duration, u64, bool)>,
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[tokio::main]
async fn main() {
    let mut results = Vec::new();
    let mut major = 0;
    for rows in [100_000_i64, 1_000_000] {
        let cluster = Cluster::start_with(ClusterOptions {
            settings: vec![("max_connections".into(), "200".into())],
            ..Default::default()
        })
        .unwrap();
        major = cluster.major();
        let schema = cluster.create_database("rehearse_schema").await.unwrap();
        schema
            .connect()
            .await
            .unwrap()
            .batch_execute(SCHEMA)
            .await
            .unwrap();
        let admin = cluster
            .settings("postgres", "bench")
            .connect()
            .await
            .unwrap();
        admin
            .batch_execute("CREATE DATABASE rehearse_data TEMPLATE rehearse_schema")
            .await
            .unwrap();
        let data = cluster
            .settings("rehearse_data", "bench")
            .connect()
            .await
            .unwrap();
        let started = Instant::now();
        let loaded = synth::load(&data, &|_| rows, &mut |_, _| {}).await.unwrap();
        let load = started.elapsed();
        assert_eq!(loaded.rows, 2 * rows, "{:?}", loaded.unhonoured);
        let tables = vec!["orders".to_string()];
        let statements = analysis::analyze_after(SCHEMA, MIGRATION, major).unwrap();
        let plan = Plan {
            statements,
            pg_version: major,
            traffic: TrafficProfile {
                queries: mix::default_mix(&data, &tables).await.unwrap(),
                keys: rows as i32,
                ..TrafficProfile::default()
            },
            leaks: 0,
            leak_table: None,
            cap: Duration::from_secs(30),
            policy: GuardPolicy::default(),
            template: "rehearse_data".into(),
            schema_template: "rehearse_schema".into(),
        };
        drop(data);
        let mut runs = Vec::new();
        for way in [Way::Naive, Way::Guarded, Way::Online] {
            let started = Instant::now();
            let run = rehearsal::rehearse(&cluster, &plan, way).await.unwrap();
            runs.push((way, started.elapsed(), run.max_stall_ms, run.completed));
            eprintln!("{rows} rows, {}: {}", way.name(), run.outcome);
        }
        results.push(Row { rows, load, runs });
    }

    let mut section = String::from("## rehearse\n\n");
    section.push_str(&format!(
        "`cargo run -p pg-locksmith-sandbox --example rehearse_bench` on {}, PostgreSQL {major} (sandbox, fsync off), profile {}.\n\n",
        locksmith_sandbox::bench_doc::machine(),
        locksmith_sandbox::bench_doc::profile()
    ));
    section.push_str(&format!(
        "Two tables (`accounts`, and `orders` referencing it, with CHECKs, a unique key and jsonb), N rows each; the migration is `{MIGRATION}`. Traffic: the default mix on `orders` at 40 requests/s; no leaked sessions. Each run copies the loaded database (`CREATE DATABASE … TEMPLATE`), then warms up 1 s and cools down 1 s around the migration.\n\n"
    ));
    section.push_str("| rows per table | load | load rate | plain run | guarded run | online run | plain worst stall | guarded / online |\n|---|---|---|---|---|---|---|---|\n");
    for r in &results {
        let cell = |w: Way| r.runs.iter().find(|x| x.0 == w).unwrap();
        let (naive, guarded, online) = (cell(Way::Naive), cell(Way::Guarded), cell(Way::Online));
        let done = |x: &(Way, Duration, u64, bool)| if x.3 { "applied" } else { "not applied" };
        section.push_str(&format!(
            "| {} | {} | {:.0} rows/s | {} | {} | {} | {} ms | {} ({} ms) / {} ({} ms) |\n",
            r.rows,
            secs(r.load),
            (2 * r.rows) as f64 / r.load.as_secs_f64(),
            secs(naive.1),
            secs(guarded.1),
            secs(online.1),
            naive.2,
            done(guarded),
            guarded.2,
            done(online),
            online.2,
        ));
    }
    section.push_str("\nA rehearsal is the load plus the three runs (plus starting the cluster, ~0.2 s). Load rate counts both tables' rows. The plain and guarded runs both hold `orders`' SHARE lock for the whole index build, so writes wait as long as it takes (the guard lets it, as the build fits `--max-hold`, 2 s by default); the online plan builds the index CONCURRENTLY.\n");
    print!("{section}");
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md");
    locksmith_sandbox::bench_doc::write_section(&doc, "rehearse", &section).unwrap();
}
