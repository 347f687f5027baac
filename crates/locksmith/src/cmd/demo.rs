//! `locksmith demo`: the incident replayed on a throwaway cluster.
//!
//! A 250-row `academic_partners`, open-loop request traffic, three sessions
//! leaked idle in transaction, and the story's ALTER run the way the story
//! ran it: it queues for its ACCESS EXCLUSIVE lock behind the leakers, every
//! request queues behind it, until it is cancelled on the server after the cap.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use locksmith_core::analysis;
use locksmith_pg::blockers::BlockerReport;
use locksmith_pg::guard::{Guard, GuardError, GuardPolicy, Step};
use locksmith_pg::snapshot::Snapshotter;
use locksmith_sandbox::bin_dir::BinDir;
use locksmith_sandbox::cluster::{Cluster, ClusterOptions};
use locksmith_sandbox::incident::{Incident, MIGRATION, TABLE};
use locksmith_sandbox::rehearsal::{self, PlainEnd};
use locksmith_sandbox::scene::Scene;
use locksmith_sandbox::served::{served, Served, WorstSecond};
use locksmith_sandbox::traffic::{Traffic, TrafficProfile, TrafficReport};
use serde::Serialize;
use tokio::sync::watch;

use super::progress::EventLines;
use crate::cli::DemoArgs;
use crate::exit::{CmdResult, Failure, Outcome};
use crate::render::{self, style::Style};

/// Leaked sessions, as in the story's `watch ps` output.
const LEAKERS: usize = 3;
/// Traffic before the migration starts, so the baseline is visible.
const WARM_UP: Duration = Duration::from_millis(1000);
/// Traffic after the migration ends, so the recovery is visible.
const COOL_DOWN: Duration = Duration::from_millis(1500);

/// One half of the demo, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct HalfResult {
    /// The longest any request waited.
    pub max_stall_ms: u64,
    /// 99th percentile request latency.
    pub p99_ms: u64,
    /// Requests sent.
    pub requests: usize,
    /// How long the traffic ran (warm-up, migration, cool-down): the halves
    /// differ in length, so compare requests per second, not requests.
    pub traffic_ms: u64,
    /// Requests slower than the 5 s gateway timeout.
    pub timeouts: usize,
    /// Requests answered within the gateway timeout (of `requests` offered).
    pub served_in_time: usize,
    /// The second of traffic in which the fewest requests were answered in
    /// time: how many were, and how many arrived in it. The averages hide
    /// an outage; this shows it (0 of 40 while the ALTER queued).
    pub worst_second: WorstSecond,
    /// Whether the migration completed.
    pub completed: bool,
    /// Most connections the app held at once.
    pub peak_connections: usize,
    /// How long the migration ran (until done, cancelled or given up).
    pub migration_ms: u64,
}

#[derive(Debug, Serialize)]
struct DemoResult {
    naive: HalfResult,
    /// The guard without the terminate policy: gives up, traffic untouched.
    guarded_no_terminate: HalfResult,
    /// The guard with `--terminate-idle-after 1s`: the leakers go, the migration completes.
    guarded: HalfResult,
}

/// What a migration strategy reports back to the scenario.
pub struct MigrationOutcome {
    pub completed: bool,
    pub summary: String,
    /// How long it ran: the one migration time the summary and the table both show.
    pub took: Duration,
}

