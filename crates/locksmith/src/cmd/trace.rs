//! `locksmith trace`: run a migration on a throwaway cluster (or, rolled
//! back, on `--database-url`), and report per statement the locks it took,
//! the tables it rewrote and the constraints it added, with lint's findings
//! and the places where lint's model was wrong.
//!
//! This module picks the server, reads the files and turns the tracer's
//! observations into the lint report shape so that `render::lint` draws
//! both; the tracing itself is `locksmith_pg::trace`'s.
//!
//! On `--database-url` it first refuses (exit 2) a migration with a statement
//! that would rewrite or scan a table under a traffic-blocking lock for longer
//! than `--lock-timeout` (`trace::live::long_holds`, the estimate of `lint
//! --database-url`'s LS601): running it for real would block that traffic.
//! A trace that gave up blocked exits 3, its blockers named in the report.
//! Through a pooler it works as directly (one transaction, one backend);
//! `--direct-url` moves it off the pool (`trace::live::direct_route`).

use std::path::PathBuf;

use locksmith_core::analysis::analyze_after;
use locksmith_core::lint::lint;
use locksmith_pg::trace::{self, LiveLimits, Method, Target};
use locksmith_sandbox::bin_dir::BinDir;
use locksmith_sandbox::cluster::{Cluster, ClusterOptions};
use miette::miette;

use crate::cli::{LintFormat, TraceArgs};
use crate::exit::{CmdResult, Failure, Outcome};
use crate::render::lint::{LintedFile, Traced};
use crate::render::progress::EventLines;
use crate::render::style::Style;
use locksmith_pg::guard::Event;

pub async fn run(args: TraceArgs) -> CmdResult {
    let config = super::lint::load_config(args.config.as_deref())?;
    let inputs = super::lint::read_inputs(&args.paths)?;
    let setup = match &args.setup {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| Failure::input(miette!("reading {}: {e}", p.display())))?,
        None => String::new(),
    };
    if let (Some(p), Err(e)) = (&args.setup, analyze_after("", &setup, 18)) {
        return Err(Failure::input(miette!(
            "{}:{}:{}: {}",
            p.display(),
            e.line,
            e.column,
            e.message
        )));
    }
    // Keeps the throwaway cluster alive until the trace is done.
    let mut _cluster = None;
    let (settings, target) = match &args.database_url {
        Some(url) => (
            live_settings(url, args.direct_url.as_deref()).await?,
            Target::Live(LiveLimits {
                lock_timeout: args.lock_timeout,
                max_hold: args.max_hold,
                deadline: args.deadline,
            }),
        ),
        None => {
            let bin = server_binaries(args.pg_bin.as_ref(), args.pg_version)?;
            let cluster = Cluster::start_async(ClusterOptions {
                bin: Some(bin),
                ..Default::default()
            })
            .await?;
            let settings = cluster.create_database("trace").await?;
            _cluster = Some(cluster);
            (settings, Target::Sandbox)
        }
    };
    let server = {
        let client = super::connect(&settings).await?;
        trace::catalog::server_major(&client).await?
    };
    let version = args.pg_version.unwrap_or(server);
    if version != server {
        eprintln!(
            "locksmith trace: comparing with lint's model for PostgreSQL {version}, on a PostgreSQL {server} server"
        );
    }
    let options = config.options(Some(version));

    let mut files = Vec::new();
    let mut models = Vec::new();
    for (path, text) in inputs {
        let result = lint(&text, &options);
        // The model with what the setup taught it (types, indexes), to compare with.
        let model = match (&result, analyze_after(&setup, &text, version)) {
            (Ok(_), Ok(model)) => model,
            _ => Vec::new(),
        };
        models.push(model);
        files.push(LintedFile {
            path,
            text,
            result,
            traced: Vec::new(),
        });
    }
    if let Target::Live(limits) = target {
        refuse_long_holds(&settings, &setup, &files, version, limits).await?;
    }
    // The guard's waiting line, on stderr (none under a machine format).
    let lines = EventLines::new(args.format != LintFormat::Human, Style::detect());
    let waiting = |holders: &[locksmith_pg::guard::Holder], next_look: std::time::Duration| {
        lines.print(&Event::Waiting { holders, next_look });
    };
    let traces = trace::trace_with(&settings, target, &setup, &models, &waiting).await?;
    for ((file, model), traces) in files.iter_mut().zip(models).zip(traces) {
        let Ok(report) = &mut file.result else {
            continue;
        };
        for ((linted, model), trace) in report.statements.iter_mut().zip(model).zip(traces) {
            linted.add_findings(&options, trace::findings(&model.kind, &trace));
            linted.statement.locks = trace.locks.clone();
            linted.statement.rewrites = trace.rewrites.clone();
            // Scans are not observed; the model's are in `trace.model`.
            linted.statement.scans.clear();
            file.traced.push(Traced { trace, model });
        }
    }

    crate::render::lint_report(&mut crate::output::stdout(), args.format, &files)?;
    let blocked = files
        .iter()
        .flat_map(|f| &f.traced)
        .any(|t| t.trace.method == Method::Blocked);
    Ok(match super::lint::outcome(&files) {
        Outcome::Code(2) => Outcome::Code(2),
        _ if blocked => Outcome::Blocked,
        outcome => outcome,
    })
}

