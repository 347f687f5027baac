//! LS303: a query that reads or writes table data after the transaction took
//! an `AccessExclusiveLock`.

use crate::analysis::StatementKind;
use crate::lint::{declare_rule, Context, Violation};
use crate::lock::LockMode;

declare_rule! {
    /// ## What it does
    /// Flags a statement that reads or writes table rows — a `SELECT` from a
    /// table, `INSERT … SELECT`, `UPDATE`/`DELETE`/`MERGE`, `COPY`, `VALIDATE
    /// CONSTRAINT` — inside a transaction that already holds an
    /// `AccessExclusiveLock` on an existing table. (A second
    /// `AccessExclusiveLock` is LS301's, a whole-table `UPDATE`/`DELETE`
    /// LS302's, an index build LS102's.)
    ///
    /// ## Why is this bad?
    /// The `AccessExclusiveLock` is held until `COMMIT`: every read and write
    /// of that table waits for as long as the statements after it run. An
    /// `ALTER TABLE … ADD COLUMN` takes milliseconds; followed by a
    /// `SELECT count(*)` of a big table in the same transaction, the table is
    /// unreadable for as long as the count takes.
    ///
    /// ## Example
    /// ```sql
    /// BEGIN;
    /// ALTER TABLE users ADD COLUMN active boolean;
    /// SELECT count(*) FROM users;
    /// COMMIT;
    /// ```
    ///
    /// ## Use instead
    /// Commit the schema change first; run the query in its own transaction:
    /// ```sql
    /// BEGIN;
    /// ALTER TABLE users ADD COLUMN active boolean;
    /// COMMIT;
    /// SELECT count(*) FROM users;
    /// ```
    pub struct QueryingWhileHoldingAccessExclusive {
        id: "LS303",
        name: "querying-while-holding-access-exclusive",
        severity: Warning,
        check: check,
    }
}

fn check(ctx: &Context<'_>) -> Vec<Violation> {
    let state = ctx.state;
    if !state.in_transaction() || state.access_exclusive.is_empty() {
        return Vec::new();
    }
    let s = ctx.statement;
    let existing = |r: &String| !ctx.is_new(r);
    // A new AccessExclusiveLock is LS301's finding.
    if s.locks.iter().any(|l| {
        l.mode == LockMode::AccessExclusive
            && existing(&l.relation)
            && !state.holds_access_exclusive(&l.relation)
    }) {
        return Vec::new();
    }
    let what = match &s.kind {
        // A whole-table UPDATE/DELETE is LS302's.
        StatementKind::Dml {
            whole_table: true,
            table,
            ..
        } if existing(table) => return Vec::new(),
        // INSERT … VALUES writes the rows it names; INSERT … SELECT reads.
        StatementKind::Dml {
            command: "INSERT" | "COPY",
            table,
            ..
        } if s.locks.iter().all(|l| &l.relation == table) => None,
        StatementKind::Dml { command, table, .. } if existing(table) => {
            Some(format!("{command} of `{table}`"))
        }
        StatementKind::Select | StatementKind::Dml { .. } | StatementKind::CreateTable { .. } => {
            reads(ctx)
        }
        StatementKind::Other { tag } if tag == "COPY TO" => reads(ctx),
        _ => None,
    };
    // A scan under a lock that blocks writes (an index build, a foreign key)
    // is its own rule's finding already; one that alone blocks no traffic
    // (`VALIDATE CONSTRAINT`) is this rule's.
    let what = what.or_else(|| {
        s.scans
            .iter()
            .chain(&s.rewrites)
            .find(|r| existing(r) && s.lock_on(r).is_none_or(|m| m < LockMode::Share))
            .map(|r| format!("reading all of `{r}`"))
    });
    let Some(what) = what else {
        return Vec::new();
    };
    let held: Vec<String> = state
        .access_exclusive
        .iter()
        .map(|h| format!("`{}` (line {})", h.relation, h.line))
        .collect();
    vec![Violation::new(format!(
        "{what} while this transaction holds AccessExclusiveLock on {}: every read and write of it waits until COMMIT, for as long as this statement runs; commit the schema change first",
        held.join(", ")
    ))]
}

/// "reading `t`" for the first existing table the statement reads rows of.
fn reads(ctx: &Context<'_>) -> Option<String> {
    ctx.statement
        .locks
        .iter()
        .find(|l| l.mode <= LockMode::RowShare && !ctx.is_new(&l.relation))
        .map(|l| format!("reading `{}`", l.relation))
}

#[cfg(test)]
mod tests {
    use super::QueryingWhileHoldingAccessExclusive as R;
    use crate::lint::testing::{lint_errors, lint_ok};

    #[test]
    fn queries_after_access_exclusive() {
        let v = lint_errors(
            &R::RULE,
            "BEGIN;\nALTER TABLE users ADD COLUMN active boolean;\nSELECT count(*) FROM users;",
        );
        insta::assert_snapshot!(v[0].message, @"reading `users` while this transaction holds AccessExclusiveLock on `users` (line 2): every read and write of it waits until COMMIT, for as long as this statement runs; commit the schema change first");
        lint_errors(
            &R::RULE,
            "BEGIN; ALTER TABLE a ADD COLUMN x int; INSERT INTO log SELECT * FROM b;",
        );
        lint_errors(
            &R::RULE,
            "BEGIN; ALTER TABLE a ADD COLUMN x int; UPDATE a SET x = 1 WHERE id < 1000000;",
        );
        let v = lint_errors(
            &R::RULE,
            "BEGIN; ALTER TABLE a ADD COLUMN x int; ALTER TABLE a VALIDATE CONSTRAINT c;",
        );
        assert!(
            v[0].message.starts_with("reading all of `a`"),
            "{}",
            v[0].message
        );
    }

    #[test]
    fn quick_or_unrelated_statements() {
        lint_ok(
            &R::RULE,
            "ALTER TABLE users ADD COLUMN active boolean; SELECT count(*) FROM users;",
        );
        lint_ok(
            &R::RULE,
            "BEGIN; ALTER TABLE a ADD COLUMN x int; ALTER TABLE a ALTER COLUMN x SET DEFAULT 0; INSERT INTO a (id) VALUES (1); SELECT 1; COMMENT ON COLUMN a.x IS 'x';",
        );
        lint_ok(
            &R::RULE,
            "BEGIN; CREATE TABLE n (id int); ALTER TABLE n ADD COLUMN x int; SELECT * FROM n;",
        );
        // An index build is LS102's, a whole-table UPDATE LS302's, a second
        // AccessExclusiveLock LS301's.
        lint_ok(
            &R::RULE,
            "BEGIN; ALTER TABLE a ADD COLUMN x int; CREATE INDEX i ON a (x);",
        );
        lint_ok(
            &R::RULE,
            "BEGIN; ALTER TABLE a ADD COLUMN x int; UPDATE a SET x = 1; ALTER TABLE b ADD COLUMN y int;",
        );
    }
}
