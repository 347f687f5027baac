//! Estimate benchmark (issue 23): the hold estimate (`throughput::Sizes`,
//! one probe per table size) against the hold measured, for rewrites, scans
//! and index builds on tables of 100k, 1M and 10M rows. Goal: within a
//! factor of 2. Rewrites the section "estimate" of docs/benchmarks.md.
//!
//!     cargo bench -p pg-locksmith-pg --bench estimate                    # 100k, 1M, 10M rows
//!     BENCH_ROWS=100000,1000000 cargo bench -p pg-locksmith-pg --bench estimate
//!
//! Each statement runs in a transaction that is rolled back, so every one
//! sees the same table; the time is the statement's alone.

use std::time::{Duration, Instant};

use locksmith_core::analysis::analyze;
use locksmith_core::duration::human;
use locksmith_pg::throughput::Sizes;
use locksmith_sandbox::Cluster;

/// What is measured: a label, the kind of work, the statement.
const CASES: &[(&str, &str, &str)] = &[
    (
        "rewrite",
        "`ALTER COLUMN id TYPE bigint` (+ primary key rebuilt)",
        "ALTER TABLE bench ALTER COLUMN id TYPE bigint",
    ),
    (
        "rewrite",
        "`ADD COLUMN … DEFAULT random()` (+ primary key rebuilt)",
        "ALTER TABLE bench ADD COLUMN token float8 DEFAULT random()",
    ),
    (
        "scan",
        "`ADD CONSTRAINT … CHECK`",
        "ALTER TABLE bench ADD CONSTRAINT bench_name_check CHECK (length(name) > 0)",
    ),
    (
        "scan",
        "`ALTER COLUMN … SET NOT NULL`",
        "ALTER TABLE bench ALTER COLUMN score SET NOT NULL",
    ),
    (
        "scan",
        "`ADD FOREIGN KEY` (validated)",
        "ALTER TABLE bench ADD CONSTRAINT bench_score_fk FOREIGN KEY (score) REFERENCES parent (id)",
    ),
    (
        "index",
        "`ADD CONSTRAINT … UNIQUE` (text key)",
        "ALTER TABLE bench ADD CONSTRAINT bench_informal_key UNIQUE (informal_name)",
    ),
    (
        "index",
        "`CREATE INDEX` (integer key)",
        "CREATE INDEX bench_score ON bench (score)",
    ),
];

struct Row {
    kind: &'static str,
    what: &'static str,
    estimated: Duration,
    measured: Duration,
}

async fn size(cluster: &Cluster, rows: u64) -> (Vec<Row>, Duration, String, String) {
    let name = format!("estimate_{rows}");
    let settings = cluster.create_database(&name).await.unwrap();
    let client = settings.connect().await.unwrap();
    let load = Instant::now();
    // The story's table, with a nullable integer that references a small table.
    client
        .batch_execute(&format!(
            "CREATE TABLE parent (id int PRIMARY KEY);
             INSERT INTO parent SELECT generate_series(1, 1000);
             CREATE TABLE bench (
               id serial PRIMARY KEY,
               name text NOT NULL,
               informal_name text NOT NULL,
               score int,
               created_at timestamptz NOT NULL DEFAULT now()
             );
             INSERT INTO bench (name, informal_name, score)
               SELECT 'University ' || i, md5(i::text), 1 + i % 1000
               FROM generate_series(1, {rows}) AS i"
        ))
        .await
        .unwrap();
    client.batch_execute("VACUUM ANALYZE bench").await.unwrap();
    client.batch_execute("VACUUM ANALYZE parent").await.unwrap();
    // The load's dirty pages written out now, not during the probe or a measurement.
    client.batch_execute("CHECKPOINT").await.unwrap();
    let load = load.elapsed();
    let statements: Vec<_> = CASES
        .iter()
        .map(|(_, _, sql)| analyze(sql, cluster.major()).unwrap().remove(0))
        .collect();
    let probe = Instant::now();
    let sizes = Sizes::read(&client, &statements).await.unwrap();
    let probe = human(probe.elapsed());
    let calibration = sizes.throughput.calibration.to_string();
    let mut out = Vec::new();
    for ((kind, what, sql), statement) in CASES.iter().zip(&statements) {
        let estimated = sizes.hold(statement).map_or(Duration::ZERO, |e| e.hold);
        client.batch_execute("BEGIN").await.unwrap();
        let started = Instant::now();
        client.batch_execute(sql).await.unwrap();
        let measured = started.elapsed();
        client.batch_execute("ROLLBACK").await.unwrap();
        eprintln!(
            "{rows} rows, {what}: estimated {}, measured {}",
            human(estimated),
            human(measured)
        );
        out.push(Row {
            kind,
            what,
            estimated,
            measured,
        });
    }
    drop(client);
    // Give the disk back before the next size.
    let admin = cluster
        .settings("postgres", "bench")
        .connect()
        .await
        .unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE {name}"))
        .await
        .unwrap();
    (out, load, probe, calibration)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sizes = locksmith_sandbox::bench_doc::rows("100000,1000000,10000000");
    // A smaller WAL ceiling than the default 1 GB: the 10M-row rewrites
    // checkpoint as they go instead of holding gigabytes of WAL on disk.
    let cluster = Cluster::start_with(locksmith_sandbox::cluster::ClusterOptions {
        settings: vec![("max_wal_size".into(), "256MB".into())],
        ..Default::default()
    })
    .unwrap();
    let load_before = locksmith_sandbox::bench_doc::load_average();
    let mut section = String::from("## estimate\n\n");
    section.push_str(
        "`cargo bench -p pg-locksmith-pg --bench estimate` (source: `crates/locksmith-pg/benches/estimate.rs`).\n",
    );
    section.push_str(&format!(
        "Machine: {}, PostgreSQL {} (sandbox: fsync off, shared_buffers 32MB, max_wal_size 256MB), profile {}. \
         The hold estimate (`locksmith_pg::throughput::Sizes`: table sizes from the catalog, \
         rates from one probe per size) against the statement's time, measured in a \
         transaction rolled back; a table shaped like the story's (`id serial` primary key, \
         two texts with random keys, an integer, a timestamp; ~100 bytes a row), vacuumed and \
         analysed. One run per cell. Goal (issue 23): every ratio between 0.5 and 2.\n\n",
        locksmith_sandbox::bench_doc::machine(),
        cluster.major(),
        locksmith_sandbox::bench_doc::profile(),
    ));
    let mut worst: f64 = 1.0;
    for rows in sizes {
        let (results, load, probe, calibration) = size(&cluster, rows).await;
        section.push_str(&format!(
            "### {rows} rows (load {}, probe {probe}: {calibration})\n\n\
             | work | statement | estimated | measured | estimated / measured |\n|---|---|---|---|---|\n",
            human(load)
        ));
        for r in &results {
            let ratio = r.estimated.as_secs_f64() / r.measured.as_secs_f64().max(1e-6);
            worst = worst.max(ratio.max(1.0 / ratio.max(1e-6)));
            section.push_str(&format!(
                "| {} | {} | {} | {} | {:.2} |\n",
                r.kind,
                r.what,
                human(r.estimated),
                human(r.measured),
                ratio
            ));
        }
        section.push('\n');
    }
    section.push_str(&format!(
        "Load average (1, 5, 15 min) before: {load_before}; after: {}. Worst factor: {worst:.2}.\n",
        locksmith_sandbox::bench_doc::load_average()
    ));
    print!("{section}");
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md");
    locksmith_sandbox::bench_doc::write_section(&doc, "estimate", &section).unwrap();
}
