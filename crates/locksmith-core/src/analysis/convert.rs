//! Parse node → [`StatementKind`] plus the locks, rewrites and scans of every
//! statement family except `ALTER TABLE` (see `alter_table`).
//!
//! Lock levels follow PostgreSQL's source and documentation ("Explicit
//! Locking", each command's page); `docs/locks.md` records what `trace`
//! observed on each version. Must not do I/O or keep state beyond
//! the [`Schema`] model the statements so far built.

use pg_query::protobuf::{self, ObjectType};
use pg_query::NodeEnum;

use super::expr::{object_names, range_var, relations_in, strings};
use super::kind::{RenameTarget, StatementKind, TransactionControl};
use super::schema::Schema;
use super::Requirement;
use crate::lock::LockMode;

/// Locks in first-seen order, the strongest mode kept per relation.
#[derive(Debug, Default)]
pub(crate) struct Locks(Vec<super::RelationLock>);

impl Locks {
    pub fn add(&mut self, relation: impl Into<String>, mode: LockMode) {
        let relation = relation.into();
        if relation.is_empty() {
            return;
        }
        match self.0.iter_mut().find(|l| l.relation == relation) {
            Some(l) => l.mode = l.mode.max(mode),
            None => self.0.push(super::RelationLock { relation, mode }),
        }
    }
    pub fn into_vec(self) -> Vec<super::RelationLock> {
        self.0
    }
}

/// Everything `analyze` needs about one statement.
#[derive(Debug)]
pub(crate) struct Summary {
    pub kind: StatementKind,
    pub locks: Locks,
    pub rewrites: Vec<String>,
    pub scans: Vec<String>,
    pub transactional: bool,
    pub requires: Vec<Requirement>,
}

impl Summary {
    pub fn new(kind: StatementKind) -> Self {
        Summary {
            kind,
            locks: Locks::default(),
            rewrites: Vec::new(),
            scans: Vec::new(),
            transactional: true,
            requires: Vec::new(),
        }
    }
    pub fn rewrite(&mut self, table: &str) {
        if !self.rewrites.iter().any(|t| t == table) {
            self.rewrites.push(table.to_string());
        }
    }
    pub fn scan(&mut self, table: &str) {
        if !self.scans.iter().any(|t| t == table) {
            self.scans.push(table.to_string());
        }
    }
    pub fn require(&mut self, version: u32, min_version: u32, feature: &'static str) {
        if version < min_version {
            self.requires.push(Requirement {
                min_version,
                feature,
            });
        }
    }
    fn reads(&mut self, node: &NodeEnum, mode: LockMode) {
        for r in relations_in(node) {
            self.locks.add(r, mode);
        }
    }
}

fn object_type(i: i32) -> ObjectType {
    ObjectType::try_from(i).unwrap_or(ObjectType::Undefined)
}

