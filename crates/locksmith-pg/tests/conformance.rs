//! Conformance: every statement of `tests/conformance/catalogue.sql` is
//! traced on every PostgreSQL major version available and compared with
//! lint's model for that version; a disagreement fails the test. The
//! observations are the table in `docs/locks.md`, which this test writes
//! with `UPDATE_DOCS=1` and checks otherwise (when all of 13–18 ran).
//!
//! Versions: the system server plus each bin folder in `LOCKSMITH_PG_BINS`
//! (colon-separated; `scripts/pg-versions.sh` installs 13, 14, 16, 17, 18).
//! A listed folder without a server fails the test; so does a missing
//! version when `CI=true` (CI claims all of 13–18). Elsewhere a missing
//! version is skipped with a note.
//! One cluster per version; each case gets its own database, copied from a
//! template database that holds the catalogue's base schema.

use std::collections::BTreeMap;
use std::path::PathBuf;

use locksmith_core::analysis::analyze_after;
use locksmith_core::lock::LockMode;
use locksmith_pg::trace::{self, Method, StatementTrace, Target};
use locksmith_sandbox::bin_dir::BinDir;
use locksmith_sandbox::cluster::{Cluster, ClusterOptions};

const ALL_VERSIONS: [u32; 6] = [13, 14, 15, 16, 17, 18];

struct Case {
    name: String,
    setup: String,
    since: u32,
    sql: String,
}

struct Catalogue {
    base: String,
    cases: Vec<Case>,
}

fn catalogue() -> Catalogue {
    let text = include_str!("conformance/catalogue.sql");
    let mut base = String::new();
    let mut cases: Vec<Case> = Vec::new();
    let mut in_base = false;
    for line in text.lines() {
        if line.trim() == "-- @base" {
            in_base = true;
        } else if let Some(name) = line.strip_prefix("-- @case ") {
            in_base = false;
            cases.push(Case {
                name: name.trim().to_string(),
                setup: String::new(),
                since: 13,
                sql: String::new(),
            });
        } else if let Some(case) = cases.last_mut() {
            if let Some(sql) = line.strip_prefix("-- @setup ") {
                case.setup += sql;
                case.setup.push('\n');
            } else if let Some(v) = line.strip_prefix("-- @since ") {
                case.since = v.trim().parse().expect("@since takes a major version");
            } else if !line.trim().is_empty() && !line.starts_with("--") {
                case.sql += line;
                case.sql.push('\n');
            }
        } else if in_base {
            base += line;
            base.push('\n');
        }
    }
    Catalogue { base, cases }
}

/// The servers to trace on, one per major version: each bin folder in
/// `LOCKSMITH_PG_BINS` (every one must hold a server) and the default one.
fn versions() -> BTreeMap<u32, BinDir> {
    let listed = BinDir::listed().unwrap_or_else(|e| panic!("conformance: {e}"));
    let mut found = BTreeMap::new();
    for b in listed.into_iter().chain(BinDir::find(None).ok()) {
        found.entry(b.major).or_insert(b);
    }
    found
}

/// CI claims every version in [`ALL_VERSIONS`]; a missing one fails it there.
fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// What one case did on one version.
struct Cell {
    trace: Option<StatementTrace>,
    problem: Option<String>,
}

