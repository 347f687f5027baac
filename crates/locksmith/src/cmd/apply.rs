//! `locksmith apply [DIR]`: pending SQL migrations, in order, under the guard,
//! recorded in `locksmith_migrations`, exactly once across concurrent runners.
//!
//! Everything is read and parsed before anything runs: a syntax error stops
//! the run at `FILE:LINE:COLUMN` with nothing executed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use locksmith_core::analysis::{self, StatementKind, TransactionControl};
use locksmith_core::migration::{checksum, wants_no_transaction, MigrationName};
use locksmith_pg::guard::{Guard, GuardError, RelationLock, Step};
use locksmith_pg::history;
use serde::Serialize;

use super::progress::EventLines;
use super::signals;
use crate::cli::{ApplyArgs, Format};
use crate::exit::{CmdResult, Failure, Outcome};
use crate::render::guard::{MigrationRecord, RunReport, Status};
use crate::render::{self, style::Style};

/// A migration file, read and planned.
struct Planned {
    name: MigrationName,
    path: PathBuf,
    checksum: String,
    /// One transaction (with its history row), or statement by statement.
    in_transaction: bool,
    steps: Vec<PlannedStep>,
}

struct PlannedStep {
    step: Step,
    line: u32,
    column: u32,
}

pub async fn run(args: ApplyArgs) -> CmdResult {
    let style = Style::detect();
    let planned = plan_dir(&args.dir, args.pg_version)?;
    let settings =
        super::settings(&args.guard.connection)?.with_application_name("locksmith apply");
    let interrupts = signals::interrupts();
    let mut guard = Guard::connect(&settings, args.guard.policy(), interrupts.clone()).await?;
    let quiet = args.guard.format == Format::Json;
    guard.on_event(EventLines::new(quiet, style).into_handler());

    // Serialise runners before touching any table; a second deploy waits here, then finds nothing to do.
    if !history::lock_runners(guard.client(), args.guard.deadline).await? {
        return finish(
            &args,
            RunReport::new(
                Status::Blocked,
                &guard.report,
                Vec::new(),
                Some("another locksmith apply held the runner lock until the deadline".into()),
            ),
        );
    }
    history::ensure_table(guard.client(), args.guard.lock_timeout).await?;
    let applied = history::applied(guard.client()).await?;

    let mut pending = Vec::new();
    for p in planned {
        match applied.iter().find(|a| a.version == p.name.version) {
            Some(a) if a.checksum != p.checksum && !args.allow_changed => {
                return Err(Failure::input(miette::miette!(
                    "{}: changed since it was applied (version {}); a migration that ran must not change. Restore it, or pass --allow-changed if the change is cosmetic.",
                    p.path.display(),
                    a.version
                )));
            }
            Some(_) => {}
            None => pending.push(p),
        }
    }
    if let (Some(latest), Some(first)) = (applied.iter().map(|a| a.version).max(), pending.first())
    {
        if first.name.version < latest && !args.out_of_order {
            return Err(Failure::input(miette::miette!(
                "{}: version {} is older than the latest applied ({latest}); refusing to apply out of order. Renumber it, or pass --out-of-order.",
                first.path.display(),
                first.name.version
            )));
        }
    }

    if args.dry_run {
        let text = dry_run(&guard, &pending, args.guard.format).await?;
        print!("{text}");
        history::unlock_runners(guard.client()).await?;
        return Ok(Outcome::Done);
    }

    let mut records = Vec::new();
    for p in &pending {
        if !quiet {
            eprintln!(
                "applying {} ({})",
                p.name.file,
                if p.in_transaction {
                    "one transaction"
                } else {
                    "statement by statement"
                }
            );
        }
        let started = Instant::now();
        let result = apply_one(&mut guard, p).await;
        match result {
            Ok(attempts) => records.push(MigrationRecord {
                version: p.name.version,
                name: p.name.name.clone(),
                attempts,
                duration_ms: started.elapsed().as_millis() as u64,
            }),
            Err((e, done)) => {
                let (status, message) = match &e {
                    GuardError::Blocked { reason, .. } => {
                        (Status::Blocked, format!("{}: {reason}", p.name.file))
                    }
                    GuardError::Interrupted(_) => (Status::Failed, format!("{}: {e}", p.name.file)),
                    GuardError::Failed(err) => (Status::Failed, failure_message(p, err, done)),
                };
                let report = RunReport::new(status, &guard.report, records, Some(message));
                let outcome = finish(&args, report);
                if let GuardError::Interrupted(signal) = e {
                    return Ok(Outcome::Code(signals::exit_code(signal)));
                }
                return outcome;
            }
        }
    }
    history::unlock_runners(guard.client()).await?;
    finish(
        &args,
        RunReport::new(Status::Applied, &guard.report, records, None),
    )
}

