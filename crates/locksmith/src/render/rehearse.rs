//! `locksmith rehearse` for people and machines: a side-by-side summary, the
//! JSON report (`{"naive": …, "guarded": …, "online": …}`), and one
//! self-contained HTML file with an SVG timeline per run — every request's
//! latency as a dot, the statements' lock holds shaded — and the tables.
//! The SVG is written by hand: no scripts, no network, nothing to load.

use std::fmt::Write;
use std::time::Duration;

use locksmith_sandbox::rehearsal::synth::LoadReport;
use locksmith_sandbox::rehearsal::{Run, StatementRun, Stop, Way};
use locksmith_sandbox::served;
use serde_json::{json, Value};

use super::style::Style;
use super::{age, one_line};

/// Everything a rehearsal produced.
pub struct Rehearsal {
    /// The runs, naive first.
    pub runs: Vec<Run>,
    /// What the synthetic load did.
    pub load: LoadReport,
    /// How long the load took.
    pub load_time: Duration,
    /// How long the runs took.
    pub rehearse_time: Duration,
    /// The stall budget the naive run is judged by.
    pub max_stall: Duration,
    /// Sessions left idle in transaction during each run (`--leaks`).
    pub leaks: usize,
    /// The table they read.
    pub leak_table: Option<String>,
    /// The folder `apply` would run, for the next command.
    pub apply_dir: String,
}

/// The answer to "is my migration safe to run, and how".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Safe to run the way `next` says.
    pub safe: bool,
    /// One sentence.
    pub sentence: String,
    /// The command to run next, and what else to do before it.
    pub next: String,
}

/// The verdict, from the runs: the first way that applied the migration
/// within the stall budget, else why none did and what would help.
pub fn verdict(r: &Rehearsal) -> Verdict {
    let ms = |v: u64| age(Some(v as i64));
    let budget = age(Some(r.max_stall.as_millis() as i64));
    let within =
        |run: &Run| run.completed && Duration::from_millis(run.max_stall_ms) <= r.max_stall;
    let find = |way: Way| r.runs.iter().find(|x| x.way == way);
    let apply = format!("locksmith apply {}", r.apply_dir);
    let naive = find(Way::Naive);
    let guarded = find(Way::Guarded);
    let online = find(Way::Online);
    let plain_said = naive.map_or(String::new(), |n| {
        if n.stop == Some(Stop::Failed) {
            format!("run plainly it fails: {}", n.outcome)
        } else {
            format!(
                "run plainly it stalled requests for {} (budget {budget})",
                ms(n.max_stall_ms)
            )
        }
    });
    if let Some(n) = naive.filter(|n| within(n)) {
        return Verdict {
            safe: true,
            sentence: format!(
                "Safe to run as written: run plainly it applied, and no request waited longer than {} (budget {budget}).",
                ms(n.max_stall_ms)
            ),
            next: format!("`{apply}` (under the guard, which still bounds every wait if production is busier)"),
        };
    }
    if naive.is_some_and(|n| n.stop == Some(Stop::Failed)) {
        return Verdict {
            safe: false,
            sentence: format!("Not safe to run: {plain_said}."),
            next: "fix the migration, then rehearse it again".into(),
        };
    }
    if let Some(g) = guarded.filter(|g| within(g)) {
        return Verdict {
            safe: true,
            sentence: format!(
                "Safe under the guard, not as written: {plain_said}; under the guard it applied, and no request waited longer than {}.",
                ms(g.max_stall_ms)
            ),
            next: format!("`{apply}`"),
        };
    }
    if let Some(o) = online.filter(|o| within(o)) {
        return Verdict {
            safe: true,
            sentence: format!(
                "Safe only online: {plain_said}, and under the guard as written it did not apply; its online form applied, and no request waited longer than {}.",
                ms(o.max_stall_ms)
            ),
            next: format!("`locksmith apply --online {}`", r.apply_dir),
        };
    }
    let blocked = |run: Option<&Run>| run.is_none_or(|x| x.stop == Some(Stop::Blocked));
    if guarded.is_some() && blocked(guarded) && blocked(online) {
        let who = match (r.leaks, &r.leak_table) {
            (0, _) | (_, None) => "sessions hold locks it needs".to_string(),
            (1, Some(t)) => format!("a session sits idle in transaction on {t}"),
            (n, Some(t)) => format!("{n} sessions sit idle in transaction on {t}"),
        };
        return Verdict {
            safe: false,
            sentence: format!(
                "Not safe to run while {who}: {plain_said} behind them, and under the guard traffic was spared but it gave up with nothing applied."
            ),
            next: format!(
                "`{apply} --terminate-idle-after 30s` (ends sessions idle in transaction for 30s that block it), \
                 or end them first: `locksmith blockers` names them; fix the application, or set \
                 idle_in_transaction_session_timeout on its role"
            ),
        };
    }
    if guarded.is_some_and(|g| g.stop == Some(Stop::HeldTooLong)) && online.is_none() {
        return Verdict {
            safe: false,
            sentence: format!(
                "Not safe as written nor under the guard: {plain_said}, and under the guard it held a lock that blocks traffic longer than --max-hold allows and was rolled back."
            ),
            next: "rehearse its online form: the same `locksmith rehearse` command with `--online`".into(),
        };
    }
    Verdict {
        safe: false,
        sentence: format!(
            "Not safe to run: no way it was rehearsed applied it within the {budget} stall budget ({plain_said})."
        ),
        next: "read what happened in each run below".into(),
    }
}