async fn run_version(bin: BinDir, catalogue: &Catalogue) -> Vec<Cell> {
    let version = bin.major;
    let cluster = Cluster::start_with(ClusterOptions {
        bin: Some(bin),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("starting PostgreSQL {version}: {e}"));
    let template = cluster.create_database("base").await.unwrap();
    {
        let client = template.connect().await.unwrap();
        client
            .batch_execute(&catalogue.base)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL {version}: base schema: {e}"));
    }
    let admin = cluster
        .settings("postgres", "conformance")
        .connect()
        .await
        .unwrap();
    let mut out = Vec::new();
    // By index: an iterator held across the awaits trips rustc's Send check (#110338).
    for i in 0..catalogue.cases.len() {
        let case = &catalogue.cases[i];
        if version < case.since {
            out.push(Cell {
                trace: None,
                problem: None,
            });
            continue;
        }
        let db = format!("case{i}");
        admin
            .batch_execute(&format!("CREATE DATABASE {db} TEMPLATE base"))
            .await
            .unwrap();
        let settings = cluster.settings(&db, "conformance");
        let context = format!("{}{}", catalogue.base, case.setup);
        let model = analyze_after(&context, &case.sql, version)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let cell = match trace::trace(&settings, Target::Sandbox, &case.setup, &[model]).await {
            Ok(mut files) => {
                let t = files.remove(0).remove(0);
                let problem = if let Some(e) = &t.error {
                    Some(format!("failed: {e}"))
                } else if !t.differences.is_empty() {
                    Some(t.differences.join("; "))
                } else {
                    None
                };
                Cell {
                    trace: Some(t),
                    problem,
                }
            }
            Err(e) => Cell {
                trace: None,
                problem: Some(format!("trace failed: {e}")),
            },
        };
        out.push(cell);
        admin
            .batch_execute(&format!("DROP DATABASE {db}"))
            .await
            .unwrap();
    }
    out
}

fn short(mode: LockMode) -> &'static str {
    match mode {
        LockMode::AccessShare => "AS",
        LockMode::RowShare => "RS",
        LockMode::RowExclusive => "RX",
        LockMode::ShareUpdateExclusive => "SUX",
        LockMode::Share => "S",
        LockMode::ShareRowExclusive => "SRX",
        LockMode::Exclusive => "X",
        LockMode::AccessExclusive => "AX",
    }
}

/// One table cell: the compared locks, the rewrites, how it was seen.
fn cell_text(cell: &Cell) -> String {
    let Some(t) = &cell.trace else {
        return "n/a".into();
    };
    let mut parts: Vec<String> = t
        .observed
        .iter()
        .filter(|o| matches!(o.kind, 'r' | 'p' | 'v' | 'm' | 'f' | 'S') || t.observed.len() == 1)
        .map(|o| format!("{} {}", short(o.mode), o.relation))
        .collect();
    if parts.is_empty() {
        parts.push("none".into());
    }
    for r in &t.rewrites {
        parts.push(format!("**rewrites** {r}"));
    }
    let mut text = parts.join("<br>");
    match t.method {
        Method::Transaction => {}
        Method::SecondSession => text += " †",
        Method::NotTraced | Method::Blocked => text = "not traced".into(),
    }
    if cell.problem.is_some() {
        text += " ❌";
    }
    text
}

fn markdown(catalogue: &Catalogue, results: &BTreeMap<u32, Vec<Cell>>) -> String {
    let mut out = String::from(
        "# What each statement locks, observed\n\n\
         <!-- Generated by crates/locksmith-pg/tests/conformance.rs from tests/conformance/catalogue.sql; \
         run `bash scripts/pg-versions.sh`, then `UPDATE_DOCS=1 LOCKSMITH_PG_BINS=… cargo test -p pg-locksmith-pg --test conformance`. -->\n\n\
         Every statement below was run by `locksmith trace` on a real server of each major version, \
         after the catalogue's base schema (`users`, `orders` with index `orders_user_idx`, partitioned \
         `events` with partition `events_2024`, materialized view `user_counts`, …) and the case's own setup. \
         A cell lists the new locks the statement's backend held afterwards on tables, views, materialized \
         views and sequences (strongest mode per relation; index locks are left out unless the statement \
         names the index), and the tables whose data file was replaced (`relfilenode` changed). \
         The conformance test fails when lint's model for that version says otherwise, so `locksmith lint` \
         reports exactly this table.\n\n\
         Modes: AS AccessShare, RS RowShare, RX RowExclusive, SUX ShareUpdateExclusive, S Share, \
         SRX ShareRowExclusive, X Exclusive, AX AccessExclusive. † traced from second sessions: the \
         statement cannot run in a transaction block, so other sessions held each named table and the \
         lock it queued for was read from `pg_locks` (locks on indexes are not observed that way). \
         n/a: the statement does not exist in that version.\n\n",
    );
    let versions: Vec<u32> = results.keys().copied().collect();
    out += "| statement | ";
    out += &versions
        .iter()
        .map(|v| format!("PG {v}"))
        .collect::<Vec<_>>()
        .join(" | ");
    out += " |\n|---|";
    out += &"---|".repeat(versions.len());
    out.push('\n');
    for (i, case) in catalogue.cases.iter().enumerate() {
        let sql = case.sql.trim().trim_end_matches(';').replace('|', "\\|");
        let mut row = format!("| {}<br>`{}` |", case.name, sql);
        for v in &versions {
            row += &format!(" {} |", cell_text(&results[v][i]));
        }
        out += &row;
        out.push('\n');
    }
    out += STANDBYS;
    out
}