/// Runs one migration; on failure, also says how many statements completed
/// (only possible outside a transaction).
async fn apply_one(guard: &mut Guard, p: &Planned) -> Result<u32, (GuardError, usize)> {
    let started = Instant::now();
    let steps: Vec<Step> = p.steps.iter().map(|s| s.step.clone()).collect();
    if p.in_transaction {
        let (version, name, sum) = (p.name.version, p.name.name.clone(), p.checksum.clone());
        let record = move |attempts: u32, elapsed: Duration| {
            history::insert_sql(version, &name, &sum, elapsed, attempts)
        };
        return guard
            .run_transaction(&steps, Some(&record))
            .await
            .map_err(|e| (e, 0));
    }
    let mut attempts = 0;
    for (i, step) in steps.iter().enumerate() {
        attempts += guard
            .run_outside_transaction(step)
            .await
            .map_err(|e| (e, i))?;
    }
    let sql = history::insert_sql(
        p.name.version,
        &p.name.name,
        &p.checksum,
        started.elapsed(),
        attempts,
    );
    guard.client().batch_execute(&sql).await.map_err(|e| {
        (
            GuardError::Failed(locksmith_pg::Error::query("recording the migration", e)),
            steps.len(),
        )
    })?;
    Ok(attempts)
}

fn failure_message(p: &Planned, err: &locksmith_pg::Error, done: usize) -> String {
    if p.in_transaction {
        let next = if needs_no_fix(err) {
            "nothing in it needs fixing: run apply again"
        } else {
            "fix it and run apply again"
        };
        return format!(
            "{}: {err}. The whole migration was rolled back and not recorded; {next}.",
            p.name.file
        );
    }
    let failed = &p.steps[done.min(p.steps.len().saturating_sub(1))];
    format!(
        "{}:{}:{}: {err}. Statements before it ({done} of {}) were applied; the migration was not recorded. \
         Make the applied statements idempotent (IF NOT EXISTS) or remove them, then run apply again.",
        p.path.display(),
        failed.line,
        failed.column,
        p.steps.len()
    )
}

/// A failure a rerun may get past unchanged: the connection or the server
/// went away (SQLSTATE class 08, 57, 58, or no server error at all), a
/// deadlock or serialization failure (40), a lack of resources (53).
fn needs_no_fix(err: &locksmith_pg::Error) -> bool {
    match err.sqlstate() {
        Some(code) => ["08", "40", "53", "57", "58"]
            .iter()
            .any(|class| code.starts_with(class)),
        None => matches!(
            err,
            locksmith_pg::Error::Connect { .. } | locksmith_pg::Error::Query { .. }
        ),
    }
}

fn finish(args: &ApplyArgs, report: RunReport) -> CmdResult {
    let status = report.status;
    match args.guard.format {
        Format::Json => render::json(&mut std::io::stdout().lock(), &report)?,
        Format::Human => print!("{}", render::guard::human(&report, Style::detect())),
    }
    Ok(match status {
        Status::Applied => Outcome::Done,
        Status::Blocked => Outcome::Blocked,
        Status::Failed => Outcome::Code(1),
    })
}

