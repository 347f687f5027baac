//! LS952: a statement failed on the server `locksmith trace` ran it on.

use crate::lint::declare_rule;

declare_rule! {
    /// ## What it does
    /// Reported by `locksmith trace` when a statement fails on the server,
    /// with the server's error.
    ///
    /// ## Why is this bad?
    /// The migration would fail in production too — or it depends on
    /// objects the trace's `--setup` did not create.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE missing ADD COLUMN a int;
    /// ```
    ///
    /// ## Use instead
    /// Create what it needs first (or pass it with `--setup`):
    /// ```sql
    /// CREATE TABLE missing (id int);
    /// ALTER TABLE missing ADD COLUMN a int;
    /// ```
    pub struct StatementFailed {
        id: "LS952",
        name: "statement-failed",
        severity: Error,
        reported_by: Trace,
    }
}
