//! Grading with facts from a live server (`lint --database-url`, `apply`'s
//! dry run, `run`'s plan): a table's size and the server's measured
//! throughput turn "rewrites the table" into one verdict per statement —
//! "hold ~0ms at 250 rows: the danger is the lock queue, run it under the
//! guard" or "rewrites 2.1 GB, est. ~40s under ACCESS EXCLUSIVE: use
//! `locksmith apply --online`" — folded into the statement's own findings
//! with its numbers (`rows`, `bytes`, `estimated_hold_ms`); and sessions
//! holding conflicting locks right now turn a plan into "would queue behind
//! them". Pure: the caller fetches the facts and the throughput.
//!
//! These findings (LS601, LS602) exist only with a live server; their rules
//! (and docs) are in the one registry like every other, so they are
//! disabled and suppressed the same way: turning LS601 off turns the size
//! verdict off, on the statement's own findings too.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::rules::holding_lock_on_large_table::HoldingLockOnLargeTable;
use crate::analysis::Statement;
use crate::duration::human;
pub use crate::hold::TableFacts;
use crate::hold::{estimate, rows, tasks, Task, Throughput};
use crate::lint::{Finding, LintedStatement, Options, Severity};
use crate::lock::LockMode;
use crate::online::{self, Online};

/// Id of the size-based estimate of how long a lock is held.
pub const LOCK_HELD_FOR_TABLE_SIZE: &str = HoldingLockOnLargeTable::RULE.id;
/// Id of the finding that sessions would block the statement right now.
pub const BLOCKED_RIGHT_NOW: &str =
    super::rules::queueing_behind_open_transactions::QueueingBehindOpenTransactions::RULE.id;

/// Sessions that hold locks conflicting with a statement's, now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocking {
    /// How many.
    pub sessions: usize,
    /// One line naming the first of them, e.g. `pid 42 app@10.0.0.5 idle 41s`.
    pub first: String,
}

/// Every relation the statements lock, rewrite or scan, sorted, once each:
/// what to ask the live server about.
pub fn relations<'a>(statements: impl IntoIterator<Item = &'a Statement>) -> Vec<String> {
    let names: std::collections::BTreeSet<&str> = statements
        .into_iter()
        .flat_map(|s| {
            s.locks
                .iter()
                .map(|l| l.relation.as_str())
                .chain(s.rewrites.iter().map(String::as_str))
                .chain(s.scans.iter().map(String::as_str))
        })
        .collect();
    names.into_iter().map(str::to_string).collect()
}

/// From this estimated hold on, the hold itself is the outage (below it,
/// the lock queue is): the verdict points at `--online` instead of the guard.
pub const HOLD_DOMINATES: Duration = Duration::from_millis(500);

/// The size part of a finding (`rows`, `bytes`, `estimated_hold_ms` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Size {
    /// The table's rows (the planner's estimate).
    pub rows: i64,
    /// Its size in bytes; `null` when reading it would have waited for a lock.
    pub bytes: Option<i64>,
    /// How long the statement is estimated to hold its lock; `null` when the size is unknown.
    pub estimated_hold_ms: Option<u64>,
}

/// One statement's size verdict: which risk dominates, and the numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The numbers, for every finding on the statement.
    pub size: Size,
    /// How bad the hold is (information when the lock queue dominates).
    pub severity: Severity,
    /// The sentence, e.g. "rewrites 2.1 GB of `events`, est. ~40s under ACCESS EXCLUSIVE …".
    pub message: String,
}

/// The size verdict on `s`: from the table it holds longest (or whose size
/// cannot be read), which risk dominates — the lock queue on a small table,
/// the hold itself on a big one. `None` when it rewrites, reads and indexes
/// no table the server knows.
pub fn verdict(
    s: &Statement,
    facts: &BTreeMap<String, TableFacts>,
    throughput: &Throughput,
    pg_version: u32,
) -> Option<Verdict> {
    if let Some(e) = traffic_hold(s, facts, throughput) {
        return Some(known(s, &e, throughput, pg_version));
    }
    // Heavy work whose size is unknown, or under a lock traffic does not wait for.
    let (relation, tasks, mode) = heavy(s).find(|(r, _, _)| facts.contains_key(*r))?;
    let f = &facts[relation];
    let rows = rows(f, throughput);
    let Some(hold) = estimate(&tasks, f, |p| facts.get(p), throughput) else {
        let stops_traffic = mode.blocks_traffic();
        return Some(Verdict {
            size: Size {
                rows,
                bytes: None,
                estimated_hold_ms: None,
            },
            severity: if stops_traffic {
                Severity::Warning
            } else {
                Severity::Info
            },
            message: format!(
                "`{relation}` has about {rows} rows, size unknown (reading it would have waited for a lock: a session holds or awaits a strong lock on it right now): {} it holds {}, which blocks {}, for as long as that takes",
                doing(&tasks),
                mode.sql_name(),
                mode.blocks(),
            ),
        });
    };
    Some(Verdict {
        size: Size {
            rows,
            bytes: f.bytes,
            estimated_hold_ms: Some(hold.as_millis() as u64),
        },
        severity: Severity::Info,
        message: format!(
            "{} `{relation}`, est. ~{} ({}), under {}, which blocks only {}: traffic flows meanwhile",
            work(&tasks, f, rows),
            human(hold),
            throughput.calibration,
            mode.sql_name(),
            mode.blocks(),
        ),
    })
}

