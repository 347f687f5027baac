//! The online plan: a statement that would hold a traffic-blocking lock while
//! it builds an index, scans or rewrites a table, turned into steps that do
//! the same with brief locks only (`CONCURRENTLY`, `NOT VALID` + `VALIDATE`,
//! a proven `SET NOT NULL`). `apply --online` runs these steps, each under
//! the guard in its own transaction (or none, for `CONCURRENTLY`).
//!
//! Each step carries a `done_when` query, so a run interrupted at any point
//! (kill -9, a restart) resumes where it stopped: a step already done is
//! skipped, never run twice. Steps without one are idempotent as written.
//!
//! Pure: SQL in, SQL out. Whether a table is big, or exists, is the caller's
//! business; the plan only knows which relations the same migration created
//! (those have no traffic yet and are left as written).

use std::collections::BTreeSet;

pub use crate::analysis::split::{BatchedUpdate, Retyped};
use crate::analysis::{analyze_after, quote_qualified, AlterAction, Statement, StatementKind};

/// One step of an online plan.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineStep {
    /// The step, analysed (its locks, and whether it may run in a transaction).
    pub statement: Statement,
    /// A query returning one boolean, true when an earlier, interrupted run
    /// already did this step; `None` when the step is idempotent as written.
    pub done_when: Option<String>,
    /// The step as batches over the table's key, when the table has one (a
    /// backfill); the statement is what runs on a table without one.
    pub batch: Option<BatchedUpdate>,
}

/// What to do with one statement under `--online`.
#[derive(Debug, Clone, PartialEq)]
pub enum Online {
    /// Safe to run as written: a brief lock, or a relation this migration created.
    AsIs,
    /// Run these steps instead, in order.
    Steps(Vec<OnlineStep>),
    /// It would block traffic while it works and has no online equivalent:
    /// why, and what to do by hand.
    Refused(String),
}

/// A unit of an online migration: run under the guard as one transaction
/// (or, when not `transactional`, statement by statement), and recorded as
/// done before the next one starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// The statements, in order.
    pub statements: Vec<Statement>,
    /// A query true when an interrupted run already did this unit.
    pub done_when: Option<String>,
    /// Whether the statements run in one transaction.
    pub transactional: bool,
    /// Set when the unit is one `UPDATE` run in batches over ranges of the
    /// table's key, each its own short transaction recorded as it commits.
    /// When the unit's statement runs outside a transaction (a backfill `DO`
    /// block, batched by heap pages), that statement is what runs on a table
    /// without a key instead.
    pub batch: Option<BatchedUpdate>,
    /// Set when the unit is a type change that rewrites the table, still to
    /// be expanded into its shadow-column units ([`retype::units`]) from what
    /// the server says about the column; on the expansion's batched fill
    /// (with [`batch`](Self::batch)), the change it fills, undone should a
    /// value not convert.
    pub retype: Option<Retyped>,
}

impl Unit {
    /// A type change still to be expanded into its shadow-column units.
    pub fn unexpanded(&self) -> Option<&Retyped> {
        self.retype.as_ref().filter(|_| self.batch.is_none())
    }
}

/// A statement of the migration that cannot run online.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Its index among the migration's statements.
    pub index: usize,
    /// Why, and what to do by hand.
    pub why: String,
}

/// The units that run `statements` (one migration, in order) online, or
/// `None` when none of them needs it and the migration can run as written.
/// Statements kept as written are grouped into one transaction between the
/// online steps, so each unit is done exactly once across interruptions.
/// An `UPDATE` of an existing table is a unit of its own, run in batches
/// ([`Unit::batch`]): as one statement it would hold a row lock on every row
/// it changes until it commits, and writers of those rows wait that long.
pub fn units(statements: &[Statement], pg_version: u32) -> Result<Option<Vec<Unit>>, Refusal> {
    let mut created = BTreeSet::new();
    let mut units: Vec<Unit> = Vec::new();
    let mut changed = false;
    for (index, s) in statements.iter().enumerate() {
        if let StatementKind::Dml {
            command: "UPDATE",
            table,
            ..
        } = &s.kind
        {
            if !created.contains(table) {
                let batch = crate::analysis::split::batched_update(&s.sql)
                    .map_err(|why| Refusal { index, why })?;
                changed = true;
                units.push(Unit {
                    statements: vec![s.clone()],
                    done_when: None,
                    transactional: true,
                    batch: Some(batch),
                    retype: None,
                });
                continue;
            }
        }
        if let Some(retype) = rewriting_type_change(s, &created) {
            changed = true;
            units.push(Unit {
                statements: vec![s.clone()],
                done_when: None,
                transactional: true,
                batch: None,
                retype: Some(retype),
            });
            continue;
        }
        match plan(s, &created, pg_version) {
            Online::Refused(why) => return Err(Refusal { index, why }),
            Online::Steps(steps) => {
                changed = true;
                units.extend(steps.into_iter().map(|step| Unit {
                    transactional: step.statement.transactional,
                    statements: vec![step.statement],
                    done_when: step.done_when,
                    batch: step.batch,
                    retype: None,
                }));
            }
            Online::AsIs => match units.last_mut() {
                Some(u)
                    if u.transactional
                        && u.done_when.is_none()
                        && u.batch.is_none()
                        && s.transactional =>
                {
                    u.statements.push(s.clone())
                }
                _ => units.push(Unit {
                    statements: vec![s.clone()],
                    done_when: None,
                    transactional: s.transactional,
                    batch: None,
                    retype: None,
                }),
            },
        }
        if let StatementKind::CreateTable { table } = &s.kind {
            created.insert(table.clone());
        }
    }
    Ok(changed.then_some(units))
}

