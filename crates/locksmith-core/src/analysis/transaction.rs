//! The per-file transaction state, updated statement by statement: inside an
//! explicit `BEGIN`? `lock_timeout` set? which `AccessExclusiveLock`s are
//! already held? which relations did this file create?
//!
//! Rules read it as it was *before* the statement they check. It models only
//! what a migration file says about itself (alembic's `--sql` output has
//! `BEGIN;`, `SET lock_timeout`, `COMMIT;`); a tool that wraps each file in a
//! transaction is modelled with [`TransactionState::wrapped`]. No I/O.

use std::collections::BTreeSet;

use super::kind::{StatementKind, TransactionControl};
use super::Statement;
use crate::lock::LockMode;

/// A strong lock held by an earlier statement of the current transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLock {
    /// The relation.
    pub relation: String,
    /// The mode.
    pub mode: LockMode,
    /// Line of the statement that took it.
    pub line: u32,
}

/// What the statements so far have set up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionState {
    /// Line of the `BEGIN` of the open explicit transaction.
    pub begin_line: Option<u32>,
    /// Each statement runs inside one transaction the tool opened for the
    /// whole file (flyway, sqlx, Rails, Django do that).
    pub wrapped: bool,
    /// `AccessExclusiveLock`s taken earlier in the current transaction on
    /// relations this file did not create.
    pub access_exclusive: Vec<HeldLock>,
    /// Statements so far that requested a lock blocking writes or reads on an
    /// existing relation with no `lock_timeout` in effect.
    pub unbounded_strong_locks: u32,
    /// Relations (tables, indexes, views) created earlier in this file:
    /// no running code uses them yet, so locking them blocks nobody.
    pub created: BTreeSet<String>,
    session_lock_timeout: Option<String>,
    local_lock_timeout: Option<String>,
}

impl TransactionState {
    /// The state at the top of a file the tool runs inside one transaction.
    pub fn wrapped() -> Self {
        TransactionState {
            wrapped: true,
            ..Default::default()
        }
    }

    /// Whether the next statement runs inside a transaction block.
    pub fn in_transaction(&self) -> bool {
        self.begin_line.is_some() || self.wrapped
    }

    /// The `lock_timeout` in effect, as written, when one is (zero means none).
    pub fn lock_timeout(&self) -> Option<&str> {
        self.local_lock_timeout
            .as_deref()
            .or(self.session_lock_timeout.as_deref())
    }

    /// Whether `relation` was created earlier in this file.
    pub fn is_new(&self, relation: &str) -> bool {
        self.created.contains(relation)
    }

    /// Whether the current transaction already holds `AccessExclusiveLock` on `relation`.
    pub fn holds_access_exclusive(&self, relation: &str) -> bool {
        self.access_exclusive.iter().any(|h| h.relation == relation)
    }

    /// Moves the state past `stmt`.
    pub fn apply(&mut self, stmt: &Statement) {
        match &stmt.kind {
            StatementKind::Transaction(TransactionControl::Begin) => {
                self.begin_line = Some(stmt.line);
                self.access_exclusive.clear();
            }
            StatementKind::Transaction(
                TransactionControl::Commit | TransactionControl::Rollback,
            ) => {
                self.begin_line = None;
                self.wrapped = false;
                self.local_lock_timeout = None;
                self.access_exclusive.clear();
            }
            StatementKind::Set { name, value, local } if name == "lock_timeout" => {
                let value = value.clone().filter(|v| !is_zero(v));
                if *local {
                    if self.in_transaction() {
                        self.local_lock_timeout = value;
                    }
                } else {
                    self.session_lock_timeout = value;
                }
            }
            _ => {}
        }
        if let Some(created) = stmt.kind.creates() {
            self.created.insert(created.to_string());
        }
        let unbounded = self.lock_timeout().is_none()
            && !stmt.kind.locks_block_no_traffic()
            && stmt.locks.iter().any(|l| {
                l.mode.conflicts_with(LockMode::RowExclusive) && !self.is_new(&l.relation)
            });
        for lock in &stmt.locks {
            // Each relation once, with the line that first took it.
            if lock.mode == LockMode::AccessExclusive
                && !self.is_new(&lock.relation)
                && !self.holds_access_exclusive(&lock.relation)
            {
                self.access_exclusive.push(HeldLock {
                    relation: lock.relation.clone(),
                    mode: lock.mode,
                    line: stmt.line,
                });
            }
        }
        if unbounded {
            self.unbounded_strong_locks += 1;
        }
        if !self.in_transaction() {
            // Autocommit: the statement's locks were released at its end.
            self.access_exclusive.clear();
        }
    }
}

fn is_zero(value: &str) -> bool {
    let digits: String = value
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    !digits.is_empty() && digits.parse::<f64>().is_ok_and(|v| v == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::analyze;

    fn run(sql: &str) -> Vec<TransactionState> {
        let mut state = TransactionState::default();
        analyze(sql, 18)
            .unwrap()
            .iter()
            .map(|s| {
                let before = state.clone();
                state.apply(s);
                before
            })
            .collect()
    }

    #[test]
    fn begin_commit_and_lock_timeout() {
        let states = run("SET lock_timeout = '2s';\nBEGIN;\nALTER TABLE a DROP COLUMN x;\nALTER TABLE b DROP COLUMN y;\nCOMMIT;\nSELECT 1;");
        assert_eq!(states[1].lock_timeout(), Some("2s"));
        assert!(!states[1].in_transaction());
        assert!(states[2].in_transaction());
        assert!(states[2].access_exclusive.is_empty());
        assert_eq!(states[3].access_exclusive[0].relation, "a");
        assert_eq!(states[5].access_exclusive, vec![]);
        assert!(!states[5].in_transaction());
    }

    #[test]
    fn zero_local_and_reset() {
        let states = run("SET lock_timeout = 0; BEGIN; SET LOCAL lock_timeout = '1s'; SELECT 1; COMMIT; SELECT 1; SET lock_timeout TO '3s'; RESET lock_timeout; SELECT 1;");
        assert_eq!(states[1].lock_timeout(), None);
        assert_eq!(states[3].lock_timeout(), Some("1s"));
        assert_eq!(states[5].lock_timeout(), None);
        assert_eq!(states[7].lock_timeout(), Some("3s"));
        assert_eq!(states[8].lock_timeout(), None);
    }

    #[test]
    fn created_relations_are_new() {
        let states = run("BEGIN; CREATE TABLE t (id int); ALTER TABLE t ADD COLUMN a int; CREATE INDEX i ON t (a); SELECT 1;");
        assert!(states[2].is_new("t"));
        assert!(states[2].access_exclusive.is_empty());
        assert!(states[4].is_new("i"));
    }

    #[test]
    fn autocommit_releases_locks() {
        let states = run("ALTER TABLE a DROP COLUMN x; ALTER TABLE b DROP COLUMN y;");
        assert!(states[1].access_exclusive.is_empty());
        let mut wrapped = TransactionState::wrapped();
        for s in analyze("ALTER TABLE a DROP COLUMN x;", 18).unwrap() {
            wrapped.apply(&s);
        }
        assert_eq!(wrapped.access_exclusive.len(), 1);
    }
}
