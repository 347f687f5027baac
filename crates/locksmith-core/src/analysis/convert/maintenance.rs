//! `VACUUM`, `ANALYZE`, `CLUSTER` and `REFRESH MATERIALIZED VIEW`: maintenance
//! that locks, reads or rewrites whole tables.

use pg_query::protobuf;
use pg_query::NodeEnum;

use super::Summary;
use crate::analysis::expr::range_var;
use crate::analysis::kind::StatementKind;
use crate::analysis::schema::Schema;
use crate::lock::LockMode;

pub(super) fn vacuum_stmt(s: &protobuf::VacuumStmt) -> Summary {
    use LockMode::*;
    let full = crate::analysis::expr::option_enabled(&s.options, "full");
    let tables: Vec<String> = s
        .rels
        .iter()
        .filter_map(|r| match &r.node {
            Some(NodeEnum::VacuumRelation(v)) => v.relation.as_ref().map(range_var),
            _ => None,
        })
        .collect();
    let mut sum = Summary::new(StatementKind::Vacuum {
        full,
        is_vacuum: s.is_vacuumcmd,
        tables: tables.clone(),
    });
    for t in &tables {
        sum.locks.add(
            t,
            if full {
                AccessExclusive
            } else {
                ShareUpdateExclusive
            },
        );
        if full {
            sum.rewrite(t);
        }
    }
    // ANALYZE may run in a transaction block; VACUUM never.
    sum.transactional = !s.is_vacuumcmd;
    sum
}

pub(super) fn cluster_stmt(s: &protobuf::ClusterStmt) -> Summary {
    use LockMode::*;
    let table = s.relation.as_ref().map(range_var);
    let mut sum = Summary::new(StatementKind::Cluster {
        table: table.clone(),
    });
    match &table {
        Some(t) => {
            sum.locks.add(t, AccessExclusive);
            sum.rewrite(t);
        }
        // CLUSTER with no table re-clusters every clustered table, one
        // transaction each.
        None => sum.transactional = false,
    }
    sum
}

pub(super) fn refresh_stmt(s: &protobuf::RefreshMatViewStmt, schema: &mut Schema) -> Summary {
    use LockMode::*;
    let view = s.relation.as_ref().map(range_var).unwrap_or_default();
    let mut sum = Summary::new(StatementKind::RefreshMatView {
        view: view.clone(),
        concurrently: s.concurrent,
    });
    if s.concurrent {
        sum.locks.add(&view, Exclusive);
    } else {
        sum.locks.add(&view, AccessExclusive);
        sum.rewrite(&view);
    }
    // Re-running the view's query reads its tables (known when the file made it).
    for source in schema.matview_sources.get(&view).into_iter().flatten() {
        sum.locks.add(source, AccessShare);
    }
    sum
}
