//! `locksmith rehearse` for people and machines: a side-by-side summary, the
//! JSON report (`{"naive": …, "guarded": …, "online": …}`), and one
//! self-contained HTML file with an SVG timeline per run — every request's
//! latency as a dot, the statements' lock holds shaded — and the tables.
//! The SVG is written by hand: no scripts, no network, nothing to load.

use std::fmt::Write;
use std::time::Duration;

use locksmith_sandbox::rehearsal::synth::LoadReport;
use locksmith_sandbox::rehearsal::{Run, Way};
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
            let locks: Vec<String> = s
                .locks
                .iter()
                .map(|l| format!("{} on {}", l.mode.sql_name(), l.relation))
                .collect();
            let _ = writeln!(
                out,
                "    {:>7}  {}\n             locks: {}",
                ms(s.hold_ms),
                one_line(&s.sql, 80),
                if locks.is_empty() {
                    "none".into()
                } else {
                    locks.join(", ")
                }
            );
        }
    }
    if let Some(naive) = r.runs.first() {
        let over = Duration::from_millis(naive.max_stall_ms) > r.max_stall;
        let _ = writeln!(
            out,
            "\n  {}",
            if over {
                style.red(&format!(
                    "The plain run stalled traffic for {} (budget {}): do not run it as written.",
                    ms(naive.max_stall_ms),
                    age(Some(r.max_stall.as_millis() as i64))
                ))
            } else {
                style.green("The plain run kept traffic within the budget.")
            }
        );
    }
    out
}

fn rate(rows: i64, took: Duration) -> f64 {
    rows as f64 / took.as_secs_f64().max(0.001)
}

/// One row of the summary table: a run's cell.
type Cell = dyn Fn(&Run) -> String;

/// The HTML report: one file, inline CSS and SVG, no scripts.
pub fn html(r: &Rehearsal) -> String {
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>locksmith rehearsal</title>\n<style>\
         body{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#fff}\
         table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
         code{font-size:90%}.bad{color:#b00}.ok{color:#070}svg{display:block;margin:0.5em 0 1.5em}\
         </style></head><body>\n<h1>locksmith rehearsal</h1>\n",
    );
    let _ = writeln!(
        out,
        "<p>{} synthetic rows loaded in {} ({:.0} rows/s); the runs took {}.</p>",
        r.load.rows,
        age(Some(r.load_time.as_millis() as i64)),
        rate(r.load.rows, r.load_time),
        age(Some(r.rehearse_time.as_millis() as i64))
    );
    if !r.load.unhonoured.is_empty() {
        out.push_str("<p>Not honoured by the synthetic data:</p><ul>");
        for u in &r.load.unhonoured {
            let _ = write!(out, "<li>{}</li>", esc(u));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("<h2>Summary</h2>\n<table><tr><th></th>");
    for run in &r.runs {
        let _ = write!(out, "<th>{}</th>", title(run.way));
    }
    out.push_str("</tr>\n");
    let cells: [(&str, &Cell); 6] = [
        ("worst request stall", &|x| age(Some(x.max_stall_ms as i64))),
        ("p99 latency", &|x| age(Some(x.p99_ms as i64))),
        ("requests", &|x| x.requests.to_string()),
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
    for run in &r.runs {
        let _ = writeln!(out, "<h2>{}</h2>", title(run.way));
        out.push_str(&timeline(run));
        out.push_str("<table><tr><th>statement</th><th>locks (observed)</th><th>held</th></tr>\n");
        for s in &run.statements {
            let locks: Vec<String> = s
                .locks
                .iter()
                .map(|l| format!("{} on {}", l.mode.sql_name(), esc(&l.relation)))
                .collect();
            let _ = writeln!(
                out,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                esc(&one_line(&s.sql, 120)),
                if locks.is_empty() {
                    "none".into()
                } else {
                    locks.join("<br>")
                },
                age(Some(s.hold_ms as i64))
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

/// Chart geometry.
const W: f64 = 900.0;
const H: f64 = 220.0;
const LEFT: f64 = 60.0;
const BOTTOM: f64 = 30.0;

/// One run's latency timeline: a dot per request (x: arrival, y: latency),
/// each statement's lock hold shaded, the migration's window outlined.
pub fn timeline(run: &Run) -> String {
    let end_ms = run
        .samples
        .iter()
        .map(|s| s.at_ms + s.latency_ms)
        .chain([run.migration_ms.1, 1])
        .max()
        .unwrap_or(1) as f64;
    let top_ms = run
        .samples
        .iter()
        .map(|s| s.latency_ms)
        .max()
        .unwrap_or(0)
        .max(100) as f64;
    let x = |ms: f64| LEFT + ms / end_ms * (W - LEFT - 10.0);
    let y = |ms: f64| H - BOTTOM - ms / top_ms * (H - BOTTOM - 10.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"request latency over time\">\n\
         <rect x=\"0\" y=\"0\" width=\"{W}\" height=\"{H}\" fill=\"#fafafa\"/>\n"
    );
    let (m0, m1) = run.migration_ms;
    let _ = writeln!(
        svg,
        "<rect class=\"migration\" x=\"{:.1}\" y=\"10\" width=\"{:.1}\" height=\"{:.1}\" fill=\"none\" stroke=\"#888\" stroke-dasharray=\"4 3\"><title>migration running</title></rect>",
        x(m0 as f64),
        (x(m1 as f64) - x(m0 as f64)).max(1.0),
        H - BOTTOM - 10.0
    );
    for s in &run.statements {
        if let Some(start) = s.start_ms {
            let _ = writeln!(
                svg,
                "<rect class=\"hold\" x=\"{:.1}\" y=\"10\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#e53935\" fill-opacity=\"0.18\"><title>{} — held {}</title></rect>",
                x(start as f64),
                (x((start + s.hold_ms) as f64) - x(start as f64)).max(2.0),
                H - BOTTOM - 10.0,
                esc(&one_line(&s.sql, 100)),
                age(Some(s.hold_ms as i64))
            );
        }
    }
    // Axes and labels.
    let _ = writeln!(
        svg,
        "<line x1=\"{LEFT}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#333\"/><line x1=\"{LEFT}\" y1=\"10\" x2=\"{LEFT}\" y2=\"{b}\" stroke=\"#333\"/>\n\
         <text x=\"{LEFT}\" y=\"{t}\" font-size=\"11\">0s</text><text x=\"{r}\" y=\"{t}\" font-size=\"11\" text-anchor=\"end\">{}</text>\n\
         <text x=\"{l}\" y=\"{b}\" font-size=\"11\" text-anchor=\"end\">0</text><text x=\"{l}\" y=\"20\" font-size=\"11\" text-anchor=\"end\">{}</text>",
        age(Some(end_ms as i64)),
        age(Some(top_ms as i64)),
        b = H - BOTTOM,
        r = W - 10.0,
        t = H - 10.0,
        l = LEFT - 5.0,
    );
    for s in &run.samples {
        let color = if s.failed { "#b00020" } else { "#1e63c4" };
        let _ = writeln!(
            svg,
            "<circle class=\"request\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{color}\"/>",
            x(s.at_ms as f64),
            y(s.latency_ms as f64)
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
