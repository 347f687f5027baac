//! Online type change benchmark (issue 21): `accounts.id int` (a serial
//! primary key) referenced by `payments.account_id`, both N rows, changed to
//! `bigint` under four writers and a reader: the plain statements against
//! `apply --online` (`migrate::Runner`, the engine `apply` drives), each on
//! a fresh copy of the same loaded database, beside a no-migration baseline
//! measured in the same run. Every write is counted client-side and checked
//! against the tables afterwards (the ledger): a lost write fails the bench.
//!
//! `BENCH_RETYPE` picks what is measured, each rewriting its own section of
//! docs/benchmarks.md:
//! - `side-by-side` (the default; section "retype"): the primary key plain
//!   and online, then the non-key column `accounts.balance int → bigint`
//!   plain, online and by reshape (`reshape migration start`, then
//!   `complete`; the peer's row is skipped, saying so, when `reshape` is not
//!   on `PATH`);
//! - `standby` (section "retype-standby"): the primary key online with a
//!   hot standby watched as a replica (`--max-lag` 1 s, the default) whose
//!   replay is paused for 10 s once the fill is a quarter done: how soon the
//!   fill pauses, the WAL written meanwhile, when it goes on;
//! - `online` (section "retype-online"): the primary key online only, for
//!   sizes where the plain run's outage is not worth waiting for (10M rows).
//!
//! `BENCH_ROWS` (comma-separated) sets the sizes: 1M by default, 10M for `online`.
//!
//!     cargo bench -p pg-locksmith-pg --bench retype                    # 1M rows
//!     BENCH_ROWS=100000 cargo bench -p pg-locksmith-pg --bench retype  # one size
//!     BENCH_RETYPE=standby cargo bench -p pg-locksmith-pg --bench retype
//!     BENCH_RETYPE=online cargo bench -p pg-locksmith-pg --bench retype  # 10M rows

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use locksmith_core::duration::human;
use locksmith_core::plan::Plan;
use locksmith_pg::guard::Event as GuardEvent;
use locksmith_pg::migrate::{self, Event, Policy, Runner, Status};
use locksmith_pg::online::{Throttle, STEPS_TABLE};
use locksmith_pg::{Connection, ConnectionSettings};
use locksmith_sandbox::{bench_doc, wait, Cluster};
use tokio::sync::watch;

/// The hard case: a referenced serial primary key and its referencing column.
const KEY: &str = "ALTER TABLE accounts ALTER COLUMN id TYPE bigint;
ALTER TABLE payments ALTER COLUMN account_id TYPE bigint;
";
/// A column nothing references: what reshape can change.
const NON_KEY: &str = "ALTER TABLE accounts ALTER COLUMN balance TYPE bigint;\n";
/// The same change in reshape's own migration format.
const RESHAPE_MIGRATION: &str = r#"[[actions]]
type = "alter_column"
table = "accounts"
column = "balance"
up = "balance::bigint"
down = "balance::integer"

	[actions.changes]
	type = "BIGINT"
"#;
const WRITERS: usize = 4;
/// Traffic before and after the migration, so its edges are inside the window.
const EDGE: Duration = Duration::from_secs(1);
/// The no-migration window.
const BASELINE: Duration = Duration::from_secs(5);
/// How long the standby's replay is paused in `standby` mode.
const REPLAY_PAUSE: Duration = Duration::from_secs(10);
/// How often the rows filled are read while replay is paused.
const SAMPLE: Duration = Duration::from_millis(10);

/// What `BENCH_RETYPE` asks for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    SideBySide,
    Standby,
    Online,
}

impl Mode {
    fn read() -> Mode {
        match std::env::var("BENCH_RETYPE").as_deref() {
            Err(_) | Ok("") | Ok("side-by-side") => Mode::SideBySide,
            Ok("standby") => Mode::Standby,
            Ok("online") => Mode::Online,
            Ok(other) => panic!("BENCH_RETYPE: side-by-side, standby or online, not {other:?}"),
        }
    }

