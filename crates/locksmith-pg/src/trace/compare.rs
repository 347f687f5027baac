//! Observed locks and rewrites against lint's model (pure, no server).
//!
//! The policy, also stated in `docs/locks.md`:
//! - Locks are compared per relation, strongest mode on each side.
//! - Every table-like relation (table, partitioned table, view, materialized
//!   view, foreign table) is compared, named by the model or not: a lock the
//!   model misses is exactly the surprise `trace` exists to catch.
//! - Indexes and sequences are compared only when the model names them
//!   (`DROP INDEX`, `REINDEX INDEX`, `ALTER INDEX`): most statements lock the
//!   indexes of the tables they touch as a matter of course, in the table's
//!   mode or weaker, and lint reports tables.
//! - A lock the transaction already held before the statement counts: the
//!   statement is consistent when the strongest mode held afterwards is the
//!   one the model predicts on top of what was held.
//!
//! Must not decide what is observed: that is the tracer's job.

use std::collections::HashMap;

use locksmith_core::analysis::RelationLock;
use locksmith_core::lock::LockMode;

/// A relation lock the traced statement took, with the relation's kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The relation's name (`name`, or `schema.name` outside `public`).
    pub relation: String,
    /// `pg_class.relkind`.
    pub kind: char,
    /// The strongest new mode.
    pub mode: LockMode,
}

/// A model name as the tracer spells it: `public.` dropped.
pub fn normalize(name: &str) -> &str {
    name.strip_prefix("public.").unwrap_or(name)
}

fn is_table(kind: char) -> bool {
    matches!(kind, 'r' | 'p' | 'v' | 'm' | 'f')
}

fn mode_name(mode: Option<LockMode>) -> &'static str {
    mode.map_or("no lock", LockMode::pg_name)
}

/// The differences between the model and what was observed, one sentence
/// each; empty when they agree. `compared` limits the comparison to those
/// relations (a second-session trace sees only the tables it held).
pub fn lock_differences(
    model: &[RelationLock],
    observed: &[Observed],
    held_before: &HashMap<String, LockMode>,
    compared: Option<&[String]>,
) -> Vec<String> {
    let in_scope = |r: &str| compared.is_none_or(|c| c.iter().any(|x| x == r));
    let mut out = Vec::new();
    let mut named = Vec::new();
    for l in model {
        let relation = normalize(&l.relation);
        if !in_scope(relation) || named.contains(&relation) {
            continue;
        }
        named.push(relation);
        let held = held_before.get(relation).copied();
        let seen = observed
            .iter()
            .find(|o| o.relation == relation)
            .map(|o| o.mode);
        let after = seen.max(held);
        let expected = Some(l.mode).max(held);
        if after != expected {
            out.push(format!(
                "{relation}: observed {}, the model predicts {}",
                mode_name(after),
                l.mode.pg_name()
            ));
        }
    }
    for o in observed {
        if named.contains(&o.relation.as_str()) || !is_table(o.kind) || !in_scope(&o.relation) {
            continue;
        }
        let held = held_before.get(&o.relation).copied();
        if Some(o.mode) > held {
            out.push(format!(
                "{}: observed {}, the model predicts no lock",
                o.relation,
                o.mode.pg_name()
            ));
        }
    }
    out
}

/// The differences between predicted and observed rewrites.
pub fn rewrite_differences(model: &[String], observed: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for m in model {
        if !observed.iter().any(|o| o == normalize(m)) {
            out.push(format!(
                "{}: the model predicts a rewrite, the data file was kept",
                normalize(m)
            ));
        }
    }
    for o in observed {
        if !model.iter().any(|m| normalize(m) == o) {
            out.push(format!(
                "{o}: rewritten (new relfilenode), the model predicts no rewrite"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use LockMode::*;

    fn lock(relation: &str, mode: LockMode) -> RelationLock {
        RelationLock {
            relation: relation.into(),
            mode,
        }
    }
    fn seen(relation: &str, kind: char, mode: LockMode) -> Observed {
        Observed {
            relation: relation.into(),
            kind,
            mode,
        }
    }

    #[test]
    fn agreeing_locks_give_nothing_and_index_locks_are_not_compared() {
        let model = [lock("public.users", AccessExclusive)];
        let observed = [
            seen("users", 'r', AccessExclusive),
            seen("users_pkey", 'i', AccessExclusive),
        ];
        assert!(lock_differences(&model, &observed, &HashMap::new(), None).is_empty());
    }

    #[test]
    fn a_missed_table_and_a_wrong_mode_are_reported() {
        let model = [lock("orders", ShareRowExclusive)];
        let observed = [
            seen("orders", 'r', AccessExclusive),
            seen("users", 'r', ShareRowExclusive),
        ];
        let d = lock_differences(&model, &observed, &HashMap::new(), None);
        assert_eq!(
            d,
            [
                "orders: observed AccessExclusiveLock, the model predicts ShareRowExclusiveLock",
                "users: observed ShareRowExclusiveLock, the model predicts no lock"
            ]
        );
    }

    #[test]
    fn a_lock_already_held_explains_a_missing_new_one() {
        let model = [lock("t", ShareUpdateExclusive)];
        let held = HashMap::from([("t".to_string(), AccessExclusive)]);
        assert!(lock_differences(&model, &[], &held, None).is_empty());
        assert_eq!(
            lock_differences(&model, &[], &HashMap::new(), None),
            ["t: observed no lock, the model predicts ShareUpdateExclusiveLock"]
        );
    }

    #[test]
    fn rewrites_compare_both_ways() {
        assert!(rewrite_differences(&["public.t".into()], &["t".into()]).is_empty());
        assert_eq!(rewrite_differences(&[], &["t".into()]).len(), 1);
        assert_eq!(rewrite_differences(&["t".into()], &[]).len(), 1);
    }
}