/// A run's heading.
pub fn title(way: Way) -> &'static str {
    match way {
        Way::Naive => "plain (as psql runs it)",
        Way::Guarded => "under the guard",
        Way::Online => "under the guard, online",
    }
}

/// The JSON report: each run under its name; `online` is null without `--online`.
pub fn json(r: &Rehearsal) -> Value {
    let get = |way: Way| {
        r.runs
            .iter()
            .find(|x| x.way == way)
            .map_or(Value::Null, |x| {
                serde_json::to_value(x).unwrap_or(Value::Null)
            })
    };
    json!({ "naive": get(Way::Naive), "guarded": get(Way::Guarded), "online": get(Way::Online) })
}

/// The human summary.
pub fn human(r: &Rehearsal, style: &Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}",
        style.bold(&format!(
            "Rehearsal: {} rows loaded in {} ({:.0} rows/s), runs took {}",
            r.load.rows,
            age(Some(r.load_time.as_millis() as i64)),
            rate(r.load.rows, r.load_time),
            age(Some(r.rehearse_time.as_millis() as i64))
        ))
    );
    for u in &r.load.unhonoured {
        let _ = writeln!(out, "  {} {u}", style.yellow("not honoured:"));
    }
    let _ = writeln!(out);
    let mut line = format!("  {:<22}", "");
    for run in &r.runs {
        let _ = write!(line, "{:>26}", title(run.way));
    }
    let _ = writeln!(out, "{line}");
    let row = |label: &str, f: &dyn Fn(&Run) -> String| {
        let mut line = format!("  {label:<22}");
        for run in &r.runs {
            let _ = write!(line, "{:>26}", f(run));
        }
        line
    };
    let ms = |v: u64| age(Some(v as i64));
    let _ = writeln!(
        out,
        "{}",
        row("worst request stall", &|x| ms(x.max_stall_ms))
    );
    let _ = writeln!(out, "{}", row("p99 latency", &|x| ms(x.p99_ms)));
    let _ = writeln!(out, "{}", row("requests", &|x| x.requests.to_string()));
    let _ = writeln!(out, "{}", row("served in time", &|x| served_cells(x).0));
    let _ = writeln!(
        out,
        "{}",
        row("worst second served", &|x| served_cells(x).1)
    );
    let _ = writeln!(
        out,
        "{}",
        row("timeouts (>5s)", &|x| x.timeouts.to_string())
    );
    let _ = writeln!(
        out,
        "{}",
        row("migration", &|x| (if x.completed {
            "applied"
        } else {
            "not applied"
        })
        .into())
    );
    for run in &r.runs {
        let _ = writeln!(out, "\n  {}: {}", style.bold(title(run.way)), run.outcome);
        for s in &run.statements {
            let _ = writeln!(
                out,
                "    {:>11}  {}\n             {}: {}",
                window(s),
                one_line(&s.sql, 80),
                if s.ran { "locks" } else { "would lock" },
                locks(s).join(", ")
            );
        }
    }
    let v = verdict(r);
    let sentence = if v.safe {
        style.green(&v.sentence)
    } else {
        style.red(&v.sentence)
    };
    let _ = writeln!(out, "\n  {sentence}\n  Next: {}", v.next);
    out
}

