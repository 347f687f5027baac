//! Live progress lines for guarded runs (`apply`, `run`, `demo`): one line
//! per guard event on stderr, so stdout stays clean for reports and JSON.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use locksmith_pg::guard::Event;
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
        move |e| {
            if matches!(e, migrate::Event::Guard(Event::Waiting { .. })) && !waiting.due() {
                return;
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
