//! How long a statement holds its lock, from the size of the tables it
//! rewrites, reads or indexes and how fast the server does each of those.
//!
//! A statement's heavy work is split into [`Task`]s (a rewrite, which also
//! rebuilds every index of the table; a validation scan; an index build; a
//! foreign-key check), each priced from [`TableFacts`] with a
//! [`Throughput`]: rates measured once on the server by
//! `locksmith_pg::throughput`, or [`Throughput::DEFAULT`], conservative
//! rates for a busy cloud disk when that probe cannot run. Index builds are
//! priced per row (a sort: `n log n`, and a variable-length key such as
//! `text` sorts several times slower than an `integer`), the rest per byte.
//!
//! Pure: the caller reads the facts and measures the rates; nothing here
//! talks to a server or reads a clock.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::analysis::{AlterAction, ConstraintKind, ConstraintSummary, Statement, StatementKind};

/// What the server says about one table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableFacts {
    /// `pg_class.reltuples` (an estimate; -1 when never analysed).
    pub rows: i64,
    /// Heap, TOAST and free-space map (`pg_table_size`); `None` when reading
    /// it would have waited for a lock (someone holds or awaits a strong
    /// lock on the table right now).
    pub bytes: Option<i64>,
    /// The key of each of its indexes, which a rewrite rebuilds.
    pub indexes: Vec<KeyKind>,
    /// Its columns of a fixed width (`integer`, `timestamptz`, `uuid` …):
    /// any other column, or an expression, sorts as [`KeyKind::Varlena`].
    pub fixed_columns: BTreeSet<String>,
}

/// How an index key sorts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// Fixed-width columns only: compared as machine words.
    Fixed,
    /// A variable-length column (`text` with its collation, `numeric`,
    /// `jsonb` …) or an expression.
    Varlena,
}

impl TableFacts {
    /// How `columns` sort on this table (an empty list is an expression).
    pub fn key(&self, columns: &[String]) -> KeyKind {
        if !columns.is_empty() && columns.iter().all(|c| self.fixed_columns.contains(c)) {
            KeyKind::Fixed
        } else {
            KeyKind::Varlena
        }
    }
}

/// Where a [`Throughput`]'s rates come from.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "source")]
pub enum Calibration {
    /// Measured on this server by a probe of `rows` rows.
    Measured {
        /// The probe table's rows.
        rows: u64,
        /// Whether the probe ran on a temporary table (no WAL, local buffers:
        /// rewrites measure faster than on a real table).
        temporary: bool,
    },
    /// [`Throughput::DEFAULT`], and why the probe did not run.
    Default {
        /// Why, in a few words.
        reason: String,
    },
}

impl fmt::Display for Calibration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Calibration::Measured { temporary, .. } => write!(
                f,
                "rates measured on this server{}",
                if *temporary {
                    " with a temporary table"
                } else {
                    ""
                }
            ),
            Calibration::Default { reason } if reason.is_empty() => {
                write!(f, "conservative default rates")
            }
            Calibration::Default { reason } => {
                write!(f, "conservative default rates: {reason}")
            }
        }
    }
}

/// How fast one server reads, rewrites and indexes a table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Throughput {
    /// Reading a table in full while checking each row (a `CHECK`, `NOT NULL`).
    pub scan_bytes_per_sec: f64,
    /// Rewriting a table's heap (read, convert, write; indexes apart).
    pub rewrite_bytes_per_sec: f64,
    /// Sorting one row into a btree on fixed-width keys, at [`Self::reference_rows`].
    pub sort_fixed_ns_per_row: f64,
    /// The same on a variable-length key (`text`).
    pub sort_varlena_ns_per_row: f64,
    /// Checking a foreign key (beyond reading both tables), per row of a
    /// table that references itself: a third of it per referencing row, two
    /// thirds per referenced row (a hash join builds on the referenced side).
    pub foreign_key_ns_per_row: f64,
    /// The table size the sort rates were measured at: a sort costs `log n`
    /// per row, so bigger tables cost more per row.
    pub reference_rows: f64,
    /// Bytes per row, for a table whose row count was never estimated.
    pub bytes_per_row: f64,
    /// Measured, or the default and why.
    pub calibration: Calibration,
}

impl Throughput {
    /// Conservative rates for a busy cloud disk, used when the probe cannot
    /// run (a read-only role, a standby, a table too small to need it):
    /// about four times slower than a laptop's SSD, so an estimate errs long.
    pub const DEFAULT: Throughput = Throughput {
        scan_bytes_per_sec: 200.0 * MB,
        rewrite_bytes_per_sec: 50.0 * MB,
        sort_fixed_ns_per_row: 600.0,
        sort_varlena_ns_per_row: 3000.0,
        foreign_key_ns_per_row: 800.0,
        reference_rows: 100_000.0,
        bytes_per_row: 100.0,
        calibration: Calibration::Default {
            reason: String::new(),
        },
    };

    /// [`Throughput::DEFAULT`], saying why it is used.
    pub fn default_because(reason: impl Into<String>) -> Throughput {
        Throughput {
            calibration: Calibration::Default {
                reason: reason.into(),
            },
            ..Throughput::DEFAULT
        }
    }