/// Written by hand (measured with a standby, not by this test), kept in the generated file.
const STANDBYS: &str = r#"
## Hot standbys replay ACCESS EXCLUSIVE

Measured on PostgreSQL 15 with a streaming hot standby on the same machine (`crates/locksmith-sandbox`'s `Cluster::start_standby`, `crates/locksmith/tests/replica.rs`):

- Only `AccessExclusiveLock` is WAL-logged, when it is taken. The record leaves the primary with the next WAL flush: the commit of any transaction with an xid on any connection (with `synchronous_commit = on`, at once), or the WAL writer (`wal_writer_delay`, 200 ms here with `synchronous_commit = off`). It does not wait for the migration's own commit: the standby's startup process held the lock about 200 ms after `LOCK`, while the primary's transaction was still open.
- A standby session reading the table (a running query, or one idle in its transaction) makes the startup process wait (`wait_event` `Lock:relation`); all replay stops, and every new read of the table on the standby queues behind it, until the reader ends or `max_standby_streaming_delay` (30 s by default; -1 never) cancels it.
- Rolling back on the primary does not release it: the abort record arrives (the receive LSN moves) but replay is stuck at the lock record before it; the standby stayed blocked until its reader ended.
- The waiting startup process shows in `pg_stat_activity` (`backend_type` `startup`, `wait_event_type` `Lock`) and its request in `pg_locks` (not granted), but `pg_blocking_pids` of it is empty: its blockers are the sessions holding a conflicting lock on the relation in `pg_locks` (what `blockers --replica` reports). Reads that queue behind it do list its pid in `pg_blocking_pids`.

So the guard cannot see the conflict in time after taking the lock; it looks before. With `apply --replica URL`, every look also reads each standby's sessions that hold a lock conflicting with the plan's `ACCESS EXCLUSIVE` locks (relation oids are the primary's on a physical standby). Because replay cannot give up as `NOWAIT` does, no standby session is raced, whatever its age: each is waited out without locking (and, under `--terminate-idle-after`, terminated once idle in its transaction that long). A query that starts on the standby after the look and before the replay of the lock is the remaining window. What this costs when a standby's readers never stop: [standby.md](standby.md).
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_matches_the_model_on_every_version() {
    let catalogue = catalogue();
    assert!(
        catalogue.cases.len() >= 70,
        "the catalogue needs ≥ 70 statements"
    );
    let available = versions();
    let missing: Vec<u32> = ALL_VERSIONS
        .into_iter()
        .filter(|v| !available.contains_key(v))
        .collect();
    if !missing.is_empty() {
        let what = format!(
            "PostgreSQL {missing:?} not available (run scripts/pg-versions.sh and set LOCKSMITH_PG_BINS)"
        );
        assert!(
            !required(),
            "conformance: CI=true requires every version: {what}"
        );
        eprintln!("conformance: {what}; skipped");
    }
    assert!(!available.is_empty(), "no PostgreSQL server found");
    let catalogue = std::sync::Arc::new(catalogue);
    let mut tasks = Vec::new();
    for (v, bin) in available {
        let catalogue = catalogue.clone();
        tasks.push((
            v,
            tokio::spawn(async move { run_version(bin, &catalogue).await }),
        ));
    }
    let mut results = BTreeMap::new();
    for (v, task) in tasks {
        results.insert(v, task.await.expect("a version's run panicked"));
    }
    let mut problems = Vec::new();
    for (v, cells) in &results {
        for (case, cell) in catalogue.cases.iter().zip(cells) {
            if let Some(p) = &cell.problem {
                problems.push(format!("PG {v} `{}`: {p}", case.sql.trim()));
            }
        }
    }
    let complete = ALL_VERSIONS.iter().all(|v| results.contains_key(v));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/locks.md");
    let want = markdown(&catalogue, &results);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        assert!(
            complete,
            "docs/locks.md needs every version 13–18 (LOCKSMITH_PG_BINS)"
        );
        std::fs::write(&path, &want).unwrap();
    }
    assert!(
        problems.is_empty(),
        "{} disagreements between the server and lint's model:\n{}",
        problems.len(),
        problems.join("\n")
    );
    if complete {
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/locks.md is stale: run `UPDATE_DOCS=1 cargo test -p pg-locksmith-pg --test conformance`"
        );
    } else {
        eprintln!("conformance: not every version ran; docs/locks.md not checked");
    }
}