fn known(s: &Statement, e: &HoldEstimate, t: &Throughput, pg_version: u32) -> Verdict {
    let size = Size {
        rows: e.rows,
        bytes: e.facts.bytes,
        estimated_hold_ms: Some(e.hold.as_millis() as u64),
    };
    if e.hold < HOLD_DOMINATES {
        return Verdict {
            size,
            severity: if e.hold >= Duration::from_millis(100) {
                Severity::Warning
            } else {
                Severity::Info
            },
            message: format!(
                "hold ~{} at {} rows of `{}` ({}; {}) — the danger is the lock queue, not the hold: its {} request waits behind every open transaction on the table, and every query behind it: run it under the guard (`locksmith apply` or `locksmith run`)",
                human(e.hold),
                e.rows,
                e.relation,
                bytes(e.facts.bytes.unwrap_or(0)),
                t.calibration,
                e.mode.sql_name(),
            ),
        };
    }
    let instead = match online::plan(s, &Default::default(), pg_version) {
        Online::Steps(_) => "use `locksmith apply --online`".to_string(),
        // The statement's own finding says why (and how to expand/contract).
        Online::Refused(_) | Online::AsIs => {
            "it has no online form: change the schema in expand/contract steps".to_string()
        }
    };
    Verdict {
        size,
        severity: if e.hold >= Duration::from_secs(1) {
            Severity::Error
        } else {
            Severity::Warning
        },
        message: format!(
            "{} `{}`, est. ~{} under {} ({}), blocking {} all that time: {instead}",
            work(&e.tasks, &e.facts, e.rows),
            e.relation,
            human(e.hold),
            e.mode.sql_name(),
            t.calibration,
            e.mode.blocks(),
        ),
    }
}

/// What the tasks do to a table, before its name: "rewrites 2.1 GB of".
fn work(tasks: &[Task], f: &TableFacts, rows: i64) -> String {
    let size = bytes(f.bytes.unwrap_or(0));
    match tasks.first() {
        Some(Task::Rewrite) if !f.indexes.is_empty() => format!(
            "rewrites {size} ({rows} rows) and rebuilds {} index{} of",
            f.indexes.len(),
            if f.indexes.len() == 1 { "" } else { "es" }
        ),
        Some(Task::Rewrite) => format!("rewrites {size} ({rows} rows) of"),
        Some(Task::Build(_)) => format!("builds an index over {rows} rows ({size}) of"),
        Some(Task::Reindex) => format!("rebuilds every index over {rows} rows ({size}) of"),
        Some(Task::ForeignKey { parent }) => format!(
            "checks {rows} rows ({size}) against `{}` of",
            parent.as_deref().unwrap_or("the referenced table")
        ),
        Some(Task::Scan) | None => format!("reads all {rows} rows ({size}) of"),
    }
}

fn doing(tasks: &[Task]) -> &'static str {
    match tasks.first() {
        Some(Task::Rewrite) => "rewriting it,",
        Some(Task::Build(_) | Task::Reindex) => "while it builds the index",
        _ => "while it reads the whole table",
    }
}

