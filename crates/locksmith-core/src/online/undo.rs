//! What `apply --online --abort` runs to take back the finished steps of an
//! unfinished online migration, or why it must not: each step's inverse,
//! where one loses nothing (an index this migration built `CONCURRENTLY` →
//! `DROP INDEX CONCURRENTLY IF EXISTS`, which also removes the invalid index
//! of a build that was cut off; a constraint added `NOT VALID` or adopted
//! `USING INDEX` → `DROP CONSTRAINT IF EXISTS`; a type change before its
//! swap → its shadow objects dropped), run in reverse order.
//!
//! What cannot be taken back without losing or inventing something is
//! refused before anything runs, each with the step and what to do: a
//! batched `UPDATE` that changed rows (the old values are gone), a column
//! added by this migration (writers may have filled it since), a `SET NOT
//! NULL` or `SET DEFAULT` (what the column had before is not known), an
//! index dropped, a statement run as written.
//!
//! Pure: the plan's units and what the progress table says in, SQL out.
//! Every inverse is idempotent (`IF EXISTS`), so an abort cut off halfway
//! is finished by running it again.

use super::retype;
use super::{Retyped, Unit};
use crate::analysis::{
    analyze, quote_ident, quote_qualified, AlterAction, Statement, StatementKind,
};

/// How far an unfinished run got with one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Recorded as done.
    Done,
    /// The unit after the last one done: it may have started. `changed_rows`:
    /// a batched `UPDATE` among it committed batches.
    Started {
        /// Batches of it committed.
        changed_rows: bool,
    },
}

/// One step of an abort, in the order to run.
#[derive(Debug, Clone, PartialEq)]
pub struct UndoStep {
    /// The units whose progress this step forgets: in its transaction, or
    /// just before it when it runs outside one (a rerun then no longer skips
    /// a unit whose work is being removed).
    pub units: Vec<usize>,
    /// What removes their work (none when there is nothing to remove).
    pub statements: Vec<Statement>,
    /// Whether the statements run in one transaction.
    pub transactional: bool,
}

/// Why an abort is refused: each step it cannot take back (`step N of M
/// (`sql`): why`), and the SQL that takes back the rest by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The steps, each with why and what the user can do instead.
    pub steps: Vec<String>,
    /// The inverses of the steps that have one, in the order to run them.
    pub by_hand: Vec<String>,
}

/// The steps that take back `touched` (unit, how far) of the online plan
/// `units`, last unit first; `retypes` are the type changes among them that
/// began (each taken back as a whole, before its swap). `Err` lists what
/// cannot be taken back; nothing is to run then.
pub fn plan(
    units: &[Unit],
    touched: &[(usize, Progress)],
    retypes: &[Retyped],
    pg_version: u32,
) -> Result<Vec<UndoStep>, Refused> {
    let of_retype = |u: &Unit| retypes.iter().position(|r| retype::belongs(r, u));
    let mut steps = Vec::new();
    let mut refused = Vec::new();
    let mut touched: Vec<(usize, Progress)> = touched.to_vec();
    touched.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
    let mut retyped_units: Vec<Vec<usize>> = vec![Vec::new(); retypes.len()];
    for &(i, progress) in &touched {
        let Some(unit) = units.get(i) else { continue };
        if let Some(r) = of_retype(unit) {
            retyped_units[r].push(i);
            continue;
        }
        let described = || {
            format!(
                "step {} of {} (`{}`)",
                i + 1,
                units.len(),
                unit.statements
                    .first()
                    .map(|s| crate::analysis::source::one_line(&s.sql, 80))
                    .unwrap_or_default()
            )
        };
        match inverse(unit, progress) {
            Ok(sqls) => {
                let analysed = sqls
                    .iter()
                    .map(|sql| analysed(sql, pg_version))
                    .collect::<Option<Vec<_>>>();
                let Some(statements) = analysed else {
                    refused.push(format!("{}: could not plan its inverse", described()));
                    continue;
                };
                steps.push(UndoStep {
                    units: vec![i],
                    transactional: statements.iter().all(|s| s.transactional),
                    statements,
                });
            }
            Err(why) => refused.push(format!("{}: {why}", described())),
        }
    }
    // A type change's steps are taken back together, where its first one was.
    for (r, mut its) in retypes.iter().zip(retyped_units) {
        let Some(&first) = its.iter().min() else {
            continue;
        };
        its.sort_unstable_by(|a, b| b.cmp(a));
        let undo = match retype::undo(r, pg_version) {
            Ok(undo) => undo,
            Err(why) => {
                refused.push(format!(
                    "the type change of {}.{}: {why}",
                    r.table, r.column
                ));
                continue;
            }
        };
        let at = steps
            .iter()
            .position(|s| s.units.iter().all(|&u| u < first))
            .unwrap_or(steps.len());
        steps.insert(
            at,
            UndoStep {
                units: its,
                statements: undo.statements,
                transactional: true,
            },
        );
    }
    if refused.is_empty() {
        return Ok(steps);
    }
    Err(Refused {
        steps: refused,
        by_hand: steps
            .iter()
            .flat_map(|s| s.statements.iter().map(|s| s.sql.clone()))
            .collect(),
    })
}