pub async fn run(args: DemoArgs) -> CmdResult {
    let out = Output {
        json: args.json,
        style: Style::detect(),
        tty: std::io::stderr().is_terminal(),
    };
    out.say(STORY)?;
    let bin = BinDir::find(args.pg_bin.as_deref()).map_err(Failure::from)?;
    out.say(&format!(
        "Starting a throwaway PostgreSQL {} from {} …",
        bin.major,
        bin.path.display()
    ))?;
    let cluster = start_cluster(bin).await?;
    out.say(&format!(
        "  ready in {} on 127.0.0.1:{} (deleted when the demo ends)\n",
        locksmith_core::duration::human(cluster.ready_in()),
        cluster.port()
    ))?;

    out.heading("1. The migration as the story ran it: plain ALTER TABLE, no timeout")?;
    out.say(&format!("   {MIGRATION};"))?;
    out.say(&format!(
        "   {LEAKERS} web sessions are idle in transaction (a scoped_session never removed); requests keep arriving.\n"
    ))?;
    let cap = args.cap;
    let (naive, naive_outcome) = scenario(&cluster, "incident_naive", &out, |incident| {
        naive_migration(incident, cap)
    })
    .await?;
    out.say(&format!("\n   {}", naive_outcome.summary))?;
    out.results("naive (plain ALTER)", &naive)?;

    let guarded_cluster =
        start_cluster(BinDir::find(args.pg_bin.as_deref()).map_err(Failure::from)?).await?;
    out.heading("\n2. The same migration under the guard (lock budget 200ms, give up after 5s)")?;
    out.say("   It looks before it queues: while sessions idle in transaction hold the table, it waits without queueing.\n")?;
    let policy = GuardPolicy {
        deadline: Duration::from_secs(5),
        ..GuardPolicy::default()
    };
    let (blocked, blocked_outcome) = {
        let (policy, out_events) = (policy.clone(), out.events());
        scenario(
            &guarded_cluster,
            "incident_guarded",
            &out,
            move |incident| guarded_migration(incident, policy, out_events),
        )
        .await?
    };
    out.say(&format!("\n   {}", blocked_outcome.summary))?;
    out.results("guard, no termination", &blocked)?;

    out.heading("\n3. Under the guard with --terminate-idle-after 1s")?;
    out.say("   Sessions idle in transaction for 1s that block the migration are terminated; nothing else is touched.\n")?;
    let policy = GuardPolicy {
        terminate_idle_after: Some(Duration::from_secs(1)),
        ..policy
    };
    let (guarded, guarded_outcome) = {
        let out_events = out.events();
        scenario(
            &guarded_cluster,
            "incident_terminate",
            &out,
            move |incident| guarded_migration(incident, policy, out_events),
        )
        .await?
    };
    out.say(&format!("\n   {}", guarded_outcome.summary))?;
    out.results("guard + terminate", &guarded)?;

    if args.json {
        let mut stdout = crate::output::stdout();
        render::json(
            &mut stdout,
            &DemoResult {
                naive,
                guarded_no_terminate: blocked,
                guarded,
            },
        )?;
    } else {
        out.say(&side_by_side(&[
            ("plain ALTER", &naive),
            ("guard", &blocked),
            ("guard + terminate 1s", &guarded),
        ]))?;
        out.say(&diagnosis(&naive))?;
        out.say(NEXT)?;
    }
    Ok(Outcome::Done)
}

async fn start_cluster(bin: BinDir) -> Result<Cluster, Failure> {
    // Enough connection slots that the app's pool, the leakers and diagnosis all fit.
    let options = ClusterOptions {
        bin: Some(bin),
        settings: vec![("max_connections".into(), "120".into())],
    };
    tokio::task::spawn_blocking(move || Cluster::start_with(options))
        .await
        .map_err(|e| Failure::other(miette::miette!("starting the cluster: {e}")))?
        .map_err(Failure::from)
}

/// Runs one half: stage the database, then `migrate` in the scene (leaked
/// sessions, traffic, warm-up and cool-down) while [`watch`] shows it.
async fn scenario<F, Fut>(
    cluster: &Cluster,
    dbname: &str,
    out: &Output,
    migrate: F,
) -> Result<(HalfResult, MigrationOutcome), Failure>
where
    F: FnOnce(Incident) -> Fut,
    Fut: Future<Output = Result<MigrationOutcome, Failure>> + Send + 'static,
{
    let incident = Incident::stage(cluster, dbname)
        .await
        .map_err(Failure::from)?;
    let scene = Scene {
        traffic: TrafficProfile::default(),
        leaks: Some((LEAKERS, TABLE.to_string())),
        leak_name: "web-app (leaked scoped_session)".into(),
        warm_up: WARM_UP,
        cool_down: COOL_DOWN,
    };
    let played = scene
        .play(&incident.app, async |traffic, _| {
            watch(&incident, out, traffic, migrate).await
        })
        .await
        .map_err(Failure::from)?;
    let (outcome, migration_ms) = played.result?;
    let report: TrafficReport = played.report;
    let traffic_ms = played.work_ms.1 + COOL_DOWN.as_millis() as u64;
    let Served {
        in_time: served_in_time,
        worst_second,
    } = served(&report.samples, traffic_ms, scene.traffic.gateway_timeout);
    Ok((
        HalfResult {
            max_stall_ms: report.max_stall_ms,
            p99_ms: report.p99_ms,
            requests: report.requests,
            traffic_ms,
            timeouts: report.timeouts,
            served_in_time,
            worst_second,
            completed: outcome.completed,
            peak_connections: report.peak_connections + LEAKERS,
            migration_ms,
        },
        outcome,
    ))
}