/// `s` taken apart when it is a one-subcommand type change that rewrites an
/// existing table: run through a shadow column ([`retype`]).
fn rewriting_type_change(s: &Statement, created: &BTreeSet<String>) -> Option<Retyped> {
    let StatementKind::AlterTable { table, actions } = &s.kind else {
        return None;
    };
    let [AlterAction::AlterColumnType { .. }] = actions.as_slice() else {
        return None;
    };
    if created.contains(table) || !s.rewrites.contains(table) {
        return None;
    }
    crate::analysis::split::retyped(&s.sql)
}

/// The online plan for `s`, given the relations created earlier in the same
/// migration (as written in their `CREATE` statements).
pub fn plan(s: &Statement, created: &BTreeSet<String>, pg_version: u32) -> Online {
    let steps = match &s.kind {
        StatementKind::AlterTable { table, actions } if !created.contains(table) => {
            match alter::alter_table(&s.sql, table, actions) {
                Some(Ok(sqls)) => sqls,
                Some(Err(why)) => return Online::Refused(why),
                None => return refuse_if_blocking(s, created),
            }
        }
        StatementKind::CreateIndex {
            name,
            table,
            concurrently: false,
            ..
        } if !created.contains(table) => {
            let Some(name) = name else {
                return Online::Refused(
                    "name the index: an interrupted concurrent build must be found by its name to be resumed".into(),
                );
            };
            let Some(sql) = insert_after_word(&s.sql, &["INDEX"], "CONCURRENTLY") else {
                return Online::Refused(
                    "cannot add CONCURRENTLY to this CREATE INDEX; write it by hand".into(),
                );
            };
            vec![(
                sql,
                Some(alter::valid_index_exists(&alter::sibling(table, name))),
            )
                .into()]
        }
        StatementKind::DropIndex {
            indexes,
            concurrently: false,
        } => {
            if s.sql.to_ascii_uppercase().contains("CASCADE") {
                return Online::Refused(
                    "DROP INDEX CONCURRENTLY cannot CASCADE: drop the dependent objects first"
                        .into(),
                );
            }
            indexes
                .iter()
                .map(|i| {
                    (
                        format!("DROP INDEX CONCURRENTLY IF EXISTS {}", quote_qualified(i)),
                        None,
                    )
                        .into()
                })
                .collect()
        }
        StatementKind::Reindex {
            target: Some(_),
            concurrently: false,
        } => match insert_after_word(
            &s.sql,
            &["INDEX", "TABLE", "SCHEMA", "DATABASE"],
            "CONCURRENTLY",
        ) {
            Some(sql) => vec![(sql, None).into()],
            None => return Online::Refused("REINDEX SYSTEM has no concurrent form".into()),
        },
        // Needs a unique index on the view: without one the server refuses
        // the step, saying so, before it holds anything.
        StatementKind::RefreshMatView {
            view,
            concurrently: false,
        } if !created.contains(view) => {
            match insert_after_word(&s.sql, &["VIEW"], "CONCURRENTLY") {
                Some(sql) => vec![(sql, None).into()],
                None => return refuse_if_blocking(s, created),
            }
        }
        _ => return refuse_if_blocking(s, created),
    };
    analysed(steps, pg_version)
}

/// Steps as SQL, each with its done-when query, before analysis.
type Draft = Vec<DraftStep>;

/// Steps as SQL with their done-when queries, all of them transactional.
type Pairs = Vec<(String, Option<String>)>;

/// One step as SQL, before analysis.
struct DraftStep {
    sql: String,
    done_when: Option<String>,
    /// Must run outside a transaction block although the analysis cannot
    /// tell (a `DO` block that commits its batches).
    outside_transaction: bool,
    /// The same work as key-range batches, where the table has a key.
    batch: Option<BatchedUpdate>,
}

impl From<(String, Option<String>)> for DraftStep {
    fn from((sql, done_when): (String, Option<String>)) -> Self {
        DraftStep {
            sql,
            done_when,
            outside_transaction: false,
            batch: None,
        }
    }
}

/// Analyses the generated steps, each after the ones before it (so a
/// `SET NOT NULL` after its validated check is known to need no scan).
fn analysed(steps: Draft, pg_version: u32) -> Online {
    let mut before = String::new();
    let mut out = Vec::new();
    for DraftStep {
        sql,
        done_when,
        outside_transaction,
        batch,
    } in steps
    {
        let mut statement = match analyze_after(&before, &sql, pg_version) {
            Ok(mut s) if s.len() == 1 => s.remove(0),
            _ => return Online::Refused(format!("could not plan `{sql}`; write it by hand")),
        };
        statement.transactional &= !outside_transaction;
        before.push_str(&sql);
        before.push_str(";\n");
        out.push(OnlineStep {
            statement,
            done_when,
            batch,
        });
    }
    Online::Steps(out)
}