/// Requests served in time against offered, for a run: overall and in its worst second.
fn served_cells(run: &Run) -> (String, String) {
    let timeout = locksmith_sandbox::traffic::TrafficProfile::default().gateway_timeout;
    let s = served::served(&run.samples, served::traffic_ms(&run.samples), timeout);
    (
        format!("{} of {}", s.in_time, run.requests),
        format!("{} of {}", s.worst_second.served, s.worst_second.offered),
    )
}

/// A statement's lock window as the tables show it: how long, or that it did not run.
fn window(s: &StatementRun) -> String {
    if s.ran {
        age(Some(s.hold_ms as i64))
    } else {
        "did not run".into()
    }
}

/// "ACCESS EXCLUSIVE on t", one per lock, or "none".
fn locks(s: &StatementRun) -> Vec<String> {
    if s.locks.is_empty() {
        return vec!["none".into()];
    }
    s.locks
        .iter()
        .map(|l| format!("{} on {}", l.mode.sql_name(), l.relation))
        .collect()
}

/// Whether the statement's locks make ordinary reads or writes wait.
fn blocks_traffic(s: &StatementRun) -> bool {
    s.locks.iter().any(|l| l.mode.blocks_traffic())
}

fn rate(rows: i64, took: Duration) -> f64 {
    rows as f64 / took.as_secs_f64().max(0.001)
}

/// One row of the summary table: a run's cell.
type Cell<'a> = dyn Fn(&Run) -> String + 'a;

