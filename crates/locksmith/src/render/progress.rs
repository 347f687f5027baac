//! Live progress lines for guarded runs (`apply`, `run`, `demo`): one line
//! per guard event on stderr, so stdout stays clean for reports and JSON;
//! for a fleet (`apply --targets`), one status line redrawn in place
//! ([`FleetProgress`]); `rehearse`'s load bar ([`LoadBar`]). A backfill's
//! progress is a bar on a terminal, a line a second otherwise, and a JSON
//! line on stderr under `--format json` ([`BackfillBar`]).

use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use locksmith_pg::guard::Event;
use locksmith_pg::migrate::fleet::{FleetEvent, TargetReport, TargetStatus};
use locksmith_pg::migrate::{self, Mode};

use crate::render::{self, style::Style};

/// Prints guard events as lines on stderr.
#[derive(Debug, Clone, Copy)]
pub struct EventLines {
    quiet: bool,
    tty: bool,
    indent: bool,
    style: Style,
}

impl EventLines {
    /// Lines unless `quiet` (e.g. `--format json`).
    pub fn new(quiet: bool, style: Style) -> Self {
        EventLines {
            quiet,
            tty: std::io::stderr().is_terminal(),
            indent: false,
            style,
        }
    }

    /// Indented under a heading (the demo).
    pub fn indented(mut self) -> Self {
        self.indent = true;
        self
    }

