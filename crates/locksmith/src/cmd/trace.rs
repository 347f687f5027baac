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
//! than `--lock-timeout`, by the same size estimate as `lint --database-url`'s
//! LS601 ([`traffic_hold`]): running it for real would block that traffic.
//! A trace that gave up blocked exits 3, its blockers named in the report.
//! Through a pooler it works as directly (one transaction, one backend);
//! `--direct-url` moves it off the pool ([`live_settings`]).

use std::path::PathBuf;

use locksmith_core::analysis::{analyze_after, analyze_in, Schema, Statement, StatementKind};
use locksmith_core::duration::human;
use locksmith_core::lint::live::{self, bytes, traffic_hold};
use locksmith_core::lint::{lint, Finding, Severity};
use locksmith_pg::trace::{self, LiveLimits, Method, StatementTrace, Target};
use locksmith_sandbox::bin_dir::BinDir;
use locksmith_sandbox::cluster::{Cluster, ClusterOptions};
use miette::miette;

use crate::cli::TraceArgs;
use crate::exit::{CmdResult, Failure, Outcome};
use crate::render::lint::{LintedFile, Traced};

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
            }),
        ),
        None => {
            let bin = server_binaries(args.pg_bin.as_ref(), args.pg_version)?;
            let cluster = Cluster::start_with(ClusterOptions {
                bin: Some(bin),
                ..Default::default()
            })?;
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
    let traces = trace::trace(&settings, target, &setup, &models).await?;
    for ((file, model), traces) in files.iter_mut().zip(models).zip(traces) {
        let Ok(report) = &mut file.result else {
            continue;
        };
        for ((linted, model), trace) in report.statements.iter_mut().zip(model).zip(traces) {
            linted.add_findings(&options, findings(&model.kind, &trace));
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

/// The route the live trace takes: `--database-url`, or when a direct route
/// is given (`--direct-url`, `LOCKSMITH_DIRECT_URL`) that one, checked to
/// lead to the same server with no pooler in between; then the trace's one
/// long transaction takes no slot of the pool. Through a pooler without it
/// the trace works too: everything it does is inside that one transaction,
/// so it stays on one backend, whose pid is read after `BEGIN`.
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
    // Said in every format: trace's JSON and SARIF are lint's report contract.
    super::note_pooler("trace", &client, &settings, true);
    if !settings.has_direct() {
        return Ok(settings);
    }
    settings.connect_direct(&client).await?;
    Ok(settings.direct().clone())
}

/// Refuses (exit 2), before anything runs on the live server, a migration
/// with a statement that would hold a traffic-blocking lock while it
/// rewrites or scans a table for longer than `--lock-timeout`, or on a table
/// whose size cannot be read now. The statements are analysed against the
/// live catalog (so a change that rewrites nothing is not refused); table
/// sizes come from a read-only session, as for `lint --database-url`.
async fn refuse_long_holds(
    settings: &locksmith_pg::ConnectionSettings,
    setup: &str,
    files: &[LintedFile],
    version: u32,
    limits: LiveLimits,
) -> Result<(), Failure> {
    let client = super::connect(&settings.with_application_name("locksmith trace")).await?;
    let mut by_file: Vec<(&str, Vec<Statement>)> = Vec::new();
    for f in files {
        if f.result.is_ok() {
            let statements = analyze_after(setup, &f.text, version).unwrap_or_default();
            by_file.push((&f.path, statements));
        }
    }
    let names = live::relations(by_file.iter().flat_map(|(_, s)| s));
    let mut schema = Schema::default();
    locksmith_pg::tables::learn_schema(&client, &names, &mut schema).await?;
    let _ = analyze_in(&mut schema, setup, version);
    let facts = locksmith_pg::tables::facts(&client, &names).await?;
    // No probe: trace only refuses here, and conservative rates refuse sooner.
    let throughput = locksmith_core::hold::Throughput::default_because("trace does not probe");
    let mut refused = Vec::new();
    for f in files.iter().filter(|f| f.result.is_ok()) {
        for s in analyze_in(&mut schema, &f.text, version).unwrap_or_default() {
            let unknown = s.rewrites.iter().chain(&s.scans).find(|r| {
                s.lock_on(r).is_some_and(|m| m.blocks_traffic())
                    && facts.get(*r).is_some_and(|f| f.bytes.is_none())
            });
            let why =
                match (traffic_hold(&s, &facts, &throughput), unknown) {
                    (Some(e), _) if e.hold >= limits.lock_timeout => format!(
                    "{} `{}` (about {} rows, {}) under {} for roughly {} (estimate), longer than \
                     --lock-timeout {} lets traffic wait",
                    if e.rewrite { "rewrites" } else { "reads all of" },
                    e.relation,
                    e.facts.rows.max(0),
                    bytes(e.facts.bytes.unwrap_or(0)),
                    e.mode,
                    human(e.hold),
                    human(limits.lock_timeout),
                ),
                    (_, Some(r)) => format!(
                        "rewrites or reads all of `{r}`, whose size cannot be read now (a session \
                     holds or awaits a strong lock on it)"
                    ),
                    _ => continue,
                };
            refused.push(format!("{}:{}: {why}", f.path, s.line));
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(Failure::input(miette!(
        "not traced on --database-url: running these statements for real would block the \
         server's traffic\n  {}\ntrace them on a throwaway cluster instead: `locksmith trace` \
         without --database-url, with the tables they need created by --setup FILE",
        refused.join("\n  ")
    )))
}

/// The tracer's own findings for one statement.
fn findings(kind: &StatementKind, t: &StatementTrace) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(error) = &t.error {
        out.push(Finding {
            rule: trace::STATEMENT_FAILED,
            severity: Severity::Error,
            message: format!("the statement failed on the server: {error}"),
            fix: None,
            size: None,
        });
    }
    if !t.differences.is_empty() {
        out.push(Finding {
            rule: trace::MODEL_MISMATCH,
            severity: Severity::Warning,
            message: format!(
                "the server did not do what lint's model predicts: {}",
                t.differences.join("; ")
            ),
            fix: None,
            size: None,
        });
    }
    if t.method == Method::Blocked {
        let names: Vec<String> = t.blocked_by.iter().map(|h| h.session.label()).collect();
        out.push(Finding {
            rule: trace::NOT_TRACED,
            severity: Severity::Error,
            message: format!(
                "{}{}; no lock request was left waiting, and the statements after it were not \
                 run: end {} or trace on the throwaway cluster (without --database-url)",
                t.note.as_deref().unwrap_or("gave up, blocked"),
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" (blocked by {})", names.join(", "))
                },
                if names.len() == 1 {
                    "that session"
                } else {
                    "those sessions"
                },
            ),
            fix: None,
            size: None,
        });
    }
    if t.method == Method::NotTraced && !matches!(kind, StatementKind::Transaction(_)) {
        out.push(Finding {
            rule: trace::NOT_TRACED,
            severity: Severity::Warning,
            message: format!(
                "not traced: {}",
                t.note.as_deref().unwrap_or("no reason given")
            ),
            fix: None,
            size: None,
        });
    }
    out
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