/// The HTML report: one file, inline CSS and SVG, no scripts. Its first
/// screen answers "is my migration safe to run, and how": the verdict, the
/// next command, the summary; then the timelines, all on one scale.
pub fn html(r: &Rehearsal) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>locksmith rehearsal</title>\n<style>\
         body{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#fff}\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
         code{font-size:90%}.bad{color:#b00}.ok{color:#070}svg{display:block;margin:0.5em 0 1.5em}\
         .verdict{font-size:1.25em;font-weight:600;padding:0.6em 0.8em;border-left:6px solid}\
         .verdict.ok{border-color:#070;background:#eef8ee}.verdict.bad{border-color:#b00;background:#fbeeee}\
         .next code{background:#f3f3f3;padding:2px 5px}.notrun{color:#888}\
         .legend{display:flex;flex-wrap:wrap;gap:0.4em 1.5em;margin:0.5em 0;font-size:90%}\
         .legend i{display:inline-block;width:14px;height:14px;margin-right:5px;vertical-align:middle}\
         </style></head><body>\n<h1>locksmith rehearsal</h1>\n",
    );
    let v = verdict(r);
    let _ = writeln!(
        out,
        "<p class=\"verdict {}\">{}</p>\n<p class=\"next\">Next: {}</p>",
        if v.safe { "ok" } else { "bad" },
        esc(&v.sentence),
        code_spans(&v.next)
    );
    out.push_str("<table><tr><th></th>");
    for run in &r.runs {
        let _ = write!(out, "<th>{}</th>", title(run.way));
    }
    out.push_str("</tr>\n");
    let budget = age(Some(r.max_stall.as_millis() as i64));
    let stall = |x: &Run| {
        let over = Duration::from_millis(x.max_stall_ms) > r.max_stall;
        format!(
            "<span class=\"{}\">{}</span>",
            if over { "bad" } else { "ok" },
            age(Some(x.max_stall_ms as i64))
        )
    };
    let stall_label = format!("worst request stall (budget {budget})");
    let cells: [(&str, &Cell<'_>); 8] = [
        (&stall_label, &stall),
        ("p99 latency", &|x| age(Some(x.p99_ms as i64))),
        ("requests", &|x| x.requests.to_string()),
        ("served in time (of offered)", &|x| served_cells(x).0),
        ("worst second served (of offered)", &|x| served_cells(x).1),
        ("timeouts (&gt;5s)", &|x| x.timeouts.to_string()),
        ("migration", &|x| {
            if x.completed {
                "<span class=\"ok\">applied</span>".into()
            } else {
                "<span class=\"bad\">not applied</span>".into()
            }
        }),
        ("what happened", &|x| esc(&x.outcome)),
    ];
    for (label, f) in cells {
        let _ = write!(out, "<tr><th>{label}</th>");
        for run in &r.runs {
            let _ = write!(out, "<td>{}</td>", f(run));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    let _ = writeln!(
        out,
        "<p>{} synthetic rows loaded in {} ({:.0} rows/s); the runs took {}{}.</p>",
        r.load.rows,
        age(Some(r.load_time.as_millis() as i64)),
        rate(r.load.rows, r.load_time),
        age(Some(r.rehearse_time.as_millis() as i64)),
        match (r.leaks, &r.leak_table) {
            (0, _) | (_, None) => String::new(),
            (n, Some(t)) => format!(
                "; {n} session{} left idle in transaction after reading {}",
                if n == 1 { "" } else { "s" },
                esc(t)
            ),
        }
    );
    if !r.load.unhonoured.is_empty() {
        out.push_str("<p>Not honoured by the synthetic data:</p><ul>");
        for u in &r.load.unhonoured {
            let _ = write!(out, "<li>{}</li>", esc(u));
        }
        out.push_str("</ul>\n");
    }
    let scale = Scale::of(&r.runs, r.max_stall);
    out.push_str("<h2>Request latency during each run</h2>\n<p>All charts share one scale, so their heights compare.</p>\n");
    out.push_str(LEGEND);
    for run in &r.runs {
        let _ = writeln!(out, "<h3>{}</h3>", title(run.way));
        out.push_str(&timeline(run, &scale));
        out.push_str(
            "<table><tr><th>statement</th><th>locks it takes (traced on a copy)</th><th>blocks reads or writes</th><th>lock window</th></tr>\n",
        );
        for s in &run.statements {
            let _ = writeln!(
                out,
                "<tr{}><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                if s.ran { "" } else { " class=\"notrun\"" },
                esc(&one_line(&s.sql, 120)),
                locks(s)
                    .iter()
                    .map(|l| esc(l))
                    .collect::<Vec<_>>()
                    .join("<br>"),
                if blocks_traffic(s) { "yes" } else { "no" },
                window(s)
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

/// What each mark on the charts means.
const LEGEND: &str = "<div class=\"legend\">\
<span><i style=\"background:#1e63c4;border-radius:50%\"></i>a request: when it arrived (x), how long it waited (y)</span>\
<span><i style=\"background:#b00020;border-radius:50%\"></i>a request that failed</span>\
<span><i style=\"background:rgba(229,57,53,0.25)\"></i>a statement holding or queued for a lock that blocks reads or writes</span>\
<span><i style=\"background:rgba(120,120,120,0.2)\"></i>a statement running without blocking traffic (e.g. CONCURRENTLY)</span>\
<span><i style=\"border:1px dashed #888\"></i>the migration running</span>\
<span><i style=\"border-top:2px dashed #e08000;height:0\"></i>the stall budget</span>\
</div>\n";

/// `a `b` c` with the backquoted parts as `<code>`, the rest escaped.
fn code_spans(text: &str) -> String {
    text.split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                format!("<code>{}</code>", esc(part))
            } else {
                esc(part)
            }
        })
        .collect()
}

/// Chart geometry.
const W: f64 = 900.0;
const H: f64 = 240.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 15.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 42.0;

/// The one scale every run's chart is drawn on, so a guarded run that
/// barely moved looks it next to an outage.
pub struct Scale {
    /// The right edge, in ms from the start of the traffic.
    end_ms: f64,
    /// The top of the latency axis, in ms.
    top_ms: f64,
    /// Between time ticks, in ms.
    x_step: f64,
    /// Between latency ticks, in ms.
    y_step: f64,
    /// The stall budget, drawn as a line.
    budget_ms: f64,
}

impl Scale {
    /// The scale that fits every run and the budget line.
    pub fn of(runs: &[Run], budget: Duration) -> Scale {
        let end = runs
            .iter()
            .flat_map(|r| {
                r.samples
                    .iter()
                    .map(|s| s.at_ms + s.latency_ms)
                    .chain([r.migration_ms.1])
            })
            .max()
            .unwrap_or(1)
            .max(1000) as f64;
        let budget_ms = budget.as_millis() as f64;
        let highest = runs
            .iter()
            .flat_map(|r| r.samples.iter().map(|s| s.latency_ms))
            .max()
            .unwrap_or(0) as f64;
        let highest = highest.max(budget_ms * 1.2).max(100.0);
        let x_step = nice_step(end, 8.0);
        let y_step = nice_step(highest, 4.0);
        Scale {
            end_ms: (end / x_step).ceil() * x_step,
            top_ms: (highest / y_step).ceil() * y_step,
            x_step,
            y_step,
            budget_ms,
        }
    }

    fn x(&self, ms: f64) -> f64 {
        LEFT + ms / self.end_ms * (W - LEFT - RIGHT)
    }

    fn y(&self, ms: f64) -> f64 {
        H - BOTTOM - ms.min(self.top_ms) / self.top_ms * (H - BOTTOM - TOP)
    }
}

/// A round step (1, 2 or 5 times a power of ten) giving at most about `ticks` ticks up to `max`.
fn nice_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(1.0);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// One run's latency timeline on the shared `scale`: a dot per request
/// (x: arrival, y: latency), each statement that ran shaded by whether its
/// locks block traffic, the migration's window outlined, the budget drawn.
pub fn timeline(run: &Run, scale: &Scale) -> String {
    let plot_h = H - BOTTOM - TOP;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"request latency over time, {}\">\n\
         <rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{plot_h}\" fill=\"#fafafa\"/>\n",
        title(run.way),
        W - LEFT - RIGHT
    );
    // Grid and ticks first, so everything else draws over them.
    let mut t = 0.0;
    while t <= scale.top_ms + 0.5 {
        let y = scale.y(t);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#e4e4e4\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 5.0,
            y + 4.0,
            if t == 0.0 { "0".into() } else { age(Some(t as i64)) }
        );
        t += scale.y_step;
    }
    let mut t = 0.0;
    while t <= scale.end_ms + 0.5 {
        let x = scale.x(t);
        let _ = writeln!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"{b}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#333\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{}</text>",
            H - BOTTOM + 4.0,
            H - BOTTOM + 16.0,
            if t == 0.0 {
                "0".into()
            } else {
                locksmith_core::duration::human(Duration::from_millis(t as u64))
            },
            b = H - BOTTOM,
        );
        t += scale.x_step;
    }
    let (m0, m1) = run.migration_ms;
    if m1 > m0 {
        let _ = writeln!(
            svg,
            "<rect class=\"migration\" x=\"{:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{plot_h}\" fill=\"none\" stroke=\"#888\" stroke-dasharray=\"4 3\"><title>the migration running</title></rect>",
            scale.x(m0 as f64),
            (scale.x(m1 as f64) - scale.x(m0 as f64)).max(1.0),
        );
    }
    for s in run.statements.iter().filter(|s| s.ran) {
        let Some(start) = s.start_ms else { continue };
        let (class, fill, opacity, what) = if blocks_traffic(s) {
            (
                "hold",
                "#e53935",
                0.18,
                "held or queued for a lock that blocks reads or writes",
            )
        } else {
            (
                "runs",
                "#787878",
                0.15,
                "ran without blocking reads or writes",
            )
        };
        let _ = writeln!(
            svg,
            "<rect class=\"{class}\" x=\"{:.1}\" y=\"{TOP}\" width=\"{:.1}\" height=\"{plot_h}\" fill=\"{fill}\" fill-opacity=\"{opacity}\"><title>{}: {what} for {}</title></rect>",
            scale.x(start as f64),
            (scale.x((start + s.hold_ms) as f64) - scale.x(start as f64)).max(2.0),
            esc(&one_line(&s.sql, 100)),
            age(Some(s.hold_ms as i64))
        );
    }
    // The budget, then the axes and their titles.
    let by = scale.y(scale.budget_ms);
    let _ = writeln!(
        svg,
        "<line class=\"budget\" x1=\"{LEFT}\" y1=\"{by:.1}\" x2=\"{:.1}\" y2=\"{by:.1}\" stroke=\"#e08000\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\" fill=\"#a05a00\">stall budget {}</text>",
        W - RIGHT,
        W - RIGHT - 4.0,
        by - 4.0,
        age(Some(scale.budget_ms as i64))
    );
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#333\"/><line x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{b}\" stroke=\"#333\"/>\n\
         <text x=\"{mid:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\">time since the traffic started</text>\n\
         <text transform=\"translate(14 {ymid:.1}) rotate(-90)\" font-size=\"12\" text-anchor=\"middle\">request latency</text>",
        H - 6.0,
        b = H - BOTTOM,
        r = W - RIGHT,
        mid = LEFT + (W - LEFT - RIGHT) / 2.0,
        ymid = TOP + plot_h / 2.0,
    );
    for s in &run.samples {
        let color = if s.failed { "#b00020" } else { "#1e63c4" };
        let _ = writeln!(
            svg,
            "<circle class=\"request\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{color}\"/>",
            scale.x(s.at_ms as f64),
            scale.y(s.latency_ms as f64)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use locksmith_core::analysis::RelationLock;
    use locksmith_core::lock::LockMode;
    use locksmith_sandbox::traffic::Sample;

    /// A run that stalled requests `stall_ms` at most and ended with `stop`.
    fn run(way: Way, stall_ms: u64, stop: Option<Stop>, statements: Vec<StatementRun>) -> Run {
        let samples = (0..40)
            .map(|i| Sample {
                at_ms: i * 100,
                latency_ms: if i == 12 { stall_ms } else { 3 },
                failed: false,
            })
            .collect();
        Run {
            max_stall_ms: stall_ms,
            p99_ms: stall_ms,
            requests: 40,
            timeouts: 0,
            completed: stop.is_none(),
            statements,
            way,
            outcome: match stop {
                None => "applied in 1.2s".into(),
                Some(Stop::Blocked) => "gave up after 4.0s (deadline reached) with nothing left queued; 3 sessions held conflicting locks".into(),
                Some(Stop::Cancelled) => "statement 1 was still running after 4.0s and was cancelled on the server (as Ctrl-C in psql does)".into(),
                Some(s) => format!("stopped: {s:?}"),
            },
            stop,
            samples,
            migration_ms: (1000, 2500),
        }
    }

    fn statement(sql: &str, mode: LockMode, window: Option<(u64, u64)>) -> StatementRun {
        StatementRun {
            sql: sql.into(),
            locks: vec![RelationLock {
                relation: "academic_partners".into(),
                mode,
            }],
            hold_ms: window.map_or(0, |(a, b)| b - a),
            ran: window.is_some(),
            start_ms: window.map(|(a, _)| a),
        }
    }

    const ALTER: &str = "ALTER TABLE academic_partners ADD CONSTRAINT u UNIQUE (informal_name)";
    const INDEX: &str = "CREATE UNIQUE INDEX CONCURRENTLY u ON academic_partners (informal_name)";

    fn rehearsal(runs: Vec<Run>, leaks: usize) -> Rehearsal {
        Rehearsal {
            runs,
            load: LoadReport::default(),
            load_time: Duration::from_millis(800),
            rehearse_time: Duration::from_secs(12),
            max_stall: Duration::from_secs(2),
            leaks,
            leak_table: Some("academic_partners".into()),
            apply_dir: "migrations".into(),
        }
    }

    fn said(v: &Verdict) -> String {
        format!("{}\nNext: {}", v.sentence, v.next)
    }

    #[test]
    fn verdicts_say_whether_and_how_to_run_it() {
        let exclusive = |w| vec![statement(ALTER, LockMode::AccessExclusive, w)];
        let cases = [
            (
                "plain within budget",
                rehearsal(
                    vec![
                        run(Way::Naive, 40, None, exclusive(Some((1000, 1040)))),
                        run(Way::Guarded, 30, None, exclusive(Some((1000, 1030)))),
                    ],
                    0,
                ),
            ),
            (
                "only the guard is within budget",
                rehearsal(
                    vec![
                        run(Way::Naive, 4200, None, exclusive(Some((1000, 5200)))),
                        run(Way::Guarded, 180, None, exclusive(Some((1000, 1200)))),
                    ],
                    0,
                ),
            ),
            (
                "only online is within budget",
                rehearsal(
                    vec![
                        run(Way::Naive, 9000, None, exclusive(Some((1000, 10000)))),
                        run(
                            Way::Guarded,
                            2100,
                            Some(Stop::HeldTooLong),
                            exclusive(Some((1000, 3000))),
                        ),
                        run(
                            Way::Online,
                            60,
                            None,
                            vec![statement(
                                INDEX,
                                LockMode::ShareUpdateExclusive,
                                Some((1000, 4000)),
                            )],
                        ),
                    ],
                    0,
                ),
            ),
            (
                "leaked sessions keep every run out",
                rehearsal(
                    vec![
                        run(
                            Way::Naive,
                            4100,
                            Some(Stop::Cancelled),
                            exclusive(Some((1000, 5000))),
                        ),
                        run(Way::Guarded, 150, Some(Stop::Blocked), exclusive(None)),
                        run(
                            Way::Online,
                            140,
                            Some(Stop::Blocked),
                            vec![statement(INDEX, LockMode::ShareUpdateExclusive, None)],
                        ),
                    ],
                    3,
                ),
            ),
            (
                "held too long, online not rehearsed",
                rehearsal(
                    vec![
                        run(Way::Naive, 9000, None, exclusive(Some((1000, 10000)))),
                        run(
                            Way::Guarded,
                            2100,
                            Some(Stop::HeldTooLong),
                            exclusive(Some((1000, 3000))),
                        ),
                    ],
                    0,
                ),
            ),
        ];
        let text: Vec<String> = cases
            .iter()
            .map(|(name, r)| format!("## {name}\n{}\n", said(&verdict(r))))
            .collect();
        insta::assert_snapshot!(text.join("\n"));
        assert!(verdict(&cases[0].1).safe && verdict(&cases[1].1).safe);
        assert!(!verdict(&cases[3].1).safe);
    }

    #[test]
    fn the_report_opens_with_the_verdict_and_shades_only_what_blocks_traffic() {
        let r = rehearsal(
            vec![
                run(
                    Way::Naive,
                    4100,
                    Some(Stop::Cancelled),
                    vec![statement(
                        ALTER,
                        LockMode::AccessExclusive,
                        Some((1000, 5000)),
                    )],
                ),
                run(
                    Way::Guarded,
                    150,
                    Some(Stop::Blocked),
                    vec![statement(ALTER, LockMode::AccessExclusive, None)],
                ),
                run(
                    Way::Online,
                    60,
                    None,
                    vec![statement(
                        INDEX,
                        LockMode::ShareUpdateExclusive,
                        Some((1000, 4000)),
                    )],
                ),
            ],
            3,
        );
        let html = html(&r);
        let body = &html[html.find("<body>").unwrap()..];
        let verdict_at = body.find("class=\"verdict").unwrap();
        assert!(
            verdict_at < body.find("<table").unwrap(),
            "the verdict comes first"
        );
        assert!(body.contains("Next: "), "{body}");
        assert!(body.contains("class=\"legend\""));
        assert!(body.contains("<th>served in time (of offered)</th><td>40 of 40</td>"));
        assert!(
            body.contains("time since the traffic started") && body.contains("request latency")
        );
        // One scale: every chart's top tick is the same.
        let charts: Vec<&str> = html.split("<svg").skip(1).collect();
        assert_eq!(charts.len(), 3);
        // The label at the top of the latency axis.
        let top_tick = |svg: &str| {
            let at = svg
                .find("y=\"14.0\" font-size=\"11\" text-anchor=\"end\">")
                .unwrap();
            svg[at..].split(['>', '<']).nth(1).unwrap().to_string()
        };
        let tops: Vec<String> = charts.iter().map(|c| top_tick(c)).collect();
        assert!(tops.iter().all(|t| *t == tops[0]), "{tops:?}");
        // The plain ALTER is shaded as blocking; the CONCURRENTLY build is not;
        // the guarded ALTER never ran, so it is neither shaded nor "held".
        assert_eq!(charts[0].matches("class=\"hold\"").count(), 1);
        assert_eq!(charts[1].matches("class=\"hold\"").count(), 0);
        assert_eq!(charts[2].matches("class=\"hold\"").count(), 0);
        assert_eq!(charts[2].matches("class=\"runs\"").count(), 1);
        assert!(html.contains("did not run"), "{html}");
        assert!(
            !html.contains(">0ms<"),
            "nothing listed as held 0ms: {html}"
        );
    }
}
