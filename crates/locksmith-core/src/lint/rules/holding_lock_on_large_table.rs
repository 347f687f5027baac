//! LS601: the size verdict — how long a statement holds its lock at the
//! table's size on the live server, and which risk dominates. Folded into
//! the statement's own findings; reported under this id only when the
//! statement has none (`lint::live`).

use crate::lint::declare_rule;

declare_rule! {
    /// ## What it does
    /// With a live server (`lint --database-url`, `apply --dry-run`, `run`'s
    /// plan), gives each statement that rewrites, reads or indexes a table
    /// one size verdict: the table's rows and bytes, how long the statement
    /// would hold its lock (from rates measured once on that server by a
    /// cheap probe, or conservative defaults when the probe cannot run), and
    /// which risk dominates. On a small table the hold is nothing and the
    /// danger is the lock queue ("hold ~0ms at 250 rows — the danger is the
    /// lock queue: run it under the guard"); from half a second of hold the
    /// hold itself is the outage ("rewrites 2.1 GB …, est. ~40s under ACCESS
    /// EXCLUSIVE: use `locksmith apply --online`"): a warning from 100 ms, an
    /// error from a second. When the size cannot be read without waiting for
    /// a lock, it says "size unknown".
    ///
    /// The verdict is folded into the statement's own findings (e.g.
    /// LS101): each carries `rows`, `bytes` and `estimated_hold_ms` in JSON,
    /// and the most severe one says the verdict (raised to its severity).
    /// Only a statement with no finding of its own gets it as LS601. The
    /// code stays the size verdict's: disabling LS601 (`disable =
    /// ["LS601"]`) or ignoring it (`-- locksmith: ignore LS601 reason`)
    /// turns the verdict off, its numbers and sentence on the statement's
    /// own findings included, so existing suppressions keep their meaning.
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
    /// in later (what `locksmith apply --online` runs):
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