/// Runs `migrate` while showing a live line and, once the queue has formed,
/// the blocker tree; returns its outcome and how long it ran.
async fn watch<F, Fut>(
    incident: &Incident,
    out: &Output,
    traffic: &Traffic,
    migrate: F,
) -> Result<(MigrationOutcome, u64), Failure>
where
    F: FnOnce(Incident) -> Fut,
    Fut: Future<Output = Result<MigrationOutcome, Failure>> + Send + 'static,
{
    let monitor = incident
        .admin
        .with_application_name("locksmith-demo-monitor")
        .connect()
        .await?;
    let snapshotter = Snapshotter::new(&monitor).await?;
    let started = Instant::now();
    let mut migration = tokio::spawn(migrate(incident.clone()));
    let mut tree_shown = false;
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    let outcome = loop {
        tokio::select! {
            done = &mut migration => {
                break done.map_err(|e| Failure::other(miette::miette!("the migration task failed: {e}")))??;
            }
            _ = ticker.tick() => {
                let snapshot = snapshotter.take(&monitor).await?;
                let waiting = snapshot.sessions.iter().filter(|s| s.is_waiting_on_lock()).count();
                out.live(started.elapsed(), traffic, waiting);
                // Show the tree once the queue has formed: that is the moment to diagnose.
                if !tree_shown && waiting > 5 && started.elapsed() > Duration::from_secs(2) {
                    tree_shown = true;
                    out.tree(&BlockerReport::from_snapshot(&snapshot))?;
                }
            }
        }
    };
    let migration_ms = outcome.took.as_millis() as u64;
    out.end_live();
    Ok((outcome, migration_ms))
}

/// The story's way: the ALTER with no timeout, cancelled on the server after
/// `cap` — the same plain run `rehearse` makes.
async fn naive_migration(incident: Incident, cap: Duration) -> Result<MigrationOutcome, Failure> {
    let settings = incident.admin.with_application_name("alembic");
    let run = rehearsal::plain(&settings, &[MIGRATION], cap, Instant::now())
        .await
        .map_err(Failure::from)?;
    let took = locksmith_core::duration::human(run.took);
    Ok(MigrationOutcome {
        completed: run.end == PlainEnd::Applied,
        took: run.took,
        summary: match &run.end {
            PlainEnd::Applied => format!("The ALTER finished after {took}."),
            PlainEnd::Cancelled(_) => format!(
                "The ALTER was still waiting for its lock after {took} and was cancelled on the server (as Ctrl-C in psql does)."
            ),
            PlainEnd::Failed(_, e) => format!("The ALTER failed: {e}"),
        },
    })
}

/// The guarded way: the same [`Guard`] `apply` and `run` use.
async fn guarded_migration(
    incident: Incident,
    policy: GuardPolicy,
    events: EventLines,
) -> Result<MigrationOutcome, Failure> {
    let (_never, interrupt) = watch::channel(None);
    let settings = incident.admin.with_application_name("locksmith");
    let mut guard = Guard::connect(&settings, policy, interrupt).await?;
    guard.on_event(events.into_handler());
    // The same analysis `apply` plans with: the ALTER takes AccessExclusiveLock on the table.
    let statements = analysis::analyze(MIGRATION, analysis::MAX_PG_VERSION).map_err(|e| {
        Failure::other(miette::miette!(
            "the incident's migration does not parse: {e}"
        ))
    })?;
    let step = Step::from(&statements[0]);
    let started = Instant::now();
    let result = guard.run_transaction(&[step], None).await;
    let elapsed = started.elapsed();
    let took = locksmith_core::duration::human(elapsed);
    let terminated = guard.report.terminated.len();
    Ok(match result {
        Ok(attempts) => MigrationOutcome {
            completed: true,
            took: elapsed,
            summary: applied_summary(&took, attempts, terminated, guard.report.max_queued_behind),
        },
        Err(GuardError::Blocked { holders, reason }) => MigrationOutcome {
            completed: false,
            took: elapsed,
            summary: format!(
                "Gave up after {took} ({reason}), exit code 3, nothing left queued. Blocked by:\n{}",
                holders.iter().map(|h| format!("     {}", render::guard::holder_line(h))).collect::<Vec<_>>().join("\n")
            ),
        },
        Err(e) => return Err(Failure::from(e)),
    })
}

/// What the demo is about to show, before anything starts.
const STORY: &str = "\
The story: a web app leaks sessions idle in transaction, and a deploy runs a one-line ALTER TABLE on a 250-row table.
The ALTER waits for those sessions' locks, and every request queues behind the ALTER: the site is down while it waits.
Below, on a throwaway PostgreSQL: that outage, then the same migration under locksmith's guard, twice.
";

/// Where to go from here, once the demo is over.
const NEXT: &str = "\nNext: `locksmith lint migrations/` shows what each of your migrations locks and the safe way; \
`locksmith doctor` audits your server's timeouts; `locksmith blockers` shows who blocks whom right now.";

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
        paint(&format!("{:>6}", render::age(Some(worst_ms as i64)))),
        waiting
    )
}

/// `n` over `ms` as a rate: `97/s`.
fn per_second(n: usize, ms: u64) -> String {
    format!("{:.0}/s", n as f64 * 1000.0 / ms.max(1) as f64)
}

/// How the guarded migration went, when it was applied.
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

