//! The `apply --dry-run` plan: each pending migration, the statements it
//! would run with the locks each takes, and who would block it now. The
//! JSON contract and the human text, from the same [`Plan`].

use std::fmt::Write;

use locksmith_pg::guard::Holder;
use serde::Serialize;

use super::one_line;

/// The whole plan, as `apply --dry-run --format json` prints it.
#[derive(Debug, Serialize)]
pub struct Plan<'a> {
    /// Always `planned`.
    pub status: &'static str,
    /// Versions recorded as applied without running (`--baseline`): a
    /// number when the version is one, else its text.
    pub baseline: Vec<serde_json::Value>,
    /// Pending migrations, in the order they would run.
    pub migrations: Vec<PlannedMigration<'a>>,
}

/// One pending migration.
#[derive(Debug, Serialize)]
pub struct PlannedMigration<'a> {
    /// A number when the version is one, else its text (`1.1`, `R__views`).
    pub version: serde_json::Value,
    /// Name.
    pub name: &'a str,
    /// Its file, relative to the folder.
    pub file: &'a str,
    /// One transaction with its history row, or statement by statement.
    pub in_transaction: bool,
    /// What it would run.
    pub statements: Vec<PlannedStatement<'a>>,
    /// Sessions holding conflicting locks now.
    pub blockers: Vec<Holder>,
    /// With `--online`, the steps that run instead of the statements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub online: Option<Vec<OnlineUnit>>,
}

/// One step of an online plan.
#[derive(Debug, Serialize)]
pub struct OnlineUnit {
    /// Runs in one transaction (else outside any, statement by statement).
    pub transaction: bool,
    /// Skipped when this query says an interrupted run already did it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_when: Option<String>,
    /// The statements.
    pub statements: Vec<OnlineStatement>,
}

/// A statement of an online step, with its locks.
#[derive(Debug, Serialize)]
pub struct OnlineStatement {
    /// The SQL.
    pub sql: String,
    /// The locks, as the analysis has them.
    pub locks: Vec<locksmith_core::analysis::RelationLock>,
}

/// One statement and the locks it takes.
#[derive(Debug, Serialize)]
pub struct PlannedStatement<'a> {
    /// 1-based line in its file.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// The statement.
    pub sql: &'a str,
    /// Locks on existing relations.
    pub locks: Vec<PlannedLock<'a>>,
}

/// A lock a statement takes.
#[derive(Debug, Serialize)]
pub struct PlannedLock<'a> {
    /// The relation.
    pub relation: &'a str,
    /// `pg_locks` spelling, e.g. `AccessExclusiveLock`.
    pub mode: &'static str,
}

/// The plan as text.
pub fn human(plan: &Plan) -> String {
    let mut out = String::new();
    if !plan.baseline.is_empty() {
        out.push_str("Would record as applied without running (--baseline):\n");
        for version in &plan.baseline {
            let _ = writeln!(out, "  {}", version_text(version));
        }
    }
    if plan.migrations.is_empty() {
        out.push_str("Nothing to apply: the database is up to date.\n");
    }
    for m in &plan.migrations {
        let _ = writeln!(
            out,
            "{} {} ({})",
            version_text(&m.version),
            m.name,
            if m.in_transaction {
                "one transaction, with its history row"
            } else {
                "statement by statement"
            }
        );
        for s in &m.statements {
            let locks: Vec<String> = s
                .locks
                .iter()
                .map(|l| format!("{} on {}", l.mode, l.relation))
                .collect();
            let _ = writeln!(out, "  {}:{}  {}", s.line, s.column, one_line(s.sql, 90));
            let _ = writeln!(
                out,
                "        locks: {}",
                if locks.is_empty() {
                    "none on existing tables".into()
                } else {
                    locks.join(", ")
                }
            );
        }
        if let Some(units) = &m.online {
            online(&mut out, units);
        }
        if m.blockers.is_empty() {
            out.push_str("  would block it now: nobody\n");
        } else {
            out.push_str("  would block it now:\n");
            for h in &m.blockers {
                let _ = writeln!(out, "    {}", super::guard::holder_line(h));
            }
        }
    }
    out
}

/// `7`, or `1.1` without quotes.
fn version_text(v: &serde_json::Value) -> String {
    v.as_str().map_or(v.to_string(), str::to_string)
}

/// An online plan: one block per step.
fn online(out: &mut String, units: &[OnlineUnit]) {
    out.push_str("  online plan (each step guarded, recorded as it completes):\n");
    for (i, u) in units.iter().enumerate() {
        let _ = writeln!(
            out,
            "    step {} ({}{})",
            i + 1,
            if u.transaction {
                "one transaction"
            } else {
                "no transaction"
            },
            if u.done_when.is_some() {
                ", skipped when already done"
            } else {
                ""
            }
        );
        for s in &u.statements {
            let _ = writeln!(out, "      {};", one_line(&s.sql, 100));
            let locks: Vec<String> = s
                .locks
                .iter()
                .map(|l| format!("{} on {}", l.mode, l.relation))
                .collect();
            if !locks.is_empty() {
                let _ = writeln!(out, "        locks: {}", locks.join(", "));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_statement_its_locks_and_nobody_in_the_way() {
        let plan = Plan {
            status: "planned",
            baseline: Vec::new(),
            migrations: vec![PlannedMigration {
                version: 1.into(),
                name: "unique",
                file: "1_unique.sql",
                online: None,
                in_transaction: true,
                statements: vec![PlannedStatement {
                    line: 2,
                    column: 1,
                    sql: "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)",
                    locks: vec![PlannedLock {
                        relation: "t",
                        mode: "AccessExclusiveLock",
                    }],
                }],
                blockers: Vec::new(),
            }],
        };
        let text = human(&plan);
        assert!(
            text.contains("1 unique (one transaction, with its history row)"),
            "{text}"
        );
        assert!(text.contains("  2:1  ALTER TABLE t"), "{text}");
        assert!(text.contains("locks: AccessExclusiveLock on t"), "{text}");
        assert!(text.contains("would block it now: nobody"), "{text}");
        let json = serde_json::to_value(&plan).unwrap();
        assert_eq!(
            json["migrations"][0]["statements"][0]["locks"][0],
            serde_json::json!({"relation": "t", "mode": "AccessExclusiveLock"})
        );
    }
}