    fn section(self) -> &'static str {
        match self {
            Mode::SideBySide => "retype",
            Mode::Standby => "retype-standby",
            Mode::Online => "retype-online",
        }
    }

    fn default_rows(self) -> &'static str {
        match self {
            Mode::Online => "10000000",
            _ => "1000000",
        }
    }
}

/// What the traffic saw over one window.
#[derive(Default)]
struct Seen {
    worst_read_ms: AtomicU64,
    worst_write_ms: AtomicU64,
    /// When the worst write began.
    worst_write_began: Mutex<Option<Instant>>,
    updates: AtomicU64,
    inserts: AtomicU64,
    failed: AtomicU64,
    /// What failed, each message once (the first few).
    errors: Mutex<Vec<String>>,
}

impl Seen {
    /// Counts a failed request (`what`: the statement, `why`: the error or
    /// the row count it returned instead of one).
    fn fail(&self, what: &str, why: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        let message = format!("{what}: {why}");
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 3 && !errors.contains(&message) {
            errors.push(message);
        }
    }
}

/// A request's error as the server said it, else as the client did.
fn error(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
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
                    let took = t.elapsed().as_millis() as u64;
                    if seen.worst_write_ms.fetch_max(took, Ordering::Relaxed) < took {
                        *seen.worst_write_began.lock().unwrap() = Some(t);
                    }
                    match updated {
                        Ok(1) => {
                            seen.updates.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(n) => seen.fail("UPDATE", format!("{n} rows")),
                        Err(e) => seen.fail("UPDATE", error(&e)),
                    };
                    match inserted {
                        Ok(1) => {
                            seen.inserts.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(n) => seen.fail("INSERT", format!("{n} rows")),
                        Err(e) => seen.fail("INSERT", error(&e)),
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
                if let Err(e) = client
                    .query_one("SELECT balance FROM accounts WHERE id = $1", &[&id])
                    .await
                {
                    seen2.fail("SELECT", error(&e));
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

/// What one migration run reports besides what the traffic saw.
#[derive(Default)]
struct Ran {
    /// The fill's best rows/s (online runs).
    rows_per_second: Option<f64>,
    /// Why the run did not finish, for the note under the table.
    failed: Option<String>,
    /// When each online step began, and which (online runs).
    steps: Vec<(Instant, String)>,
}

struct Row {
    label: String,
    took_ms: u64,
    worst_read_ms: u64,
    worst_write_ms: u64,
    writes: u64,
    failed: u64,
    /// What failed (the first few distinct messages).
    errors: Vec<String>,
    lost: i64,
    wal_bytes: i64,
    ran: Ran,
    /// The changed columns after the run: type, NOT NULL, default.
    after: String,
    /// The online step running when the worst write began.
    worst_write_during: Option<String>,
}

impl Row {
    /// Whether every changed column is `bigint` now.
    fn bigint(&self) -> bool {
        self.after
            .split("; ")
            .all(|c| c.split(' ').nth(1) == Some("bigint"))
    }
}

/// A fresh copy of the loaded database `template`.
async fn copy(cluster: &Cluster, template: &str, name: &str) -> ConnectionSettings {
    let admin = cluster
        .settings("postgres", "bench")
        .connect()
        .await
        .unwrap();
    // From 15 on, a copy is WAL-logged block by block unless told otherwise:
    // gigabytes of WAL at 10M rows, for a standby to replay before it is of use.
    let strategy = if cluster.major() >= 15 {
        " STRATEGY FILE_COPY"
    } else {
        ""
    };
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {name} TEMPLATE {template}{strategy}"
        ))
        .await
        .unwrap();
    cluster.settings(name, "bench")
}

/// Drops a copy once measured: at 10M rows each holds gigabytes.
async fn drop_copy(cluster: &Cluster, name: &str) {
    let admin = cluster
        .settings("postgres", "bench")
        .connect()
        .await
        .unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}

/// The primary's WAL position now.
async fn lsn(client: &Connection) -> String {
    client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0)
}

/// Bytes of WAL written since `from` (an [`lsn`]).
async fn wal_since(client: &Connection, from: &str) -> i64 {
    client
        .query_one(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::text::pg_lsn)::int8",
            &[&from],
        )
        .await
        .unwrap()
        .get(0)
}

/// Rows the online fills have covered so far, as their batches record them.
async fn rows_filled(client: &Connection) -> i64 {
    client
        .query_one(
            &format!("SELECT coalesce(sum(rows_done), 0)::int8 FROM {STEPS_TABLE} WHERE unit >= 0"),
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// One window: traffic, then `run` after [`EDGE`], then [`EDGE`] more; the
/// ledger checked against the tables, the changed `columns` (`table`, `column`) read after.
async fn window<F, Fut>(
    label: String,
    settings: &ConnectionSettings,
    rows: i32,
    columns: &[(&str, &str)],
    run: F,
) -> Row
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Ran>,
{
    let client = settings.connect().await.unwrap();
    let traffic = Traffic::start(settings, rows).await;
    tokio::time::sleep(EDGE).await;
    let wal_from = lsn(&client).await;
    let started = Instant::now();
    let ran = run().await;
    let took_ms = started.elapsed().as_millis() as u64;
    let wal_bytes = wal_since(&client, &wal_from).await;
    tokio::time::sleep(EDGE).await;
    let seen = traffic.stop().await;
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
    let mut after = Vec::new();
    for (table, column) in columns {
        let described: String = client
            .query_one(
                "SELECT a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                        || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
                        || coalesce(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
                   FROM pg_attribute a
                   LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                  WHERE a.attrelid = $1::text::regclass AND a.attname = $2",
                &[table, column],
            )
            .await
            .unwrap()
            .get(0);
        after.push(described);
    }
    let errors = std::mem::take(&mut *seen.errors.lock().unwrap());
    let began = *seen.worst_write_began.lock().unwrap();
    let worst_write_during = began.filter(|_| !ran.steps.is_empty()).map(|began| {
        match ran.steps.iter().rev().find(|(at, _)| *at <= began) {
            Some((_, step)) => step.clone(),
            None => "before the first step".to_string(),
        }
    });
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
        errors,
        lost: (updates - balance).abs() + (i64::from(rows) + inserts - payments).abs(),
        wal_bytes,
        ran,
        after: after.join("; "),
        worst_write_during,
    }
}

/// A progress event of the fill, as the engine reported it.
struct Progress {
    at: Instant,
    rows_done: i64,
    rows_per_second: f64,
    paused: Option<String>,
}

/// `apply --online` of `migration` through the engine, watching `replicas`;
/// every fill event kept, and its rows done sent to `progress`.
async fn online(
    settings: &ConnectionSettings,
    migration: &str,
    replicas: Vec<ConnectionSettings>,
    progress: watch::Sender<i64>,
) -> (Ran, Vec<Progress>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("1_bigint.sql"), migration).unwrap();
    let plan = Plan::new(dir.path(), migrate::read_folder(dir.path()).unwrap(), None).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let steps = Arc::new(Mutex::new(Vec::new()));
    let stepped = steps.clone();
    let policy = Policy {
        online: true,
        replicas,
        ..Policy::default()
    };
    let report = Runner::new(settings.clone(), policy)
        .on_event(move |e| {
            if let Event::Guard(GuardEvent::OnlineStep {
                number, of, sql, ..
            }) = e
            {
                let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
                let sql: String = sql.chars().take(70).collect();
                stepped
                    .lock()
                    .unwrap()
                    .push((Instant::now(), format!("step {number} of {of} (`{sql}…`)")));
            }
            if let Event::Guard(GuardEvent::Backfill {
                rows_done,
                rows_per_second,
                paused,
                ..
            }) = e
            {
                progress.send_replace(rows_done);
                kept.lock().unwrap().push(Progress {
                    at: Instant::now(),
                    rows_done,
                    rows_per_second,
                    paused: paused.map(str::to_string),
                });
            }
        })
        .run(plan)
        .await
        .unwrap();
    assert_eq!(report.status, Status::Applied, "{:?}", report.error);
    let events = std::mem::take(&mut *seen.lock().unwrap());
    let taken = std::mem::take(&mut *steps.lock().unwrap());
    let best = events
        .iter()
        .map(|p| p.rows_per_second)
        .fold(None, |best: Option<f64>, r| {
            Some(best.unwrap_or(0.0).max(r))
        });
    (
        Ran {
            rows_per_second: best,
            failed: None,
            steps: taken,
        },
        events,
    )
}

/// reshape's `migration start`, then `migration complete`, of
/// [`RESHAPE_MIGRATION`] on the database at `url` (given in `DB_URL`, run in
/// a folder of its own, so no `.env` file or `migrations/` of ours is read).
async fn reshape(program: &std::path::Path, url: &str) -> Ran {
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).unwrap();
    std::fs::write(migrations.join("1_balance_bigint.toml"), RESHAPE_MIGRATION).unwrap();
    for args in [&["migration", "start"][..], &["migration", "complete"][..]] {
        let out = tokio::process::Command::new(program)
            .args(args)
            .current_dir(dir.path())
            .env("DB_URL", url)
            .output()
            .await;
        let why = match out {
            Ok(out) if out.status.success() => continue,
            Ok(out) => format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
                    .replace(url, "<url>")
                    .trim()
            ),
            Err(e) => e.to_string(),
        };
        return Ran {
            rows_per_second: None,
            failed: Some(format!("`reshape {}` failed ({why})", args.join(" "))),
            ..Ran::default()
        };
    }
    Ran::default()
}

