//! Grading with facts from a live server (`lint --database-url`): a table's
//! size turns "rewrites the table" into "holds AccessExclusiveLock for about
//! 40 s", and sessions holding conflicting locks right now turn a plan into
//! "would queue behind them". Pure: the caller fetches the facts.
//!
//! These findings (LS601, LS602) exist only with a live server; their rules
//! (and docs) are in the one registry like every other, so they are
//! disabled and suppressed the same way.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::analysis::Statement;
use crate::duration::human;
use crate::lint::{Finding, LintedStatement, Options, Severity};
use crate::lock::LockMode;

/// Id of the size-based estimate of how long a lock is held.
pub const LOCK_HELD_FOR_TABLE_SIZE: &str =
    super::rules::holding_lock_on_large_table::HoldingLockOnLargeTable::RULE.id;
/// Id of the finding that sessions would block the statement right now.
pub const BLOCKED_RIGHT_NOW: &str =
    super::rules::queueing_behind_open_transactions::QueueingBehindOpenTransactions::RULE.id;

/// What the server says about one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFacts {
    /// `pg_class.reltuples` (an estimate; -1 when never analysed).
    pub rows: i64,
    /// Heap, TOAST and free-space map (`pg_table_size`); `None` when reading
    /// it would have waited for a lock (someone holds or awaits a strong
    /// lock on the table right now).
    pub bytes: Option<i64>,
}

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

/// Conservative sequential rates for a cloud disk under load: reading for a
/// scan, and rewriting (read, write, rebuild indexes) for a rewrite. The
/// estimate is an order of magnitude, said as such in every message.
const SCAN_BYTES_PER_SEC: f64 = 200.0 * 1024.0 * 1024.0;
const REWRITE_BYTES_PER_SEC: f64 = 50.0 * 1024.0 * 1024.0;

/// About how long reading (or rewriting) `bytes` holds the statement's lock.
pub fn estimate_hold(bytes: i64, rewrite: bool) -> Duration {
    let rate = if rewrite {
        REWRITE_BYTES_PER_SEC
    } else {
        SCAN_BYTES_PER_SEC
    };
    Duration::from_secs_f64(bytes.max(0) as f64 / rate)
}

/// Adds the live findings to one statement, except those `options` turns
/// off or an ignore comment before the statement names.
pub fn grade(
    stmt: &mut LintedStatement,
    facts: &BTreeMap<String, TableFacts>,
    blocking: Option<&Blocking>,
    options: &Options,
) {
    let s = &stmt.statement;
    let mut found = Vec::new();
    let relations = s.rewrites.iter().map(|r| (r, true)).chain(
        s.scans
            .iter()
            .filter(|r| !s.rewrites.contains(r))
            .map(|r| (r, false)),
    );
    for (relation, rewrite) in relations {
        let (Some(f), Some(mode)) = (facts.get(relation), s.lock_on(relation)) else {
            continue;
        };
        // Only a lock that stops traffic makes the duration matter.
        let stops_traffic = mode >= LockMode::Share;
        let doing = if rewrite {
            "rewriting it,"
        } else {
            "while it reads the whole table"
        };
        let Some(size) = f.bytes else {
            found.push(Finding {
                rule: LOCK_HELD_FOR_TABLE_SIZE,
                severity: if stops_traffic {
                    Severity::Warning
                } else {
                    Severity::Info
                },
                message: format!(
                    "`{relation}` has about {} rows, size unknown (reading it would have waited for a lock: a session holds or awaits a strong lock on it right now): {doing} it holds {mode}, which blocks {}, for as long as that takes",
                    f.rows.max(0),
                    mode.blocks(),
                ),
                fix: None,
            });
            continue;
        };
        let hold = estimate_hold(size, rewrite);
        let severity = match (stops_traffic, hold) {
            (false, _) => Severity::Info,
            (true, h) if h >= Duration::from_secs(1) => Severity::Error,
            (true, h) if h >= Duration::from_millis(100) => Severity::Warning,
            _ => Severity::Info,
        };
        found.push(Finding {
            rule: LOCK_HELD_FOR_TABLE_SIZE,
            severity,
            message: format!(
                "`{relation}` has about {} rows ({}): {doing} it holds {mode}, which blocks {}, for roughly {} (estimate)",
                f.rows.max(0),
                bytes(size),
                mode.blocks(),
                human(hold),
            ),
            fix: None,
        });
    }
    if let (Some(b), Some(strongest)) = (blocking, s.strongest_lock()) {
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
        });
    }
    stmt.add_findings(options, found);
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
/// it rewrites or reads a table, from that table's size.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldEstimate {
    /// The table.
    pub relation: String,
    /// The lock held on it meanwhile.
    pub mode: LockMode,
    /// What the server says about the table.
    pub facts: TableFacts,
    /// Whether it is rewritten (else read in full).
    pub rewrite: bool,
    /// The estimate (an order of magnitude; see [`estimate_hold`]).
    pub hold: Duration,
}

