//! LS401: a lock that blocks traffic, requested with no `lock_timeout`.

use crate::lint::{declare_rule, Context, Violation};
use crate::lock::LockMode;

declare_rule! {
    /// ## What it does
    /// Flags a statement that takes a lock blocking writes or reads (`ShareLock`
    /// or stronger) on an existing table when no `lock_timeout` was set
    /// earlier in the file (`SET`, `SET LOCAL` or `set_config`) — once per
    /// file, at the first such statement. Relations created earlier in the
    /// file and the concurrent forms whose locks no query waits for (`DROP
    /// INDEX CONCURRENTLY`, `DETACH PARTITION … CONCURRENTLY`, `REFRESH …
    /// CONCURRENTLY`) are not counted. Turn it off when migrations always run
    /// under `locksmith apply` or `locksmith run`, which set one.
    ///
    /// ## Why is this bad?
    /// A lock request waits behind every transaction holding a conflicting
    /// lock — one idle-in-transaction session is enough — and, while it waits,
    /// every later query that conflicts with it waits too. Without
    /// `lock_timeout` that wait has no end: the statement that would take a
    /// millisecond takes the application down instead.
    ///
    /// ## Example
    /// ```sql
    /// ALTER TABLE users ADD COLUMN nickname text;
    /// ```
    ///
    /// ## Use instead
    /// ```sql
    /// SET lock_timeout = '2s';
    /// ALTER TABLE users ADD COLUMN nickname text;
    /// ```
    /// and retry when it gives up (`locksmith apply` does both).
    pub struct MissingLockTimeout {
        id: "LS401",
        name: "missing-lock-timeout",
        severity: Warning,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    // Once per file: one `SET lock_timeout` at the top fixes them all.
    if ctx.state.lock_timeout().is_some()
        || ctx.state.unbounded_strong_locks > 0
        || ctx.statement.kind.locks_block_no_traffic()
    {
        return Vec::new();
    }
    let strong = ctx
        .statement
        .locks
        .iter()
        .filter(|l| l.mode.conflicts_with(LockMode::RowExclusive) && !ctx.is_new(&l.relation))
        .max_by_key(|l| l.mode);
    let Some(lock) = strong else {
        return Vec::new();
    };
    let message = format!(
        "{} on `{}` is requested with no lock_timeout: while it waits for a conflicting transaction, it blocks {} of `{}` behind it, with no limit (set lock_timeout once at the top of the file)",
        lock.mode,
        lock.relation,
        lock.mode.blocks(),
        lock.relation
    );
    vec![Violation::new(message)
        .with_fix(format!("SET lock_timeout = '2s';\n{};", ctx.statement.sql))]
}

#[cfg(test)]
mod tests {
    use super::MissingLockTimeout as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn strong_locks_need_a_timeout() {
        let v = lint_errors(&R::RULE, "ALTER TABLE users ADD COLUMN n text");
        assert_eq!(
            v[0].fix.as_deref(),
            Some("SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN n text;")
        );
        lint_errors(&R::RULE, "SET lock_timeout = 0; CREATE INDEX i ON t (a)");
        assert_eq!(
            lint_errors(
                &R::RULE,
                "ALTER TABLE a ADD COLUMN n text; ALTER TABLE b ADD COLUMN n text"
            )
            .len(),
            1
        );
        lint_ok(&R::RULE, "CREATE TABLE t (id int)");
        lint_ok(
            &R::RULE,
            "SET lock_timeout = '1s'; ALTER TABLE users ADD COLUMN n text",
        );
        lint_ok(
            &R::RULE,
            "BEGIN; SET LOCAL lock_timeout = '1s'; ALTER TABLE users ADD COLUMN n text",
        );
        lint_ok(&R::RULE, "CREATE INDEX CONCURRENTLY i ON t (a)");
        lint_ok(&R::RULE, "UPDATE t SET a = 1 WHERE id = 1");
    }

    #[test]
    fn set_config_sets_lock_timeout() {
        lint_ok(
            &R::RULE,
            "SELECT set_config('lock_timeout', '2s', false); ALTER TABLE users ADD COLUMN n text",
        );
        lint_ok(
            &R::RULE,
            "BEGIN; SELECT pg_catalog.set_config('lock_timeout', '2s', true); ALTER TABLE users ADD COLUMN n text",
        );
        lint_errors(
            &R::RULE,
            "SELECT set_config('lock_timeout', '0', false); ALTER TABLE users ADD COLUMN n text",
        );
    }

    #[test]
    fn new_objects_and_concurrent_forms_block_no_traffic() {
        lint_ok(&R::RULE, "CREATE VIEW v AS SELECT id FROM users");
        lint_ok(
            &R::RULE,
            "CREATE TABLE t (id int); CREATE VIEW v AS SELECT id FROM t; ALTER VIEW v RENAME TO w",
        );
        lint_errors(&R::RULE, "CREATE OR REPLACE VIEW v AS SELECT id FROM users");
        lint_ok(
            &R::RULE,
            "CREATE SEQUENCE s; ALTER SEQUENCE s RESTART 100; ALTER TABLE s OWNER TO app",
        );
        lint_errors(&R::RULE, "ALTER SEQUENCE s RESTART 100");
        lint_ok(&R::RULE, "DROP INDEX CONCURRENTLY users_email_idx");
        lint_ok(&R::RULE, "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY");
        lint_ok(&R::RULE, "REFRESH MATERIALIZED VIEW CONCURRENTLY mv");
    }
}