/// `name` in `table`'s schema (an index lives beside its table), quoted where needed.
fn beside(table: &str, name: &str) -> String {
    let mut parts = crate::quote::split_qualified(table);
    parts.pop();
    parts.push(name.to_string());
    parts
        .iter()
        .map(|p| quote_ident(p))
        .collect::<Vec<_>>()
        .join(".")
}

fn analysed(sql: &str, pg_version: u32) -> Option<Statement> {
    match analyze(sql, pg_version) {
        Ok(mut s) if s.len() == 1 => Some(s.remove(0)),
        _ => None,
    }
}

/// The SQL that takes back what `unit` did (its statements' inverses, last
/// first), or why there is none that loses nothing, with what to do by hand.
fn inverse(unit: &Unit, progress: Progress) -> Result<Vec<String>, String> {
    let changed_rows = match progress {
        Progress::Done => true,
        Progress::Started { changed_rows } => changed_rows,
    };
    if unit.batch.is_some() && (changed_rows || !unit.transactional) {
        return Err(
            "a batched UPDATE that already changed rows: the old values are gone, and nothing \
             takes them back. Finish the migration with apply --online, or put the rows back \
             yourself"
                .into(),
        );
    }
    if matches!(progress, Progress::Started { .. }) && unit.transactional {
        // Its transaction did not commit: nothing of it is there.
        return Ok(Vec::new());
    }
    let mut sqls = Vec::new();
    for s in unit.statements.iter().rev() {
        sqls.extend(statement_inverse(s)?);
    }
    Ok(sqls)
}

