//! `CREATE TABLE` (plain, `PARTITION OF`, `INHERITS`) and `CREATE TABLE … AS`:
//! the new relation, the locks on the tables it refers to, and what it
//! teaches the [`Schema`] model (column types, declared `NOT NULL`s).

use pg_query::protobuf::{self, ObjectType};
use pg_query::NodeEnum;

use super::{declares_not_null, object_type, Summary};
use crate::analysis::expr::{object_names, range_var, relations_in, strings};
use crate::analysis::kind::StatementKind;
use crate::analysis::schema::Schema;
use crate::lock::LockMode;

pub(super) fn create_stmt(s: &protobuf::CreateStmt, schema: &mut Schema) -> Summary {
    use LockMode::*;
    let table = s.relation.as_ref().map(range_var).unwrap_or_default();
    let mut sum = Summary::new(StatementKind::CreateTable {
        table: table.clone(),
    });
    sum.locks.add(&table, AccessExclusive);
    for parent in object_names(&s.inh_relations) {
        // PARTITION OF locks the parent fully; INHERITS only against schema changes.
        sum.locks.add(
            parent,
            if s.partbound.is_some() {
                AccessExclusive
            } else {
                ShareUpdateExclusive
            },
        );
    }
    for elt in s.table_elts.iter().chain(&s.constraints) {
        match &elt.node {
            Some(NodeEnum::ColumnDef(c)) => {
                if let Some(t) = &c.type_name {
                    schema.column_types.insert(
                        (table.clone(), c.colname.clone()),
                        crate::analysis::expr::type_parts(t),
                    );
                }
                let key = (table.clone(), c.colname.clone());
                if c.is_not_null {
                    schema.not_null_checks.insert(key.clone());
                }
                for con in &c.constraints {
                    if let Some(NodeEnum::Constraint(con)) = &con.node {
                        if let Some(pk) = &con.pktable {
                            sum.locks.add(range_var(pk), ShareRowExclusive);
                        }
                        if declares_not_null(con) {
                            schema.not_null_checks.insert(key.clone());
                        }
                    }
                }
            }
            Some(NodeEnum::Constraint(con)) => {
                if let Some(pk) = &con.pktable {
                    sum.locks.add(range_var(pk), ShareRowExclusive);
                }
                if con.contype == protobuf::ConstrType::ConstrPrimary as i32 {
                    for column in strings(&con.keys) {
                        schema.not_null_checks.insert((table.clone(), column));
                    }
                }
            }
            Some(NodeEnum::TableLikeClause(l)) => {
                if let Some(rv) = &l.relation {
                    sum.locks.add(range_var(rv), AccessShare);
                }
            }
            _ => {}
        }
    }
    sum
}

pub(super) fn create_table_as(s: &protobuf::CreateTableAsStmt, schema: &mut Schema) -> Summary {
    use LockMode::*;
    let table = s
        .into
        .as_ref()
        .and_then(|i| i.rel.as_ref())
        .map(range_var)
        .unwrap_or_default();
    let mut sum = Summary::new(StatementKind::CreateTable {
        table: table.clone(),
    });
    sum.locks.add(&table, AccessExclusive);
    if let Some(q) = s.query.as_ref().and_then(|q| q.node.as_ref()) {
        sum.reads(q, AccessShare);
        if object_type(s.objtype) == ObjectType::ObjectMatview {
            schema
                .matview_sources
                .insert(table.clone(), relations_in(q));
        }
    }
    sum
}
