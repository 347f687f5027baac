//! `CREATE INDEX` and `REINDEX`: the lock on the table (and the index),
//! whether the build scans it, and whether it may run in a transaction block.

use pg_query::protobuf;
use pg_query::NodeEnum;

use super::Summary;
use crate::analysis::expr::range_var;
use crate::analysis::kind::StatementKind;
use crate::analysis::schema::Schema;
use crate::lock::LockMode;

pub(super) fn index_stmt(s: &protobuf::IndexStmt, schema: &mut Schema) -> Summary {
    use LockMode::*;
    let table = s.relation.as_ref().map(range_var).unwrap_or_default();
    let columns: Vec<String> = s
        .index_params
        .iter()
        .filter_map(|p| match &p.node {
            Some(NodeEnum::IndexElem(e)) if !e.name.is_empty() => Some(e.name.clone()),
            _ => None,
        })
        .collect();
    // An expression in the key: no plain column list.
    let columns = if columns.len() == s.index_params.len() {
        columns
    } else {
        Vec::new()
    };
    let mut sum = Summary::new(StatementKind::CreateIndex {
        name: (!s.idxname.is_empty()).then(|| s.idxname.clone()),
        table: table.clone(),
        columns: columns.clone(),
        unique: s.unique,
        concurrently: s.concurrent,
    });
    // CONCURRENTLY: SHARE UPDATE EXCLUSIVE, two scans, no transaction block.
    sum.locks.add(
        &table,
        if s.concurrent {
            ShareUpdateExclusive
        } else {
            Share
        },
    );
    sum.scan(&table);
    sum.transactional = !s.concurrent;
    if !s.idxname.is_empty() {
        // An expression column cannot back a constraint: keep plain ones only.
        if !columns.is_empty() {
            schema.index_columns.insert(s.idxname.clone(), columns);
        }
        schema.indexes.insert(s.idxname.clone(), table);
    }
    sum
}

pub(super) fn reindex_stmt(s: &protobuf::ReindexStmt, schema: &mut Schema) -> Summary {
    use LockMode::*;
    let concurrently = crate::analysis::expr::option_enabled(&s.params, "concurrently");
    let kind = protobuf::ReindexObjectType::try_from(s.kind)
        .unwrap_or(protobuf::ReindexObjectType::Undefined);
    let target = s.relation.as_ref().map(range_var);
    let mut sum = Summary::new(StatementKind::Reindex {
        target: target.clone(),
        concurrently,
    });
    match (kind, &target) {
        // REINDEX INDEX: SHARE on its table, ACCESS EXCLUSIVE on the index.
        (protobuf::ReindexObjectType::ReindexObjectIndex, Some(index)) => {
            if let Some(table) = schema.indexes.get(index) {
                sum.locks.add(
                    table.clone(),
                    if concurrently {
                        ShareUpdateExclusive
                    } else {
                        Share
                    },
                );
            }
            sum.locks.add(
                index,
                if concurrently {
                    ShareUpdateExclusive
                } else {
                    AccessExclusive
                },
            );
        }
        (protobuf::ReindexObjectType::ReindexObjectTable, Some(table)) => {
            sum.locks.add(
                table,
                if concurrently {
                    ShareUpdateExclusive
                } else {
                    Share
                },
            );
            sum.scan(table);
        }
        _ => {}
    }
    // SCHEMA/DATABASE/SYSTEM run one transaction per table, so never in a block.
    sum.transactional = !concurrently
        && matches!(
            kind,
            protobuf::ReindexObjectType::ReindexObjectIndex
                | protobuf::ReindexObjectType::ReindexObjectTable
        );
    sum
}
