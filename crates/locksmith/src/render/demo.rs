//! What `locksmith demo` prints: the story, the narration of each act, the
//! live line, the blocker tree once the queue forms, each half's results,
//! the table side by side and the diagnosis. The scenario itself is
//! `locksmith_sandbox::demo`'s; this module only formats and writes.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use locksmith_pg::blockers::BlockerReport;
use locksmith_sandbox::demo::standby::StandbyHalf;
use locksmith_sandbox::demo::{End, Half, Outcome, Show, LEAKERS};

use super::progress::EventLines;
use super::style::Style;

/// What the demo is about to show, before anything starts.
pub const STORY: &str = "\
The story: a web app leaks sessions idle in transaction, and a deploy runs a one-line ALTER TABLE on a 250-row table.
The ALTER waits for those sessions' locks, and every request queues behind the ALTER: the site is down while it waits.
Below, on a throwaway PostgreSQL: that outage, then the same migration under locksmith's guard, twice.
";

/// Where to go from here, once the demo is over.
pub const NEXT: &str = "\nNext: `locksmith lint migrations/` shows what each of your migrations locks and the safe way; \
`locksmith doctor` audits your server's timeouts; `locksmith blockers` shows who blocks whom right now.";

/// Where the demo's narration goes: stdout and a live line on stderr, or
/// nowhere with `--json`.
pub struct Narration {
    json: bool,
    style: Style,
    tty: bool,
}

