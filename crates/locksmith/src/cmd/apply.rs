//! `locksmith apply [DIR]`: pending SQL migrations, in order, under the guard,
//! recorded in `locksmith_migrations`, exactly once across concurrent runners.
//!
//! Everything is read and parsed before anything runs: a syntax error stops
//! the run at `FILE:LINE:COLUMN` with nothing executed. Migrations come from
//! `locksmith_core::source` (via `sources`), up sections only: a down section
//! or file never reaches the guard.
//!
//! Behind a connection pooler, see [`pooled`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use locksmith_core::analysis::{self, StatementKind, TransactionControl};
use locksmith_core::source::{self, pending, Kind, Migration, Version};
use locksmith_pg::guard::{replica, Guard, GuardError, RelationLock, Step};
use locksmith_pg::{foreign, history};

mod pooled;

use pooled::{Ran, Runners};

use super::hold;
use super::online;
use super::progress::EventLines;
use super::signals;
use crate::cli::{ApplyArgs, Format};
use crate::exit::{CmdResult, Failure, Outcome};
use crate::render::guard::{MigrationRecord, RunReport, Status};
use crate::render::plan::{Plan, PlannedLock, PlannedMigration, PlannedStatement};
use crate::render::{self, style::Style};

/// A migration, read and planned.
struct Planned {
    migration: Migration,
    /// Its history key (`7`, `1.1`, `R__views`).
    id: String,
    path: PathBuf,
    /// One transaction (with its history row), or statement by statement.
    in_transaction: bool,
    steps: Vec<PlannedStep>,
}

struct PlannedStep {
    step: Step,
    line: u32,
    column: u32,
    /// Whether PostgreSQL lets it run inside a transaction block.
    transactional: bool,
}

impl Planned {
    fn record(&self) -> history::Record<'_> {
        history::Record {
            id: &self.id,
            name: &self.migration.name,
            checksum: &self.migration.checksum,
            repeatable: self.migration.kind == Kind::Repeatable,
        }
    }

    /// The report's record: the version when it is one integer, else 0 and
    /// the version's text (`1.1`, `R__views`).
    fn report(&self, attempts: u32, duration: Duration) -> MigrationRecord {
        let number = self.migration.version().and_then(Version::as_i64);
        MigrationRecord {
            version: number.unwrap_or(0),
            version_text: number.is_none().then(|| self.id.clone()),
            name: self.migration.name.clone(),
            attempts,
            duration_ms: duration.as_millis() as u64,
        }
    }

    fn file(&self) -> &str {
        &self.migration.path
    }
}

