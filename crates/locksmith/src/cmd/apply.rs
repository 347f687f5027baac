//! `locksmith apply [DIR]`: the arguments of a migration run and its
//! rendering. The run itself — plan, runner lock, history, the guard, online
//! steps — is `locksmith_pg::migrate`'s; this module only turns flags into a
//! [`Policy`], events into progress lines, and the report into text, JSON
//! and an exit code.

use std::io::Write;

use locksmith_core::plan::Plan;
use locksmith_core::source::Version;
use locksmith_pg::migrate::{self, Policy, RunReport, Runner, Status};

use super::progress::EventLines;
use super::signals;
use crate::cli::{ApplyArgs, Format};
use crate::exit::{CmdResult, Failure, Outcome};
use crate::render::{self, style::Style};

pub async fn run(args: ApplyArgs) -> CmdResult {
    let style = Style::detect();
    // Every file is read and parsed before anything connects: a syntax error
    // stops here at FILE:LINE:COLUMN with nothing run.
    let plan = Plan::new(&args.dir, migrate::read_folder(&args.dir)?, args.pg_version)?;
    let policy = Policy {
        guard: args.guard.policy(),
        online: args.online,
        // A standby belongs to one primary: a fleet's targets are on many.
        replicas: match args.fleet.targets {
            Some(_) => Vec::new(),
            None => super::replica_settings(&args.guard.replicas)?,
        },
        baseline: args.baseline.as_deref().map(baseline).transpose()?,
        allow_changed: args.allow_changed,
        out_of_order: args.out_of_order,
        throttle: args.throttle.throttle(),
    };
    if let Some(list) = &args.fleet.targets {
        return super::fleet::apply(&args, list, plan, policy).await;
    }
    let settings =
        super::settings(&args.guard.connection)?.with_application_name("locksmith apply");
    let lines = EventLines::new(args.guard.format == Format::Json, style);
    let runner = Runner::new(settings, policy)
        .interrupts(signals::interrupts())
        .on_event(lines.into_migrate_handler());
    if args.dry_run {
        let plan = runner.dry_run(plan).await?;
        let text = match args.guard.format {
            Format::Json => {
                let mut out = Vec::new();
                render::json(&mut out, &plan)?;
                String::from_utf8_lossy(&out).into_owned()
            }
            Format::Human => render::plan::human(&plan),
        };
        crate::output::stdout().write_all(text.as_bytes())?;
        return Ok(Outcome::Done);
    }
    let report = runner.run(plan).await?;
    finish(&args, &report)
}

/// `--baseline VERSION`, checked before anything connects.
fn baseline(text: &str) -> Result<Version, Failure> {
    Version::parse(text).ok_or_else(|| {
        Failure::input(miette::miette!(
            "--baseline {text}: not a version (expected e.g. 20240101120000 or 1.1)"
        ))
    })
}

/// Prints the report and picks the exit code from its status.
fn finish(args: &ApplyArgs, report: &RunReport) -> CmdResult {
    match args.guard.format {
        Format::Json => render::json(&mut crate::output::stdout(), report)?,
        Format::Human => crate::output::stdout().write_all(
            render::guard::human(report, &args.dir.display().to_string(), Style::detect())
                .as_bytes(),
        )?,
    }
    if let Some(signal) = report.interrupted {
        return Ok(Outcome::Code(signals::exit_code(signal)));
    }
    Ok(match report.status {
        Status::Applied => Outcome::Done,
        Status::Blocked | Status::HoldExceeded => Outcome::Blocked,
        Status::Failed => Outcome::Code(1),
    })
}
