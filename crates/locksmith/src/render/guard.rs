//! The human text of a guarded run's report (`apply`; `run` words its own
//! in [`super::run`]). The JSON contract is the report itself
//! ([`locksmith_pg::migrate::RunReport`]).

use std::fmt::Write;

use locksmith_core::analysis::quote_ident;
use locksmith_pg::guard::Holder;
pub use locksmith_pg::migrate::{RunReport, Status};

use super::style::Style;
use super::{age, one_line};

/// What to do about blockers, in the story's terms, naming their roles.
pub fn advice(blockers: &[Holder]) -> String {
    let mut roles: Vec<&str> = blockers
        .iter()
        .filter_map(|h| h.session.usename.as_deref())
        .collect();
    roles.sort_unstable();
    roles.dedup();
    let timeout = match roles.as_slice() {
        [] => "  - Let the server end them: ALTER ROLE <the application's role> SET idle_in_transaction_session_timeout = '60s';".to_string(),
        roles => roles
            .iter()
            .map(|r| {
                format!(
                    "  - Let the server end them: ALTER ROLE {} SET idle_in_transaction_session_timeout = '60s';",
                    quote_ident(r)
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    };
    format!(
        "What to do:\n  - End these transactions in the application: a session idle in transaction holds its locks until it ends.\n    SQLAlchemy: call scoped_session.remove() (or session.close()) at the end of every request.\n{timeout}\n  - Or rerun with --terminate-idle-after 30s to end blockers idle in transaction that long (active queries are never touched)."
    )
}

/// Human text for the report.
pub fn human(report: &RunReport, dir: &str, style: Style) -> String {
    let mut out = String::new();
    match report.status {
        Status::Applied if report.migrations.is_empty() => {
            let _ = writeln!(
                out,
                "{}",
                style.green("Nothing to apply: the database is up to date.")
            );
        }
        Status::Applied => {
            for m in &report.migrations {
                let _ = writeln!(
                    out,
                    "{} {} {} in {} ({} attempt{})",
                    style.green("applied"),
                    m.version_text.clone().unwrap_or(m.version.to_string()),
                    m.name,
                    age(Some(m.duration_ms as i64)),
                    m.attempts,
                    if m.attempts == 1 { "" } else { "s" }
                );
            }
        }
        Status::Blocked => {
            let _ = writeln!(
                out,
                "{}",
                style.red(
                    "Gave up: the migration stayed blocked. Nothing was left queued on the server."
                )
            );
        }
        Status::HoldExceeded => {
            let _ = writeln!(
                out,
                "{}",
                style.red("Stopped: a statement would hold a lock that blocks traffic for longer than --max-hold. Nothing of that migration was applied.")
            );
        }
        Status::Failed => {
            let _ = writeln!(out, "{}", style.red("Failed."));
        }
    }
    if let Some(e) = &report.error {
        let _ = writeln!(out, "  {e}");
    }
    if !report.terminated.is_empty() {
        let _ = writeln!(
            out,
            "Terminated (idle in transaction past --terminate-idle-after, blocking the migration):"
        );
        for h in &report.terminated {
            let _ = writeln!(out, "  {}", holder_line(h));
        }
    }
    if !report.blockers.is_empty() {
        let _ = writeln!(out, "Blocked by:");
        for h in &report.blockers {
            let _ = writeln!(out, "  {}", holder_line(h));
        }
        if report.blockers.iter().any(|h| h.prepared.is_none()) {
            let _ = writeln!(out, "{}", advice(&report.blockers));
        }
        for p in report.blockers.iter().filter_map(|h| h.prepared.as_ref()) {
            let _ = writeln!(out, "  - {}", p.finish_advice());
        }
    }
    where_things_stand(&mut out, report, dir);
    out
}

/// After a run that stopped early: what it applied, where it stopped, what
/// is still pending, and the command that continues.
fn where_things_stand(out: &mut String, report: &RunReport, dir: &str) {
    if report.status == Status::Applied
        || (report.stopped_at.is_none() && report.pending.is_empty())
    {
        return;
    }
    let applied: Vec<String> = report
        .migrations
        .iter()
        .map(|m| {
            format!(
                "{} {}",
                m.version_text.clone().unwrap_or(m.version.to_string()),
                m.name
            )
        })
        .collect();
    let mut parts = vec![match applied.len() {
        0 => "nothing applied in this run".to_string(),
        _ => format!("applied in this run: {}", applied.join(", ")),
    }];
    if let Some(at) = &report.stopped_at {
        parts.push(format!("stopped at {at} (not applied)"));
    }
    let after = if report.stopped_at.is_some() {
        " after it"
    } else {
        ""
    };
    match report.pending.as_slice() {
        [] => {}
        [one] => parts.push(format!("1 pending{after}: {one}")),
        [first, .., last] => parts.push(format!(
            "{} pending{after}: {first} … {last}",
            report.pending.len()
        )),
    }
    let _ = writeln!(out, "Where things stand: {}.", parts.join("; "));
    let _ = writeln!(
        out,
        "Rerun `locksmith apply {dir}` once the cause above is dealt with: it applies only what is pending{}.",
        if report.stopped_at.is_some() { ", starting there" } else { "" }
    );
}

/// One line naming a session: pid, application, client, state, ages, lock, last query.
/// A prepared transaction (no pid) by its gid; a session our role may not
/// inspect by what it can see (its client address is hidden too).
pub fn holder_line(h: &Holder) -> String {
    if h.prepared.is_some() || !h.session.is_visible() {
        return format!("{}; {}", h.label(), holds(h));
    }
    format!(
        "{}pid {} \"{}\" {} user {}: {} for {}, transaction {}; {}; last query: {}",
        h.server
            .as_deref()
            .map(|s| format!("on standby {s}: "))
            .unwrap_or_default(),
        h.session.pid,
        h.session.application_name,
        h.session.client_addr.as_deref().unwrap_or("local"),
        h.session.usename.as_deref().unwrap_or("?"),
        h.session.state.as_deref().unwrap_or("?"),
        age(h.session.state_age_ms),
        age(h.session.xact_age_ms),
        holds(h),
        one_line(&h.session.query, 80),
    )
}

/// What a holder holds that is in our way: `holds RowExclusiveLock on t`.
fn holds(h: &Holder) -> String {
    let on = h.relation.as_deref().unwrap_or(&h.lock_type);
    match (h.lock_type.as_str(), h.mode.as_str()) {
        ("snapshot", _) => "holds a snapshot a concurrent build waits for".into(),
        (_, "") => format!("blocks our lock on {on}"),
        (_, mode) => format!("holds {mode} on {on}"),
    }
}
