//! LS602: sessions on the live server hold locks the statement would wait
//! for right now. Reported by `lint --database-url` (`lint::live`).

use crate::lint::declare_rule;

declare_rule! {
    /// ## What it does
    /// With `--database-url`, flags a statement whose lock conflicts with
    /// one that sessions hold on the live server right now, naming the first
    /// of them (pid, user, client, how long idle).
    ///
    /// ## Why is this bad?
    /// Run now, the statement would queue behind those sessions — an idle
    /// transaction a developer left open is enough — and every query on the
    /// table would queue behind the statement: the incident, exactly.
    ///
    /// ## Example
    /// ```sql
    /// -- while a session sits idle in transaction after reading `users`:
    /// ALTER TABLE users ADD COLUMN nickname text;
    /// ```
    ///
    /// ## Use instead
    /// Run it under `locksmith apply` or `locksmith run` (a lock budget and
    /// retries), or end those transactions first:
    /// ```sql
    /// SET lock_timeout = '2s';
    /// ALTER TABLE users ADD COLUMN nickname text;
    /// ```
    pub struct QueueingBehindOpenTransactions {
        id: "LS602",
        name: "queueing-behind-open-transactions",
        severity: Error,
        reported_by: LiveServer,
    }
}