    /// A handler for [`locksmith_pg::guard::Guard::on_event`].
    pub fn into_handler(self) -> impl FnMut(Event<'_>) + Send + 'static {
        let mut waiting = WaitingLines::default();
        move |e| {
            if !matches!(e, Event::Waiting { .. }) || waiting.due() {
                self.print(&e)
            }
        }
    }

    /// A handler for [`locksmith_pg::migrate::Runner::on_event`], with
    /// waiting lines throttled as in [`into_handler`](Self::into_handler).
    pub fn into_migrate_handler(self) -> impl FnMut(migrate::Event<'_>) + Send + 'static {
        let mut waiting = WaitingLines::default();
        let mut backfill = BackfillBar::default();
        move |e| {
            if matches!(e, migrate::Event::Guard(Event::Waiting { .. })) && !waiting.due() {
                return;
            }
            if let migrate::Event::Guard(Event::Backfill {
                table,
                rows_done,
                rows_total,
                rows_per_second,
                paused,
            }) = &e
            {
                let shown = backfill.show(
                    &self,
                    &Backfill {
                        event: "backfill",
                        table,
                        rows_done: *rows_done,
                        rows_total: *rows_total,
                        rows_per_second: *rows_per_second,
                        paused: *paused,
                    },
                );
                if shown {
                    return;
                }
            } else {
                backfill.finish();
            }
            self.migrate(&e)
        }
    }

    /// Prints one event of a migration run (`apply`).
    pub fn migrate(&self, event: &migrate::Event<'_>) {
        if self.quiet {
            return;
        }
        let line = match event {
            migrate::Event::Guard(e) => return self.print(e),
            migrate::Event::Pooler { pooler, direct } => {
                let how = match direct {
                    true => {
                        "the runner lock, the watchdog and statements outside a transaction block go \
                         straight to the server (--direct-url); migrations go through the pooler"
                    }
                    false => {
                        "each migration takes the runner lock and checks the history inside its own \
                         transaction; a statement that cannot run in a transaction block needs \
                         --direct-url"
                    }
                };
                format!("through {pooler}: {how}")
            }
            migrate::Event::UnwatchedStandbys(n) => format!(
                "warning: {n} standby server(s) stream from this primary and are not watched: \
                 their readers can stall replay of an ACCESS EXCLUSIVE lock, and their traffic behind it. \
                 Pass --replica URL for each hot standby."
            ),
            migrate::Event::Baselined { count, version } => format!(
                "recorded {count} migrations as applied without running them (--baseline {version})"
            ),
            migrate::Event::Applying { migration, mode } => format!(
                "applying {} ({})",
                migration.file(),
                match mode {
                    Mode::Online(steps) => format!("online, {steps} steps"),
                    Mode::Transaction => "one transaction".into(),
                    Mode::StatementByStatement => "statement by statement".into(),
                }
            ),
            migrate::Event::SplitsTransaction { migration, steps } => format!(
                "note: {} wraps its statements in BEGIN … COMMIT, but --online runs them as {steps} \
                 steps, each committed on its own: should one fail, the steps before it stay done \
                 (the report lists them) and a rerun resumes at the failed one",
                migration.file()
            ),
            migrate::Event::AppliedElsewhere(m) => format!(
                "{}: another locksmith apply applied it meanwhile; not run again",
                m.file()
            ),
        };
        eprintln!("{line}");
    }

    /// Prints one event.
    pub fn print(&self, event: &Event<'_>) {
        if self.quiet {
            return;
        }
        let line = self.line(event);
        let prefix = if self.indent {
            "   guard: "
        } else {
            "locksmith: "
        };
        if self.tty {
            // Clear a live status line the demo may have drawn.
            eprint!("\r\x1b[K");
        }
        eprintln!("{prefix}{line}");
    }

    /// One event's text, without a prefix (a fleet puts its target there).
    pub fn line(&self, event: &Event<'_>) -> String {
        match event {
            Event::Waiting { holders, next_look } => format!(
                "waiting for {} session{} holding a conflicting lock: {}{}; not queueing, next look in {}",
                holders.len(),
                if holders.len() == 1 { "" } else { "s" },
                holders[0].label(),
                if holders.len() > 1 { " …" } else { "" },
                locksmith_core::duration::human(*next_look)
            ),
            Event::Terminated(h) => self.style.yellow(&format!("terminated {}", render::guard::holder_line(h))),
            Event::Attempt { number, nowait } => {
                format!("attempt {number}: taking locks {}", if *nowait { "with NOWAIT" } else { "within lock_timeout" })
            }
            Event::LostRace { number, watch } => format!(
                "attempt {number} lost the race for its locks and was rolled back{}",
                if watch.waited_for.is_empty() {
                    String::new()
                } else {
                    format!(" (waited for {})", watch.waited_for.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "))
                }
            ),
            Event::DroppedInvalidIndex(name) => format!("dropped the invalid index {name} left by a failed concurrent build"),
            Event::IndexAlreadyBuilt(name) => format!("the index {name} is already built as the statement defines it; nothing to do"),
            Event::OnlineStep { number, of, sql, skipped } => format!(
                "online step {number} of {of}{}: {}",
                if *skipped { " (done by an earlier run, skipped)" } else { "" },
                render::one_line(sql, 90)
            ),
            Event::Backfill { table, rows_done, rows_total, rows_per_second, paused } => {
                let left = (rows_total - rows_done).max(0) as f64 / rows_per_second.max(1.0);
                let eta = locksmith_core::duration::human(Duration::from_secs(left.ceil() as u64));
                format!(
                    "{table}: {rows_done} of ~{rows_total} rows, {rows_per_second:.0} rows/s{}",
                    match paused {
                        Some(why) => format!(", paused: {why}"),
                        None if rows_done >= rows_total => String::new(),
                        None => format!(", about {eta} left"),
                    }
                )
            }
        }
    }
}

/// At most one "waiting for …" line per [`WaitingLines::EVERY`]: while only
/// standby queries are in the way the guard looks four times a second
/// (`locksmith_pg::guard::replica::LOOK_AGAIN_WITHIN`), and a line per look
/// would bury the rest.
#[derive(Debug, Default)]
pub struct WaitingLines {
    last: Option<Instant>,
}

impl WaitingLines {
    /// The least time between two waiting lines.
    pub const EVERY: Duration = Duration::from_secs(1);

    /// Whether a waiting line is due now (and, if so, counts it as printed).
    pub fn due(&mut self) -> bool {
        self.due_at(Instant::now())
    }

    fn due_at(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.duration_since(last) < Self::EVERY => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

/// A fleet's live progress on stderr: one status line (done / running /
/// left, failures so far), redrawn in place on a terminal; a line per target
/// that did not apply, and the guard's waiting and termination lines, each
/// prefixed with its target. Elsewhere (a CI log) a line per finished target.
pub struct FleetProgress {
    total: usize,
    tty: bool,
    lines: EventLines,
    style: Style,
    running: HashSet<usize>,
    done: usize,
    counts: HashMap<TargetStatus, usize>,
    waiting: HashMap<usize, WaitingLines>,
}

impl FleetProgress {
    /// The progress of `total` targets.
    pub fn new(total: usize, style: Style) -> FleetProgress {
        FleetProgress {
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

    /// Shows one event of the fleet.
    pub fn on(&mut self, event: FleetEvent<'_>) {
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

/// One backfill progress event, as `--format json` writes it on stderr
/// (a line each): `{"event": "backfill", "table", "rows_done",
/// "rows_total", "rows_per_second", "paused"}`.
#[derive(serde::Serialize)]
struct Backfill<'a> {
    event: &'static str,
    table: &'a str,
    rows_done: i64,
    rows_total: i64,
    rows_per_second: f64,
    paused: Option<&'a str>,
}

/// A backfill's progress bar on a terminal, one per table as it fills.
#[derive(Default)]
struct BackfillBar {
    bar: Option<(String, indicatif::ProgressBar)>,
}

impl BackfillBar {
    /// Shows `b` as a JSON line (quiet) or a bar (a terminal): whether it
    /// did; otherwise the caller prints it as a line.
    fn show(&mut self, lines: &EventLines, b: &Backfill<'_>) -> bool {
        if lines.quiet {
            if let Ok(json) = serde_json::to_string(b) {
                eprintln!("{json}");
            }
            return true;
        }
        if !lines.tty {
            return false;
        }
        if self.bar.as_ref().is_some_and(|(table, _)| table != b.table) {
            self.finish();
        }
        let (_, bar) = self.bar.get_or_insert_with(|| {
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "locksmith: {prefix} [{bar:30}] {pos}/~{len} rows, {msg}",
            ) {
                bar.set_style(style.progress_chars("#>-"));
            }
            bar.set_prefix(b.table.to_string());
            (b.table.to_string(), bar)
        });
        bar.set_length(b.rows_total.max(b.rows_done).max(0) as u64);
        bar.set_position(b.rows_done.max(0) as u64);
        bar.set_message(match b.paused {
            Some(why) => format!("paused: {why}"),
            None => format!("{:.0} rows/s", b.rows_per_second),
        });
        true
    }

    /// The fill is over (another event came): the bar stays as it ended.
    fn finish(&mut self) {
        if let Some((_, bar)) = self.bar.take() {
            bar.finish();
        }
    }
}

/// `rehearse`'s load progress bar on stderr, drawn only on a terminal.
pub struct LoadBar(Option<indicatif::ProgressBar>);

impl LoadBar {
    /// A bar, drawn only when `on` (a terminal, not `--format json`).
    pub fn new(on: bool) -> Self {
        LoadBar(on.then(|| {
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "  [{bar:30}] {pos}/{len} rows, {per_sec}, {eta} left",
            ) {
                bar.set_style(style.progress_chars("#>-"));
            }
            bar
        }))
    }

    /// `done` of `total` rows loaded.
    pub fn show(&mut self, done: i64, total: i64) {
        if let Some(bar) = &self.0 {
            bar.set_length(total.max(0) as u64);
            bar.set_position(done.max(0) as u64);
        }
    }

    /// The load is over.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_lines_are_printed_at_most_once_a_second() {
        let mut lines = WaitingLines::default();
        let start = Instant::now();
        let printed: Vec<bool> = (0..9)
            .map(|i| lines.due_at(start + Duration::from_millis(250 * i)))
            .collect();
        assert_eq!(
            printed,
            [true, false, false, false, true, false, false, false, true]
        );
    }
}
