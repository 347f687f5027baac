//! The human text of a fleet's report (`apply --targets`): one table, the
//! targets that did not apply first, then the counts and what to do next.
//! The JSON contract is the report itself
//! ([`locksmith_pg::migrate::fleet::FleetReport`]).

use std::fmt::Write;

use locksmith_pg::migrate::fleet::{Entries, FleetReport, TargetReport, TargetStatus};

use super::style::Style;
use super::{age, one_line};

/// The status as people read it, coloured (green done, yellow gave up, red
/// failed or unreachable).
pub fn status_text(status: TargetStatus, style: Style) -> String {
    paint(status, label(status), style)
}

/// `text` in the colour of `status`.
fn paint(status: TargetStatus, text: &str, style: Style) -> String {
    match status {
        TargetStatus::Applied | TargetStatus::UpToDate => style.green(text),
        TargetStatus::GaveUp => style.yellow(text),
        TargetStatus::Failed | TargetStatus::Unreachable => style.red(text),
        TargetStatus::Skipped => style.dim(text),
    }
}

fn label(status: TargetStatus) -> &'static str {
    match status {
        TargetStatus::Applied => "applied",
        TargetStatus::UpToDate => "up to date",
        TargetStatus::GaveUp => "gave up",
        TargetStatus::Failed => "failed",
        TargetStatus::Unreachable => "unreachable",
        TargetStatus::Skipped => "skipped",
    }
}

/// Failures first: what needs a look, then what did not run, then the rest.
fn rank(status: TargetStatus) -> u8 {
    match status {
        TargetStatus::Failed => 0,
        TargetStatus::Unreachable => 1,
        TargetStatus::GaveUp => 2,
        TargetStatus::Skipped => 3,
        TargetStatus::Applied => 4,
        TargetStatus::UpToDate => 5,
    }
}

/// Why a target did not apply: its error, and the sessions that blocked it.
pub fn reason(report: &TargetReport) -> Option<String> {
    let blockers: Vec<String> = report.blockers.iter().map(|h| h.label()).collect();
    let blockers = (!blockers.is_empty()).then(|| format!("blocked by {}", blockers.join(", ")));
    match (report.error.as_deref(), blockers) {
        (Some(e), Some(b)) => Some(format!("{}; {b}", e.trim_end_matches('.'))),
        (Some(e), None) => Some(e.to_string()),
        (None, b) => b,
    }
}