/// What pausing the standby's replay did to the fill.
struct Pause {
    /// When the standby said its replay was paused.
    at: Instant,
    /// Rows the fills had covered then, `max_lag` later, and at the resume.
    filled_at_pause: i64,
    filled_after_lag: i64,
    filled_at_resume: i64,
    /// Batches committed after `max_lag` (increments of the rows filled,
    /// read every [`SAMPLE`]: a batch takes longer than that).
    batches_after_lag: usize,
    /// The median batch committed between the pause and `max_lag`.
    batch_before_lag: i64,
    /// WAL the primary wrote while replay was paused, and of it, after the
    /// first `max_lag` (while the fill should be paused).
    wal_bytes: i64,
    wal_after_lag: i64,
    paused_for: Duration,
    /// From the resume until the fill's next batch committed.
    went_on_after: Duration,
}

/// Pauses `standby`'s replay once `progress` reaches `at_rows`, for
/// [`REPLAY_PAUSE`], watching the fill on `primary` meanwhile.
async fn pause_replay(
    primary: &ConnectionSettings,
    standby: &ConnectionSettings,
    mut progress: watch::Receiver<i64>,
    at_rows: i64,
    max_lag: Duration,
) -> Pause {
    let primary = primary.connect().await.unwrap();
    let standby = standby.connect().await.unwrap();
    while *progress.borrow_and_update() < at_rows {
        progress
            .changed()
            .await
            .expect("the migration ended before its fill was a quarter done: use more BENCH_ROWS");
    }
    standby
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    wait::until(wait::BOUND, "the standby's replay to pause", || async {
        standby
            .query_one("SELECT pg_get_wal_replay_pause_state() = 'paused'", &[])
            .await
            .unwrap()
            .get::<_, bool>(0)
    })
    .await
    .unwrap();
    let at = Instant::now();
    let wal_from = lsn(&primary).await;
    let filled_at_pause = rows_filled(&primary).await;
    // Each batch's commit, as the rows filled grow: before `max_lag`, after it.
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let mut last = filled_at_pause;
    let mut wal_at_lag = None;
    let mut filled_after_lag = filled_at_pause;
    while at.elapsed() < REPLAY_PAUSE {
        tokio::time::sleep(SAMPLE).await;
        if wal_at_lag.is_none() && at.elapsed() >= max_lag {
            filled_after_lag = last;
            wal_at_lag = Some(lsn(&primary).await);
        }
        let now = rows_filled(&primary).await;
        if now > last {
            if wal_at_lag.is_none() {
                &mut before
            } else {
                &mut after
            }
            .push(now - last);
            last = now;
        }
    }
    let filled_at_resume = last;
    let wal_at_lag = wal_at_lag.expect("REPLAY_PAUSE is longer than --max-lag");
    before.sort_unstable();
    let wal_bytes = wal_since(&primary, &wal_from).await;
    let wal_after_lag = wal_since(&primary, &wal_at_lag).await;
    standby
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    let paused_for = at.elapsed();
    let resumed = Instant::now();
    wait::until(
        Duration::from_secs(60),
        "the fill to go on after the replay resumed",
        || async { rows_filled(&primary).await > filled_at_resume },
    )
    .await
    .unwrap();
    Pause {
        at,
        filled_at_pause,
        filled_after_lag,
        filled_at_resume,
        batches_after_lag: after.len(),
        batch_before_lag: before.get(before.len() / 2).copied().unwrap_or(0),
        wal_bytes,
        wal_after_lag,
        paused_for,
        went_on_after: resumed.elapsed(),
    }
}

