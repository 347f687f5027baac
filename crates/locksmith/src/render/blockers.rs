//! The blocker report for people: the wait tree per root blocker, then the
//! idle-in-transaction sessions, then connection headroom.

use std::fmt::Write;

use locksmith_pg::blockers::{BlockerReport, RelationLock};

use super::style::Style;
use super::{age, one_line};

/// Renders the report as text.
pub fn human(report: &BlockerReport, style: Style) -> String {
    let mut out = String::new();
    let c = &report.connections;
    let _ = writeln!(
        out,
        "{} connections used of {} ({} reserved for superusers)",
        c.used, c.max, c.reserved
    );
    if report.blockers.is_empty() && report.waiting.is_empty() {
        let _ = writeln!(out, "{}", style.green("No session is waiting for a lock."));
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
                        "{indent}└─ … and {hidden} more sessions waiting the same way"
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
            if let Some(b) = report.blockers.iter().find(|b| b.session.pid == line.pid) {
                let session = &b.session;
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
                    session.client_addr.as_deref().unwrap_or("local socket"),
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
                        ", {} sessions queued behind it",
                        w.queued_behind.len()
                    ))
                };
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
                s.client_addr.as_deref().unwrap_or("local"),
                age(s.state_age_ms),
                age(s.xact_age_ms),
                holds(&idle.holds),
            );
        }
    }
    if !report.blockers.is_empty() {
        let _ = writeln!(out, "\n{}", style.bold("What to do:"));
        let _ = writeln!(out, "  - End the root blockers' transactions in the application (SQLAlchemy: call scoped_session.remove() at the end of every request).");
        let _ = writeln!(out, "  - Let the server end them: ALTER ROLE <app role> SET idle_in_transaction_session_timeout = '60s';");
        let _ = writeln!(out, "  - Now: SELECT pg_terminate_backend(pid) for an idle-in-transaction root, or cancel the queued DDL (pg_cancel_backend) to release everyone queued behind it.");
    }
    out
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