pub async fn run(args: ApplyArgs) -> CmdResult {
    let style = Style::detect();
    let migrations = super::sources::read_migrations(&args.dir)?;
    let options = pending::Options {
        baseline: match &args.baseline {
            Some(text) => Some(Version::parse(text).ok_or_else(|| {
                Failure::input(miette::miette!(
                    "--baseline {text}: not a version (expected e.g. 20240101120000 or 1.1)"
                ))
            })?),
            None => None,
        },
        allow_changed: args.allow_changed,
        out_of_order: args.out_of_order,
    };
    let mut planned = plan(&args.dir, &migrations, args.pg_version)?;
    let settings =
        super::settings(&args.guard.connection)?.with_application_name("locksmith apply");
    let interrupts = signals::interrupts();
    let connecting = Guard::connect(&settings, args.guard.policy(), interrupts.clone());
    let mut guard = match signals::unless_interrupted(&interrupts, connecting).await {
        Ok(guard) => guard?,
        Err(signal) => return Ok(signals::stopped_before_running(signal, "while connecting")),
    };
    let quiet = args.guard.format == Format::Json;
    guard.on_event(EventLines::new(quiet, style).into_handler());
    let runners = pooled::runners(&guard, quiet);
    // Without --pg-version, the files are judged for the server they run on
    // (lock levels differ between majors); planned once already, so a syntax
    // error was reported before connecting.
    let version = match args.pg_version {
        Some(v) => v,
        None => {
            let major = server_major(guard.client()).await?;
            if major != analysis::MAX_PG_VERSION {
                planned = plan(&args.dir, &migrations, Some(major))?;
            }
            major
        }
    };
    watch_replicas(&mut guard, &args.guard.replicas, quiet).await?;

    // Serialise runners before touching any table; a second deploy waits here, then finds nothing to do.
    let waiting = async {
        match guard.session_client() {
            Some(client) => history::lock_runners(client, args.guard.deadline).await,
            None => Ok(true),
        }
    };
    let got_lock = match signals::unless_interrupted(&interrupts, waiting).await {
        Ok(got) => got?,
        Err(signal) => {
            return Ok(signals::stopped_before_running(
                signal,
                "while waiting for another locksmith apply to finish",
            ))
        }
    };
    if !got_lock {
        return finish(
            &args,
            &runners,
            RunReport::new(
                Status::Blocked,
                &guard.report,
                Vec::new(),
                Some("another locksmith apply held the runner lock until the deadline".into()),
            ),
        );
    }
    let existed = history::exists(guard.client()).await?;
    if existed {
        history::ensure_table(guard.client(), args.guard.lock_timeout).await?;
    }
    let applied = if existed {
        history::applied(guard.client()).await?
    } else {
        Vec::new()
    };
    if applied.is_empty() && options.baseline.is_none() {
        if let Some(other) = foreign::find(guard.client()).await? {
            return Err(Failure::input(adopt_hint(&args.dir, &other, &planned)));
        }
    }
    let recorded: Vec<pending::Recorded> = applied
        .into_iter()
        .map(|a| pending::Recorded {
            id: a.id,
            checksum: a.checksum,
        })
        .collect();
    let decision = pending::decide(&migrations, &recorded, &options).map_err(|e| {
        // Errors about a file start with its path, relative to the folder.
        let message = match &e {
            pending::PendingError::Changed { .. } | pending::PendingError::OutOfOrder { .. } => {
                format!("{}{}{e}", args.dir.display(), std::path::MAIN_SEPARATOR)
            }
            _ => format!("{}: {e}", args.dir.display()),
        };
        Failure::input(miette::miette!("{message}"))
    })?;
    let mut planned: Vec<Option<Planned>> = planned.into_iter().map(Some).collect();
    let mut take = |indices: &[usize]| -> Vec<Planned> {
        indices.iter().filter_map(|&i| planned[i].take()).collect()
    };
    let baselined = take(&decision.baseline);
    let pending = take(&decision.run);

    // With --online, each migration's plan, or None when it runs as written.
    let mut plans = Vec::with_capacity(pending.len());
    for p in &pending {
        plans.push(match args.online {
            true => online_units(p, version)?,
            false => None,
        });
    }

    if let Some(pooler) = guard.pooler().filter(|_| !guard.runs_outside_directly()) {
        if let Some(refusal) = pooled::outside_transaction(&pending, &plans, &pooler) {
            return Err(Failure::input(refusal));
        }
    }
    if !existed {
        history::ensure_table(guard.client(), args.guard.lock_timeout).await?;
    }

    if args.dry_run {
        let text = dry_run(&guard, &baselined, &pending, &plans, args.guard.format).await?;
        runners.unlock(&guard).await?;
        crate::output::stdout().write_all(text.as_bytes())?;
        return Ok(Outcome::Done);
    }

    // Online steps are bounded by the server as they run; the up-front
    // estimate is for statements that run as written.
    let statements: Vec<hold::Located> = pending
        .iter()
        .zip(&plans)
        .filter(|(_, plan)| plan.is_none())
        .flat_map(|(p, _)| located(p))
        .collect();
    let max_hold = guard.policy().max_hold;
    if let Some(refusal) =
        hold::refuse_before_running(guard.client(), &statements, version, max_hold).await
    {
        runners.unlock(&guard).await?;
        let report = RunReport::new(
            Status::HoldExceeded,
            &guard.report,
            Vec::new(),
            Some(refusal),
        );
        return finish(&args, &runners, report);
    }

    if !baselined.is_empty() {
        record_baseline(&guard, &baselined).await?;
        if !quiet {
            eprintln!(
                "recorded {} migrations as applied without running them (--baseline {})",
                baselined.len(),
                args.baseline.as_deref().unwrap_or_default()
            );
        }
    }

    let mut records = Vec::new();
    let mut elsewhere = Vec::new();
    for (p, plan) in pending.iter().zip(&plans) {
        if !quiet {
            eprintln!(
                "applying {} ({})",
                p.file(),
                match plan {
                    Some(units) => format!("online, {} steps", units.len()),
                    None if p.in_transaction => "one transaction".into(),
                    None => "statement by statement".into(),
                }
            );
        }
        let started = Instant::now();
        let per_transaction = runners.per_transaction;
        let result = match plan {
            Some(units) => apply_online(&mut guard, p, units, per_transaction).await,
            None if per_transaction => pooled::apply_pooled(&mut guard, p).await,
            None => apply_one(&mut guard, p).await.map(Ran::Here),
        };
        match result {
            Ok(Ran::Here(attempts)) => records.push(p.report(attempts, started.elapsed())),
            Ok(Ran::Elsewhere) => {
                if !quiet {
                    eprintln!(
                        "{}: another locksmith apply applied it meanwhile; not run again",
                        p.file()
                    );
                }
                elsewhere.push(p.report(0, started.elapsed()));
            }
            Err((e, done)) => {
                let (status, message) = match &e {
                    GuardError::Blocked { reason, .. } => {
                        (Status::Blocked, format!("{}: {reason}", p.file()))
                    }
                    GuardError::Interrupted(_) => (Status::Failed, format!("{}: {e}", p.file())),
                    GuardError::Failed(err) if plan.is_some() => {
                        let total = plan.as_ref().map_or(0, Vec::len);
                        (Status::Failed, online::failed(p.file(), done, total, err))
                    }
                    GuardError::Failed(err) => (
                        Status::Failed,
                        failure_message(p, err, done, runners.per_transaction),
                    ),
                    GuardError::HoldExceeded { step, locks, .. } => {
                        let at = if p.in_transaction { *step } else { done };
                        let statements = located(p);
                        let statement = &statements[at.min(statements.len().saturating_sub(1))];
                        let message =
                            hold::stopped(guard.client(), statement, locks, version, max_hold)
                                .await;
                        (Status::HoldExceeded, message)
                    }
                };
                let mut report = RunReport::new(status, &guard.report, records, Some(message));
                report.applied_elsewhere = elsewhere;
                let outcome = finish(&args, &runners, report);
                if let GuardError::Interrupted(signal) = e {
                    return Ok(Outcome::Code(signals::exit_code(signal)));
                }
                return outcome;
            }
        }
    }
    runners.unlock(&guard).await?;
    let mut report = RunReport::new(Status::Applied, &guard.report, records, None);
    report.applied_elsewhere = elsewhere;
    finish(&args, &runners, report)
}

