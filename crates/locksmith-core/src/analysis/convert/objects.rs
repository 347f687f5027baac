//! `DROP`, `ALTER … RENAME` and `ALTER DOMAIN`: statements about named
//! objects, whose locks depend on what the object is — and which keep the
//! [`Schema`] model in step (a dropped table is forgotten, a renamed column
//! keeps its type).

use pg_query::protobuf::{self, ObjectType};
use pg_query::NodeEnum;

use super::{object_type, Summary};
use crate::analysis::expr::{object_names, range_var, strings};
use crate::analysis::kind::{RenameTarget, StatementKind};
use crate::analysis::schema::Schema;
use crate::lock::LockMode;

pub(super) fn drop_stmt(s: &protobuf::DropStmt, schema: &mut Schema) -> Summary {
    use LockMode::*;
    let names = object_names(&s.objects);
    let object = match object_type(s.remove_type) {
        ObjectType::ObjectTable => "TABLE",
        ObjectType::ObjectIndex => "INDEX",
        ObjectType::ObjectView => "VIEW",
        ObjectType::ObjectMatview => "MATERIALIZED VIEW",
        ObjectType::ObjectSequence => "SEQUENCE",
        ObjectType::ObjectTrigger => "TRIGGER",
        ObjectType::ObjectPolicy => "POLICY",
        ObjectType::ObjectRule => "RULE",
        ObjectType::ObjectForeignTable => "FOREIGN TABLE",
        _ => "OTHER",
    };
    if object == "INDEX" {
        let mut sum = Summary::new(StatementKind::DropIndex {
            indexes: names.clone(),
            concurrently: s.concurrent,
        });
        // The table is locked like the index; we know it when the file created the index.
        let mode = if s.concurrent {
            ShareUpdateExclusive
        } else {
            AccessExclusive
        };
        for index in &names {
            if let Some(table) = schema.indexes.get(index) {
                sum.locks.add(table.clone(), mode);
            }
            sum.locks
                .add(index, if s.concurrent { AccessExclusive } else { mode });
        }
        sum.transactional = !s.concurrent;
        return sum;
    }
    let mut sum = Summary::new(StatementKind::Drop {
        object,
        names: names.clone(),
    });
    match object {
        "TABLE" | "VIEW" | "MATERIALIZED VIEW" | "SEQUENCE" | "FOREIGN TABLE" => {
            for n in &names {
                sum.locks.add(n, AccessExclusive);
                schema.drop_table(n);
            }
        }
        // DROP TRIGGER/POLICY/RULE name ON table: the table is all but the last name.
        "TRIGGER" | "POLICY" | "RULE" => {
            for o in &s.objects {
                if let Some(NodeEnum::List(l)) = &o.node {
                    let parts = strings(&l.items);
                    if parts.len() >= 2 {
                        sum.locks
                            .add(parts[..parts.len() - 1].join("."), AccessExclusive);
                    }
                }
            }
        }
        _ => {}
    }
    sum
}

/// `ALTER DOMAIN`: adding a constraint (or `NOT NULL`) or validating one
/// checks every column of the domain, under a `ShareLock` on each table
/// using it (`get_rels_with_domain`); the tables are known when this file
/// made them.
pub(super) fn alter_domain(s: &protobuf::AlterDomainStmt, schema: &mut Schema) -> Summary {
    let domain = crate::analysis::expr::dotted(&s.type_name);
    let constraint = match (
        s.subtype.as_str(),
        s.def.as_ref().and_then(|d| d.node.as_ref()),
    ) {
        ("C", Some(NodeEnum::Constraint(c))) => {
            Some(crate::analysis::alter_table::constraint_summary(c, &[]))
        }
        ("O", _) => Some(crate::analysis::kind::ConstraintSummary {
            name: None,
            kind: crate::analysis::kind::ConstraintKind::NotNull,
            columns: Vec::new(),
            references: None,
            not_valid: false,
            using_index: None,
            unproven_not_null: Vec::new(),
            definition: "NOT NULL".into(),
        }),
        _ => None,
    };
    let validates = s.subtype == "V" || constraint.as_ref().is_some_and(|c| !c.not_valid);
    if constraint.is_some() {
        schema.domains.insert(domain.clone(), true);
    }
    let mut sum = match constraint {
        Some(constraint) => Summary::new(StatementKind::AddDomainConstraint {
            domain: domain.clone(),
            constraint,
        }),
        None => Summary::new(StatementKind::Other {
            tag: "ALTER DOMAIN".into(),
        }),
    };
    if validates {
        let mut tables: Vec<&String> = schema
            .column_types
            .iter()
            .filter(|(_, (ty, _))| *ty == domain)
            .map(|((table, _), _)| table)
            .collect();
        tables.sort();
        tables.dedup();
        for t in tables {
            sum.locks.add(t, LockMode::Share);
            sum.scan(t);
        }
    }
    sum
}

pub(super) fn rename(s: &protobuf::RenameStmt, schema: &mut Schema) -> Summary {
    use LockMode::*;
    let relation = s.relation.as_ref().map(range_var).unwrap_or_default();
    let (target, mode) = match object_type(s.rename_type) {
        ObjectType::ObjectTable
        | ObjectType::ObjectView
        | ObjectType::ObjectMatview
        | ObjectType::ObjectSequence
        | ObjectType::ObjectForeignTable => (RenameTarget::Relation, AccessExclusive),
        ObjectType::ObjectColumn | ObjectType::ObjectAttribute => {
            (RenameTarget::Column, AccessExclusive)
        }
        // Renaming an index takes SHARE UPDATE EXCLUSIVE since 12.
        ObjectType::ObjectIndex => (RenameTarget::Index, ShareUpdateExclusive),
        ObjectType::ObjectTabconstraint => (RenameTarget::Constraint, AccessExclusive),
        ObjectType::ObjectTrigger | ObjectType::ObjectPolicy | ObjectType::ObjectRule => {
            (RenameTarget::Other, AccessExclusive)
        }
        // A schema rename locks no table, but every query naming it breaks.
        ObjectType::ObjectSchema => {
            return Summary::new(StatementKind::Rename {
                target: RenameTarget::Schema,
                relation: s.subname.clone(),
                new_name: s.newname.clone(),
            });
        }
        _ => (RenameTarget::Other, AccessShare),
    };
    match target {
        RenameTarget::Column => schema.rename_column(&relation, &s.subname, &s.newname),
        RenameTarget::Relation => schema.rename_table(&relation, &s.newname),
        _ => {}
    }
    let mut sum = Summary::new(StatementKind::Rename {
        target,
        relation: relation.clone(),
        new_name: s.newname.clone(),
    });
    // Renames of non-relations (functions, schemas …) lock no table.
    if !(relation.is_empty() || target == RenameTarget::Other && mode == AccessShare) {
        sum.locks.add(&relation, mode);
    }
    sum
}
