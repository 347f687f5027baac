//! `--max-hold` before and after: refusing a migration up front when table
//! sizes and the server's measured throughput ([`crate::throughput`]) say a
//! statement would hold a traffic-blocking lock longer than the budget, and
//! saying what to do when the server stopped one.
//!
//! The bound itself is enforced by the guard (`statement_timeout` from the
//! moment the locks are held): it stays the backstop for an estimate that
//! was wrong. This module only reads sizes and words the outcome; it must
//! not decide anything the server did not confirm, except the up-front
//! refusal.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use locksmith_core::analysis::source::one_line;
use locksmith_core::analysis::{RelationLock, Statement};
use locksmith_core::duration::human;
use locksmith_core::lint::live::{bytes, HoldEstimate, TableFacts};
use locksmith_core::lock::LockMode;
use locksmith_core::online::{self, Online};

use crate::throughput::Sizes;
use crate::Connection;

/// Before anything runs: the message refusing the first statement (with its
/// file) whose estimated traffic-blocking hold, at its tables' sizes and
/// this server's throughput, exceeds `max_hold`; or `None`. A server whose
/// sizes cannot be read refuses nothing: the runtime bound still holds.
///
/// `run` calls this too, with the statements its plan read from the tool.
pub async fn refuse_before_running(
    client: &Connection,
    statements: &[(&Path, &Statement)],
    pg_version: u32,
    max_hold: Duration,
) -> Option<String> {
    let heavy: Vec<&(&Path, &Statement)> = statements
        .iter()
        .filter(|(_, s)| !s.rewrites.is_empty() || !s.scans.is_empty())
        .collect();
    if heavy.is_empty() {
        return None;
    }
    let sizes = Sizes::read(client, heavy.iter().map(|(_, s)| *s))
        .await
        .ok()?;
    refusal(&sizes, statements, pg_version, max_hold)
}

/// [`refuse_before_running`] with the sizes already read (say, for a plan
/// printed first): the same refusal, without a second probe.
pub fn refusal(
    sizes: &Sizes,
    statements: &[(&Path, &Statement)],
    pg_version: u32,
    max_hold: Duration,
) -> Option<String> {
    statements.iter().find_map(|(path, s)| {
        let e = sizes.hold(s)?;
        (e.hold > max_hold).then(|| {
            format!(
                "{}:{}:{}: refused before running anything: `{}`: {} for about {} (estimate, {}), over --max-hold {}. {}",
                path.display(),
                s.line,
                s.column,
                one_line(&s.sql, 80),
                describe(&e),
                human(e.hold),
                sizes.throughput.calibration,
                human(max_hold),
                what_instead(s, pg_version),
            )
        })
    })
}

/// After the server stopped `statement` of `path` for holding `locks` past `max_hold`.
pub(super) async fn stopped(
    client: &Connection,
    path: &Path,
    statement: &Statement,
    locks: &[RelationLock],
    pg_version: u32,
    max_hold: Duration,
) -> String {
    let names: Vec<String> = locks.iter().map(|l| l.relation.clone()).collect();
    let facts = table_facts(client, &names).await;
    let held: Vec<String> = locks
        .iter()
        .map(|l| match facts.get(&l.relation) {
            Some(f) => format!(
                "{} on {} (about {} rows, {})",
                l.mode.sql_name(),
                l.relation,
                f.rows.max(0),
                f.bytes.map_or("size unknown".into(), bytes)
            ),
            None => format!("{} on {}", l.mode.sql_name(), l.relation),
        })
        .collect();
    // Row locks (an UPDATE of many rows) show as ROW EXCLUSIVE on the table;
    // what made writers wait is the lock on each row it changed.
    let held = match locks.iter().all(|l| l.mode == LockMode::RowExclusive) {
        true => held
            .iter()
            .map(|h| {
                format!(
                    "row locks on the rows it changed in {}",
                    h.trim_start_matches("ROW EXCLUSIVE on ")
                )
            })
            .collect(),
        false => held,
    };
    format!(
        "{}:{}:{}: `{}` held {} for longer than --max-hold {}, blocking traffic; the server stopped it and rolled the migration back (not recorded). {}",
        path.display(),
        statement.line,
        statement.column,
        one_line(&statement.sql, 80),
        held.join(", "),
        human(max_hold),
        what_instead(statement, pg_version),
    )
}

fn describe(e: &HoldEstimate) -> String {
    format!(
        "`{}` (about {} rows, {}) is {} under {}, which blocks {},",
        e.relation,
        e.rows.max(0),
        e.facts.bytes.map_or("size unknown".into(), bytes),
        if e.rewrite {
            "rewritten"
        } else if e
            .tasks
            .iter()
            .any(|t| matches!(t, locksmith_core::hold::Task::Build(_)))
        {
            "read and indexed"
        } else {
            "read in full"
        },
        e.mode.sql_name(),
        e.mode.blocks(),
    )
}

/// What to do instead, from the online plan `apply --online` would run: its
/// steps, or why there is none. Never the statement itself with a
/// `lock_timeout` added: that is the blocking statement again.
fn what_instead(statement: &Statement, pg_version: u32) -> String {
    let raise = "or raise --max-hold if traffic may wait that long.";
    if let locksmith_core::analysis::StatementKind::AlterTable { actions, .. } = &statement.kind {
        if let [locksmith_core::analysis::AlterAction::AlterColumnType { .. }] = actions.as_slice()
        {
            return format!(
                "Run it online instead: apply --online changes the type through a shadow column \
                 kept in sync by a trigger and filled in batches, then swaps it in with a brief \
                 lock (docs/online.md); {raise}"
            );
        }
    }
    if let locksmith_core::analysis::StatementKind::Dml {
        command: "UPDATE", ..
    } = &statement.kind
    {
        return format!(
            "Run it online instead: apply --online runs it in batches over the table's key, each \
             its own short transaction, so writers wait for one batch at most; {raise}"
        );
    }
    match online::plan(statement, &std::collections::BTreeSet::new(), pg_version) {
        Online::Steps(steps) => {
            let sql: Vec<String> = steps
                .iter()
                .map(|s| format!("{};", s.statement.sql))
                .collect();
            format!(
                "Run it online instead: apply --online runs it as {} steps, each holding its \
                 lock only briefly:\n{}\n{raise}",
                steps.len(),
                indent(&sql.join("\n"))
            )
        }
        Online::Refused(why) => format!(
            "It has no online form: {} Or {raise}",
            why.trim_end_matches('.').to_string() + "."
        ),
        Online::AsIs => format!(
            "It has no online equivalent: change the schema in expand/contract steps (add the \
             new form beside the old, backfill in batches, switch the application, drop the \
             old), {raise}"
        ),
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Sizes, read without ever queueing (`tables::facts` gives up on a size
/// whose lock would wait, and says it is unknown).
async fn table_facts(client: &Connection, names: &[String]) -> BTreeMap<String, TableFacts> {
    crate::tables::facts(client, names)
        .await
        .unwrap_or_default()
}