/// Adds the live findings to one statement, except those `options` turns
/// off or an ignore comment before the statement names: the size verdict
/// (folded into the statement's own findings, or LS601 when it has none)
/// and the sessions in the way now (LS602).
pub fn grade(
    stmt: &mut LintedStatement,
    facts: &BTreeMap<String, TableFacts>,
    throughput: &Throughput,
    blocking: Option<&Blocking>,
    options: &Options,
) {
    let size_rule = &HoldingLockOnLargeTable::RULE;
    let sized = options.enabled(size_rule) && !stmt.ignored.contains(&size_rule.id);
    let mut found = Vec::new();
    let verdict = sized
        .then(|| verdict(&stmt.statement, facts, throughput, options.pg_version))
        .flatten();
    if let Some(v) = verdict {
        fold(stmt, v, &mut found);
    }
    if let (Some(b), Some(strongest)) = (blocking, stmt.statement.strongest_lock()) {
        found.push(Finding {
            rule: BLOCKED_RIGHT_NOW,
            severity: Severity::Error,
            message: format!(
                "{} session{} hold{} a lock that conflicts with {} on `{}` right now ({}{}): run now, this statement would queue behind {} and every query on `{}` behind it; run it under `locksmith apply` or `locksmith run`, or end those transactions first",
                b.sessions,
                if b.sessions == 1 { "" } else { "s" },
                if b.sessions == 1 { "s" } else { "" },
                strongest.mode,
                strongest.relation,
                b.first,
                if b.sessions > 1 { ", …" } else { "" },
                if b.sessions == 1 { "it" } else { "them" },
                strongest.relation,
            ),
            fix: None,
            size: None,
        });
    }
    stmt.add_findings(options, found);
}

/// One verdict per statement: every finding the statement already has
/// carries the numbers, and the most severe one says the verdict (raised to
/// the verdict's severity); a statement with none gets it as LS601.
fn fold(stmt: &mut LintedStatement, v: Verdict, found: &mut Vec<Finding>) {
    let Some(worst) = stmt.findings.iter().map(|f| f.severity).max() else {
        found.push(Finding {
            rule: LOCK_HELD_FOR_TABLE_SIZE,
            severity: v.severity,
            message: v.message,
            fix: None,
            size: Some(v.size),
        });
        return;
    };
    for f in &mut stmt.findings {
        f.size = Some(v.size);
    }
    if let Some(main) = stmt.findings.iter_mut().find(|f| f.severity == worst) {
        main.severity = main.severity.max(v.severity);
        main.message = format!("{} — at this size: {}", main.message, v.message);
    }
}

/// A size for people: `840 kB`, `42 MB`, `1.3 GB`.
pub fn bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    match n {
        n if n >= 1024.0 * 1024.0 * 1024.0 => format!("{:.1} GB", n / (1024.0 * 1024.0 * 1024.0)),
        n if n >= 1024.0 * 1024.0 => format!("{:.0} MB", n / (1024.0 * 1024.0)),
        n => format!("{:.0} kB", n / 1024.0),
    }
}

/// How long a statement is expected to hold a lock that blocks traffic while
/// it rewrites, reads or indexes a table, from that table's size.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldEstimate {
    /// The table.
    pub relation: String,
    /// The lock held on it meanwhile.
    pub mode: LockMode,
    /// What the server says about the table.
    pub facts: TableFacts,
    /// Its rows (the planner's estimate, or from its size).
    pub rows: i64,
    /// What the statement does to it.
    pub tasks: Vec<Task>,
    /// Whether it is rewritten (else read or indexed).
    pub rewrite: bool,
    /// The estimate ([`crate::hold::estimate`]).
    pub hold: Duration,
}

/// Each table `s` rewrites, reads or indexes, with that work and the lock
/// it holds on the table meanwhile.
fn heavy(s: &Statement) -> impl Iterator<Item = (&String, Vec<Task>, LockMode)> {
    let mut seen = std::collections::BTreeSet::new();
    s.rewrites
        .iter()
        .chain(&s.scans)
        .filter(move |r| seen.insert(r.as_str()))
        .filter_map(|r| {
            let tasks = tasks(s, r);
            let mode = s.lock_on(r)?;
            (!tasks.is_empty()).then_some((r, tasks, mode))
        })
}

