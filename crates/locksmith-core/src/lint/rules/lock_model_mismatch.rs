//! LS950: `locksmith trace` saw the server take other locks (or rewrite
//! other tables) than lint's model predicts.

use crate::lint::declare_rule;

declare_rule! {
    /// ## What it does
    /// Reported by `locksmith trace`, which runs the migration on a
    /// throwaway server and reads `pg_locks` and `relfilenode`s: the server
    /// did something other than what lint's model says — another lock mode,
    /// another relation, a rewrite lint did not expect or the reverse.
    ///
    /// ## Why is this bad?
    /// Lint's findings are only as good as its model. A mismatch means a
    /// finding may be missing or wrong for this statement on this server
    /// version; the traced locks are the truth.
    ///
    /// ## Example
    /// ```sql
    /// -- a statement whose locks depend on something lint cannot see
    /// ALTER TABLE t ALTER COLUMN a TYPE text;
    /// ```
    ///
    /// ## Use instead
    /// Read the traced locks and report the difference as a bug:
    /// ```sql
    /// -- locksmith trace prints what the server took
    /// ALTER TABLE t ALTER COLUMN a TYPE text;
    /// ```
    pub struct LockModelMismatch {
        id: "LS950",
        name: "lock-model-mismatch",
        severity: Warning,
        reported_by: Trace,
    }
}