/// The longest traffic-blocking hold among the tables `s` rewrites or scans
/// that `facts` knows (tables created earlier in the same run are not there,
/// and are empty anyway). `None` when there is none.
pub fn traffic_hold(s: &Statement, facts: &BTreeMap<String, TableFacts>) -> Option<HoldEstimate> {
    let relations = s.rewrites.iter().map(|r| (r, true)).chain(
        s.scans
            .iter()
            .filter(|r| !s.rewrites.contains(r))
            .map(|r| (r, false)),
    );
    relations
        .filter_map(|(relation, rewrite)| {
            let mode = s.lock_on(relation).filter(|m| m.blocks_traffic())?;
            let facts = *facts.get(relation)?;
            Some(HoldEstimate {
                relation: relation.clone(),
                mode,
                facts,
                rewrite,
                hold: estimate_hold(facts.bytes?, rewrite),
            })
        })
        .max_by_key(|e| e.hold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::{lint, Options};

    fn linted(sql: &str) -> LintedStatement {
        lint(sql, &Options::default()).unwrap().statements.remove(0)
    }

    #[test]
    fn traffic_hold_counts_only_traffic_blocking_reads_and_rewrites() {
        let facts = BTreeMap::from([(
            "t".to_string(),
            TableFacts {
                rows: 1_000_000,
                bytes: Some(1024 * 1024 * 1024),
            },
        )]);
        let unique = linted("ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)").statement;
        let e = traffic_hold(&unique, &facts).expect("a scan under ACCESS EXCLUSIVE");
        assert_eq!(
            (e.relation.as_str(), e.mode),
            ("t", LockMode::AccessExclusive)
        );
        assert!(e.hold >= Duration::from_secs(5), "{e:?}");
        // VALIDATE reads the table under SHARE UPDATE EXCLUSIVE: traffic flows.
        let validate = linted("ALTER TABLE t VALIDATE CONSTRAINT c").statement;
        assert_eq!(traffic_hold(&validate, &facts), None);
        // A table the server does not know (e.g. created earlier in the run).
        let other = linted("ALTER TABLE u ADD CONSTRAINT k UNIQUE (a)").statement;
        assert_eq!(traffic_hold(&other, &facts), None);
    }

    #[test]
    fn size_grades_the_hold() {
        let facts = |bytes| {
            BTreeMap::from([(
                "t".to_string(),
                TableFacts {
                    rows: 1000,
                    bytes: Some(bytes),
                },
            )])
        };
        let mut small = linted("ALTER TABLE t ALTER COLUMN a TYPE bigint");
        grade(&mut small, &facts(16 * 1024), None, &Options::default());
        let f = small
            .findings
            .iter()
            .find(|f| f.rule == LOCK_HELD_FOR_TABLE_SIZE)
            .unwrap();
        assert_eq!(f.severity, Severity::Info);
        let mut big = linted("ALTER TABLE t ALTER COLUMN a TYPE bigint");
        grade(
            &mut big,
            &facts(10 * 1024 * 1024 * 1024),
            None,
            &Options::default(),
        );
        let f = big
            .findings
            .iter()
            .find(|f| f.rule == LOCK_HELD_FOR_TABLE_SIZE)
            .unwrap();
        assert_eq!(f.severity, Severity::Error);
        assert!(
            f.message.contains("AccessExclusiveLock") && f.message.contains("3m"),
            "{}",
            f.message
        );
    }

    #[test]
    fn sessions_holding_conflicting_locks_are_an_error() {
        let mut s = linted("ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)");
        let b = Blocking {
            sessions: 3,
            first: "pid 42 app@10.0.0.5 idle 41s".into(),
        };
        grade(&mut s, &BTreeMap::new(), Some(&b), &Options::default());
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
        let mut s = linted("ALTER TABLE t ALTER COLUMN a TYPE bigint");
        let facts = BTreeMap::from([(
            "t".to_string(),
            TableFacts {
                rows: 10,
                bytes: None,
            },
        )]);
        grade(&mut s, &facts, None, &Options::default());
        assert_eq!(s.findings.last().unwrap().severity, Severity::Warning);
        assert!(
            s.findings.last().unwrap().message.contains("size unknown"),
            "{:?}",
            s.findings
        );
    }

    #[test]
    fn live_findings_are_disabled_and_suppressed_like_any_other() {
        let b = Blocking {
            sessions: 1,
            first: "pid 42".into(),
        };
        let rules = |sql: &str, options: &Options| {
            let mut s = lint(sql, options).unwrap().statements.remove(0);
            grade(&mut s, &BTreeMap::new(), Some(&b), options);
            s.findings.iter().map(|f| f.rule).collect::<Vec<_>>()
        };
        let sql = "SET lock_timeout = '1s'; ALTER TABLE t ADD COLUMN a int";
        let second = |sql: &str, options: &Options| {
            let mut r = lint(sql, options).unwrap();
            let mut s = r.statements.remove(1);
            grade(&mut s, &BTreeMap::new(), Some(&b), options);
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
    fn estimates() {
        assert_eq!(
            estimate_hold(200 * 1024 * 1024, false),
            Duration::from_secs(1)
        );
        assert_eq!(
            estimate_hold(50 * 1024 * 1024, true),
            Duration::from_secs(1)
        );
        assert_eq!(estimate_hold(-1, true), Duration::ZERO);
    }
}