/// A statement with no online form: refused when it would block traffic
/// while reading or rewriting an existing table.
fn refuse_if_blocking(s: &Statement, created: &BTreeSet<String>) -> Online {
    let busy = s
        .rewrites
        .iter()
        .chain(&s.scans)
        .find(|r| !created.contains(*r) && s.lock_on(r).is_some_and(|m| m.blocks_traffic()));
    let Some(relation) = busy else {
        return Online::AsIs;
    };
    let mode = s
        .lock_on(relation)
        .unwrap_or(crate::lock::LockMode::AccessExclusive);
    let rewrite = s.rewrites.contains(relation);
    Online::Refused(format!(
        "it {} `{relation}` under {}, which blocks {}, and has no online equivalent. {}",
        if rewrite { "rewrites" } else { "reads all of" },
        mode.sql_name(),
        mode.blocks(),
        by_hand(s),
    ))
}

/// The expand/contract steps for what cannot be done online.
fn by_hand(s: &Statement) -> &'static str {
    match &s.kind {
        StatementKind::AlterTable { actions, .. } if actions.len() > 1 => {
            "Split the ALTER TABLE into one statement per subcommand, so each can run online."
        }
        StatementKind::AlterTable { actions, .. }
            if matches!(actions.first(), Some(AlterAction::AlterColumnType { .. })) =>
        {
            "Expand and contract instead: add a column of the new type, keep both written (a trigger), backfill in batches, switch reads, then drop the old column."
        }
        StatementKind::AlterTable { actions, .. }
            if matches!(actions.first(), Some(AlterAction::AddColumn { .. })) =>
        {
            "Add the column without the default, SET DEFAULT, backfill existing rows in batches (UPDATE … WHERE id BETWEEN …), then add NOT NULL through a validated CHECK."
        }
        StatementKind::Vacuum { full: true, .. } | StatementKind::Cluster { .. } => {
            "Use pg_repack, or a plain VACUUM, which takes no lock that blocks traffic."
        }
        _ => "Do it in expand/contract steps by hand, each holding its lock briefly.",
    }
}

/// `sql` with `word_to_add` after its first word among `after` (any case),
/// e.g. `CONCURRENTLY` after `INDEX`; `None` when there is no such word.
pub(crate) fn insert_after_word(sql: &str, after: &[&str], word_to_add: &str) -> Option<String> {
    let mut start = None;
    for (i, c) in sql.char_indices().chain(std::iter::once((sql.len(), ' '))) {
        let boundary = !(c.is_alphanumeric() || c == '_' || c == '"');
        match (start, boundary) {
            (None, false) => start = Some(i),
            (Some(s), true) => {
                if after.iter().any(|w| sql[s..i].eq_ignore_ascii_case(w)) {
                    return Some(format!("{} {word_to_add}{}", &sql[..i], &sql[i..]));
                }
                start = None;
            }
            _ => {}
        }
    }
    None
}

/// The lock budget a printed plan sets for itself (the same as the
/// missing-lock-timeout rule's fix): it runs by hand, without the guard's retries.
pub const SCRIPT_LOCK_TIMEOUT: &str = "2s";

/// A fix as printed: with `SET lock_timeout` first unless it sets one, so
/// the SQL lint tells people to run never queues without bound itself.
pub fn bounded(fix: String) -> String {
    if fix.to_ascii_lowercase().contains("lock_timeout") {
        fix
    } else {
        format!("SET lock_timeout = '{SCRIPT_LOCK_TIMEOUT}';\n{fix}")
    }
}

/// The plan as a script to run by hand: `SET lock_timeout` first (its
/// brief locks must never queue for long), then each step as its own
/// transaction, as `apply --online` runs them. When the statement sat inside
/// the file's own transaction block, that block is committed before the
/// steps, each transactional step gets its own `BEGIN … COMMIT`, steps that
/// cannot run in a transaction run between them, and a block is reopened at
/// the end for the file's own `COMMIT`.
pub fn script(steps: &[OnlineStep], in_transaction_block: bool) -> String {
    let mut out = format!("SET lock_timeout = '{SCRIPT_LOCK_TIMEOUT}';\n");
    let mut open = in_transaction_block;
    for (i, step) in steps.iter().enumerate() {
        let s = &step.statement;
        if open && (i > 0 || !s.transactional) {
            out.push_str("COMMIT;\n");
            open = false;
        }
        if in_transaction_block && s.transactional && !open {
            out.push_str("BEGIN;\n");
            open = true;
        }
        out.push_str(&s.sql);
        out.push_str(";\n");
    }
    if in_transaction_block && !open {
        out.push_str("BEGIN;\n");
    }
    out.truncate(out.trim_end().len());
    out
}

mod alter;
pub mod retype;
pub mod undo;

pub(crate) use alter::default_name;
#[cfg(test)]
mod tests;
