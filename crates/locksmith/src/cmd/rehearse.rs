//! `locksmith rehearse`: the user's migration, on a throwaway cluster, at
//! their size, under traffic — plain, guarded and (with `--online`) online.
//!
//! This module turns arguments into a [`Plan`]: it reads the files, builds
//! the schema (setup files, earlier migrations, or a live server read-only),
//! loads synthetic rows and picks the traffic; the runs are
//! `locksmith_sandbox::rehearsal`'s, the rendering `render::rehearse`'s.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use locksmith_core::analysis::{self, Statement};
use locksmith_pg::guard::GuardPolicy;
use locksmith_pg::ConnectionSettings;
use locksmith_sandbox::bin_dir::BinDir;
use locksmith_sandbox::cluster::{Cluster, ClusterOptions};
use locksmith_sandbox::rehearsal::{self, mix, source, stage, Plan, Way};
use locksmith_sandbox::traffic::TrafficProfile;
use miette::miette;

use crate::cli::{ConnectionArgs, Format, RehearseArgs};
use crate::exit::{CmdResult, Failure, Outcome};
use crate::render::rehearse::{self as render, Rehearsal};

/// Rows per table when neither a live size nor `--rows` says otherwise.
const DEFAULT_ROWS: i64 = 100_000;
/// Requests per second of the default mix, all tables together.
const DEFAULT_RATE: f64 = 40.0;