    fn scan(&self, bytes: f64) -> f64 {
        bytes / self.scan_bytes_per_sec
    }

    /// Seconds to build one btree over `rows` rows (`bytes` of heap read).
    fn build(&self, rows: f64, bytes: f64, key: KeyKind) -> f64 {
        let per_row = match key {
            KeyKind::Fixed => self.sort_fixed_ns_per_row,
            KeyKind::Varlena => self.sort_varlena_ns_per_row,
        };
        // n log n: the per-row cost grows with log n from where it was
        // measured, up to ten times that size; beyond, sorts spill and run in
        // parallel, and the per-row cost measured stays about flat
        // (docs/benchmarks.md, "estimate": 1M and 10M rows).
        let sorted = rows.clamp(2.0, 10.0 * self.reference_rows.max(2.0));
        let log = sorted.log2() / self.reference_rows.max(2.0).log2();
        self.scan(bytes) + rows * per_row * 1e-9 * log
    }
}

const MB: f64 = 1024.0 * 1024.0;

/// One piece of heavy work a statement does on one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Task {
    /// The heap is rewritten and every index rebuilt.
    Rewrite,
    /// Every row is read and checked.
    Scan,
    /// A btree is built on these columns (empty: an expression).
    Build(Vec<String>),
    /// Every index of the table is rebuilt (`REINDEX TABLE`).
    Reindex,
    /// Every row is checked against the referenced table.
    ForeignKey {
        /// The referenced table.
        parent: Option<String>,
    },
}

/// The heavy work `s` does on `relation`: nothing for a table it only locks.
pub fn tasks(s: &Statement, relation: &str) -> Vec<Task> {
    let rewrite = s.rewrites.iter().any(|r| r == relation);
    let mut out = Vec::new();
    if rewrite {
        out.push(Task::Rewrite);
    }
    match &s.kind {
        StatementKind::AlterTable { table, actions } if table == relation => {
            for action in actions {
                match action {
                    AlterAction::AddConstraint(c) => constraint_tasks(c, rewrite, &mut out),
                    AlterAction::AddColumn { constraints, .. } => {
                        for c in constraints {
                            constraint_tasks(c, rewrite, &mut out);
                        }
                    }
                    AlterAction::SetNotNull { proven: false, .. } if !rewrite => {
                        out.push(Task::Scan)
                    }
                    _ => {}
                }
            }
        }
        StatementKind::CreateIndex { table, columns, .. } if table == relation => {
            out.push(Task::Build(columns.clone()))
        }
        StatementKind::Reindex {
            target: Some(target),
            ..
        } if target == relation => out.push(Task::Reindex),
        _ => {}
    }
    if out.is_empty() && s.scans.iter().any(|r| r == relation) {
        out.push(Task::Scan);
    }
    out.dedup_by(|a, b| *a == Task::Scan && *b == Task::Scan);
    out
}

fn constraint_tasks(c: &ConstraintSummary, rewrite: bool, out: &mut Vec<Task>) {
    match c.kind {
        ConstraintKind::Unique | ConstraintKind::PrimaryKey | ConstraintKind::Exclusion
            if c.using_index.is_none() =>
        {
            out.push(Task::Build(c.columns.clone()));
            if !c.unproven_not_null.is_empty() && !rewrite {
                out.push(Task::Scan);
            }
        }
        ConstraintKind::Check | ConstraintKind::NotNull if !c.not_valid && !rewrite => {
            out.push(Task::Scan)
        }
        ConstraintKind::ForeignKey if !c.not_valid => out.push(Task::ForeignKey {
            parent: c.references.clone(),
        }),
        _ => {}
    }
}

/// The estimated time `tasks` take on a table of `facts`; `parent` gives a
/// referenced table's facts. `None` when the table's size is unknown.
pub fn estimate<'a>(
    tasks: &[Task],
    facts: &TableFacts,
    parent: impl Fn(&str) -> Option<&'a TableFacts>,
    t: &Throughput,
) -> Option<Duration> {
    let bytes = facts.bytes?.max(0) as f64;
    let rows = rows(facts, t) as f64;
    let rebuild_all =
        |t: &Throughput| -> f64 { facts.indexes.iter().map(|k| t.build(rows, bytes, *k)).sum() };
    let secs: f64 = tasks
        .iter()
        .map(|task| match task {
            Task::Rewrite => bytes / t.rewrite_bytes_per_sec + rebuild_all(t),
            Task::Scan => t.scan(bytes),
            Task::Build(columns) => t.build(rows, bytes, facts.key(columns)),
            Task::Reindex => rebuild_all(t),
            Task::ForeignKey { parent: p } => {
                let p = p.as_deref().and_then(&parent);
                let parent_bytes = p.and_then(|f| f.bytes).unwrap_or(0).max(0) as f64;
                let parent_rows = p.map_or(0, |f| self::rows(f, t)) as f64;
                // A hash join: each referenced row hashed, each row probed;
                // hashing a row costs about twice a probe.
                t.scan(bytes + parent_bytes)
                    + (rows + 2.0 * parent_rows) / 3.0 * t.foreign_key_ns_per_row * 1e-9
            }
        })
        .sum();
    Some(Duration::from_secs_f64(secs))
}

