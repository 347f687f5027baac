//! LS601: a scan or rewrite of a table the live server says is large, under
//! a lock that stops traffic. Reported by `lint --database-url` (`lint::live`).

use crate::lint::declare_rule;

declare_rule! {
    /// ## What it does
    /// With `--database-url`, estimates from the table's size
    /// (`pg_table_size`, `reltuples`) how long a statement that reads or
    /// rewrites the whole table holds its lock: an error from about a
    /// second under a lock that blocks writes or reads, a warning from
    /// 100 ms, information below. The estimate is an order of magnitude. When
    /// the size cannot be read without waiting for a lock, it says "unknown".
    ///
    /// ## Why is this bad?
    /// The same `ALTER TABLE … ALTER COLUMN … TYPE bigint` is instant on a
    /// table of ten rows and a ten-minute outage on one of 3 GB: every query
    /// on the table waits for as long as the rewrite takes.
    ///
    /// ## Example
    /// ```sql
    /// -- on a table of 40 million rows:
    /// ALTER TABLE events ALTER COLUMN id TYPE bigint;
    /// ```
    ///
    /// ## Use instead
    /// A new column, written by a trigger and backfilled in batches, swapped
    /// in later:
    /// ```sql
    /// ALTER TABLE events ADD COLUMN id_new bigint;
    /// ```
    pub struct HoldingLockOnLargeTable {
        id: "LS601",
        name: "holding-lock-on-large-table",
        severity: Error,
        reported_by: LiveServer,
    }
}