/// Summarises one statement for a server of major version `version`.
pub(crate) fn summarize(node: Option<NodeEnum>, version: u32, schema: &mut Schema) -> Summary {
    use LockMode::*;
    let Some(node) = node else {
        return Summary::new(StatementKind::Empty);
    };
    match &node {
        NodeEnum::AlterTableStmt(s) => super::alter_table::summarize(s, version, schema),
        NodeEnum::IndexStmt(s) => indexes::index_stmt(s, schema),
        NodeEnum::DropStmt(s) => objects::drop_stmt(s, schema),
        NodeEnum::ReindexStmt(s) => indexes::reindex_stmt(s, schema),
        NodeEnum::CreateStmt(s) => create::create_stmt(s, schema),
        NodeEnum::CreateTableAsStmt(s) => create::create_table_as(s, schema),
        NodeEnum::CreateSeqStmt(s) => {
            let sequence = s.sequence.as_ref().map(range_var).unwrap_or_default();
            let mut sum = Summary::new(StatementKind::CreateSequence {
                sequence: sequence.clone(),
            });
            sum.locks.add(&sequence, AccessExclusive);
            sum
        }
        NodeEnum::ViewStmt(s) => {
            let view = s.view.as_ref().map(range_var).unwrap_or_default();
            let mut sum = Summary::new(StatementKind::CreateView {
                view: view.clone(),
                replace: s.replace,
            });
            sum.locks.add(&view, AccessExclusive);
            if let Some(q) = s.query.as_ref().and_then(|q| q.node.as_ref()) {
                sum.reads(q, AccessShare);
            }
            sum
        }
        NodeEnum::RenameStmt(s) => objects::rename(s, schema),
        NodeEnum::AlterObjectSchemaStmt(s) => {
            let mut sum = Summary::new(StatementKind::Other {
                tag: "ALTER … SET SCHEMA".into(),
            });
            if let Some(rv) = &s.relation {
                sum.locks.add(range_var(rv), AccessExclusive);
            }
            sum
        }
        NodeEnum::TruncateStmt(s) => {
            let tables = object_names(&s.relations);
            let mut sum = Summary::new(StatementKind::Truncate {
                tables: tables.clone(),
            });
            for t in &tables {
                sum.locks.add(t, AccessExclusive);
                // A new, empty relfilenode replaces the old one.
                sum.rewrite(t);
            }
            sum
        }
        NodeEnum::VacuumStmt(s) => maintenance::vacuum_stmt(s),
        NodeEnum::ClusterStmt(s) => maintenance::cluster_stmt(s),
        NodeEnum::RefreshMatViewStmt(s) => maintenance::refresh_stmt(s, schema),
        NodeEnum::LockStmt(s) => {
            let mode = lock_stmt_mode(s.mode);
            let tables = object_names(&s.relations);
            let mut sum = Summary::new(StatementKind::Lock {
                tables: tables.clone(),
                mode,
                nowait: s.nowait,
            });
            for t in tables {
                sum.locks.add(t, mode);
            }
            sum
        }
        NodeEnum::CreateTrigStmt(s) => {
            let table = s.relation.as_ref().map(range_var).unwrap_or_default();
            let mut sum = Summary::new(StatementKind::CreateTrigger {
                table: table.clone(),
            });
            sum.locks.add(&table, ShareRowExclusive);
            if let Some(rv) = &s.constrrel {
                sum.locks.add(range_var(rv), ShareRowExclusive);
            }
            if s.replace {
                sum.require(version, 14, "CREATE OR REPLACE TRIGGER");
            }
            sum
        }
        NodeEnum::CreatePolicyStmt(s) => {
            table_stmt("CREATE POLICY", s.table.as_ref(), AccessExclusive)
        }
        NodeEnum::AlterPolicyStmt(s) => {
            table_stmt("ALTER POLICY", s.table.as_ref(), AccessExclusive)
        }
        NodeEnum::RuleStmt(s) => table_stmt("CREATE RULE", s.relation.as_ref(), AccessExclusive),
        NodeEnum::CommentStmt(s) => {
            let mut sum = Summary::new(StatementKind::Other {
                tag: "COMMENT".into(),
            });
            if let Some(rel) = comment_relation(s) {
                sum.locks.add(rel, ShareUpdateExclusive);
            }
            sum
        }
        NodeEnum::CreateStatsStmt(s) => {
            let mut sum = Summary::new(StatementKind::Other {
                tag: "CREATE STATISTICS".into(),
            });
            for r in object_names(&s.relations) {
                sum.locks.add(r, ShareUpdateExclusive);
            }
            sum
        }
        NodeEnum::AlterSeqStmt(s) => {
            table_stmt("ALTER SEQUENCE", s.sequence.as_ref(), ShareRowExclusive)
        }
        NodeEnum::InsertStmt(s) => dml("INSERT", s.relation.as_ref(), false, &node),
        NodeEnum::UpdateStmt(s) => dml(
            "UPDATE",
            s.relation.as_ref(),
            s.where_clause.is_none(),
            &node,
        ),
        NodeEnum::DeleteStmt(s) => dml(
            "DELETE",
            s.relation.as_ref(),
            s.where_clause.is_none(),
            &node,
        ),
        NodeEnum::MergeStmt(s) => dml("MERGE", s.relation.as_ref(), false, &node),
        NodeEnum::CopyStmt(s) => match (&s.relation, s.is_from) {
            (Some(rv), true) => dml("COPY", Some(rv), false, &node),
            _ => {
                let mut sum = Summary::new(StatementKind::Other {
                    tag: "COPY TO".into(),
                });
                sum.reads(&node, AccessShare);
                sum
            }
        },
        NodeEnum::SelectStmt(s) => query::select_stmt(s, &node),
        NodeEnum::TransactionStmt(s) => {
            use protobuf::TransactionStmtKind as K;
            let control = match K::try_from(s.kind).unwrap_or(K::Undefined) {
                K::TransStmtBegin | K::TransStmtStart => TransactionControl::Begin,
                K::TransStmtCommit | K::TransStmtPrepare => TransactionControl::Commit,
                K::TransStmtRollback => TransactionControl::Rollback,
                _ => TransactionControl::Savepoint,
            };
            Summary::new(StatementKind::Transaction(control))
        }
        NodeEnum::VariableSetStmt(s) => query::variable_set(s),
        NodeEnum::AlterEnumStmt(s) if !s.old_val.is_empty() => {
            Summary::new(StatementKind::Rename {
                target: RenameTarget::EnumValue,
                relation: super::expr::dotted(&s.type_name),
                new_name: s.new_val.clone(),
            })
        }
        NodeEnum::AlterEnumStmt(_) => Summary::new(StatementKind::Other {
            tag: "ALTER TYPE … ADD VALUE".into(),
        }),
        NodeEnum::CreateDomainStmt(s) => {
            let checked = s.constraints.iter().any(|c| {
                matches!(&c.node, Some(NodeEnum::Constraint(c))
                    if c.contype == protobuf::ConstrType::ConstrCheck as i32
                        || c.contype == protobuf::ConstrType::ConstrNotnull as i32)
            });
            schema
                .domains
                .insert(super::expr::dotted(&s.domainname), checked);
            Summary::new(StatementKind::Other {
                tag: "CREATE DOMAIN".into(),
            })
        }
        NodeEnum::AlterDomainStmt(s) => objects::alter_domain(s, schema),
        NodeEnum::GrantStmt(s) => {
            // GRANT/REVOKE update pg_class.relacl under a row lock; 18 also takes
            // ACCESS SHARE on each table named (traced).
            let mut sum = Summary::new(StatementKind::Other {
                tag: "GRANT".into(),
            });
            let named = s.targtype == protobuf::GrantTargetType::AclTargetObject as i32;
            if version >= 18 && named && object_type(s.objtype) == ObjectType::ObjectTable {
                for t in object_names(&s.objects) {
                    sum.locks.add(t, AccessShare);
                }
            }
            sum
        }
        other => {
            let mut sum = Summary::new(StatementKind::Other { tag: tag_of(other) });
            if matches!(
                other,
                NodeEnum::CreatedbStmt(_) | NodeEnum::DropdbStmt(_) | NodeEnum::AlterSystemStmt(_)
            ) {
                sum.transactional = false;
            }
            sum
        }
    }
}