fn side_by_side(columns: &[(&str, &HalfResult)]) -> String {
    let mut out = String::from("\n");
    let row = |label: &str, cells: Vec<String>| {
        let mut line = format!("   {label:<22}");
        for c in cells {
            line.push_str(&format!("{c:>24}"));
        }
        line + "\n"
    };
    out.push_str(&row(
        "",
        columns.iter().map(|(name, _)| name.to_string()).collect(),
    ));
    let ms = |v: u64| render::age(Some(v as i64));
    out.push_str(&row(
        "worst request stall",
        columns.iter().map(|(_, r)| ms(r.max_stall_ms)).collect(),
    ));
    out.push_str(&row(
        "p99 latency",
        columns.iter().map(|(_, r)| ms(r.p99_ms)).collect(),
    ));
    // Served against offered: an average rate would read 40/s for a run in
    // which nothing was answered for ten seconds.
    out.push_str(&row(
        "served in time/offered",
        columns
            .iter()
            .map(|(_, r)| format!("{} of {}", r.served_in_time, r.requests))
            .collect(),
    ));
    out.push_str(&row(
        "worst second served",
        columns
            .iter()
            .map(|(_, r)| format!("{} of {}", r.worst_second.served, r.worst_second.offered))
            .collect(),
    ));
    out.push_str(&row(
        "gateway timeouts (>5s)",
        columns
            .iter()
            .map(|(_, r)| r.timeouts.to_string())
            .collect(),
    ));
    out.push_str(&row(
        "peak app connections",
        columns
            .iter()
            .map(|(_, r)| r.peak_connections.to_string())
            .collect(),
    ));
    out.push_str(&row(
        "migration",
        columns
            .iter()
            .map(|(_, r)| {
                (if r.completed {
                    "applied"
                } else {
                    "not applied"
                })
                .to_string()
            })
            .collect(),
    ));
    out.push_str(&row(
        "migration time",
        columns.iter().map(|(_, r)| ms(r.migration_ms)).collect(),
    ));
    out.push_str(
        "\n   served in time: requests answered within the 5s gateway timeout, of those that arrived; worst second:\n   the one second in which the fewest were answered, of those that arrived in it.\n   peak app connections: most connections the app held at once (a request queued behind a lock\n   keeps its connection); the live line's \"in flight\" is the requests waiting for an answer at that moment.\n",
    );
    out
}

fn diagnosis(naive: &HalfResult) -> String {
    format!(
        "\nDiagnosis: nothing was slow; everything was waiting. The ALTER needs an ACCESS EXCLUSIVE lock, \
         so it queued behind {LEAKERS} sessions idle in transaction (each holding an ACCESS SHARE lock on \
         academic_partners), and every request queued behind the ALTER: worst stall {}, {} gateway timeouts.\n\
         Fix the leak (SQLAlchemy: scoped_session.remove() at the end of each request), set \
         idle_in_transaction_session_timeout on the app's role, and never run DDL without a lock budget.",
        render::age(Some(naive.max_stall_ms as i64)),
        naive.timeouts,
    )
}

/// Where the demo's narration goes: stderr, or nowhere with `--json`.
struct Output {
    json: bool,
    style: Style,
    tty: bool,
}

impl Output {
    fn events(&self) -> EventLines {
        EventLines::new(self.json, self.style).indented()
    }

    fn say(&self, line: &str) -> std::io::Result<()> {
        if !self.json {
            writeln!(crate::output::stdout(), "{line}")?;
        }
        Ok(())
    }

    fn heading(&self, line: &str) -> std::io::Result<()> {
        self.say(&self.style.bold(line))
    }

    fn live(&self, t: Duration, traffic: &Traffic, waiting: usize) {
        if self.json {
            return;
        }
        let s = traffic.live();
        let line = live_line(t, s.served, s.in_flight, s.worst_ms, waiting, &|worst| {
            if s.worst_ms > 1000 {
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

    fn end_live(&self) {
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
        for line in render::blockers::human(report, self.style).lines() {
            writeln!(out, "   {line}")?;
        }
        writeln!(out)
    }

    fn results(&self, label: &str, r: &HalfResult) -> std::io::Result<()> {
        self.say(&format!(
            "   {label}: worst stall {}, p99 {}, {} requests offered in {} ({}), {} served in time, {} timeouts (>5s), peak {} app connections, migration {}",
            render::age(Some(r.max_stall_ms as i64)),
            render::age(Some(r.p99_ms as i64)),
            r.requests,
            render::age(Some(r.traffic_ms as i64)),
            per_second(r.requests, r.traffic_ms),
            r.served_in_time,
            r.timeouts,
            r.peak_connections,
            if r.completed { "completed" } else { "not applied" },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    fn half(samples: &[Sample], secs: u64, completed: bool) -> HalfResult {
        let Served {
            in_time: served_in_time,
            worst_second,
        } = served(samples, secs * 1000, Duration::from_secs(5));
        HalfResult {
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
