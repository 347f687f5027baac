//! The blocker report for people: the wait tree per root blocker, then the
//! idle-in-transaction sessions, the prepared transactions, what the role
//! could not see, then what to do; each hot standby given with `--replica`
//! the same way under its own heading, its replay named as such.
//!
//! A prepared transaction is a root with no pid, named by its gid. Another
//! role's session our role may not inspect is named by what `pg_locks`
//! shows; the report says what is hidden and which grant shows it, and
//! never prints an all-clear it cannot vouch for.

use std::fmt::Write;

use locksmith_core::analysis::quote_ident;
use locksmith_pg::blockers::{BlockerReport, RelationLock, StandbyReport};
use locksmith_pg::prepared::NO_BACKEND;
use locksmith_pg::snapshot::{client_label, SessionSummary};

use super::style::Style;
use super::{age, one_line};

/// Renders the report as text.
pub fn human(report: &BlockerReport, style: Style) -> String {
    render(report, None, style)
}

/// Renders a standby's report under a heading naming it.
pub fn standby(standby: &StandbyReport, style: Style) -> String {
    format!(
        "\n{}\n{}",
        style.bold(&format!("Standby {}:", standby.server)),
        render(&standby.report, Some(&standby.server), style)
    )
}

/// `server` is the standby's `host:port`, `None` for the primary.
fn render(report: &BlockerReport, server: Option<&str>, style: Style) -> String {
    let mut out = String::new();
    let c = &report.connections;
    let _ = writeln!(
        out,
        "{} connections used of {} ({} reserved for superusers)",
        c.used, c.max, c.reserved
    );
    if report.blockers.is_empty() && report.waiting.is_empty() {
        match &report.hidden {
            None => {
                let _ = writeln!(out, "{}", style.green("No session is waiting for a lock."));
            }
            Some(hidden) => {
                let _ = writeln!(
                    out,
                    "{}",
                    style.yellow(&format!(
                        "No session is waiting for a lock, as far as role {} can see: {} of other roles hold locks and hide their state from it (below).",
                        hidden.role,
                        sessions(hidden.sessions.len(), "session")
                    ))
                );
            }
        }
    } else {
        let _ = writeln!(
            out,
            "\n{}",
            style.bold("Lock waits (root blocker → the sessions waiting for it):")
        );
        let tree = report.tree();
        let mut hidden = 0;
        for (i, line) in tree.iter().enumerate() {
            let indent = "   ".repeat(line.depth);
            // A long queue of identical waiters says one thing: show three, count the rest.
            let leaf = tree.get(i + 1).is_none_or(|next| next.depth <= line.depth);
            let siblings_before = tree[..i]
                .iter()
                .rev()
                .take_while(|l| l.depth >= line.depth)
                .filter(|l| l.depth == line.depth)
                .count();
            let last_sibling = tree.get(i + 1).is_none_or(|next| next.depth < line.depth);
            if line.depth > 0 && leaf && siblings_before >= 3 {
                hidden += 1;
                if last_sibling {
                    let _ = writeln!(
                        out,
                        "{indent}└─ … and {} waiting the same way",
                        sessions(hidden, "more session")
                    );
                    hidden = 0;
                }
                continue;
            }
            let arrow = if line.depth == 0 {
                ""
            } else if line.soft {
                "└─ queued behind it: "
            } else {
                "└─ waits for it: "
            };
            if line.pid == NO_BACKEND && line.depth == 0 {
                // Every prepared transaction is "pid 0" to the server: one node, each named.
                for b in report.blockers.iter().filter(|b| b.prepared.is_some()) {
                    let p = b.prepared.as_ref().expect("filtered");
                    let _ = writeln!(out, "{} {}", style.bold("ROOT"), style.red(&p.label()));
                    let _ = writeln!(out, "   holds {}", holds(&b.holds));
                    let blocked: Vec<String> = b.blocking.iter().map(|p| p.to_string()).collect();
                    let _ = writeln!(out, "   blocks pid {}", blocked.join(", "));
                }
                continue;
            }
            if let Some(b) = report.blockers.iter().find(|b| b.session.pid == line.pid) {
                let session = &b.session;
                if !session.is_visible() {
                    let _ = writeln!(
                        out,
                        "{indent}{} pid {} {} (role {}): {}",
                        style.bold("ROOT"),
                        session.pid,
                        app(&session.application_name),
                        session.usename.as_deref().unwrap_or("?"),
                        style.yellow(&format!(
                            "state, query and ages hidden from role {}",
                            report.hidden.as_ref().map_or("?", |h| h.role.as_str())
                        )),
                    );
                    let _ = writeln!(out, "{indent}   holds {}", holds(&b.holds));
                    let blocked: Vec<String> = b.blocking.iter().map(|p| p.to_string()).collect();
                    let _ = writeln!(out, "{indent}   blocks pid {}", blocked.join(", "));
                    continue;
                }
                let state = session.state.as_deref().unwrap_or("?");
                let what = if session.is_idle_in_transaction() {
                    style.red(&format!("{state} for {}", age(session.state_age_ms)))
                } else {
                    style.yellow(state)
                };
                let _ = writeln!(
                    out,
                    "{indent}{} pid {} {} ({}), transaction open {}, {}",
                    style.bold("ROOT"),
                    session.pid,
                    app(&session.application_name),
                    match session.client_addr.as_deref() {
                        None => "local socket".into(),
                        addr => client_label(addr, b.via_pooler),
                    },
                    age(session.xact_age_ms),
                    what,
                );
                let _ = writeln!(out, "{indent}   holds {}", holds(&b.holds));
                let _ = writeln!(
                    out,
                    "{indent}   last query: {}",
                    style.dim(&one_line(&session.query, 100))
                );
                let blocked: Vec<String> = b.blocking.iter().map(|p| p.to_string()).collect();
                let _ = writeln!(out, "{indent}   blocks pid {}", blocked.join(", "));
            } else if let Some(w) = report.waiting.iter().find(|w| w.pid == line.pid) {
                let wants = w
                    .wants
                    .as_ref()
                    .map(|l| format!("{} on {}", l.mode, l.relation))
                    .unwrap_or_else(|| "a lock".into());
                let behind = if w.queued_behind.is_empty() {
                    String::new()
                } else {
                    style.red(&format!(
                        ", {} queued behind it",
                        sessions(w.queued_behind.len(), "session")
                    ))
                };
                if w.replay {
                    let relation = w.wants.as_ref().map_or("a relation", |l| &l.relation);
                    let _ = writeln!(
                        out,
                        "{indent}{arrow}{} on standby {} waits for pid {} for {}{behind}",
                        style.yellow(&format!("replay of {relation}")),
                        server.unwrap_or("?"),
                        pid_list(w.blocked_by.iter().copied()),
                        age(w.waiting_ms),
                    );
                    let _ = writeln!(
                        out,
                        "{indent}   {}",
                        style.dim(&format!(
                            "startup process pid {}: all replay on this standby is stopped",
                            w.pid
                        ))
                    );
                    continue;
                }
                let _ = writeln!(
                    out,
                    "{indent}{arrow}pid {} {} wants {} for {}{behind}",
                    w.pid,
                    app(&w.application_name),
                    style.yellow(&wants),
                    age(w.waiting_ms),
                );
                let _ = writeln!(out, "{indent}   {}", style.dim(&one_line(&w.query, 100)));
            }
        }
    }
    if !report.idle_in_transaction.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            style.bold("Sessions idle in transaction (each holds its locks until it ends):")
        );
        for idle in &report.idle_in_transaction {
            let s = &idle.session;
            let _ = writeln!(
                out,
                "  pid {:<7} {:<28} {:<15} idle {:>7}  transaction {:>7}  holds {}",
                s.pid,
                app(&s.application_name),
                client_label(s.client_addr.as_deref(), idle.via_pooler),
                age(s.state_age_ms),
                age(s.xact_age_ms),
                holds(&idle.holds),
            );
        }
    }
    if !report.prepared_transactions.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            style.bold("Prepared transactions (each holds its locks until COMMIT PREPARED or ROLLBACK PREPARED):")
        );
        for p in &report.prepared_transactions {
            let _ = writeln!(out, "  {}  holds {}", p.xact.label(), holds(&p.holds));
        }
    }
    if let Some(hidden) = &report.hidden {
        let _ = writeln!(
            out,
            "\n{}",
            style.bold(&format!(
                "Hidden from role {} (not a superuser, no pg_read_all_stats): the {} of these sessions:",
                hidden.role,
                hidden.missing.join(", ")
            ))
        );
        for h in &hidden.sessions {
            let wants = h
                .wants
                .as_ref()
                .map(|l| format!(", waits for {} on {}", l.mode, l.relation))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  pid {:<7} role {:<12} {:<28} holds {}{wants}",
                h.pid,
                h.usename.as_deref().unwrap_or("?"),
                app(&h.application_name),
                holds(&h.holds),
            );
        }
        let _ = writeln!(
            out,
            "  To see them: {} (or run as a superuser). Until then idle-in-transaction sessions of other roles are not listed as such.",
            hidden.grant
        );
    }
    if !report.blockers.is_empty() {
        let _ = writeln!(out, "\n{}", style.bold("What to do:"));
        for line in advice(report) {
            let _ = writeln!(out, "  - {line}");
        }
    }
    out
}