impl Narration {
    /// Narration unless `json`.
    pub fn new(json: bool) -> Self {
        Narration {
            json,
            style: Style::detect(),
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// The guard's progress lines, indented under the act's heading.
    pub fn events(&self) -> EventLines {
        EventLines::new(self.json, self.style).indented()
    }

    /// One line of narration.
    pub fn say(&self, line: &str) -> std::io::Result<()> {
        if !self.json {
            writeln!(crate::output::stdout(), "{line}")?;
        }
        Ok(())
    }

    /// An act's heading.
    pub fn heading(&self, line: &str) -> std::io::Result<()> {
        self.say(&self.style.bold(line))
    }

    /// Shows what the scenario reports while a half runs.
    pub fn show(&self, shown: Show<'_>) {
        match shown {
            Show::Live {
                elapsed,
                traffic,
                waiting,
            } => self.live(
                elapsed,
                traffic.served,
                traffic.in_flight,
                traffic.worst_ms,
                waiting,
            ),
            // A closed stdout ends the demo at its next line of narration.
            Show::Queue(report) => {
                let _ = self.tree(report);
            }
        }
    }

    fn live(&self, t: Duration, served: usize, in_flight: usize, worst_ms: u64, waiting: usize) {
        if self.json {
            return;
        }
        let line = live_line(t, served, in_flight, worst_ms, waiting, &|worst| {
            if worst_ms > 1000 {
                self.style.red(worst)
            } else {
                worst.to_string()
            }
        });
        if self.tty {
            eprint!("\r{line}\x1b[K");
        } else if t.as_millis() % 1000 < 250 {
            eprintln!("{line}");
        }
    }

    /// Ends the live line (on a terminal it is redrawn in place).
    pub fn end_live(&self) {
        if !self.json && self.tty {
            eprintln!();
        }
    }

    fn tree(&self, report: &BlockerReport) -> std::io::Result<()> {
        if self.json {
            return Ok(());
        }
        self.end_live();
        let mut out = crate::output::stdout();
        writeln!(
            out,
            "\n   {}",
            self.style.bold("locksmith blockers, taken now:")
        )?;
        for line in super::blockers::human(report, self.style).lines() {
            writeln!(out, "   {line}")?;
        }
        writeln!(out)
    }

    /// A half's migration summary, then its results on one line.
    pub fn results(&self, label: &str, r: &Half, outcome: &Outcome) -> std::io::Result<()> {
        self.say(&format!("\n   {}", summary(outcome)))?;
        self.say(&format!(
            "   {label}: worst stall {}, p99 {}, {} requests offered in {} ({}), {} served in time, {} timeouts (>5s), peak {} app connections, migration {}",
            super::age(Some(r.max_stall_ms as i64)),
            super::age(Some(r.p99_ms as i64)),
            r.requests,
            super::age(Some(r.traffic_ms as i64)),
            per_second(r.requests, r.traffic_ms),
            r.served_in_time,
            r.timeouts,
            r.peak_connections,
            if r.completed { "completed" } else { "not applied" },
        ))
    }

    /// A standby half's migration summary, then the standby's reads on one line.
    pub fn standby_results(
        &self,
        label: &str,
        r: &StandbyHalf,
        outcome: &Outcome,
    ) -> std::io::Result<()> {
        self.say(&format!("\n   {}", summary(outcome)))?;
        self.say(&format!(
            "   {label}: worst standby read {}, p99 {}, {} reads of the table on the standby; migration {}{}",
            super::age(Some(r.worst_read_ms as i64)),
            super::age(Some(r.p99_ms as i64)),
            r.reads,
            if r.completed { "completed" } else { "not applied" },
            match r.replayed_ms {
                Some(ms) => format!(", replayed on the standby {} after it started", super::age(Some(ms as i64))),
                None => String::new(),
            },
        ))
    }
}

/// The live line, at most 80 columns without colour: `paint` colours the worst latency.
fn live_line(
    t: Duration,
    served: usize,
    in_flight: usize,
    worst_ms: u64,
    waiting: usize,
    paint: &dyn Fn(&str) -> String,
) -> String {
    format!(
        "  t={:>6}  served {:>5}  in flight {:>4}  worst wait {}  queued on locks {:>3}",
        locksmith_core::duration::human(t),
        served,
        in_flight,
        paint(&format!("{:>6}", super::age(Some(worst_ms as i64)))),
        waiting
    )
}

/// `n` over `ms` as a rate: `97/s`.
fn per_second(n: usize, ms: u64) -> String {
    format!("{:.0}/s", n as f64 * 1000.0 / ms.max(1) as f64)
}

/// How a half's migration ended, in a sentence or two.
pub fn summary(outcome: &Outcome) -> String {
    let took = locksmith_core::duration::human(outcome.took);
    match &outcome.end {
        End::Finished => format!("The ALTER finished after {took}."),
        End::Applied {
            attempts,
            terminated,
            max_queued,
        } => applied_summary(&took, *attempts, *terminated, *max_queued),
        End::Cancelled => format!(
            "The ALTER was still waiting for its lock after {took} and was cancelled on the server (as Ctrl-C in psql does)."
        ),
        End::Failed(e) => format!("The ALTER failed: {e}"),
        End::GaveUp { reason, holders } => format!(
            "Gave up after {took} ({reason}), exit code 3, nothing left queued. Blocked by:\n{}",
            holders
                .iter()
                .map(|h| format!("     {}", super::guard::holder_line(h)))
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// How a migration went, when it was applied.
fn applied_summary(took: &str, attempts: u32, terminated: usize, max_queued: i64) -> String {
    let queued = match max_queued {
        0 => "nothing ever queued behind it".to_string(),
        1 => "at most 1 session queued behind it".to_string(),
        n => format!("at most {n} sessions queued behind it"),
    };
    format!(
        "Applied in {took} ({attempts} lock attempt{}, {terminated} idle session{} terminated); {queued}.",
        if attempts == 1 { "" } else { "s" },
        if terminated == 1 { "" } else { "s" },
    )
}

/// A table row: a label, then one right-aligned cell per column.
fn row(label: &str, cells: Vec<String>) -> String {
    let mut line = format!("   {label:<22}");
    for c in cells {
        line.push_str(&format!("{c:>24}"));
    }
    line + "\n"
}

/// The halves side by side.
pub fn side_by_side(columns: &[(&str, &Half)]) -> String {
    let mut out = String::from("\n");
    out.push_str(&row(
        "",
        columns.iter().map(|(name, _)| name.to_string()).collect(),
    ));
    let ms = |v: u64| super::age(Some(v as i64));
    let cells = |f: &dyn Fn(&Half) -> String| columns.iter().map(|(_, r)| f(r)).collect();
    out.push_str(&row("worst request stall", cells(&|r| ms(r.max_stall_ms))));
    out.push_str(&row("p99 latency", cells(&|r| ms(r.p99_ms))));
    // Served against offered: an average rate would read 40/s for a run in
    // which nothing was answered for ten seconds.
    out.push_str(&row(
        "served in time/offered",
        cells(&|r| format!("{} of {}", r.served_in_time, r.requests)),
    ));
    out.push_str(&row(
        "worst second served",
        cells(&|r| format!("{} of {}", r.worst_second.served, r.worst_second.offered)),
    ));
    out.push_str(&row(
        "gateway timeouts (>5s)",
        cells(&|r| r.timeouts.to_string()),
    ));
    out.push_str(&row(
        "peak app connections",
        cells(&|r| r.peak_connections.to_string()),
    ));
    out.push_str(&row("migration", cells(&|r| applied(r.completed))));
    out.push_str(&row("migration time", cells(&|r| ms(r.migration_ms))));
    out.push_str(
        "\n   served in time: requests answered within the 5s gateway timeout, of those that arrived; worst second:\n   the one second in which the fewest were answered, of those that arrived in it.\n   peak app connections: most connections the app held at once (a request queued behind a lock\n   keeps its connection); the live line's \"in flight\" is the requests waiting for an answer at that moment.\n",
    );
    out
}

/// The standby act's halves side by side.
pub fn standby_side_by_side(columns: &[(&str, &StandbyHalf)]) -> String {
    let mut out = String::from("\n");
    out.push_str(&row(
        "on the standby",
        columns.iter().map(|(name, _)| name.to_string()).collect(),
    ));
    let ms = |v: u64| super::age(Some(v as i64));
    let cells = |f: &dyn Fn(&StandbyHalf) -> String| columns.iter().map(|(_, r)| f(r)).collect();
    out.push_str(&row("worst read", cells(&|r| ms(r.worst_read_ms))));
    out.push_str(&row("p99 read", cells(&|r| ms(r.p99_ms))));
    out.push_str(&row("reads", cells(&|r| r.reads.to_string())));
    out.push_str(&row("migration", cells(&|r| applied(r.completed))));
    out.push_str(&row("migration time", cells(&|r| ms(r.migration_ms))));
    out.push_str(&row(
        "replayed after",
        cells(&|r| r.replayed_ms.map_or("-".into(), ms)),
    ));
    out
}

fn applied(completed: bool) -> String {
    (if completed { "applied" } else { "not applied" }).to_string()
}

/// What went wrong in the plain half, and what to do about it.
pub fn diagnosis(naive: &Half) -> String {
    format!(
        "\nDiagnosis: nothing was slow; everything was waiting. The ALTER needs an ACCESS EXCLUSIVE lock, \
         so it queued behind {LEAKERS} sessions idle in transaction (each holding an ACCESS SHARE lock on \
         academic_partners), and every request queued behind the ALTER: worst stall {}, {} gateway timeouts.\n\
         Fix the leak (SQLAlchemy: scoped_session.remove() at the end of each request), set \
         idle_in_transaction_session_timeout on the app's role, and never run DDL without a lock budget.",
        super::age(Some(naive.max_stall_ms as i64)),
        naive.timeouts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use locksmith_sandbox::served::{served, Served, WorstSecond};
    use locksmith_sandbox::traffic::Sample;

    /// 40 requests a second for `secs` seconds; those arriving in
    /// `[from, to)` ms wait until `to` (an ALTER queued there).
    fn traffic(secs: u64, stall: Option<(u64, u64)>) -> Vec<Sample> {
        (0..secs * 40)
            .map(|i| {
                let at_ms = i * 25;
                let latency_ms = match stall {
                    Some((from, to)) if (from..to).contains(&at_ms) => to - at_ms,
                    _ => 3,
                };
                Sample {
                    at_ms,
                    latency_ms,
                    failed: false,
                }
            })
            .collect()
    }

    fn half(samples: &[Sample], secs: u64, completed: bool) -> Half {
        let Served {
            in_time: served_in_time,
            worst_second,
        } = served(samples, secs * 1000, Duration::from_secs(5));
        Half {
            max_stall_ms: samples.iter().map(|s| s.latency_ms).max().unwrap_or(0),
            p99_ms: 0,
            requests: samples.len(),
            traffic_ms: secs * 1000,
            timeouts: samples.iter().filter(|s| s.latency_ms > 5000).count(),
            served_in_time,
            worst_second,
            completed,
            peak_connections: 0,
            migration_ms: 0,
        }
    }

    #[test]
    fn an_outage_shows_as_nothing_served_against_what_was_offered() {
        // Ten seconds in which every request waits for the cancelled ALTER.
        let outage = traffic(13, Some((1000, 11_000)));
        let naive = half(&outage, 13, false);
        assert_eq!(
            naive.worst_second,
            WorstSecond {
                served: 0,
                offered: 40
            }
        );
        assert!(naive.served_in_time < naive.requests, "{naive:?}");
        let calm = half(&traffic(3, None), 3, true);
        assert_eq!(calm.served_in_time, calm.requests);
        assert_eq!(calm.worst_second.served, calm.worst_second.offered);
        insta::assert_snapshot!(side_by_side(&[
            ("plain ALTER", &naive),
            ("guard + terminate 1s", &calm),
        ]));
    }

    #[test]
    fn the_live_line_fits_80_columns_even_at_its_widest() {
        let line = live_line(
            Duration::from_secs(599),
            99_999,
            9_999,
            599_000,
            999,
            &|s| s.to_string(),
        );
        assert!(
            line.chars().count() <= 80,
            "{} columns: {line}",
            line.chars().count()
        );
    }

    #[test]
    fn request_counts_are_rates() {
        assert_eq!(per_second(300, 3_000), "100/s");
        assert_eq!(per_second(5, 0), "5000/s");
    }

    #[test]
    fn nothing_queued_is_said_as_such() {
        let none = applied_summary("30ms", 1, 3, 0);
        assert!(none.contains("nothing ever queued behind it"), "{none}");
        assert!(!none.contains("at most 0"), "{none}");
        assert!(applied_summary("30ms", 2, 1, 1).contains("at most 1 session queued"));
    }

    #[test]
    fn the_story_is_three_lines_and_the_end_names_the_next_command() {
        assert_eq!(STORY.lines().count(), 3);
        assert!(NEXT.contains("locksmith lint"));
    }
}