/// The table, the counts, and what to do next; `dir` is the folder, for the
/// rerun command.
pub fn human(report: &FleetReport, dir: &str, style: Style) -> String {
    let mut rows: Vec<&TargetReport> = report.targets.iter().collect();
    rows.sort_by_key(|t| (rank(t.status), t.line));
    let header = ["TARGET", "STATUS", "APPLIED", "TIME", "REASON OR BLOCKERS"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|t| {
            [
                t.target.clone(),
                label(t.status).to_string(),
                t.applied.len().to_string(),
                match t.status {
                    TargetStatus::Skipped => "-".into(),
                    _ => age(Some(t.duration_ms as i64)),
                },
                reason(t).map(|r| one_line(&r, 200)).unwrap_or_default(),
            ]
        })
        .collect();
    let width = |i: usize| {
        cells
            .iter()
            .map(|c| c[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2), width(3)];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        style.bold(
            format!(
                "{:w0$}  {:w1$}  {:>w2$}  {:>w3$}  {}",
                header[0],
                header[1],
                header[2],
                header[3],
                header[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3]
            )
            .trim_end()
        )
    );
    for (t, c) in rows.iter().zip(&cells) {
        // Padded before colouring: escape codes have no width.
        let status = format!("{:w$}", c[1], w = widths[1]);
        let status = paint(t.status, &status, style);
        let line = format!(
            "{:w0$}  {status}  {:>w2$}  {:>w3$}  {}",
            c[0],
            c[2],
            c[3],
            c[4],
            w0 = widths[0],
            w2 = widths[2],
            w3 = widths[3]
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let s = report.summary;
    let _ = writeln!(
        out,
        "\n{} targets: {} applied, {} up to date, {} gave up, {} failed, {} unreachable, {} skipped.",
        report.targets.len(),
        s.applied,
        s.up_to_date,
        s.gave_up,
        s.failed,
        s.unreachable,
        s.skipped
    );
    if let Some(signal) = report.interrupted {
        let _ = writeln!(
            out,
            "{}",
            style.red(&format!(
                "Interrupted ({}): no target started after it; those running were stopped and rolled back.",
                match signal {
                    locksmith_pg::guard::Interrupt::Interrupt => "Ctrl-C",
                    locksmith_pg::guard::Interrupt::Terminate => "SIGTERM",
                }
            ))
        );
    }
    let blockers: Vec<_> = report
        .targets
        .iter()
        .flat_map(|t| t.blockers.iter().cloned())
        .collect();
    if !blockers.is_empty() {
        let _ = writeln!(out, "{}", super::guard::advice(&blockers));
    }
    if report.targets.iter().any(|t| !t.status.is_success()) {
        let _ = writeln!(
            out,
            "Rerun the same command once the causes above are dealt with: each database applies only what is pending in its own history (`locksmith apply {dir} --targets …`)."
        );
    }
    out
}

/// One target of `blockers --targets` or `doctor --targets`.
pub struct Section<'a> {
    /// Its label.
    pub target: &'a str,
    /// `Ok(Some(text))`: its single-target report, worth reading;
    /// `Ok(None)`: nothing to report; `Err`: why it could not be read.
    pub body: Result<Option<String>, String>,
}

/// `blockers --targets` or `doctor --targets` for people: `shown` gives the
/// text of a report worth a look (`None`: counted among the clean ones); a
/// target that could not be read shows its error ([`sections`]).
pub fn entries<T>(
    entries: &Entries<T>,
    shown: impl Fn(&T) -> Option<String>,
    clean: &str,
    style: Style,
) -> String {
    let all: Vec<Section<'_>> = entries
        .targets
        .iter()
        .map(|e| Section {
            target: &e.target,
            body: match &e.report {
                Some(r) => Ok(shown(r)),
                None => Err(e.error.clone().unwrap_or_default()),
            },
        })
        .collect();
    sections(&all, clean, style)
}

/// Each target with something to report under its own heading, those that
/// could not be read first; the others in one line, as `clean` says.
pub fn sections(sections: &[Section<'_>], clean: &str, style: Style) -> String {
    let mut out = String::new();
    for s in sections {
        if let Err(e) = &s.body {
            let _ = writeln!(out, "{}\n  {}\n", style.bold(s.target), style.red(e));
        }
    }
    for s in sections {
        if let Ok(Some(text)) = &s.body {
            let _ = writeln!(out, "{}", style.bold(s.target));
            for line in text.lines() {
                let _ = writeln!(out, "  {line}");
            }
            out.push('\n');
        }
    }
    let fine: Vec<&str> = sections
        .iter()
        .filter(|s| matches!(s.body, Ok(None)))
        .map(|s| s.target)
        .collect();
    let unread = sections.iter().filter(|s| s.body.is_err()).count();
    let _ = writeln!(
        out,
        "{} targets: {} to look at (above), {unread} could not be read, {} with nothing to report ({clean}).",
        sections.len(),
        sections.len() - fine.len() - unread,
        fine.len(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use locksmith_pg::migrate::fleet::Summary;

    fn target(line: usize, name: &str, status: TargetStatus, applied: &[&str]) -> TargetReport {
        TargetReport {
            target: format!("postgresql://app:***@db1:5432/{name}"),
            status,
            applied: applied.iter().map(|s| s.to_string()).collect(),
            blockers: Vec::new(),
            error: None,
            duration_ms: 812,
            line,
        }
    }

    #[test]
    fn failures_come_first_with_their_reasons() {
        let mut failed = target(3, "t03", TargetStatus::Failed, &["001_audit"]);
        failed.error = Some("002_audit.sql: relation \"audit\" already exists (SQLSTATE 42P07). The whole migration was rolled back and not recorded; fix the migration and run apply again.".into());
        let mut unreachable = target(4, "t04", TargetStatus::Unreachable, &[]);
        unreachable.error =
            Some("could not connect to app@db9:5432/t04: connection refused".into());
        let targets = vec![
            target(1, "t01", TargetStatus::Applied, &["001_audit", "002_audit"]),
            target(2, "t02", TargetStatus::UpToDate, &[]),
            failed,
            unreachable,
        ];
        let report = FleetReport {
            summary: Summary::of(&targets),
            targets,
            interrupted: None,
        };
        insta::assert_snapshot!(human(&report, "migrations", Style::plain()));
    }
}