/// The table's rows: the planner's estimate, or from its size when it was never analysed.
pub fn rows(facts: &TableFacts, t: &Throughput) -> i64 {
    if facts.rows >= 0 {
        facts.rows
    } else {
        (facts.bytes.unwrap_or(0).max(0) as f64 / t.bytes_per_row) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::analyze;

    fn statement(sql: &str) -> Statement {
        analyze(sql, 17).unwrap().remove(0)
    }

    fn facts(rows: i64, mb: i64) -> TableFacts {
        TableFacts {
            rows,
            bytes: Some(mb * 1024 * 1024),
            indexes: vec![KeyKind::Fixed],
            fixed_columns: ["id".to_string()].into(),
        }
    }

    #[test]
    fn statements_become_tasks() {
        let t = |sql: &str| tasks(&statement(sql), "t");
        assert_eq!(
            t("ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)"),
            [Task::Build(vec!["a".into()])]
        );
        assert_eq!(t("ALTER TABLE t ADD CHECK (a > 0)"), [Task::Scan]);
        assert_eq!(t("ALTER TABLE t ADD CHECK (a > 0) NOT VALID"), []);
        assert_eq!(t("ALTER TABLE t ALTER COLUMN a SET NOT NULL"), [Task::Scan]);
        assert_eq!(
            t("ALTER TABLE t ALTER COLUMN a TYPE bigint"),
            [Task::Rewrite]
        );
        assert_eq!(
            t("ALTER TABLE t ADD COLUMN b float DEFAULT random()"),
            [Task::Rewrite]
        );
        assert_eq!(
            t("ALTER TABLE t ADD FOREIGN KEY (p) REFERENCES p (id)"),
            [Task::ForeignKey {
                parent: Some("p".into())
            }]
        );
        assert_eq!(
            t("CREATE INDEX i ON t (id, a)"),
            [Task::Build(vec!["id".into(), "a".into()])]
        );
        assert_eq!(t("CREATE INDEX i ON t (lower(a))"), [Task::Build(vec![])]);
        assert_eq!(t("ALTER TABLE t ADD COLUMN b int"), []);
    }

    #[test]
    fn a_rewrite_rebuilds_every_index_and_a_text_key_sorts_slower() {
        let t = Throughput::DEFAULT;
        let f = facts(1_000_000, 100);
        let none = |_: &str| None;
        let rewrite = estimate(&[Task::Rewrite], &f, none, &t).unwrap();
        let heap_only = estimate(
            &[Task::Rewrite],
            &TableFacts {
                indexes: vec![],
                ..f.clone()
            },
            none,
            &t,
        )
        .unwrap();
        assert_eq!(heap_only, Duration::from_secs(2));
        assert!(rewrite > heap_only, "{rewrite:?}");
        let int = estimate(&[Task::Build(vec!["id".into()])], &f, none, &t).unwrap();
        let text = estimate(&[Task::Build(vec!["name".into()])], &f, none, &t).unwrap();
        assert!(text > int * 3, "{text:?} vs {int:?}");
        // n log n: ten times the rows, more than ten times the time; from
        // ten times the probe's rows on, about ten times.
        let big = estimate(
            &[Task::Build(vec!["name".into()])],
            &facts(10_000_000, 1000),
            none,
            &t,
        )
        .unwrap();
        assert!(
            big.abs_diff(text * 10) < Duration::from_millis(1),
            "{big:?} vs {text:?}"
        );
        let small = estimate(
            &[Task::Build(vec!["name".into()])],
            &facts(100_000, 10),
            none,
            &t,
        )
        .unwrap();
        assert!(text > small * 10, "{text:?} vs {small:?}");
    }

    #[test]
    fn unknown_size_and_rows() {
        let t = Throughput::DEFAULT;
        let unknown = TableFacts {
            bytes: None,
            ..facts(10, 1)
        };
        assert_eq!(estimate(&[Task::Scan], &unknown, |_| None, &t), None);
        let never_analysed = TableFacts {
            rows: -1,
            ..facts(0, 1)
        };
        assert_eq!(rows(&never_analysed, &t), 10485);
    }

    #[test]
    fn a_foreign_key_reads_both_tables() {
        let t = Throughput::DEFAULT;
        let child = facts(1_000_000, 100);
        let parent = facts(1000, 100);
        let fk = [Task::ForeignKey {
            parent: Some("p".into()),
        }];
        let alone = estimate(&fk, &child, |_| None, &t).unwrap();
        let with_parent = estimate(&fk, &child, |_| Some(&parent), &t).unwrap();
        // Reading the parent's 100 MB, and hashing its 1000 rows.
        let hashing = Duration::from_secs_f64(2000.0 / 3.0 * 800e-9);
        let diff = (with_parent - alone).as_secs_f64();
        assert!(
            (diff - (0.5 + hashing.as_secs_f64())).abs() < 1e-6,
            "{with_parent:?} - {alone:?}"
        );
    }
}
