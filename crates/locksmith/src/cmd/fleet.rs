//! `--targets FILE`: one command on many databases. `apply DIR --targets`
//! applies the same migrations everywhere; the fleet itself — N runners, at
//! most `--parallel` at a time, the canary, interrupts, each target's
//! outcome — is `locksmith_pg::migrate::fleet`'s; this module reads the
//! list, hands the events to the progress line (`render::progress`), prints
//! the report (`render::fleet`) and picks the exit code. `blockers --targets`
//! and `doctor --targets` run the single command's diagnosis on each
//! database (`fleet::read_each`) into one report.

use std::io::{Read, Write};
use std::path::Path;

use locksmith_core::plan::Plan;
use locksmith_pg::audit::Severity;
use locksmith_pg::migrate::fleet::{self, Fleet, FleetReport, Target};
use locksmith_pg::migrate::Policy;

use super::signals;
use crate::cli::{ApplyArgs, BlockersArgs, DoctorArgs, Format};
use crate::exit::{CmdResult, Failure, Outcome};
use crate::render::{self, progress::FleetProgress, style::Style};

/// Applies `plan` to every database of the list at `list`.
pub async fn apply(args: &ApplyArgs, list: &Path, plan: Plan, policy: Policy) -> CmdResult {
    let style = Style::detect();
    let targets: Vec<Target> = read_targets(list)?
        .into_iter()
        .map(|t| Target {
            settings: t.settings.with_application_name("locksmith apply"),
            ..t
        })
        .collect();
    let human = args.guard.format == Format::Human;
    let mut progress = FleetProgress::new(targets.len(), style);
    let report = Fleet::new(targets, policy)
        .parallel(args.fleet.parallel as usize)
        .canary(args.canary.unwrap_or(0) as usize)
        .interrupts(signals::interrupts())
        .on_event(move |e| {
            if human {
                progress.on(e)
            }
        })
        .run(plan)
        .await;
    let mut out = crate::output::stdout();
    match args.guard.format {
        Format::Json => render::json(&mut out, &report)?,
        Format::Human => out.write_all(
            render::fleet::human(&report, &args.dir.display().to_string(), style).as_bytes(),
        )?,
    }
    Ok(outcome(&report))
}

/// The list at `path` (`-`: stdin), read whole and checked before anything
/// connects: a bad line is exit 2 at `FILE:LINE`.
fn read_targets(path: &Path) -> Result<Vec<Target>, Failure> {
    let (name, text) = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| Failure::input(miette::miette!("--targets -: reading stdin: {e}")))?;
        ("stdin".to_string(), text)
    } else {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::input(miette::miette!("--targets {}: {e}", path.display())))?;
        (path.display().to_string(), text)
    };
    fleet::parse_targets(&name, &text).map_err(Failure::bad_input)
}

/// 130/143 after a signal; 1 when any target failed or was unreachable (or
/// was skipped for a reason other than a signal); 3 when some gave up; else 0.
fn outcome(report: &FleetReport) -> Outcome {
    if let Some(signal) = report.interrupted {
        return Outcome::Code(signals::exit_code(signal));
    }
    let s = report.summary;
    if s.failed + s.unreachable + s.skipped > 0 {
        Outcome::Code(1)
    } else if s.gave_up > 0 {
        Outcome::Blocked
    } else {
        Outcome::Done
    }
}

/// `blockers --targets FILE`: one snapshot of each database. Exit 3 when
/// sessions wait behind a root blocker on any of them, else 1 when one could
/// not be read, else 0.
pub async fn blockers(args: &BlockersArgs, list: &Path) -> CmdResult {
    let targets = read_targets(list)?;
    let report = fleet::read_each(
        &targets,
        args.fleet.parallel as usize,
        |settings| async move {
            super::blockers::diagnose(&settings, &[], true, false)
                .await
                .map_err(|f| f.report)
        },
    )
    .await;
    let style = Style::detect();
    let mut out = crate::output::stdout();
    match args.format {
        Format::Json => render::json(&mut out, &report)?,
        Format::Human => out.write_all(
            render::fleet::entries(
                &report,
                |r| {
                    r.worth_a_look()
                        .then(|| render::blockers::diagnosis(r, style))
                },
                "nobody waits for a lock",
                style,
            )
            .as_bytes(),
        )?,
    }
    Ok(if report.reports().any(|r| r.blocked()) {
        Outcome::Blocked
    } else if report.any_unread() {
        Outcome::Code(1)
    } else {
        Outcome::Done
    })
}

/// `doctor --targets FILE`: each database's settings and live state
/// audited. Exit 1 when any has a warning or could not be read, else 0.
pub async fn doctor(args: &DoctorArgs, list: &Path) -> CmdResult {
    let targets = read_targets(list)?;
    let report = fleet::read_each(
        &targets,
        args.fleet.parallel as usize,
        |settings| async move {
            let settings = settings.with_application_name("locksmith doctor");
            let read = async {
                let client = locksmith_pg::guard::connect_for_transactions(
                    &settings,
                    super::READS_IN_TRANSACTIONS,
                )
                .await?;
                let (findings, pooler) =
                    super::doctor::audit_server(&client, &settings, &[], false).await?;
                Ok::<_, Failure>(super::doctor::DoctorReport {
                    findings,
                    log: Vec::new(),
                    pooler,
                })
            };
            read.await.map_err(|f| f.report)
        },
    )
    .await;
    let style = Style::detect();
    let warns = |r: &super::doctor::DoctorReport| {
        r.findings.iter().any(|f| f.severity >= Severity::Warning)
    };
    let mut out = crate::output::stdout();
    match args.format {
        Format::Json => render::json(&mut out, &report)?,
        Format::Human => out.write_all(
            render::fleet::entries(
                &report,
                |r| warns(r).then(|| render::doctor::human(&r.findings, &[], style)),
                "no warnings",
                style,
            )
            .as_bytes(),
        )?,
    }
    let flagged = report
        .targets
        .iter()
        .any(|e| e.report.as_ref().is_none_or(warns));
    Ok(if flagged {
        Outcome::Findings
    } else {
        Outcome::Done
    })
}