/// The inverse of one statement run by an online plan.
fn statement_inverse(s: &Statement) -> Result<Option<String>, String> {
    let shown = crate::analysis::source::one_line(&s.sql, 80);
    match &s.kind {
        StatementKind::CreateIndex {
            name: Some(name),
            table,
            concurrently: true,
            ..
        } => Ok(Some(format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}",
            beside(table, name)
        ))),
        StatementKind::AlterTable { table, actions } => match actions.as_slice() {
            [AlterAction::AddConstraint(c)] if c.not_valid || c.using_index.is_some() => {
                match &c.name {
                    Some(name) => Ok(Some(format!(
                        "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                        quote_qualified(table),
                        quote_ident(name)
                    ))),
                    None => Err(format!(
                        "`{shown}` added an unnamed constraint: drop it by hand (\\d {table} names it)"
                    )),
                }
            }
            // Taken back with the constraint it checked.
            [AlterAction::ValidateConstraint { .. }] => Ok(None),
            // The plan's own helper check (`SET NOT NULL` proven by it), dropped again.
            [AlterAction::DropConstraint { .. }] if s.sql.contains(" IF EXISTS ") => Ok(None),
            [AlterAction::SetNotNull { column, .. }] => Err(format!(
                "NOT NULL is set on {column}, and whether it was before is not known. Finish the \
                 migration with apply --online, or, if {column} was nullable before: ALTER TABLE {} \
                 ALTER COLUMN {} DROP NOT NULL",
                quote_qualified(table),
                quote_ident(column)
            )),
            [AlterAction::AddColumn { column, .. }] => Err(format!(
                "the column {column} is added, and writers may have filled it since: dropping it \
                 would lose that. Finish the migration with apply --online, or drop it by hand if \
                 nothing in it matters: ALTER TABLE {} DROP COLUMN IF EXISTS {}",
                quote_qualified(table),
                quote_ident(column)
            )),
            [AlterAction::SetDefault { column }] => Err(format!(
                "the default of {column} is set, and what it was before is not known. Finish the \
                 migration with apply --online, or set it back by hand (ALTER TABLE {} ALTER \
                 COLUMN {} DROP DEFAULT if it had none)",
                quote_qualified(table),
                quote_ident(column)
            )),
            _ => Err(format!(
                "`{shown}` has no inverse locksmith runs: finish the migration with apply \
                 --online, or undo it by hand"
            )),
        },
        // They change no definition: nothing to take back.
        StatementKind::Reindex { .. } | StatementKind::RefreshMatView { .. } => Ok(None),
        StatementKind::DropIndex { .. } => Err(format!(
            "`{shown}` dropped an index: create it again by hand, or finish the migration with \
             apply --online"
        )),
        _ => Err(format!(
            "`{shown}` has no inverse locksmith runs: finish the migration with apply --online, \
             or undo it by hand"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(sql: &str) -> Vec<Unit> {
        let statements = crate::analysis::analyze(sql, 15).unwrap();
        super::super::units(&statements, 15).unwrap().unwrap()
    }

    fn sqls(steps: &[UndoStep]) -> Vec<String> {
        steps
            .iter()
            .flat_map(|s| s.statements.iter().map(|s| s.sql.clone()))
            .collect()
    }

    const INDEX_AND_FK: &str = "CREATE INDEX payments_amount ON payments (amount);\n\
        ALTER TABLE payments ADD CONSTRAINT payments_account FOREIGN KEY (account_id) REFERENCES accounts (id);";

    #[test]
    fn an_index_and_a_not_valid_constraint_are_taken_back_last_first() {
        let units = planned(INDEX_AND_FK);
        assert_eq!(units.len(), 3, "{units:#?}");
        let touched = [
            (0, Progress::Done),
            (1, Progress::Done),
            (
                2,
                Progress::Started {
                    changed_rows: false,
                },
            ),
        ];
        let steps = plan(&units, &touched, &[], 15).unwrap();
        assert_eq!(
            sqls(&steps),
            [
                "ALTER TABLE payments DROP CONSTRAINT IF EXISTS payments_account",
                "DROP INDEX CONCURRENTLY IF EXISTS payments_amount",
            ]
        );
        assert_eq!(steps[0].units, [2]);
        assert!(
            steps[0].statements.is_empty(),
            "the validation: nothing to run"
        );
        assert!(steps[1].transactional);
        assert!(!steps[2].transactional);
    }

    #[test]
    fn an_index_build_cut_off_is_dropped_too() {
        let units = planned(INDEX_AND_FK);
        let steps = plan(
            &units,
            &[(
                0,
                Progress::Started {
                    changed_rows: false,
                },
            )],
            &[],
            15,
        )
        .unwrap();
        assert_eq!(
            sqls(&steps),
            ["DROP INDEX CONCURRENTLY IF EXISTS payments_amount"]
        );
    }

    #[test]
    fn a_batched_update_that_changed_rows_is_refused_with_what_to_do() {
        let units = planned(
            "CREATE INDEX payments_amount ON payments (amount);\nUPDATE payments SET amount = amount + 1;\nCREATE INDEX payments_id ON payments (id);",
        );
        let touched = [
            (0, Progress::Done),
            (1, Progress::Started { changed_rows: true }),
        ];
        let refused = plan(&units, &touched, &[], 15).unwrap_err();
        assert_eq!(refused.steps.len(), 1, "{refused:?}");
        assert!(
            refused.steps[0].starts_with("step 2 of 3 (`UPDATE payments"),
            "{refused:?}"
        );
        assert!(refused.steps[0].contains("apply --online"), "{refused:?}");
        assert_eq!(
            refused.by_hand,
            ["DROP INDEX CONCURRENTLY IF EXISTS payments_amount"]
        );
        // Not started yet: nothing changed, nothing refused.
        let touched = [
            (0, Progress::Done),
            (
                1,
                Progress::Started {
                    changed_rows: false,
                },
            ),
        ];
        assert!(plan(&units, &touched, &[], 15).is_ok());
    }

    #[test]
    fn set_not_null_and_an_added_column_are_refused() {
        let units = planned("ALTER TABLE t ALTER COLUMN c SET NOT NULL;");
        let touched: Vec<_> = (0..units.len() - 1).map(|i| (i, Progress::Done)).collect();
        let refused = plan(&units, &touched, &[], 15).unwrap_err();
        assert!(
            refused.steps.iter().any(|s| s.contains("DROP NOT NULL")),
            "{refused:?}"
        );
        assert!(refused
            .by_hand
            .iter()
            .any(|s| s.contains("DROP CONSTRAINT IF EXISTS t_c_not_null_check")));
        let units = planned("ALTER TABLE t ADD COLUMN c uuid DEFAULT gen_random_uuid();");
        let refused = plan(&units, &[(0, Progress::Done)], &[], 15).unwrap_err();
        assert!(
            refused.steps[0].contains("DROP COLUMN IF EXISTS c"),
            "{refused:?}"
        );
    }
}