/// Lists, reads and parses every migration in `dir`; any bad name or syntax
/// error stops here, before a connection is even opened.
fn plan_dir(dir: &Path, pg_version: Option<u32>) -> Result<Vec<Planned>, Failure> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Failure::input(miette::miette!(
            "{}: cannot read the migrations folder: {e}",
            dir.display()
        ))
    })?;
    let mut files: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    files.sort();
    let names = MigrationName::ordered(files.iter().map(String::as_str))
        .map_err(|e| Failure::input(miette::miette!("{}: {e}", dir.display())))?;
    let version = pg_version.unwrap_or(analysis::MAX_PG_VERSION);
    let mut planned = Vec::new();
    for name in names {
        let path = dir.join(&name.file);
        let content = std::fs::read_to_string(&path)
            .map_err(|e| Failure::input(miette::miette!("{}: {e}", path.display())))?;
        let statements = analysis::analyze(&content, version).map_err(|e| {
            Failure::input(miette::miette!(
                "{}:{}:{}: {}",
                path.display(),
                e.line,
                e.column,
                e.message
            ))
        })?;
        let mut steps = Vec::new();
        let mut transactional = !wants_no_transaction(&content);
        for s in statements {
            match &s.kind {
                // The guard owns the transaction and the budget: the file's own are dropped.
                StatementKind::Transaction(
                    TransactionControl::Begin | TransactionControl::Commit,
                )
                | StatementKind::Empty => continue,
                StatementKind::Set { name, .. }
                    if name == "lock_timeout" || name == "statement_timeout" =>
                {
                    continue
                }
                _ => {}
            }
            transactional &= s.transactional;
            steps.push(PlannedStep {
                step: Step::from(&s),
                line: s.line,
                column: s.column,
            });
        }
        planned.push(Planned {
            checksum: checksum(&content),
            name,
            path,
            in_transaction: transactional,
            steps,
        });
    }
    Ok(planned)
}

#[derive(Serialize)]
struct DryRun<'a> {
    status: &'static str,
    migrations: Vec<DryRunMigration<'a>>,
}

#[derive(Serialize)]
struct DryRunMigration<'a> {
    version: i64,
    name: &'a str,
    in_transaction: bool,
    statements: Vec<DryRunStatement<'a>>,
    blockers: Vec<locksmith_pg::guard::Holder>,
}

#[derive(Serialize)]
struct DryRunStatement<'a> {
    line: u32,
    column: u32,
    sql: &'a str,
    locks: Vec<serde_json::Value>,
}

async fn dry_run(guard: &Guard, pending: &[Planned], format: Format) -> Result<String, Failure> {
    let mut plan = DryRun {
        status: "planned",
        migrations: Vec::new(),
    };
    for p in pending {
        let targets: Vec<RelationLock> = p
            .steps
            .iter()
            .flat_map(|s| s.step.locks.iter().cloned())
            .collect();
        plan.migrations.push(DryRunMigration {
            version: p.name.version,
            name: &p.name.name,
            in_transaction: p.in_transaction,
            statements: p
                .steps
                .iter()
                .map(|s| DryRunStatement {
                    line: s.line,
                    column: s.column,
                    sql: &s.step.sql,
                    locks: s.step.locks.iter().map(|l| serde_json::json!({"relation": l.relation, "mode": l.mode.pg_name()})).collect(),
                })
                .collect(),
            blockers: guard.holders_for(&targets).await?,
        });
    }
    if format == Format::Json {
        return Ok(serde_json::to_string_pretty(&plan)
            .map_err(|e| Failure::other(miette::miette!("{e}")))?
            + "\n");
    }
    let mut out = String::new();
    if plan.migrations.is_empty() {
        out.push_str("Nothing to apply: the database is up to date.\n");
    }
    for m in &plan.migrations {
        out.push_str(&format!(
            "{} {} ({})\n",
            m.version,
            m.name,
            if m.in_transaction {
                "one transaction, with its history row"
            } else {
                "statement by statement"
            }
        ));
        for s in &m.statements {
            let locks: Vec<String> = s
                .locks
                .iter()
                .map(|l| {
                    format!(
                        "{} on {}",
                        l["mode"].as_str().unwrap_or(""),
                        l["relation"].as_str().unwrap_or("")
                    )
                })
                .collect();
            out.push_str(&format!(
                "  {}:{}  {}\n",
                s.line,
                s.column,
                render::one_line(s.sql, 90)
            ));
            out.push_str(&format!(
                "        locks: {}\n",
                if locks.is_empty() {
                    "none on existing tables".into()
                } else {
                    locks.join(", ")
                }
            ));
        }
        if m.blockers.is_empty() {
            out.push_str("  would block it now: nobody\n");
        } else {
            out.push_str("  would block it now:\n");
            for h in &m.blockers {
                out.push_str(&format!("    {}\n", render::guard::holder_line(h)));
            }
        }
    }
    Ok(out)
}
