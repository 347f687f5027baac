//! LS951: `locksmith trace` did not observe a statement, with the reason.

use crate::lint::declare_rule;

declare_rule! {
    /// ## What it does
    /// Reported by `locksmith trace` for a statement it could not observe
    /// (for example one that cannot run inside the tracer's transaction and
    /// has no table to hold open), with the reason. With `--database-url` it
    /// is an error when the trace gave up because sessions held conflicting
    /// locks past `--lock-timeout` (it names them; exit 3): the statements
    /// after it were not run.
    ///
    /// ## Why is this bad?
    /// Its locks are lint's model only, not what the server did.
    ///
    /// ## Example
    /// ```sql
    /// VACUUM;
    /// ```
    ///
    /// ## Use instead
    /// Name the tables, so the tracer can watch them:
    /// ```sql
    /// VACUUM users;
    /// ```
    pub struct StatementNotTraced {
        id: "LS951",
        name: "statement-not-traced",
        severity: Warning,
        reported_by: Trace,
    }
}