pub async fn run(args: RehearseArgs) -> CmdResult {
    let quiet = args.format == Format::Json;
    let say = |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    let (earlier, (label, migration)) = migration_files(&args.paths)?;
    let mut setup = Vec::new();
    for p in &args.setup {
        let text = std::fs::read_to_string(p)
            .map_err(|e| Failure::input(miette!("reading {}: {e}", p.display())))?;
        setup.push((p.display().to_string(), text));
    }
    setup.extend(earlier);
    let traffic_file = match &args.traffic {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| Failure::input(miette!("reading {}: {e}", p.display())))?;
            Some(mix::parse(&text).map_err(|e| Failure::input(miette!("{}: {e}", p.display())))?)
        }
        None => None,
    };
    if args.rows.is_some_and(|r| r < 0) || args.scale.is_some_and(|s| s.is_nan() || s <= 0.0) {
        return Err(Failure::input(miette!(
            "--rows and --scale must be positive"
        )));
    }

    let bin = BinDir::find(args.pg_bin.as_deref())?;
    let pg_dump = bin.tool("pg_dump");
    let options = ClusterOptions {
        bin: Some(bin),
        settings: vec![("max_connections".into(), "200".into())],
    };
    let cluster = tokio::task::spawn_blocking(move || Cluster::start_with(options))
        .await
        .map_err(|e| Failure::other(miette!("starting the cluster: {e}")))??;
    let version = cluster.major();

    // The migration, analysed after the schema files (which must parse too).
    let setup_sql: String = setup.iter().map(|(_, t)| format!("{t};\n")).collect();
    let statements = analyse(&label, &setup_sql, &migration, version)?;
    let touched: Vec<String> = statements
        .iter()
        .flat_map(|s| s.locks.iter().map(|l| l.relation.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    let mut live_rows = None;
    if let Some(url) = &args.database_url {
        let settings = read_route(&super::settings(&ConnectionArgs {
            database_url: Some(url.clone()),
            direct_url: args.direct_url.clone(),
        })?)
        .await?;
        say(&format!(
            "Reading the schema of {} (read-only) …",
            touched.join(", ")
        ));
        let live = source::read(&settings, &pg_dump, &touched).await?;
        setup.push((settings.describe(), live.sql));
        live_rows = Some(live.rows);
    }

    let rows_for = |table: &str| -> i64 {
        let live = live_rows.as_ref().and_then(|m| m.get(table)).copied();
        let base = live.unwrap_or(DEFAULT_ROWS);
        let scaled = args
            .scale
            .map_or(base, |s| (base as f64 * s).round() as i64);
        match (args.rows, live) {
            (Some(cap), Some(_)) => scaled.min(cap),
            (Some(rows), None) => rows,
            (None, _) => scaled,
        }
    };
    say(&format!(
        "Loading synthetic rows into a PostgreSQL {version} throwaway cluster …"
    ));
    let mut bar = ProgressBar::new(!quiet && std::io::stderr().is_terminal());
    let staged = stage::stage(&cluster, &setup, &touched, &rows_for, &mut |done, total| {
        bar.show(done, total)
    })
    .await?;
    bar.finish();
    let (loaded, tables) = (staged.load, staged.tables);
    if args.leaks > 0 && tables.is_empty() {
        say("  --leaks: the migration touches no table that exists before it; no sessions leaked");
    }
    let catalog = super::connect(&cluster.settings(stage::DATA_DB, "locksmith-rehearse")).await?;
    let queries = match traffic_file {
        Some(q) => q,
        None => mix::default_mix(&catalog, &tables).await?,
    };
    drop(catalog);
    let keys = tables
        .iter()
        .filter_map(|t| loaded.tables.iter().find(|l| &l.table == t))
        .map(|l| l.rows)
        .min()
        .unwrap_or(DEFAULT_ROWS)
        .clamp(1, i32::MAX as i64) as i32;
    let rate = if args.traffic.is_some() {
        queries.iter().map(|q| q.share).sum()
    } else {
        DEFAULT_RATE
    };
    let plan = Plan {
        statements,
        pg_version: version,
        traffic: TrafficProfile {
            rate,
            queries,
            keys,
            ..TrafficProfile::default()
        },
        leaks: args.leaks,
        leak_table: tables.first().cloned(),
        cap: args.cap,
        policy: GuardPolicy {
            deadline: args.cap,
            ..GuardPolicy::default()
        },
        template: stage::DATA_DB.into(),
        schema_template: stage::SCHEMA_DB.into(),
    };

    let rehearse_started = Instant::now();
    let mut ways = vec![Way::Naive, Way::Guarded];
    if args.online {
        ways.push(Way::Online);
    }
    let mut runs = Vec::new();
    for way in ways {
        say(&format!("Rehearsing {} …", render::title(way)));
        let run = rehearsal::rehearse(&cluster, &plan, way)
            .await
            .map_err(|e| Failure::other(miette!("the {} run: {e}", way.name())))?;
        say(&format!("  {}", run.outcome));
        runs.push(run);
    }
    let report = Rehearsal {
        runs,
        load: loaded,
        load_time: staged.load_time,
        rehearse_time: rehearse_started.elapsed(),
        max_stall: args.max_stall,
        leaks: if tables.is_empty() { 0 } else { args.leaks },
        leak_table: plan.leak_table.clone(),
        apply_dir: apply_dir(&args.paths),
    };

    if let Some(path) = &args.report {
        std::fs::write(path, render::html(&report))
            .map_err(|e| Failure::other(miette!("writing {}: {e}", path.display())))?;
        say(&format!("Report written to {}", path.display()));
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        Format::Json => crate::render::json(&mut out, &render::json(&report))?,
        Format::Human => {
            use std::io::Write;
            write!(
                out,
                "{}",
                render::human(&report, &crate::render::style::Style::detect())
            )?
        }
    }
    let stalled = report
        .runs
        .first()
        .is_some_and(|r| Duration::from_millis(r.max_stall_ms) > args.max_stall);
    Ok(if stalled {
        Outcome::Findings
    } else {
        Outcome::Done
    })
}

/// The schema files and the migration from the positional paths: a folder's
/// last `.sql` file is the migration and the earlier ones its schema; files
/// are the migration, in order. Read the way `lint` and `trace` read them.
/// Returns the schema files and `(name, text)` of the migration.
type Files = (Vec<(String, String)>, (String, String));

fn migration_files(paths: &[PathBuf]) -> Result<Files, Failure> {
    // A folder is read as `apply` reads it: every layout, in order, up sections only.
    if let [dir] = paths {
        if dir.is_dir() {
            let mut migrations: Vec<(String, String)> = super::sources::read_migrations(dir)?
                .into_iter()
                .map(|m| (m.path.clone(), m.up_sql().to_string()))
                .collect();
            let last = migrations.pop().ok_or_else(|| {
                Failure::input(miette!("no migrations found in {}", dir.display()))
            })?;
            return Ok((migrations, last));
        }
    }
    let files = super::lint::read_inputs(paths)?;
    let label = files
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(" + ");
    let migration = files.iter().map(|(_, t)| format!("{t};\n")).collect();
    Ok((Vec::new(), (label, migration)))
}

fn analyse(
    label: &str,
    setup: &str,
    migration: &str,
    version: u32,
) -> Result<Vec<Statement>, Failure> {
    let statements = analysis::analyze_after(setup, migration, version)
        .map_err(|e| Failure::input(miette!("{label}:{}:{}: {}", e.line, e.column, e.message)))?;
    if statements.is_empty() {
        return Err(Failure::input(miette!("the migration has no statements")));
    }
    Ok(statements)
}

/// The folder `apply` would read the rehearsed migration from: the folder
/// given, else the first file's.
fn apply_dir(paths: &[PathBuf]) -> String {
    let dir = match paths {
        [dir] if dir.is_dir() => dir.clone(),
        _ => paths
            .first()
            .and_then(|p| p.parent())
            .map(PathBuf::from)
            .unwrap_or_default(),
    };
    match dir.display().to_string() {
        d if d.is_empty() => ".".into(),
        d => d,
    }
}

/// The load's progress bar on stderr, drawn only on a terminal.
struct ProgressBar(Option<indicatif::ProgressBar>);

impl ProgressBar {
    fn new(on: bool) -> Self {
        ProgressBar(on.then(|| {
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "  [{bar:30}] {pos}/{len} rows, {per_sec}, {eta} left",
            ) {
                bar.set_style(style.progress_chars("#>-"));
            }
            bar
        }))
    }

    fn show(&mut self, done: i64, total: i64) {
        if let Some(bar) = &self.0 {
            bar.set_length(total.max(0) as u64);
            bar.set_position(done.max(0) as u64);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish();
        }
    }
}

/// Where the live schema is read from: `settings` itself, or behind a
/// connection pooler its direct route. `pg_dump` sets session settings
/// (`statement_timeout = 0`, `lock_timeout = 0`, `row_security`, …) that a
/// transaction pooler would leave on its backends for the application, so
/// without a direct route the read is refused before anything runs.
async fn read_route(settings: &ConnectionSettings) -> Result<ConnectionSettings, Failure> {
    // Any pooler is seen here (a statement pooler too: `connect` would hand
    // back the direct route, and pg_dump would then be sent to the pooler).
    let target = settings.connect().await.map_err(Failure::from)?;
    let Some(pooler) = target.pooler() else {
        return Ok(settings.clone());
    };
    if !settings.has_direct() {
        return Err(Failure::input(miette!(
            "--database-url goes through {pooler}. Reading the schema runs pg_dump, whose \
             session settings (statement_timeout = 0, lock_timeout = 0, …) would stay on the \
             pooler's backends for the application. Nothing was read. Give a URL straight to the \
             server with --direct-url (or LOCKSMITH_DIRECT_URL)"
        )));
    }
    super::note_pooler("rehearse", &target, settings, true);
    settings
        .connect_direct(&target)
        .await
        .map_err(Failure::from)?;
    Ok(settings.direct().clone())
}