/// The advice, naming the sessions, roles and statements of this report.
pub fn advice(report: &BlockerReport) -> Vec<String> {
    let mut lines = Vec::new();
    let idle: Vec<&SessionSummary> = report
        .blockers
        .iter()
        .map(|b| &b.session)
        .filter(|s| s.is_idle_in_transaction())
        .collect();
    if !idle.is_empty() {
        let pids = pid_list(idle.iter().map(|s| s.pid));
        let apps = distinct(idle.iter().map(|s| app(&s.application_name)));
        let mut fix = format!(
            "End the open transactions of {} in the application ({}) where it leaks them",
            sessions_named(idle.len(), &pids),
            apps.join(", ")
        );
        if idle
            .iter()
            .any(|s| looks_like_sqlalchemy(&s.application_name))
        {
            fix.push_str(" (SQLAlchemy: call scoped_session.remove() at the end of every request)");
        }
        lines.push(fix + ".");
        for role in distinct(idle.iter().filter_map(|s| s.usename.clone())) {
            lines.push(format!(
                "Let the server end them from now on: ALTER ROLE {} SET idle_in_transaction_session_timeout = '60s'; (new sessions of role {role} only; the ones open now keep running)",
                quote_ident(&role)
            ));
        }
        lines.push(format!(
            "Now: SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN ({pids}) AND state LIKE 'idle in transaction%'; (their transactions roll back)"
        ));
    }
    for p in report.blockers.iter().filter_map(|b| b.prepared.as_ref()) {
        lines.push(p.finish_advice());
    }
    let hidden: Vec<&SessionSummary> = report
        .blockers
        .iter()
        .filter(|b| b.prepared.is_none())
        .map(|b| &b.session)
        .filter(|s| !s.is_visible())
        .collect();
    if let (false, Some(h)) = (hidden.is_empty(), &report.hidden) {
        lines.push(format!(
            "Role {} cannot see what {} {} doing (idle in transaction, or running a query): {}, then run this again to get their state and the fix",
            h.role,
            sessions_named(hidden.len(), &pid_list(hidden.iter().map(|s| s.pid))),
            if hidden.len() == 1 { "is" } else { "are" },
            h.grant.trim_end_matches(';')
        ));
    }
    let active: Vec<&SessionSummary> = report
        .blockers
        .iter()
        .filter(|b| b.prepared.is_none())
        .map(|b| &b.session)
        .filter(|s| s.is_visible() && !s.is_idle_in_transaction())
        .collect();
    for s in active {
        lines.push(format!(
            "pid {} {} (role {}) is {} and holds what others wait for: let it finish, or SELECT pg_cancel_backend({}); to stop its statement",
            s.pid,
            app(&s.application_name),
            s.usename.as_deref().unwrap_or("?"),
            s.state.as_deref().unwrap_or("running"),
            s.pid
        ));
    }
    if report.waiting.iter().any(|w| w.replay) {
        lines.push(
            "Replay of the primary's changes is stopped on this standby until these sessions end \
             (or max_standby_streaming_delay cancels them): run the pg_terminate_backend / pg_cancel_backend statements above on the standby, ALTER ROLE on the primary"
                .into(),
        );
    }
    // The queued request everyone else waits behind (the ALTER, in the story);
    // a standby's replay cannot be cancelled.
    if let Some(head) = report
        .waiting
        .iter()
        .filter(|w| !w.queued_behind.is_empty() && !w.replay)
        .max_by_key(|w| (w.queued_behind.len(), std::cmp::Reverse(w.pid)))
    {
        lines.push(format!(
            "Or release the {} queued behind pid {} {} at once: SELECT pg_cancel_backend({}); (its statement fails; rerun it with a lock_timeout, e.g. under locksmith apply or run)",
            sessions(head.queued_behind.len(), "session"),
            head.pid,
            app(&head.application_name),
            head.pid
        ));
    }
    lines
}