/// The route the live trace takes (`trace::live::direct_route`), the
/// pooler said on stderr in every format: trace's JSON and SARIF are lint's
/// report contract.
async fn live_settings(
    url: &str,
    direct_url: Option<&str>,
) -> Result<locksmith_pg::ConnectionSettings, Failure> {
    let settings = super::settings(&crate::cli::ConnectionArgs {
        database_url: Some(url.to_string()),
        direct_url: direct_url.map(str::to_string),
    })?
    .with_application_name("locksmith trace");
    let client = super::connect(&settings).await?;
    super::note_pooler("trace", &client, &settings, true);
    Ok(trace::live::direct_route(&settings, &client).await?)
}

/// Refuses (exit 2), before anything runs on the live server, the
/// statements `trace::live::long_holds` finds would block its traffic.
async fn refuse_long_holds(
    settings: &locksmith_pg::ConnectionSettings,
    setup: &str,
    files: &[LintedFile],
    version: u32,
    limits: LiveLimits,
) -> Result<(), Failure> {
    let client = super::connect(&settings.with_application_name("locksmith trace")).await?;
    let parsed: Vec<(&str, &str)> = files
        .iter()
        .filter(|f| f.result.is_ok())
        .map(|f| (f.path.as_str(), f.text.as_str()))
        .collect();
    let refused = trace::live::long_holds(&client, setup, &parsed, version, limits).await?;
    match refused.is_empty() {
        true => Ok(()),
        false => Err(Failure::bad_input(trace::live::LongHolds(refused))),
    }
}

/// The server binaries for the throwaway cluster: `--pg-bin`, else the
/// first of `LOCKSMITH_PG_BIN`, `LOCKSMITH_PG_BINS` and the usual places
/// with the requested major version, else the default server.
fn server_binaries(explicit: Option<&PathBuf>, version: Option<u32>) -> Result<BinDir, Failure> {
    if let Some(dir) = explicit {
        return BinDir::at(dir).ok_or_else(|| {
            Failure::input(miette!(
                "{} holds no PostgreSQL server (initdb, postgres)",
                dir.display()
            ))
        });
    }
    let Some(version) = version else {
        return Ok(BinDir::find(None)?);
    };
    BinDir::find_major(version)
        .ok_or_else(|| {
            Failure::input(miette!(
                "no PostgreSQL {version} server binaries found; install them (scripts/pg-versions.sh) and \
                 list their bin folder in LOCKSMITH_PG_BINS, or pass --pg-bin"
            ))
        })
}
