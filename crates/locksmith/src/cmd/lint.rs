//! `locksmith lint`: read SQL files, directories or stdin, lint each with
//! `locksmith-core`, render, and pick the exit code (0 clean, 1 error
//! findings, 2 bad input such as a syntax error or a missing file).
//!
//! This module does the I/O (files, `locksmith.toml`) and nothing else: the
//! analysis is the core's, the formatting `render::lint`'s. Without a server
//! each file is linted and written statement by statement
//! (`lint_each` into a `render::lint::Sink`), so a 50 MB file needs about
//! its own size in memory; with `--database-url` the whole report is graded
//! first (the live facts are per file) and then written.

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use locksmith_core::analysis::{analyze, Schema};
use locksmith_core::lint::live::{self, Blocking};
use locksmith_core::lint::{lint_each, lint_in, Config, LintedStatement, Options, Severity};
use locksmith_pg::guard::look;
use miette::miette;

use crate::cli::{ConnectionArgs, LintArgs};
use crate::exit::{CmdResult, Failure, Outcome};
use crate::render::lint::LintedFile;

/// The name stdin is reported under.
pub const STDIN: &str = "<stdin>";

pub async fn run(args: LintArgs) -> CmdResult {
    let config = load_config(args.config.as_deref())?;
    let mut options = config.options(args.pg_version);
    options.assume_in_transaction |= args.assume_in_transaction;
    if args.fix {
        return fix(&args.paths, &options, args.diff);
    }
    let inputs = lint_inputs(&args.paths, &options)?;
    // Files in order through one schema: each is judged against what the
    // earlier ones left — and, with a live server, against its catalog.
    let mut schema = Schema::default();
    let Some(url) = &args.database_url else {
        return stream(&inputs, &mut schema, args.format);
    };
    let client = Some(live_session(url).await?);
    if let Some(client) = &client {
        let statements: Vec<_> = inputs
            .iter()
            .filter_map(|(_, text, _)| analyze(text, options.pg_version).ok())
            .flatten()
            .collect();
        let names = live::relations(&statements);
        locksmith_pg::tables::learn_schema(client, &names, &mut schema).await?;
    }
    let mut files: Vec<LintedFile> = inputs
        .into_iter()
        .map(|(path, text, options)| {
            let result = lint_in(&mut schema, &text, &options);
            LintedFile {
                path,
                text,
                result,
                traced: Vec::new(),
            }
        })
        .collect();
    if let Some(client) = &client {
        grade_live(client, &mut files, &options).await?;
    }
    crate::render::lint_report(&mut crate::output::stdout(), args.format, &files)?;
    Ok(outcome(&files))
}

/// Without a server: each file linted statement by statement and written as
/// it goes, so memory stays bounded by the largest statement (and, for the
/// formats that list findings after the statements, one file's findings),
/// not by the input.
fn stream(inputs: &[Input], schema: &mut Schema, format: crate::cli::LintFormat) -> CmdResult {
    let mut stdout = crate::output::stdout();
    let mut sink = crate::render::lint_sink(&mut stdout, format);
    let mut worst = None;
    let mut syntax_errors = Vec::new();
    for (path, text, options) in inputs {
        let mut written: std::io::Result<bool> = Ok(false);
        let mut each = |s: LintedStatement| {
            worst = worst.max(s.findings.iter().map(|f| f.severity).max());
            if let Ok(false) = written {
                written = sink.begin_file(path).map(|()| true);
            }
            if let Ok(true) = written {
                written = sink.statement(&s, None).map(|()| true);
            }
        };
        match lint_each(schema, text, options, &mut each) {
            Ok(file_findings) => {
                if !written? {
                    sink.begin_file(path)?;
                }
                worst = worst.max(file_findings.iter().map(|f| f.finding.severity).max());
                sink.end_file(path, text, &file_findings)?;
            }
            Err(e) => {
                sink.syntax_error(path, text, &e)?;
                syntax_errors.push((path, e));
            }
        }
    }
    sink.finish()?;
    drop(sink);
    // The contract: `FILE:LINE:COLUMN: message`, on stderr, for every format.
    for (path, e) in &syntax_errors {
        eprintln!("{path}:{}:{}: {}", e.line, e.column, e.message);
    }
    Ok(if !syntax_errors.is_empty() {
        Outcome::Code(2)
    } else if worst == Some(Severity::Error) {
        Outcome::Findings
    } else {
        Outcome::Done
    })
}

/// `--database-url`: every catalog read runs in a read-only transaction that
/// gives up after a short `lock_timeout` (`locksmith_pg::tables`), so lint
/// never queues behind the locks it reports, and sets nothing on the session:
/// the same through a pooler. A pooler is said on stderr in every format
/// (lint's JSON and SARIF are the lint report contract).
async fn live_session(url: &str) -> Result<locksmith_pg::Connection, Failure> {
    let settings = super::settings(&ConnectionArgs {
        database_url: Some(url.to_string()),
        direct_url: None,
    })?
    .with_application_name("locksmith lint");
    let client = super::connect(&settings).await?;
    super::note_pooler("lint", &client, &settings, true);
    Ok(client)
}