/// The longest traffic-blocking hold among the tables `s` rewrites, reads
/// or indexes that `facts` knows with a size (tables created earlier in the
/// same run are not there, and are empty anyway). `None` when there is none.
pub fn traffic_hold(
    s: &Statement,
    facts: &BTreeMap<String, TableFacts>,
    throughput: &Throughput,
) -> Option<HoldEstimate> {
    heavy(s)
        .filter(|(_, _, mode)| mode.blocks_traffic())
        .filter_map(|(relation, tasks, mode)| {
            let f = facts.get(relation)?;
            let hold = estimate(&tasks, f, |p| facts.get(p), throughput)?;
            Some(HoldEstimate {
                relation: relation.clone(),
                mode,
                rows: rows(f, throughput),
                rewrite: tasks.contains(&Task::Rewrite),
                facts: f.clone(),
                tasks,
                hold,
            })
        })
        .max_by_key(|e| e.hold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hold::KeyKind;
    use crate::lint::{lint, Options};

    fn linted(sql: &str) -> LintedStatement {
        lint(sql, &Options::default()).unwrap().statements.remove(0)
    }

    fn table(rows: i64, bytes: Option<i64>) -> BTreeMap<String, TableFacts> {
        BTreeMap::from([(
            "t".to_string(),
            TableFacts {
                rows,
                bytes,
                indexes: vec![KeyKind::Fixed],
                fixed_columns: ["id".to_string()].into(),
            },
        )])
    }

    const GB: i64 = 1024 * 1024 * 1024;

    fn graded(sql: &str, facts: &BTreeMap<String, TableFacts>) -> LintedStatement {
        let mut s = linted(sql);
        grade(
            &mut s,
            facts,
            &Throughput::DEFAULT,
            None,
            &Options::default(),
        );
        s
    }

    #[test]
    fn traffic_hold_counts_only_traffic_blocking_reads_and_rewrites() {
        let facts = table(1_000_000, Some(GB));
        let t = &Throughput::DEFAULT;
        let unique = linted("ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)").statement;
        let e = traffic_hold(&unique, &facts, t).expect("a build under ACCESS EXCLUSIVE");
        assert_eq!(
            (e.relation.as_str(), e.mode),
            ("t", LockMode::AccessExclusive)
        );
        assert!(e.hold >= Duration::from_secs(5), "{e:?}");
        // VALIDATE reads the table under SHARE UPDATE EXCLUSIVE: traffic flows.
        let validate = linted("ALTER TABLE t VALIDATE CONSTRAINT c").statement;
        assert_eq!(traffic_hold(&validate, &facts, t), None);
        // A table the server does not know (e.g. created earlier in the run).
        let other = linted("ALTER TABLE u ADD CONSTRAINT k UNIQUE (a)").statement;
        assert_eq!(traffic_hold(&other, &facts, t), None);
    }

    #[test]
    fn a_small_table_says_the_danger_is_the_lock_queue() {
        let s = graded(
            "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)",
            &table(250, Some(16 * 1024)),
        );
        // One verdict, on the statement's own findings (LS101, and LS401
        // for the missing lock_timeout), not a side note.
        assert_eq!(
            s.findings.iter().map(|f| f.rule).collect::<Vec<_>>(),
            ["LS101", "LS401"]
        );
        assert!(s.findings[1].size.is_some());
        let f = &s.findings[0];
        assert!(
            f.message.contains("hold ~0ms at 250 rows")
                && f.message.contains("the danger is the lock queue")
                && f.message.contains("`locksmith apply`"),
            "{}",
            f.message
        );
        assert_eq!(
            f.size,
            Some(Size {
                rows: 250,
                bytes: Some(16 * 1024),
                estimated_hold_ms: Some(0)
            })
        );
    }

    #[test]
    fn a_big_table_says_the_hold_is_the_outage_and_names_online() {
        let s = graded(
            "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)",
            &table(10_000_000, Some(GB)),
        );
        let f = &s.findings[0];
        assert_eq!(f.severity, Severity::Error);
        assert!(
            f.message
                .contains("builds an index over 10000000 rows (1.0 GB) of `t`, est. ~")
                && f.message.contains("under ACCESS EXCLUSIVE")
                && f.message.contains("use `locksmith apply --online`"),
            "{}",
            f.message
        );
        let rewrite = graded(
            "ALTER TABLE t ALTER COLUMN a TYPE bigint",
            &table(100_000_000, Some(10 * GB)),
        );
        let f = &rewrite.findings[0];
        assert!(
            f.message
                .contains("rewrites 10.0 GB (100000000 rows) and rebuilds 1 index of `t`"),
            "{}",
            f.message
        );
        assert!(f.size.unwrap().estimated_hold_ms.unwrap() > 200_000);
    }

    #[test]
    fn without_a_finding_of_its_own_the_verdict_is_ls601() {
        // SET NOT NULL of a column proven NOT NULL by nothing: a scan, and
        // (with a lock_timeout set) no finding but the size.
        let options = Options {
            disabled: ["LS107".to_string()].into(),
            ..Options::default()
        };
        let mut s = lint(
            "SET lock_timeout = '1s'; ALTER TABLE t ALTER COLUMN a SET NOT NULL",
            &options,
        )
        .unwrap()
        .statements
        .remove(1);
        assert!(s.findings.is_empty(), "{:?}", s.findings);
        grade(
            &mut s,
            &table(10_000_000, Some(GB)),
            &Throughput::DEFAULT,
            None,
            &options,
        );
        let f = &s.findings[0];
        assert_eq!(
            (f.rule, f.severity),
            (LOCK_HELD_FOR_TABLE_SIZE, Severity::Error)
        );
        assert!(
            f.message.contains("reads all 10000000 rows"),
            "{}",
            f.message
        );
    }

    #[test]
    fn turning_ls601_off_turns_the_size_verdict_off() {
        let options = Options {
            disabled: [LOCK_HELD_FOR_TABLE_SIZE.to_string()].into(),
            ..Options::default()
        };
        let mut s = linted("ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)");
        let before = s.findings.clone();
        grade(
            &mut s,
            &table(10_000_000, Some(GB)),
            &Throughput::DEFAULT,
            None,
            &options,
        );
        assert_eq!(s.findings, before);
        let ignored = lint(
            "-- locksmith: ignore LS601 measured: 40 ms\nALTER TABLE t ADD CONSTRAINT u UNIQUE (a)",
            &Options::default(),
        )
        .unwrap();
        let mut s = ignored.statements[0].clone();
        grade(
            &mut s,
            &table(10_000_000, Some(GB)),
            &Throughput::DEFAULT,
            None,
            &Options::default(),
        );
        assert!(
            s.findings.iter().all(|f| f.size.is_none()),
            "{:?}",
            s.findings
        );
    }

    #[test]
    fn sessions_holding_conflicting_locks_are_an_error() {
        let mut s = linted("ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)");
        let b = Blocking {
            sessions: 3,
            first: "pid 42 app@10.0.0.5 idle 41s".into(),
        };
        grade(
            &mut s,
            &BTreeMap::new(),
            &Throughput::DEFAULT,
            Some(&b),
            &Options::default(),
        );
        let f = s
            .findings
            .iter()
            .find(|f| f.rule == BLOCKED_RIGHT_NOW)
            .unwrap();
        assert_eq!(f.severity, Severity::Error);
        assert!(
            f.message.starts_with(
                "3 sessions hold a lock that conflicts with AccessExclusiveLock on `t`"
            ),
            "{}",
            f.message
        );
    }

    #[test]
    fn unknown_size_is_said_so() {
        let s = graded("ALTER TABLE t ALTER COLUMN a TYPE bigint", &table(10, None));
        let f = &s.findings[0];
        assert!(f.message.contains("size unknown"), "{:?}", s.findings);
        assert_eq!(
            f.size,
            Some(Size {
                rows: 10,
                bytes: None,
                estimated_hold_ms: None
            })
        );
    }

    #[test]
    fn live_findings_are_disabled_and_suppressed_like_any_other() {
        let b = Blocking {
            sessions: 1,
            first: "pid 42".into(),
        };
        let t = &Throughput::DEFAULT;
        let rules = |sql: &str, options: &Options| {
            let mut s = lint(sql, options).unwrap().statements.remove(0);
            grade(&mut s, &BTreeMap::new(), t, Some(&b), options);
            s.findings.iter().map(|f| f.rule).collect::<Vec<_>>()
        };
        let sql = "SET lock_timeout = '1s'; ALTER TABLE t ADD COLUMN a int";
        let second = |sql: &str, options: &Options| {
            let mut r = lint(sql, options).unwrap();
            let mut s = r.statements.remove(1);
            grade(&mut s, &BTreeMap::new(), t, Some(&b), options);
            (
                s.findings.iter().map(|f| f.rule).collect::<Vec<_>>(),
                r.findings().map(|f| f.rule).collect::<Vec<_>>(),
            )
        };
        assert_eq!(second(sql, &Options::default()).0, [BLOCKED_RIGHT_NOW]);
        let ignored = "SET lock_timeout = '1s';\n-- locksmith: ignore LS602 checked by hand\nALTER TABLE t ADD COLUMN a int";
        // Suppressed, and the ignore is not reported as matching nothing.
        assert_eq!(second(ignored, &Options::default()), (vec![], vec![]));
        let disabled = Options {
            disabled: [BLOCKED_RIGHT_NOW.to_string()].into(),
            ..Options::default()
        };
        assert!(rules("ALTER TABLE t ADD COLUMN a int", &disabled)
            .iter()
            .all(|r| *r != BLOCKED_RIGHT_NOW));
    }

    #[test]
    fn the_size_fields_are_json_keys_of_the_finding() {
        let s = graded(
            "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)",
            &table(250, Some(16 * 1024)),
        );
        let json = serde_json::to_value(&s.findings[0]).unwrap();
        assert_eq!(json["rows"], 250);
        assert_eq!(json["bytes"], 16 * 1024);
        assert_eq!(json["estimated_hold_ms"], 0);
        let bare =
            serde_json::to_value(&linted("ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)").findings[0])
                .unwrap();
        assert!(bare.get("rows").is_none(), "{bare}");
    }
}
