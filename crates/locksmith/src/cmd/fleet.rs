//! `--targets FILE`: one command on many databases. `apply DIR --targets`
//! applies the same migrations everywhere; the fleet itself — N runners, at
//! most `--parallel` at a time, the canary, interrupts, each target's
//! outcome — is `locksmith_pg::migrate::fleet`'s; this module reads the
//! list, draws the live progress line, prints the report and picks the exit
//! code. `blockers --targets` and `doctor --targets` run the single
//! command's diagnosis on each database (`fleet::each`) into one report.

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use locksmith_core::plan::Plan;
use locksmith_pg::audit::Severity;
use locksmith_pg::guard::Event;
use locksmith_pg::migrate::fleet::{
    self, Fleet, FleetEvent, FleetReport, Target, TargetReport, TargetStatus,
};
use locksmith_pg::migrate::{self, Policy};
use locksmith_pg::ConnectionSettings;
use serde::Serialize;

use super::progress::{EventLines, WaitingLines};
use super::signals;
use crate::cli::{ApplyArgs, BlockersArgs, DoctorArgs, Format};
use crate::exit::{CmdResult, Failure, Outcome};
use crate::render::{self, style::Style};

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
    let mut progress = Progress::new(targets.len(), style);
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

/// The live progress on stderr: one status line (done / running / left,
/// failures so far), redrawn in place on a terminal; a line per target that
/// did not apply, and the guard's waiting and termination lines, each
/// prefixed with its target. Elsewhere (a CI log) a line per finished target.
struct Progress {
    total: usize,
    tty: bool,
    lines: EventLines,
    style: Style,
    running: HashSet<usize>,
    done: usize,
    counts: HashMap<TargetStatus, usize>,
    waiting: HashMap<usize, WaitingLines>,
}

impl Progress {
    fn new(total: usize, style: Style) -> Progress {
        Progress {
            total,
            tty: std::io::stderr().is_terminal(),
            lines: EventLines::new(false, style),
            style,
            running: HashSet::new(),
            done: 0,
            counts: HashMap::new(),
            waiting: HashMap::new(),
        }
    }

    fn on(&mut self, event: FleetEvent<'_>) {
        match event {
            FleetEvent::Started { index, .. } => {
                self.running.insert(index);
                if self.tty {
                    self.draw();
                }
            }
            FleetEvent::Run {
                index,
                target,
                event: migrate::Event::Guard(e),
            } => {
                let due = match e {
                    Event::Waiting { .. } => self.waiting.entry(index).or_default().due(),
                    Event::Terminated(_) => true,
                    _ => false,
                };
                if due {
                    self.note(&format!("{target}: {}", self.lines.line(&e)));
                }
            }
            FleetEvent::Run {
                target,
                event: migrate::Event::UnwatchedStandbys(n),
                ..
            } => self.note(&format!(
                "{target}: warning: {n} standby server(s) stream from this primary and are not \
                 watched: their readers can stall replay of an ACCESS EXCLUSIVE lock, and their \
                 traffic behind it. A fleet watches no standby: apply to this database alone with \
                 --replica URL for each hot standby."
            )),
            FleetEvent::Run { .. } => {}
            FleetEvent::Finished { index, report } => {
                self.running.remove(&index);
                self.waiting.remove(&index);
                self.done += 1;
                *self.counts.entry(report.status).or_default() += 1;
                if !self.tty {
                    let line = format!("{} ({})", finished(report, self.style), self.status());
                    eprintln!("locksmith: {line}");
                } else if !report.status.is_success() {
                    self.note(&finished(report, self.style));
                } else {
                    self.draw();
                }
                if self.tty && self.done == self.total {
                    eprintln!();
                }
            }
        }
    }

    /// `12 done, 4 running, 184 left; 1 failed, 0 gave up, 0 unreachable`.
    fn status(&self) -> String {
        let count = |s| self.counts.get(&s).copied().unwrap_or(0);
        let running = self.running.len();
        format!(
            "{} done, {running} running, {} left; {} failed, {} gave up, {} unreachable",
            self.done,
            self.total.saturating_sub(self.done + running),
            count(TargetStatus::Failed),
            count(TargetStatus::GaveUp),
            count(TargetStatus::Unreachable),
        )
    }

    /// Redraws the status line in place.
    fn draw(&self) {
        eprint!("\r\x1b[Klocksmith: {}", self.status());
        let _ = std::io::stderr().flush();
    }

    /// A line above the status line (a CI log: just the line).
    fn note(&self, line: &str) {
        if self.tty {
            eprintln!("\r\x1b[Klocksmith: {line}");
            self.draw();
        } else {
            eprintln!("locksmith: {line}");
        }
    }
}

