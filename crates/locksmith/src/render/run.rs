//! Human text for `locksmith run`: its progress lines (one per
//! [`Event`] of `locksmith_pg::wrap`) and its final report. The JSON is the
//! library's [`locksmith_pg::wrap::Report`]; only the prose differs from
//! `apply`'s, because a wrapped command is one opaque migration, not
//! numbered files, and whether it rolled back is the command's business,
//! not ours to claim.

use std::fmt::Write;
use std::time::Duration;

use locksmith_core::duration::human as took;
use locksmith_core::lint::live;
use locksmith_pg::guard::Holder;
use locksmith_pg::wrap::plan::OnlineAlternative;
use locksmith_pg::wrap::{Event, RunPlan};

use super::guard::{holder_line, RunReport, Status};
use super::style::Style;
use super::{age, one_line};

/// The report as a few lines for stderr.
pub fn human(report: &RunReport, command: &str, style: Style) -> String {
    let command = one_line(command, 80);
    let plural = |n: u32| if n == 1 { "" } else { "s" };
    let mut out = String::new();
    match report.status {
        Status::Applied => {
            let took = report
                .migrations
                .first()
                .map(|m| age(Some(m.duration_ms as i64)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{} `{command}` in {took} ({} attempt{})",
                style.green("applied:"),
                report.attempts,
                plural(report.attempts)
            );
            if !report.terminated.is_empty() {
                let _ = writeln!(out, "Terminated (idle in transaction past --terminate-idle-after, blocking the migration):");
                for h in &report.terminated {
                    let _ = writeln!(out, "  {}", holder_line(h));
                }
            }
        }
        Status::Blocked | Status::HoldExceeded => {
            let _ = writeln!(
                out,
                "{} `{command}` after {} attempt{}",
                style.red("locksmith run gave up:"),
                report.attempts,
                plural(report.attempts)
            );
            // A wrapped command has no folder: nothing of "where things stand" applies.
            out.push_str(&super::guard::human(report, "", style));
        }
        Status::Failed => {
            let _ = writeln!(
                out,
                "{} {}",
                style.red("locksmith run:"),
                report.error.as_deref().unwrap_or("failed")
            );
            if !report.terminated.is_empty() {
                let _ = writeln!(out, "Terminated before that:");
                for h in &report.terminated {
                    let _ = writeln!(out, "  {}", holder_line(h));
                }
            }
        }
    }
    out
}

/// One progress line, without its `locksmith run: ` prefix.
pub fn event(event: &Event<'_>) -> String {
    let labels = |holders: &[Holder]| {
        holders
            .iter()
            .map(|h| h.label())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match event {
        Event::Pooler {
            pooler,
            direct,
            application_name,
        } => format!(
            "behind {pooler}. lock_timeout is not sent in PGOPTIONS (a pooler refuses or drops it): \
             locksmith cancels any lock wait of the command's sessions (application_name \
             {application_name}, then one name per attempt) past --lock-timeout itself, watching {}",
            match direct {
                true => "over --direct-url, straight to the server",
                false => "through the pooler (give --direct-url so the watch never waits for a pooled connection)",
            }
        ),
        Event::InheritedOptions => "warning: the command inherits PGOPTIONS from this environment, \
            but a pooler refuses the options startup parameter or drops it silently: do not count on \
            those settings"
            .to_string(),
        Event::ReplacedApplicationName {
            replaced,
            application_name,
        } => format!(
            "PGAPPNAME={replaced} is replaced by {application_name} for the command: behind a pooler \
             its sessions are found by that name"
        ),
        Event::NoWarden(e) => format!(
            "warning: cannot start the warden that stops the command if locksmith is killed ({e}); \
             if locksmith dies, stop the command yourself"
        ),
        Event::Plan(p) => plan(p).trim_end().to_string(),
        Event::NoPlan(why) => format!(
            "note: no plan before running (the SQL could not be read first: {why}); the command \
             runs under the guard as it would without one"
        ),
        Event::PsqlStopsOnError => "psql is run with -v ON_ERROR_STOP=1, so it stops at the first \
            statement that fails (e.g. on lock_timeout) instead of running on past it"
            .to_string(),
        Event::PsqlrcSetsIt(rc) => format!(
            "warning: {rc} sets ON_ERROR_STOP and psql reads it after its -v options, so its value \
             wins; a statement that fails is still never reported as applied"
        ),
        Event::Waiting { holders, next_look } => format!(
            "waiting for {} session{} holding what the migration needs: {} (next look in {})",
            holders.len(),
            if holders.len() == 1 { "" } else { "s" },
            labels(holders),
            took(*next_look)
        ),
        Event::Attempt {
            number,
            command,
            pooled,
            lock_wait,
            application_name,
        } => format!(
            "attempt {number}: {command} ({}, application_name {application_name})",
            match pooled {
                true => format!("lock waits cancelled by locksmith after {}", took(*lock_wait)),
                false => format!("lock_timeout {}", took(*lock_wait)),
            }
        ),
        Event::DeadlinePassed { program } => format!(
            "the deadline passed while `{program}` ran: cancelling its statements and stopping it"
        ),
        Event::Cancelled(wait) => format!(
            "locksmith cancelled `{}` on backend {} after it waited {} for a lock{}",
            one_line(&wait.query, 100),
            wait.pid,
            took(Duration::from_millis(wait.waited_ms)),
            match wait.blockers.is_empty() {
                true => String::new(),
                false => format!(" behind {}", labels(&wait.blockers)),
            }
        ),
        Event::Terminated(h) => format!("terminated {}", holder_line(h)),
        Event::Warning(e) => format!("warning: {e}"),
        Event::LostRace {
            number,
            how,
            waited_for,
        } => format!(
            "attempt {number} lost a lock race ({how}){}",
            match waited_for.is_empty() {
                true => String::new(),
                false => format!("; it waited for {}", labels(waited_for)),
            }
        ),
        Event::WardenStopping {
            application_name,
            pid,
        } => format!(
            "locksmith run ended while its command was running (killed?): the warden stops the \
             command{} and cancels its statements on the server (application_name {application_name})",
            pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        ),
        Event::WardenStopped { cancelled } => format!(
            "warden: the command is stopped; {cancelled} statement{} cancelled on the server",
            if *cancelled == 1 { "" } else { "s" }
        ),
        Event::WardenCouldNotCancel {
            application_name,
            error,
        } => format!(
            "warden: could not cancel the command's statements ({error}): look for application_name \
             {application_name} in pg_stat_activity and cancel them (pg_cancel_backend)"
        ),
    }
}

/// The plan read before running: per statement that takes locks, the
/// locks, what it rewrites or reads at today's size and the estimated hold,
/// who is in the way now, and its online alternative.
pub fn plan(plan: &RunPlan) -> String {
    let mut out = format!(
        "plan, from the SQL of `{}`: {} statement{} taking locks\n",
        one_line(&plan.sql_from, 100),
        plan.statements.len(),
        if plan.statements.len() == 1 { "" } else { "s" }
    );
    for s in &plan.statements {
        let _ = writeln!(out, "  line {}: {}", s.line, one_line(&s.sql, 100));
        let locks: Vec<String> = s
            .locks
            .iter()
            .map(|l| format!("{} on {}", l.mode.sql_name(), l.relation))
            .collect();
        if let Some(strongest) = s.locks.iter().map(|l| l.mode).max() {
            let _ = writeln!(
                out,
                "    locks {}, which blocks {}",
                locks.join(", "),
                strongest.blocks()
            );
        }
        for t in &s.tables {
            let doing = if s.rewrites.contains(&t.relation) {
                "rewrites"
            } else if s.scans.contains(&t.relation) {
                "reads in full"
            } else {
                "touches"
            };
            let size = t
                .bytes
                .map(live::bytes)
                .unwrap_or_else(|| "size unknown".into());
            let _ = write!(
                out,
                "    {doing} {}: about {} rows ({size})",
                t.relation, t.rows
            );
            match &s.estimated_hold {
                Some(h) if h.relation == t.relation => {
                    let _ = writeln!(
                        out,
                        ", est. hold ~{} under {}",
                        took(Duration::from_millis(h.estimated_hold_ms)),
                        h.mode.sql_name()
                    );
                }
                _ => out.push('\n'),
            }
        }
        if let Some(first) = s.blockers.first() {
            let _ = writeln!(
                out,
                "    in the way now: {}{}",
                first.label(),
                match s.blockers.len() {
                    1 => String::new(),
                    n => format!(" (and {} more)", n - 1),
                }
            );
        }
        match &s.online {
            Some(OnlineAlternative::Steps(script)) => {
                let _ = writeln!(out, "    online: {}", one_line(script, 200));
            }
            Some(OnlineAlternative::None(why)) => {
                let _ = writeln!(out, "    no online form: {}", one_line(why, 200));
            }
            None => {}
        }
    }
    if plan.statements.iter().any(|s| s.estimated_hold.is_some()) {
        let _ = writeln!(out, "  holds estimated from {}", plan.calibration);
    }
    out
}

#[cfg(test)]
mod tests {
    use locksmith_core::analysis::RelationLock;
    use locksmith_core::lock::LockMode;
    use locksmith_pg::wrap::plan::{Hold, PlannedStatement, TableSize};

    use super::*;

    #[test]
    fn the_plan_as_people_read_it() {
        let unique = PlannedStatement {
            line: 5,
            sql: "ALTER TABLE academic_partners ADD CONSTRAINT u UNIQUE (informal_name)".into(),
            locks: vec![RelationLock {
                relation: "academic_partners".into(),
                mode: LockMode::AccessExclusive,
            }],
            rewrites: Vec::new(),
            scans: vec!["academic_partners".into()],
            tables: vec![TableSize {
                relation: "academic_partners".into(),
                rows: 1_000_000,
                bytes: Some(75_497_472),
            }],
            estimated_hold: Some(Hold {
                relation: "academic_partners".into(),
                mode: LockMode::AccessExclusive,
                rewrite: false,
                estimated_hold_ms: 360,
            }),
            blockers: Vec::new(),
            online: Some(OnlineAlternative::Steps(
                "SET lock_timeout = '2s';\nCREATE UNIQUE INDEX CONCURRENTLY u ON academic_partners (informal_name);\n\
                 ALTER TABLE academic_partners ADD CONSTRAINT u UNIQUE USING INDEX u;"
                    .into(),
            )),
        };
        let version = PlannedStatement {
            line: 7,
            sql: "UPDATE alembic_version SET version_num='0002' WHERE alembic_version.version_num = '0001'".into(),
            locks: vec![RelationLock {
                relation: "alembic_version".into(),
                mode: LockMode::RowExclusive,
            }],
            rewrites: Vec::new(),
            scans: Vec::new(),
            tables: vec![TableSize {
                relation: "alembic_version".into(),
                rows: 1,
                bytes: None,
            }],
            estimated_hold: None,
            blockers: Vec::new(),
            online: None,
        };
        let text = plan(&RunPlan {
            sql_from: "alembic -c alembic.ini upgrade 0001:head --sql".into(),
            statements: vec![unique, version],
            calibration: locksmith_pg::throughput::Calibration::Measured {
                rows: 100_000,
                temporary: false,
            },
        });
        insta::assert_snapshot!(text);
    }
}