/// The server's major version, clamped to the ones the analysis models.
async fn server_major(client: &locksmith_pg::Connection) -> Result<u32, Failure> {
    // `server_version_num`, e.g. 150018 → 15.
    let num: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(|e| locksmith_pg::Error::query("reading the server version", e))?
        .get(0);
    Ok(((num / 10000) as u32).clamp(analysis::MIN_PG_VERSION, analysis::MAX_PG_VERSION))
}

/// Watches the standbys given with `--replica` (or `LOCKSMITH_REPLICA_URLS`);
/// with none given, says once when standbys stream from the primary unwatched.
async fn watch_replicas(guard: &mut Guard, given: &[String], quiet: bool) -> Result<(), Failure> {
    let settings = super::replica_settings(given)?;
    if settings.is_empty() {
        let streaming = replica::streaming_standbys(guard.client())
            .await
            .unwrap_or(0);
        if streaming > 0 && !quiet {
            eprintln!(
                "warning: {streaming} standby server(s) stream from this primary and are not watched: \
                 their readers can stall replay of an ACCESS EXCLUSIVE lock, and their traffic behind it. \
                 Pass --replica URL for each hot standby."
            );
        }
        return Ok(());
    }
    guard.watch_replicas(&settings).await?;
    Ok(())
}

/// The refusal when another tool's history is there and locksmith's is empty.
fn adopt_hint(dir: &Path, other: &foreign::ForeignHistory, planned: &[Planned]) -> miette::Report {
    let in_folder = planned.iter().any(|p| p.id == other.latest);
    let mut text = format!(
        "this database was migrated by {} ({} says version {} was applied last) and {} is empty: applying {} from its first migration would run migrations again. \
         Adopt it: record what is there without running it, then apply the rest:\n\n    locksmith apply {} --baseline {}\n",
        other.tool,
        other.table,
        other.latest,
        history::TABLE,
        dir.display(),
        dir.display(),
        other.latest
    );
    if other.dirty {
        text.push_str("\nNote: golang-migrate marked it dirty: its last migration failed halfway. Repair that first.\n");
    }
    if !in_folder {
        text.push_str(&format!(
            "\nNote: no migration in {} has version {}; pass the version of the last migration the database already has.\n",
            dir.display(),
            other.latest
        ));
    }
    miette::miette!("{text}")
}

