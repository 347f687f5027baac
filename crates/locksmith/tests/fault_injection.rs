//! Fault injection: `kill -9` of `apply` or a server restart at a random
//! moment of a folder that mixes transactional migrations and concurrent
//! index builds, then one rerun. After every fault:
//! - a transactional migration's effects and its history row are both there
//!   or both absent;
//! - a recorded concurrent build's index exists and is valid (an unrecorded
//!   one may be absent, INVALID, or finished by the server after the kill:
//!   the rerun's job);
//! - one rerun exits 0, records everything, and leaves no INVALID index.
//!
//! 20 trials run in CI; `scripts/bench-faults.sh` runs 100 (ignored test
//! below) and writes the figures into docs/benchmarks.md.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use locksmith_pg::Connection;
use locksmith_sandbox::Cluster;

/// A table whose key function sleeps 1 ms a row: each concurrent build below
/// takes a few hundred milliseconds, so faults land inside builds too.
const MIGRATIONS: [(&str, &str); 5] = [
    (
        "1_items.sql",
        "CREATE TABLE items (id int PRIMARY KEY, name text);
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 100) g;
CREATE FUNCTION slow_key(i int) RETURNS int IMMUTABLE LANGUAGE plpgsql
  AS $$ BEGIN PERFORM pg_sleep(0.001); RETURN i; END $$;
SELECT pg_sleep(0.05);
",
    ),
    (
        "2_items_slow.sql",
        "CREATE INDEX CONCURRENTLY items_slow ON items (slow_key(id));\n",
    ),
    (
        "3_orders.sql",
        "CREATE TABLE orders (id int, item int REFERENCES items);
INSERT INTO orders SELECT g, g FROM generate_series(1, 100) g;
SELECT pg_sleep(0.05);
",
    ),
    (
        "4_orders_id.sql",
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS orders_id ON orders (slow_key(id));\n",
    ),
    (
        "5_items_note.sql",
        "ALTER TABLE items ADD COLUMN note text;
UPDATE items SET note = 'noted';
",
    ),
];

/// Versions applied in one transaction each (their effects and row commit together).
const TRANSACTIONAL: [i64; 3] = [1, 3, 5];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Kill,
    Restart,
}

/// What the trials saw.
#[derive(Debug, Default)]
struct Stats {
    /// The server's major version.
    major: u32,
    trials: u32,
    kills: u32,
    restarts: u32,
    /// Migrations recorded when the fault struck, summed over trials.
    recorded_before_rerun: u32,
    /// INVALID indexes a fault left for the rerun to drop and rebuild.
    invalid_left: u32,
    /// Valid, unrecorded indexes a fault left (the server finished the build).
    built_unrecorded: u32,
    /// Rerun durations.
    reruns: Vec<Duration>,
}