/// Whether an `application_name` looks like a Python web app on SQLAlchemy,
/// where the usual leak is a `scoped_session` never removed.
fn looks_like_sqlalchemy(name: &str) -> bool {
    let name = name.to_lowercase();
    [
        "sqlalchemy",
        "alembic",
        "flask",
        "django",
        "python",
        "psycopg",
        "gunicorn",
        "uwsgi",
    ]
    .iter()
    .any(|k| name.contains(k))
}

/// `1 session`, `3 sessions`.
fn sessions(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `session 10`, `sessions 10, 11`.
fn sessions_named(n: usize, pids: &str) -> String {
    if n == 1 {
        format!("session {pids}")
    } else {
        format!("sessions {pids}")
    }
}

fn pid_list(pids: impl Iterator<Item = i32>) -> String {
    pids.map(|p| p.to_string()).collect::<Vec<_>>().join(", ")
}

fn distinct(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for i in items {
        if !seen.contains(&i) {
            seen.push(i);
        }
    }
    seen
}

fn app(name: &str) -> String {
    if name.is_empty() {
        "(no application_name)".into()
    } else {
        format!("\"{name}\"")
    }
}

fn holds(locks: &[RelationLock]) -> String {
    if locks.is_empty() {
        return "no table locks".into();
    }
    locks
        .iter()
        .map(|l| format!("{} on {}", l.mode, l.relation))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `blockers` for people: the primary's report, then each standby's.
pub fn diagnosis(d: &locksmith_pg::diagnosis::Diagnosis, style: Style) -> String {
    let mut text = human(&d.primary, style);
    for s in &d.standbys {
        text.push_str(&standby(s, style));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use locksmith_pg::snapshot::{LockRow, Session, Snapshot};

    fn session(pid: i32, app: &str, role: &str, state: &str, blocked_by: &[i32]) -> Session {
        Session {
            pid,
            datname: Some("app".into()),
            usename: Some(role.into()),
            application_name: app.into(),
            client_addr: Some("10.0.0.5".into()),
            backend_type: "client backend".into(),
            state: Some(state.into()),
            xact_age_ms: Some(60_000),
            state_age_ms: Some(59_000),
            query_age_ms: Some(59_000),
            query: "SELECT 1".into(),
            wait_event_type: (!blocked_by.is_empty()).then(|| "Lock".into()),
            wait_event: (!blocked_by.is_empty()).then(|| "relation".into()),
            blocked_by: blocked_by.to_vec(),
            via_pooler: false,
            incarnation: Default::default(),
        }
    }

    fn lock(pid: i32, mode: &str, granted: bool) -> LockRow {
        LockRow {
            pid,
            locktype: "relation".into(),
            relation: Some("academic_partners".into()),
            mode: mode.into(),
            granted,
            waiting_ms: (!granted).then_some(5_000),
        }
    }

    fn report(leaker_app: &str, readers: i32) -> BlockerReport {
        let mut sessions = vec![
            session(10, leaker_app, "web", "idle in transaction", &[]),
            session(20, "alembic", "migrator", "active", &[10]),
        ];
        let mut locks = vec![
            lock(10, "AccessShareLock", true),
            lock(20, "AccessExclusiveLock", false),
        ];
        for pid in 30..30 + readers {
            sessions.push(session(pid, "web", "web", "active", &[20]));
            locks.push(lock(pid, "AccessShareLock", false));
        }
        BlockerReport::from_snapshot(&Snapshot {
            max_connections: 100,
            reserved_connections: 3,
            own_pid: 1,
            pooler_addr: None,
            prepared: Vec::new(),
            role: "web".into(),
            sees_all_sessions: true,
            sessions,
            locks,
        })
    }

    #[test]
    fn advice_names_the_pids_roles_and_the_queue_head() {
        let advice = advice(&report("leaky-app", 3)).join("\n");
        assert!(
            advice.contains("session 10 in the application (\"leaky-app\")"),
            "{advice}"
        );
        assert!(
            advice.contains("ALTER ROLE web SET idle_in_transaction_session_timeout"),
            "{advice}"
        );
        assert!(advice.contains("new sessions of role web only"), "{advice}");
        assert!(advice.contains("WHERE pid IN (10)"), "{advice}");
        assert!(
            advice.contains("3 sessions queued behind pid 20 \"alembic\""),
            "{advice}"
        );
        assert!(advice.contains("pg_cancel_backend(20)"), "{advice}");
        assert!(
            !advice.contains("SQLAlchemy"),
            "not every app is SQLAlchemy: {advice}"
        );
        assert!(!advice.contains("<app role>"), "{advice}");
    }

    #[test]
    fn sqlalchemy_advice_only_for_an_app_that_looks_like_one() {
        let advice = advice(&report("flask-sqlalchemy", 1)).join("\n");
        assert!(advice.contains("scoped_session.remove()"), "{advice}");
    }

    #[test]
    fn the_outage_as_people_read_it() {
        insta::assert_snapshot!(human(&report("leaky-app", 5), Style::plain()));
    }

    #[test]
    fn one_session_is_singular() {
        let text = human(&report("leaky-app", 1), Style::plain());
        assert!(text.contains("1 session queued behind it"), "{text}");
        assert!(!text.contains("1 sessions"), "{text}");
    }
}