/// `t07: failed: 002_audit.sql: …`, as a progress line.
fn finished(report: &TargetReport, style: Style) -> String {
    let status = render::fleet::status_text(report.status, style);
    let detail = match report.status {
        TargetStatus::Applied => format!(" {}", report.applied.join(", ")),
        _ => render::fleet::reason(report)
            .map(|r| format!(": {}", render::one_line(&r, 160)))
            .unwrap_or_default(),
    };
    format!("{}: {status}{detail}", report.target)
}

/// A target's entry in `blockers --targets` and `doctor --targets` JSON:
/// the single command's report with `target` added, or `error` when it
/// could not be read.
#[derive(Serialize)]
struct Entry<T> {
    target: String,
    #[serde(flatten)]
    report: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `{"targets": [...]}`.
#[derive(Serialize)]
struct Entries<T> {
    targets: Vec<Entry<T>>,
}

impl<T> Entries<T> {
    /// One section per target for people: `shown` gives the text of a report
    /// worth a look (`None`: counted among the clean ones); a target that
    /// could not be read shows its error.
    fn sections(&self, shown: impl Fn(&T) -> Option<String>) -> Vec<render::fleet::Section<'_>> {
        self.targets
            .iter()
            .map(|e| render::fleet::Section {
                target: &e.target,
                body: match &e.report {
                    Some(r) => Ok(shown(r)),
                    None => Err(e.error.clone().unwrap_or_default()),
                },
            })
            .collect()
    }
}

/// Reads every target with `read`, at most `--parallel` at a time, into
/// entries in list order; a target that could not be read keeps its error.
async fn entries<T: Send + 'static, F>(
    targets: &[Target],
    parallel: u32,
    read: impl Fn(ConnectionSettings) -> F,
) -> Entries<T>
where
    F: std::future::Future<Output = Result<T, Failure>> + Send + 'static,
{
    let results = fleet::each(targets, parallel as usize, |t| read(t.settings.clone())).await;
    Entries {
        targets: targets
            .iter()
            .zip(results)
            .map(|(t, result)| {
                let (report, error) = match result {
                    Ok(report) => (Some(report), None),
                    Err(failure) => (None, Some(failure.report.to_string())),
                };
                Entry {
                    target: t.label.clone(),
                    report,
                    error,
                }
            })
            .collect(),
    }
}

/// `blockers --targets FILE`: one snapshot of each database. Exit 3 when
/// sessions wait behind a root blocker on any of them, else 1 when one could
/// not be read, else 0.
pub async fn blockers(args: &BlockersArgs, list: &Path) -> CmdResult {
    let targets = read_targets(list)?;
    let report = entries(&targets, args.fleet.parallel, |settings| async move {
        super::blockers::diagnose(&settings, &[], true, false).await
    })
    .await;
    let style = Style::detect();
    let mut out = crate::output::stdout();
    match args.format {
        Format::Json => render::json(&mut out, &report)?,
        Format::Human => {
            let sections = report.sections(|r| r.worth_a_look().then(|| r.human(style)));
            out.write_all(
                render::fleet::sections(&sections, "nobody waits for a lock", style).as_bytes(),
            )?
        }
    }
    let blocked = report
        .targets
        .iter()
        .flat_map(|e| &e.report)
        .any(|r| r.blocked());
    Ok(if blocked {
        Outcome::Blocked
    } else if report.targets.iter().any(|e| e.error.is_some()) {
        Outcome::Code(1)
    } else {
        Outcome::Done
    })
}

/// `doctor --targets FILE`: each database's settings and live state
/// audited. Exit 1 when any has a warning or could not be read, else 0.
pub async fn doctor(args: &DoctorArgs, list: &Path) -> CmdResult {
    let targets = read_targets(list)?;
    let report = entries(&targets, args.fleet.parallel, |settings| async move {
        let settings = settings.with_application_name("locksmith doctor");
        let client =
            locksmith_pg::guard::connect_for_transactions(&settings, super::READS_IN_TRANSACTIONS)
                .await?;
        let (findings, pooler) =
            super::doctor::audit_server(&client, &settings, &[], false).await?;
        Ok(super::doctor::DoctorReport {
            findings,
            log: Vec::new(),
            pooler,
        })
    })
    .await;
    let style = Style::detect();
    let warns = |r: &super::doctor::DoctorReport| {
        r.findings.iter().any(|f| f.severity >= Severity::Warning)
    };
    let mut out = crate::output::stdout();
    match args.format {
        Format::Json => render::json(&mut out, &report)?,
        Format::Human => {
            let sections = report
                .sections(|r| warns(r).then(|| render::doctor::human(&r.findings, &[], style)));
            out.write_all(render::fleet::sections(&sections, "no warnings", style).as_bytes())?
        }
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
