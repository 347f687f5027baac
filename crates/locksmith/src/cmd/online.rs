//! `apply --online` at the edge: which pending migrations get an online plan
//! (from `locksmith_core::online`), the refusal of what has none before
//! anything runs, the plan as `--dry-run` prints it, and the message when a
//! step fails. Running the plan is `locksmith_pg::online`'s job.

use std::path::Path;

use crate::exit::Failure;
use crate::render::plan::{OnlineStatement, OnlineUnit};
use locksmith_core::analysis::{self, Statement};
use locksmith_core::online::{self, Unit};

/// A pending migration's statements, analysed again one by one (each after
/// the ones before it), where they are written: `(sql, line, column)`.
pub fn analysed(
    path: &Path,
    statements: &[(&str, u32, u32)],
    pg_version: u32,
) -> Result<Vec<Statement>, Failure> {
    let mut before = String::new();
    let mut out = Vec::new();
    for (sql, line, column) in statements {
        let mut s = analysis::analyze_after(&before, sql, pg_version).map_err(|e| {
            Failure::input(miette::miette!(
                "{}:{line}:{column}: {}",
                path.display(),
                e.message
            ))
        })?;
        before.push_str(sql);
        before.push_str(";\n");
        out.append(&mut s);
    }
    Ok(out)
}

/// The online units of one migration, `None` when it runs as written; a
/// statement with no online form stops everything (exit 2) before anything runs.
pub fn units(
    path: &Path,
    statements: &[Statement],
    positions: &[(u32, u32)],
    pg_version: u32,
) -> Result<Option<Vec<Unit>>, Failure> {
    online::units(statements, pg_version).map_err(|r| {
        let (line, column) = positions.get(r.index).copied().unwrap_or((1, 1));
        Failure::input(miette::miette!(
            "{}:{line}:{column}: cannot run `{}` online: {} Nothing was run.",
            path.display(),
            crate::render::one_line(&statements[r.index].sql, 80),
            r.why
        ))
    })
}

/// The plan for the dry run.
pub fn planned(units: &[Unit]) -> Vec<OnlineUnit> {
    units
        .iter()
        .map(|u| OnlineUnit {
            transaction: u.transactional,
            done_when: u.done_when.clone(),
            statements: u
                .statements
                .iter()
                .map(|s| OnlineStatement {
                    sql: s.sql.clone(),
                    locks: s.locks.clone(),
                })
                .collect(),
        })
        .collect()
}

/// What to say when step `unit` of `total` failed.
pub fn failed(file: &str, unit: usize, total: usize, error: &dyn std::fmt::Display) -> String {
    format!(
        "{file}: online step {} of {total} failed: {error}. Steps before it are done and recorded; the migration is not. Run apply --online again to resume at this step.",
        unit + 1
    )
}