/// Waits until `standby` has replayed all the primary has written so far.
async fn caught_up(primary: &ConnectionSettings, standby: &ConnectionSettings) {
    let primary = primary.connect().await.unwrap();
    let standby = standby.connect().await.unwrap();
    let written = lsn(&primary).await;
    wait::until(
        Duration::from_secs(300),
        "the standby to replay the loaded database",
        || async {
            standby
                .query_one(
                    "SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), $1::text::pg_lsn) >= 0",
                    &[&written],
                )
                .await
                .unwrap()
                .get::<_, bool>(0)
        },
    )
    .await
    .unwrap();
}

fn mb(bytes: i64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The table under "pause" of the standby run: what the fill did while
/// replay was paused, from the engine's events and the batches' own records.
fn pause_table(
    pause: &Pause,
    events: &[Progress],
    online: &Row,
    baseline: &Row,
    max_lag: Duration,
) -> String {
    let first_paused = events
        .iter()
        .find(|p| p.at >= pause.at && p.paused.is_some());
    let paused_events = events.iter().filter(|p| p.paused.is_some()).count();
    // What the traffic alone writes in `seconds`, at the baseline's rate.
    let traffic_wal = |seconds: f64| {
        (baseline.wal_bytes as f64 * seconds / (baseline.took_ms.max(1) as f64 / 1000.0)) as i64
    };
    let after_lag = pause.paused_for.saturating_sub(max_lag);
    let mut t = String::from("| while the standby's replay was paused | |\n|---|---|\n");
    let mut line = |what: &str, value: String| t.push_str(&format!("| {what} | {value} |\n"));
    line(
        "rows filled when replay paused",
        pause.filled_at_pause.to_string(),
    );
    line(
        "the fill's first paused event, after the replay paused",
        match first_paused {
            Some(p) => format!(
                "{} (at {} rows of its table): \"{}\"",
                human(p.at - pause.at),
                p.rows_done,
                p.paused.as_deref().unwrap_or_default()
            ),
            None => "none: the fill never paused".into(),
        },
    );
    line(
        &format!(
            "rows filled from the pause + `--max-lag` ({}) to the resume",
            human(max_lag)
        ),
        format!(
            "{} in {} batches (the median batch between the pause and then: {} rows)",
            pause.filled_at_resume - pause.filled_after_lag,
            pause.batches_after_lag,
            pause.batch_before_lag
        ),
    );
    line("replay paused for", human(pause.paused_for));
    line(
        "WAL written on the primary meanwhile",
        format!(
            "{}, of which {} in the last {} (the traffic alone, at the baseline's rate: {}); the whole online run: {}",
            mb(pause.wal_bytes),
            mb(pause.wal_after_lag),
            human(after_lag),
            mb(traffic_wal(after_lag.as_secs_f64())),
            mb(online.wal_bytes)
        ),
    );
    line(
        "the fill's next batch after the resume",
        format!(
            "{} later; {paused_events} paused events in all; the migration finished: {}",
            human(pause.went_on_after),
            if online.bigint() { "yes" } else { "no" }
        ),
    );
    t
}

/// What one size measured: the rows of its table, how long the load took, notes.
struct Measured {
    rows: Vec<Row>,
    load_ms: u64,
    notes: Vec<String>,
}

/// Loads `accounts` and `payments` with `rows` rows each into a template
/// database, then measures each run `mode` asks for on a copy of it.
async fn size(
    cluster: &Cluster,
    standby: Option<&Cluster>,
    reshape_program: Option<&std::path::Path>,
    mode: Mode,
    rows: i32,
) -> Measured {
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
    wait::until(wait::BOUND, "the load's session to end", || async {
        let left: i64 = postgres
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&loaded],
            )
            .await
            .unwrap()
            .get(0);
        left == 0
    })
    .await
    .unwrap();
    let key: &[(&str, &str)] = &[("accounts", "id"), ("payments", "account_id")];
    let non_key: &[(&str, &str)] = &[("accounts", "balance")];
    let mut out = Vec::new();
    let mut notes = Vec::new();

    let name = format!("{loaded}_baseline");
    let baseline = copy(cluster, &loaded, &name).await;
    out.push(
        window(
            format!("baseline: no migration ({})", human(BASELINE)),
            &baseline,
            rows,
            key,
            || async {
                tokio::time::sleep(BASELINE).await;
                Ran::default()
            },
        )
        .await,
    );
    drop_copy(cluster, &name).await;

    if mode == Mode::SideBySide {
        for (label, sql, column) in [
            ("plain `ALTER … TYPE bigint`, key on both tables", KEY, key),
            (
                "plain `ALTER … TYPE bigint`, `accounts.balance`",
                NON_KEY,
                non_key,
            ),
        ] {
            let name = format!("{loaded}_plain_{}", column[0].1);
            let plain = copy(cluster, &loaded, &name).await;
            let plain_client = plain.connect().await.unwrap();
            out.push(
                window(label.into(), &plain, rows, column, || async {
                    plain_client.batch_execute(sql).await.unwrap();
                    Ran::default()
                })
                .await,
            );
            drop(plain_client);
            drop_copy(cluster, &name).await;
        }
    }

    type Run<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let online_runs: &[Run] = match mode {
        Mode::SideBySide => &[
            ("`apply --online`, key on both tables", KEY, key),
            ("`apply --online`, `accounts.balance`", NON_KEY, non_key),
        ],
        Mode::Online => &[("`apply --online`, key on both tables", KEY, key)],
        Mode::Standby => &[],
    };
    for &(label, sql, column) in online_runs {
        let name = format!("{loaded}_online_{}", column[0].1);
        let on = copy(cluster, &loaded, &name).await;
        out.push(
            window(label.into(), &on, rows, column, || async {
                online(&on, sql, Vec::new(), watch::channel(0).0).await.0
            })
            .await,
        );
        drop_copy(cluster, &name).await;
    }

    if let Some(standby) = standby {
        let name = format!("{loaded}_standby");
        let on = copy(cluster, &loaded, &name).await;
        let control = standby.settings("postgres", "bench");
        caught_up(&on, &control).await;
        let max_lag = Throttle::default().max_lag;
        let mut paused = None;
        let slot = &mut paused;
        let (on_ref, control_ref) = (&on, &control);
        let replica = standby.settings("postgres", "locksmith");
        let row = window(
            format!(
                "`apply --online`, key on both tables, standby replay paused {}",
                human(REPLAY_PAUSE)
            ),
            &on,
            rows,
            key,
            move || async move {
                let (tx, rx) = watch::channel(0);
                let ((ran, events), pause) = tokio::join!(
                    online(on_ref, KEY, vec![replica], tx),
                    pause_replay(on_ref, control_ref, rx, i64::from(rows) / 4, max_lag)
                );
                *slot = Some((pause, events));
                ran
            },
        )
        .await;
        let (pause, events) = paused.expect("the standby run measured its pause");
        notes.push(pause_table(&pause, &events, &row, &out[0], max_lag));
        out.push(row);
        drop_copy(cluster, &name).await;
    }

    if mode == Mode::SideBySide {
        match reshape_program {
            Some(program) => {
                let name = format!("{loaded}_reshape");
                let settings = copy(cluster, &loaded, &name).await;
                let url = cluster.url(&name);
                let row = window(
                    "reshape `migration start` + `complete`, `accounts.balance`".into(),
                    &settings,
                    rows,
                    non_key,
                    || reshape(program, &url),
                )
                .await;
                if let Some(why) = &row.ran.failed {
                    notes.push(format!("The reshape row did not finish: {why}.\n"));
                }
                out.push(row);
                drop_copy(cluster, &name).await;
            }
            None => notes.push(
                "No reshape row: `reshape` is not on `PATH` (`cargo install reshape`, then rerun).\n"
                    .into(),
            ),
        }
    }
    Measured {
        rows: out,
        load_ms,
        notes,
    }
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mode = Mode::read();
    let sizes = bench_doc::rows(mode.default_rows());
    let load_before = bench_doc::load_average();
    // At 10M rows a smaller WAL ceiling than the default 1 GB: the fills
    // checkpoint as they go instead of holding gigabytes of WAL on disk.
    let settings = match mode {
        Mode::Online => vec![("max_wal_size".into(), "256MB".into())],
        _ => Vec::new(),
    };
    let cluster = Cluster::start_with(locksmith_sandbox::cluster::ClusterOptions {
        settings,
        ..Default::default()
    })
    .unwrap();
    let standby = (mode == Mode::Standby).then(|| cluster.start_standby(&[]).unwrap());
    let reshape_program = if mode == Mode::SideBySide {
        bench_doc::on_path("reshape")
    } else {
        None
    };
    let mut section = format!("## {}\n\n", mode.section());
    let env = match mode {
        Mode::SideBySide => "",
        Mode::Standby => "BENCH_RETYPE=standby ",
        Mode::Online => "BENCH_RETYPE=online ",
    };
    section.push_str(&format!(
        "`{env}cargo bench -p pg-locksmith-pg --bench retype` (source: `crates/locksmith-pg/benches/retype.rs`).\n"
    ));
    let what = match mode {
        Mode::SideBySide => {
            "Key: `accounts.id` (serial primary key) and `payments.account_id` referencing it, \
             both changed from `integer` to `bigint`; non-key: `accounts.balance` alone, the \
             change reshape can make (its migration file is `RESHAPE_MIGRATION` in the source)."
        }
        Mode::Standby => {
            "Key: `accounts.id` (serial primary key) and `payments.account_id` referencing it, \
             both changed from `integer` to `bigint`, online, with a streaming hot standby on \
             the same machine watched as a replica (`--replica`, `--max-lag` 1 s, the default). \
             Once the first fill is a quarter done, the standby's replay is paused \
             (`pg_wal_replay_pause()`) for 10 s, then resumed. Rows filled are the batches' \
             own records (`locksmith_online_steps`), read every 10 ms while replay is paused, \
             each growth one batch; WAL is `pg_current_wal_lsn()` differences on the primary."
        }
        Mode::Online => {
            "Key: `accounts.id` (serial primary key) and `payments.account_id` referencing it, \
             both changed from `integer` to `bigint`, online only (the plain run is an outage \
             as long as both rewrites; see the section retype for its shape). `max_wal_size` 256 MB. \
             A report, no goal."
        }
    };
    section.push_str(&format!(
        "Machine: {}, PostgreSQL {} (sandbox, fsync off), profile {}. {what} N rows in each \
         table; {WRITERS} writers (an `UPDATE` of one account's balance, then an `INSERT` of a \
         payment, 5 ms apart) and a reader (one account by key every 20 ms); {} of traffic on \
         each side of the migration. Each run on its own copy of the loaded database. Writes \
         are counted by the clients and checked against the tables after (lost: the \
         difference). WAL: written on the primary during the migration. One run per cell.\n\n",
        bench_doc::machine(),
        cluster.major(),
        bench_doc::profile(),
        human(EDGE),
    ));
    for rows in sizes {
        let rows = i32::try_from(rows).expect("BENCH_ROWS: at most 2147483647 rows");
        let measured = size(
            &cluster,
            standby.as_ref(),
            reshape_program.as_deref(),
            mode,
            rows,
        )
        .await;
        let baseline = (
            measured.rows[0].worst_read_ms,
            measured.rows[0].worst_write_ms,
        );
        section.push_str(&format!(
            "**{rows} rows** each (loaded in {:.1} s)\n\n\
             | run | time | worst read | worst write | over baseline (read / write) | writes | failed | lost | WAL | fill rows/s | columns after |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n",
            measured.load_ms as f64 / 1000.0,
        ));
        for r in &measured.rows {
            section.push_str(&format!(
                "| {} | {} ms | {} ms | {} ms | {:+} / {:+} ms | {} | {} | {} | {} | {} | `{}` |\n",
                r.label,
                r.took_ms,
                r.worst_read_ms,
                r.worst_write_ms,
                r.worst_read_ms as i64 - baseline.0 as i64,
                r.worst_write_ms as i64 - baseline.1 as i64,
                r.writes,
                r.failed,
                r.lost,
                mb(r.wal_bytes),
                r.ran
                    .rows_per_second
                    .map(|r| format!("{r:.0}"))
                    .unwrap_or_else(|| "–".into()),
                r.after,
            ));
            eprintln!(
                "{rows} rows: {} took {} ms, worst read {} ms, worst write {} ms, lost {}",
                r.label, r.took_ms, r.worst_read_ms, r.worst_write_ms, r.lost
            );
        }
        section.push('\n');
        for r in measured.rows.iter().filter(|r| !r.errors.is_empty()) {
            section.push_str(&format!(
                "Failed requests of the run {}: {}.\n\n",
                r.label,
                r.errors
                    .iter()
                    .map(|e| format!("`{e}`"))
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        for r in &measured.rows {
            if let Some(step) = &r.worst_write_during {
                section.push_str(&format!(
                    "The worst write of the run {} began during {step}.\n\n",
                    r.label
                ));
            }
        }
        for note in &measured.notes {
            section.push_str(note);
            section.push('\n');
        }
        for r in &measured.rows {
            assert_eq!(r.lost, 0, "{}: writes were lost", r.label);
        }
    }
    let goal = match mode {
        Mode::Online => "A report: no goal.",
        _ => {
            "Goal (issue 21): the online runs' worst read and write within 100 ms of the \
             baseline's; 0 failed and 0 lost writes."
        }
    };
    section.push_str(&format!(
        "Load average (1, 5, 15 min) before: {load_before}; after: {}; the machine is shared \
         with other agents' builds, so compare each row with the baseline of its own run. {goal}\n",
        bench_doc::load_average(),
    ));
    print!("{section}");
    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/benchmarks.md");
    bench_doc::write_section(&doc, mode.section(), &section).unwrap();
}