/// Records the `--baseline` migrations as applied (0 attempts, 0 ms), in one transaction.
async fn record_baseline(guard: &Guard, baselined: &[Planned]) -> Result<(), Failure> {
    let mut sql = String::from("BEGIN;\n");
    for p in baselined {
        sql.push_str(&history::insert_sql(&p.record(), Duration::ZERO, 0));
        sql.push_str(";\n");
    }
    sql.push_str("COMMIT;");
    guard
        .client()
        .batch_execute(&sql)
        .await
        .map_err(|e| Failure::other(miette::miette!("recording the --baseline migrations: {e}")))
}

/// Runs one migration; on failure, also says how many statements completed
/// (only possible outside a transaction).
async fn apply_one(guard: &mut Guard, p: &Planned) -> Result<u32, (GuardError, usize)> {
    let started = Instant::now();
    let steps: Vec<Step> = p.steps.iter().map(|s| s.step.clone()).collect();
    if p.in_transaction {
        let record =
            |attempts: u32, elapsed: Duration| history::insert_sql(&p.record(), elapsed, attempts);
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
    let sql = history::insert_sql(&p.record(), started.elapsed(), attempts);
    guard.client().batch_execute(&sql).await.map_err(|e| {
        (
            GuardError::Failed(locksmith_pg::Error::query("recording the migration", e)),
            steps.len(),
        )
    })?;
    Ok(attempts)
}

/// Runs `p` as its online plan; on failure, also says which unit failed.
async fn apply_online(
    guard: &mut Guard,
    p: &Planned,
    units: &[locksmith_core::online::Unit],
    per_transaction: bool,
) -> Result<Ran, (GuardError, usize)> {
    use locksmith_pg::online::{self, Exclusion};
    let migration = p.record();
    let record =
        |attempts: u32, elapsed: Duration| history::insert_sql(&migration, elapsed, attempts);
    let exclusion = match per_transaction {
        true => Exclusion::PerTransaction(&migration),
        false => Exclusion::Session,
    };
    online::run_excluding(
        guard,
        history::row_version(&p.id),
        units,
        &record,
        exclusion,
    )
    .await
    .map(|run| match run.recorded_elsewhere {
        true => Ran::Elsewhere,
        false => Ran::Here(run.attempts),
    })
    .map_err(|f| (f.error, f.unit))
}

/// `p`'s online plan, `None` when it runs as written.
fn online_units(
    p: &Planned,
    pg_version: u32,
) -> Result<Option<Vec<locksmith_core::online::Unit>>, Failure> {
    let written: Vec<(&str, u32, u32)> = p
        .steps
        .iter()
        .map(|s| (s.step.sql.as_str(), s.line, s.column))
        .collect();
    let statements = online::analysed(&p.path, &written, pg_version)?;
    let positions: Vec<(u32, u32)> = p.steps.iter().map(|s| (s.line, s.column)).collect();
    online::units(&p.path, &statements, &positions, pg_version)
}

/// Where each statement of `p` is written, for messages.
fn located(p: &Planned) -> Vec<hold::Located<'_>> {
    p.steps
        .iter()
        .map(|s| hold::Located {
            path: &p.path,
            line: s.line,
            column: s.column,
            sql: &s.step.sql,
        })
        .collect()
}

