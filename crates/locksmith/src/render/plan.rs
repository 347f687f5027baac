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
    /// Pending migrations, in the order they would run.
    pub migrations: Vec<PlannedMigration<'a>>,
}

/// One pending migration.
#[derive(Debug, Serialize)]
pub struct PlannedMigration<'a> {
    /// Version number.
    pub version: i64,
    /// Name.
    pub name: &'a str,
    /// One transaction with its history row, or statement by statement.
    pub in_transaction: bool,
    /// What it would run.
    pub statements: Vec<PlannedStatement<'a>>,
    /// Sessions holding conflicting locks now.
    pub blockers: Vec<Holder>,
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
    if plan.migrations.is_empty() {
        out.push_str("Nothing to apply: the database is up to date.\n");
    }
    for m in &plan.migrations {
        let _ = writeln!(
            out,
            "{} {} ({})",
            m.version,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_each_statement_its_locks_and_nobody_in_the_way() {
        let plan = Plan {
            status: "planned",
            migrations: vec![PlannedMigration {
                version: 1,
                name: "unique",
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
