//! `locksmith rehearse`: the user's migration, on a throwaway cluster, at
//! their size, under traffic — plain, guarded and (with `--online`) online.
//!
//! This module reads the files and arguments and hands them to
//! `locksmith_sandbox::rehearsal`: `prepare` (analysis, rows per table,
//! traffic), `source` (a live server's schema, read-only), `stage` (the
//! load) and the runs; the rendering is `render::rehearse`'s.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use locksmith_pg::guard::GuardPolicy;
use locksmith_sandbox::bin_dir::BinDir;
use locksmith_sandbox::rehearsal::{self, mix, prepare, source, stage, Plan, Way};
use miette::miette;

use crate::cli::{ConnectionArgs, Format, RehearseArgs};
use crate::exit::{CmdResult, Failure, Outcome};
use crate::render::progress::LoadBar;
use crate::render::rehearse::{self as render, Rehearsal};

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
    let cluster = prepare::start_cluster(bin).await?;
    let version = cluster.major();

    // The migration, analysed after the schema files (which must parse too).
    let statements = prepare::analyse(&label, &setup, &migration, version)?;
    let touched = prepare::touched(&statements);

    let mut sizes = prepare::Sizes {
        live: None,
        rows: args.rows,
        scale: args.scale,
    };
    if let Some(url) = &args.database_url {
        let given = super::settings(&ConnectionArgs {
            database_url: Some(url.clone()),
            direct_url: args.direct_url.clone(),
        })?;
        let (settings, pooler) = source::read_route(&given).await?;
        if let Some(pooler) = pooler {
            eprintln!(
                "{}",
                crate::render::pooler_notice("rehearse", &pooler, true)
            );
        }
        say(&format!(
            "Reading the schema of {} (read-only) …",
            touched.join(", ")
        ));
        let live = source::read(&settings, &pg_dump, &touched).await?;
        setup.push((settings.describe(), live.sql));
        sizes.live = Some(live.rows);
    }

    say(&format!(
        "Loading synthetic rows into a PostgreSQL {version} throwaway cluster …"
    ));
    let mut bar = LoadBar::new(!quiet && std::io::stderr().is_terminal());
    let staged = stage::stage(
        &cluster,
        &setup,
        &touched,
        &|t| sizes.rows_for(t),
        &mut |done, total| bar.show(done, total),
    )
    .await?;
    bar.finish();
    if args.leaks > 0 && staged.tables.is_empty() {
        say("  --leaks: the migration touches no table that exists before it; no sessions leaked");
    }
    let plan = Plan {
        statements,
        pg_version: version,
        traffic: prepare::traffic(&cluster, &staged, traffic_file).await?,
        leaks: args.leaks,
        leak_table: staged.tables.first().cloned(),
        cap: args.cap,
        policy: GuardPolicy {
            deadline: args.cap,
            ..GuardPolicy::default()
        },
        template: stage::DATA_DB.into(),
        schema_template: stage::SCHEMA_DB.into(),
    };
    let (loaded, tables) = (staged.load, staged.tables);

    let rehearse_started = Instant::now();
    let mut ways = vec![Way::Naive, Way::Guarded];
    if args.online {
        ways.push(Way::Online);
    }
    let mut runs = Vec::new();
    for way in ways {
        say(&format!("Rehearsing {} …", render::title(way)));
        let run = rehearsal::rehearse(&cluster, &plan, way).await?;
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
/// last `.sql` file is the migration and the earlier ones its schema
/// (`prepare::migration_folder`); files are the migration, in order, read
/// the way `lint` and `trace` read them.
fn migration_files(paths: &[PathBuf]) -> Result<prepare::Files, Failure> {
    if let [dir] = paths {
        if dir.is_dir() {
            return Ok(prepare::migration_folder(dir)?);
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