/// A small xorshift generator: seeded from the clock, or `LOCKSMITH_FAULT_SEED`.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("LOCKSMITH_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("fault injection seed: LOCKSMITH_FAULT_SEED={seed}");
        Rng(seed | 1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn apply(url: &str, dir: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["apply", dir.to_str().unwrap(), "--format", "json"])
        .env("DATABASE_URL", url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

async fn count(client: &Connection, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// Polls until no session of a killed `apply` is left in the database (the
/// server ends them once it notices the client is gone).
async fn wait_until_gone(client: &Connection) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(
        client,
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await
        > 0
    {
        assert!(Instant::now() < deadline, "a killed apply's session stayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Which migrations' effects are fully present, by version; `None` for a
/// concurrent build whose index is INVALID.
async fn effects(client: &Connection) -> Vec<(i64, Option<bool>)> {
    let index = |name: &'static str| async move {
        let row = client
            .query_opt(
                "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass($1)",
                &[&name],
            )
            .await
            .unwrap();
        match row.map(|r| r.get::<_, bool>(0)) {
            None => Some(false),
            Some(true) => Some(true),
            Some(false) => None,
        }
    };
    let items = count(
        client,
        "SELECT count(*) FROM pg_class WHERE relname = 'items'",
    )
    .await
        == 1;
    let orders = count(
        client,
        "SELECT count(*) FROM pg_class WHERE relname = 'orders'",
    )
    .await
        == 1;
    let note = count(
        client,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'note'",
    )
    .await
        == 1;
    if items {
        assert_eq!(
            count(client, "SELECT count(*) FROM items").await,
            100,
            "items half-filled"
        );
    }
    if orders {
        assert_eq!(
            count(client, "SELECT count(*) FROM orders").await,
            100,
            "orders half-filled"
        );
    }
    if note {
        assert_eq!(
            count(client, "SELECT count(*) FROM items WHERE note = 'noted'").await,
            100,
            "note half-updated"
        );
    }
    vec![
        (1, Some(items)),
        (2, index("items_slow").await),
        (3, Some(orders)),
        (4, index("orders_id").await),
        (5, Some(note)),
    ]
}

async fn recorded(client: &Connection) -> Vec<i64> {
    match client
        .query(
            "SELECT version FROM locksmith_migrations ORDER BY version",
            &[],
        )
        .await
    {
        Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
        Err(_) => Vec::new(), // the fault came before the history table existed
    }
}

/// Runs `n` trials on one private cluster; panics on the first broken invariant.
async fn trials(n: u32) -> Stats {
    let mut cluster = Cluster::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in MIGRATIONS {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    let mut rng = Rng::new();
    let mut stats = Stats {
        major: cluster.major(),
        ..Stats::default()
    };

    // How long a whole run takes here, to spread the faults over it.
    let settings = cluster.create_database("calibrate").await.unwrap();
    let started = Instant::now();
    let out = apply(&cluster.url("calibrate"), dir.path())
        .wait_with_output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let full_run = started.elapsed();
    drop(settings);

    for trial in 0..n {
        let db = format!("trial_{trial}");
        let settings = cluster.create_database(&db).await.unwrap();
        let url = cluster.url(&db);
        let fault = if rng.unit() < 0.7 {
            Fault::Kill
        } else {
            Fault::Restart
        };
        let at = full_run.mul_f64(rng.unit());
        let mut child = apply(&url, dir.path());
        tokio::time::sleep(at).await;
        match fault {
            Fault::Kill => {
                stats.kills += 1;
                let _ = child.kill();
            }
            Fault::Restart => {
                stats.restarts += 1;
                cluster.restart().unwrap();
            }
        }
        let _ = child.wait();
        let client = settings.connect().await.unwrap();
        wait_until_gone(&client).await;

        let found = effects(&client).await;
        let rows = recorded(&client).await;
        let context =
            format!("trial {trial} ({fault:?} after {at:?}): effects {found:?}, recorded {rows:?}");
        for (version, state) in &found {
            let is_recorded = rows.contains(version);
            if TRANSACTIONAL.contains(version) {
                assert_eq!(*state, Some(is_recorded), "{context}");
            } else if is_recorded {
                assert_eq!(*state, Some(true), "{context}");
            } else if state.is_none() {
                stats.invalid_left += 1;
            } else if *state == Some(true) {
                stats.built_unrecorded += 1;
            }
        }
        stats.recorded_before_rerun += rows.len() as u32;

        let started = Instant::now();
        let out = apply(&url, dir.path()).wait_with_output().unwrap();
        stats.reruns.push(started.elapsed());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{context}: the rerun failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(recorded(&client).await, vec![1, 2, 3, 4, 5], "{context}");
        let after = effects(&client).await;
        assert!(
            after.iter().all(|(_, s)| *s == Some(true)),
            "{context}: after the rerun {after:?}"
        );
        assert_eq!(
            count(
                &client,
                "SELECT count(*) FROM pg_index WHERE NOT indisvalid"
            )
            .await,
            0,
            "{context}: an INVALID index survived the rerun"
        );
        stats.trials += 1;
        drop(client);
        let admin = cluster
            .settings("postgres", "fault-injection")
            .connect()
            .await
            .unwrap();
        admin
            .batch_execute(&format!("DROP DATABASE {db}"))
            .await
            .unwrap();
    }
    stats
}

#[tokio::test]
async fn twenty_random_faults_each_need_one_rerun() {
    let stats = trials(20).await;
    eprintln!("{stats:?}");
    assert_eq!(stats.trials, 20);
}

/// 100 trials (or `LOCKSMITH_FAULT_TRIALS`), figures into docs/benchmarks.md.
/// Run with `scripts/bench-faults.sh`.
#[tokio::test]
#[ignore = "benchmark: run with scripts/bench-faults.sh"]
async fn fault_injection_benchmark() {
    let n = std::env::var("LOCKSMITH_FAULT_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let started = Instant::now();
    let stats = trials(n).await;
    let mut reruns = stats.reruns.clone();
    reruns.sort();
    let ms = |d: Duration| d.as_millis();
    let median = reruns[reruns.len() / 2];
    let worst = reruns[reruns.len() - 1];
    let body = format!(
        "## Faults: kill -9 or restart at a random moment, then one rerun\n\n\
         `scripts/bench-faults.sh` ({}; PostgreSQL {}; {} trials in {:.0} s).\n\
         Folder: 3 transactional migrations and 2 concurrent index builds (one `IF NOT EXISTS`, unique).\n\
         The fault strikes uniformly within one full run's time.\n\n\
         | | |\n|---|---|\n\
         | trials | {} ({} kill -9, {} server restarts) |\n\
         | transactional migrations with effects but no row, or a row but no effects | 0 |\n\
         | reruns that failed | 0 |\n\
         | INVALID indexes left after the rerun | 0 |\n\
         | migrations already recorded when the fault struck (mean) | {:.2} of 5 |\n\
         | INVALID indexes left by the fault (the rerun dropped and rebuilt them) | {} |\n\
         | valid but unrecorded indexes left by the fault (the rerun recognised and recorded them) | {} |\n\
         | rerun duration, median / worst | {} ms / {} ms |\n\n",
        locksmith_sandbox::bench_doc::machine(),
        stats.major,
        stats.trials,
        started.elapsed().as_secs_f64(),
        stats.trials,
        stats.kills,
        stats.restarts,
        f64::from(stats.recorded_before_rerun) / f64::from(stats.trials),
        stats.invalid_left,
        stats.built_unrecorded,
        ms(median),
        ms(worst),
    );
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md");
    locksmith_sandbox::bench_doc::write_section(&doc, "faults", &body).unwrap();
    print!("{body}");
}