/// `NOT NULL` or `PRIMARY KEY` on a column: no NULL in it, ever.
fn declares_not_null(c: &protobuf::Constraint) -> bool {
    c.contype == protobuf::ConstrType::ConstrNotnull as i32
        || c.contype == protobuf::ConstrType::ConstrPrimary as i32
}

fn tag_of(node: &NodeEnum) -> String {
    let debug = format!("{node:?}");
    debug
        .split(['(', ' '])
        .next()
        .unwrap_or("Unknown")
        .to_string()
}

fn table_stmt(tag: &str, rv: Option<&protobuf::RangeVar>, mode: LockMode) -> Summary {
    let mut sum = Summary::new(StatementKind::Other { tag: tag.into() });
    if let Some(rv) = rv {
        sum.locks.add(range_var(rv), mode);
    }
    sum
}

fn dml(
    command: &'static str,
    rv: Option<&protobuf::RangeVar>,
    whole_table: bool,
    node: &NodeEnum,
) -> Summary {
    let table = rv.map(range_var).unwrap_or_default();
    let mut sum = Summary::new(StatementKind::Dml {
        command,
        table: table.clone(),
        whole_table,
    });
    // The target first, so it keeps its place; other tables are only read.
    sum.locks.add(&table, LockMode::RowExclusive);
    sum.reads(node, LockMode::AccessShare);
    sum
}

/// `LOCK TABLE … IN <mode> MODE`: pg_query carries the lockdefs.h number.
fn lock_stmt_mode(mode: i32) -> LockMode {
    match mode {
        1 => LockMode::AccessShare,
        2 => LockMode::RowShare,
        3 => LockMode::RowExclusive,
        4 => LockMode::ShareUpdateExclusive,
        5 => LockMode::Share,
        6 => LockMode::ShareRowExclusive,
        7 => LockMode::Exclusive,
        _ => LockMode::AccessExclusive,
    }
}

fn comment_relation(s: &protobuf::CommentStmt) -> Option<String> {
    let obj = s.object.as_ref()?.node.as_ref()?;
    let names = match obj {
        NodeEnum::List(l) => strings(&l.items),
        NodeEnum::String(s) => vec![s.sval.clone()],
        _ => return None,
    };
    match object_type(s.objtype) {
        ObjectType::ObjectTable
        | ObjectType::ObjectView
        | ObjectType::ObjectMatview
        | ObjectType::ObjectIndex => Some(names.join(".")),
        // COMMENT ON COLUMN t.c / CONSTRAINT c ON t: the table is all but the last name.
        ObjectType::ObjectColumn if names.len() >= 2 => Some(names[..names.len() - 1].join(".")),
        _ => None,
    }
}

mod create;
mod indexes;
mod maintenance;
mod objects;
mod query;
#[cfg(test)]
mod tests;
