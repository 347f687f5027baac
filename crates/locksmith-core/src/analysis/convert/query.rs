//! `SELECT` (with its row-locking clauses and what it reads) and `SET`: the
//! statements a migration uses for data and session settings.

use pg_query::protobuf;
use pg_query::NodeEnum;

use super::Summary;
use crate::analysis::expr::{object_names, range_var, relations_in};
use crate::analysis::kind::StatementKind;
use crate::lock::LockMode;

pub(super) fn select_stmt(s: &protobuf::SelectStmt, node: &NodeEnum) -> Summary {
    use LockMode::*;
    if let Some((name, value, local)) = crate::analysis::expr::set_config_call(s) {
        return Summary::new(StatementKind::Set {
            name,
            value: Some(value),
            local,
        });
    }
    let mut sum = Summary::new(StatementKind::Select);
    sum.reads(node, AccessShare);
    // FOR UPDATE/SHARE: ROW SHARE on the locked tables (all of them when none is named).
    for clause in &s.locking_clause {
        if let Some(NodeEnum::LockingClause(lc)) = &clause.node {
            let named = object_names(&lc.locked_rels);
            let targets = if named.is_empty() {
                relations_in(node)
            } else {
                named
            };
            for t in targets {
                sum.locks.add(t, RowShare);
            }
        }
    }
    if let Some(into) = s.into_clause.as_ref().and_then(|i| i.rel.as_ref()) {
        sum.kind = StatementKind::CreateTable {
            table: range_var(into),
        };
        sum.locks.add(range_var(into), AccessExclusive);
    }
    sum
}

pub(super) fn variable_set(s: &protobuf::VariableSetStmt) -> Summary {
    use protobuf::VariableSetKind as K;
    let value = match K::try_from(s.kind).unwrap_or(K::Undefined) {
        K::VarSetValue => Some(
            s.args
                .iter()
                .filter_map(crate::analysis::expr::const_text)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        _ => None,
    };
    Summary::new(StatementKind::Set {
        name: s.name.to_ascii_lowercase(),
        value,
        local: s.is_local,
    })
}