/// Adds the findings only a live server can give (table sizes, sessions in
/// the way now). Reads the catalog; changes nothing.
async fn grade_live(
    client: &locksmith_pg::Connection,
    files: &mut [LintedFile],
    options: &locksmith_core::lint::Options,
) -> Result<(), Failure> {
    // One probe of the server's throughput for the whole run.
    let statements = files
        .iter()
        .filter_map(|f| f.result.as_ref().ok())
        .flat_map(|r| r.statements.iter().map(|s| &s.statement));
    let sizes = locksmith_pg::throughput::Sizes::read(client, statements).await?;
    for file in files.iter_mut() {
        let Ok(report) = file.result.as_mut() else {
            continue;
        };
        for stmt in &mut report.statements {
            let holders = look::holders(client, &stmt.statement.locks).await?;
            let blocking = holders.first().map(|h| Blocking {
                sessions: holders.len(),
                first: h.label(),
            });
            live::grade(
                stmt,
                &sizes.facts,
                &sizes.throughput,
                blocking.as_ref(),
                options,
            );
        }
    }
    Ok(())
}

pub(super) fn outcome(files: &[LintedFile]) -> Outcome {
    let mut syntax_error = false;
    for f in files {
        if let Err(e) = &f.result {
            // The contract: `FILE:LINE:COLUMN: message`, on stderr, for every format.
            eprintln!("{}:{}:{}: {}", f.path, e.line, e.column, e.message);
            syntax_error = true;
        }
    }
    let errors = files
        .iter()
        .filter_map(|f| f.result.as_ref().ok())
        .any(|r| r.max_severity() == Some(Severity::Error));
    if syntax_error {
        Outcome::Code(2)
    } else if errors {
        Outcome::Findings
    } else {
        Outcome::Done
    }
}

/// `--config FILE`, else `./locksmith.toml` when present, else defaults.
pub(super) fn load_config(explicit: Option<&Path>) -> Result<Config, Failure> {
    let default = Path::new("locksmith.toml");
    let path = match explicit {
        Some(p) => p,
        None if default.is_file() => default,
        None => return Ok(Config::default()),
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::input(miette!("reading {}: {e}", path.display())))?;
    Config::parse(&text).map_err(|e| Failure::input(miette!("{}: {e}", path.display())))
}

/// One input of `lint`: display path, text (up section only), and the
/// options for it (its tool and transaction mode, when its folder says).
type Input = (String, String, Options);

/// Every input as (display path, text), in the order given; a directory
/// contributes what `migrate::lint_folder` reads. A dbmate or goose file's
/// text keeps its up section only (the rest blanked, positions unchanged).
pub(super) fn read_inputs(paths: &[PathBuf]) -> Result<Vec<(String, String)>, Failure> {
    Ok(lint_inputs(paths, &Options::default())?
        .into_iter()
        .map(|(path, text, _)| (path, text))
        .collect())
}

fn lint_inputs(paths: &[PathBuf], base: &Options) -> Result<Vec<Input>, Failure> {
    let mut out = Vec::new();
    for path in paths {
        let (shown, text) = if path.as_os_str() == "-" {
            let mut stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!("locksmith lint: reading SQL from stdin (end with Ctrl-D)");
            }
            let mut text = String::new();
            stdin
                .read_to_string(&mut text)
                .map_err(|e| Failure::input(miette!("reading stdin: {e}")))?;
            (STDIN.to_string(), text)
        } else if path.is_dir() {
            for f in locksmith_pg::migrate::lint_folder(path, base)? {
                out.push((f.path.display().to_string(), f.text, f.options));
            }
            continue;
        } else {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::input(miette!("reading {}: {e}", path.display())))?;
            (path.display().to_string(), text)
        };
        let text = super::sources::up_text(&shown, text)?;
        let options = locksmith_core::lint::fix::text_options(base, &text);
        out.push((shown, text, options));
    }
    Ok(out)
}

/// `lint --fix [--diff] DIR|FILE`: `migrate::fix_changes`, written or shown.
fn fix(paths: &[PathBuf], options: &Options, diff: bool) -> CmdResult {
    let [path] = paths else {
        return Err(Failure::input(miette!(
            "lint --fix takes one migrations folder or one file"
        )));
    };
    let fix = locksmith_pg::migrate::fix_changes(path, options)?;
    let mut stdout = crate::output::stdout();
    if diff {
        crate::render::lint::diff(&mut stdout, &fix.changes)?;
    } else {
        locksmith_pg::migrate::write_changes(&fix.dir, &fix.changes)?;
        crate::render::lint::fixed(&mut stdout, &fix.dir, &fix.changes)?;
    }
    Ok(Outcome::Done)
}
