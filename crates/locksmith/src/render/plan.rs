//! The `apply --dry-run` plan as text: each pending migration, the
//! statements it would run with the locks each takes, and who would block it
//! now. The JSON contract is [`DryRun`] itself.

use std::fmt::Write;

use locksmith_pg::migrate::{DryRun, OnlineUnit};

use super::one_line;

/// The plan as text.
pub fn human(plan: &DryRun) -> String {
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
            let _ = writeln!(out, "  {}:{}  {}", s.line, s.column, one_line(&s.sql, 90));
            let _ = writeln!(
                out,
                "        locks: {}",
                if locks.is_empty() {
                    "none on existing tables".into()
                } else {
                    locks.join(", ")
                }
            );
            if let Some(hold) = &s.hold {
                let _ = writeln!(out, "        at this size: {}", hold.verdict);
            }
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
            if u.batched {
                "in batches over the table's key, one transaction each"
            } else if u.transaction {
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
            // In full: a backfill is a block of several lines, and a dry run
            // that cuts it shows nothing anyone could check.
            for line in format!("{};", s.sql.trim_end()).lines() {
                let _ = writeln!(out, "      {line}");
            }
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
    use locksmith_pg::migrate::report::{PlannedLock, PlannedMigration, PlannedStatement};

    #[test]
    fn names_each_statement_its_locks_and_nobody_in_the_way() {
        let plan = DryRun {
            status: "planned",
            baseline: Vec::new(),
            migrations: vec![PlannedMigration {
                version: 1.into(),
                name: "unique".into(),
                file: "1_unique.sql".into(),
                online: None,
                in_transaction: true,
                statements: vec![PlannedStatement {
                    line: 2,
                    column: 1,
                    sql: "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)".into(),
                    locks: vec![PlannedLock {
                        relation: "t".into(),
                        mode: "AccessExclusiveLock",
                    }],
                    hold: None,
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