/// `resumable`: a no-transaction migration recorded each statement's
/// progress (behind a pooler), so a rerun starts at the failed one.
fn failure_message(p: &Planned, err: &locksmith_pg::Error, done: usize, resumable: bool) -> String {
    if p.in_transaction {
        let next = if needs_no_fix(err) {
            "nothing in it needs fixing: run apply again"
        } else {
            "fix it and run apply again"
        };
        return format!(
            "{}: {err}. The whole migration was rolled back and not recorded; {next}.",
            p.file()
        );
    }
    let failed = &p.steps[done.min(p.steps.len().saturating_sub(1))];
    if resumable {
        return format!(
            "{}:{}:{}: {err}. Statements before it ({done} of {}) were applied and recorded as \
             progress; the migration was not recorded. Fix this statement and run apply again: \
             it resumes here.",
            p.path.display(),
            failed.line,
            failed.column,
            p.steps.len()
        );
    }
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

fn finish(args: &ApplyArgs, runners: &Runners, mut report: RunReport) -> CmdResult {
    report.pooler = runners.pooler;
    let status = report.status;
    match args.guard.format {
        Format::Json => render::json(&mut crate::output::stdout(), &report)?,
        Format::Human => crate::output::stdout()
            .write_all(render::guard::human(&report, Style::detect()).as_bytes())?,
    }
    Ok(match status {
        Status::Applied => Outcome::Done,
        Status::Blocked | Status::HoldExceeded => Outcome::Blocked,
        Status::Failed => Outcome::Code(1),
    })
}

/// Parses every migration; any syntax error stops here, before a connection
/// is even opened. goose `StatementBegin`/`End` blocks become one step each.
fn plan(
    dir: &Path,
    migrations: &[Migration],
    pg_version: Option<u32>,
) -> Result<Vec<Planned>, Failure> {
    let version = pg_version.unwrap_or(analysis::MAX_PG_VERSION);
    let mut planned = Vec::new();
    for migration in migrations.iter().cloned() {
        let path = dir.join(&migration.path);
        let statements = analysis::analyze(&migration.sql, version).map_err(|e| {
            Failure::input(miette::miette!(
                "{}:{}:{}: {}",
                path.display(),
                e.line,
                e.column,
                e.message
            ))
        })?;
        let statements = source::group_blocks(statements, &migration.blocks, &migration.sql);
        let mut steps = Vec::new();
        let mut transactional = !migration.no_transaction;
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
                transactional: s.transactional,
            });
        }
        planned.push(Planned {
            id: migration.id(),
            migration,
            path,
            in_transaction: transactional,
            steps,
        });
    }
    Ok(planned)
}

/// The version as dry-run JSON shows it: a number when it is one.
fn version_json(p: &Planned) -> serde_json::Value {
    match p.id.parse::<i64>() {
        Ok(n) => n.into(),
        Err(_) => p.id.clone().into(),
    }
}

/// The plan of what `apply` would do, with who would block it now.
async fn dry_run(
    guard: &Guard,
    baselined: &[Planned],
    pending: &[Planned],
    plans: &[Option<Vec<locksmith_core::online::Unit>>],
    format: Format,
) -> Result<String, Failure> {
    let mut plan = Plan {
        status: "planned",
        baseline: baselined.iter().map(version_json).collect(),
        migrations: Vec::new(),
    };
    for (p, units) in pending.iter().zip(plans) {
        let targets: Vec<RelationLock> = p
            .steps
            .iter()
            .flat_map(|s| s.step.locks.iter().cloned())
            .collect();
        plan.migrations.push(PlannedMigration {
            version: version_json(p),
            name: &p.migration.name,
            file: &p.migration.path,
            in_transaction: p.in_transaction,
            statements: p
                .steps
                .iter()
                .map(|s| PlannedStatement {
                    line: s.line,
                    column: s.column,
                    sql: &s.step.sql,
                    locks: s
                        .step
                        .locks
                        .iter()
                        .map(|l| PlannedLock {
                            relation: &l.relation,
                            mode: l.mode.pg_name(),
                        })
                        .collect(),
                })
                .collect(),
            blockers: guard.holders_for(&targets).await?,
            online: units.as_deref().map(online::planned),
        });
    }
    Ok(match format {
        Format::Json => {
            let mut out = Vec::new();
            render::json(&mut out, &plan)?;
            String::from_utf8_lossy(&out).into_owned()
        }
        Format::Human => render::plan::human(&plan),
    })
}
