//! `ALTER TABLE` (and `ALTER INDEX`, `ALTER MATERIALIZED VIEW`, …): the lock,
//! rewrite and scan of every subcommand `pg_query` knows.
//!
//! The lock levels transcribe PostgreSQL's `AlterTableGetLockLevel`
//! (`src/backend/commands/tablecmds.c`); a statement holds the strongest lock
//! any of its subcommands needs. A subcommand this table does not know is
//! assumed to take `AccessExclusiveLock` and is reported as
//! [`AlterAction::Unknown`] so a rule can say so. Must not touch anything
//! but the one statement and the [`Schema`] model.

use pg_query::protobuf::{
    self, AlterTableCmd, AlterTableStmt, AlterTableType as T, ConstrType, Constraint,
};
use pg_query::NodeEnum;

use super::convert::Summary;
use super::expr::{self, range_var, strings, type_parts};
use super::kind::{
    AlterAction, Coercion, ColumnDefault, ConstraintKind, ConstraintSummary, StatementKind,
};
use super::schema::Schema;
use crate::lock::LockMode::{self, *};

/// Storage parameters whose change only needs `ShareUpdateExclusiveLock`
/// (their `lockmode` in `reloptions.c`); any other takes `AccessExclusiveLock`.
const LIGHT_RELOPTIONS: &[&str] = &[
    "fillfactor",
    "toast_tuple_target",
    "parallel_workers",
    "vacuum_index_cleanup",
    "vacuum_truncate",
    "log_autovacuum_min_duration",
    "fastupdate",
    "gin_pending_list_limit",
    "deduplicate_items",
    "pages_per_range",
    "autosummarize",
    "n_distinct",
    "n_distinct_inherited",
];

pub(crate) fn summarize(s: &AlterTableStmt, version: u32, schema: &mut Schema) -> Summary {
    let table = s.relation.as_ref().map(range_var).unwrap_or_default();
    let mut sum = Summary::new(StatementKind::Other { tag: String::new() });
    let mut actions = Vec::with_capacity(s.cmds.len());
    let mut mode = None::<LockMode>;
    for cmd in &s.cmds {
        let Some(NodeEnum::AlterTableCmd(cmd)) = &cmd.node else {
            continue;
        };
        let (action, m) = subcommand(cmd, &table, version, schema, &mut sum);
        mode = Some(mode.map_or(m, |x| x.max(m)));
        actions.push(action);
    }
    if let Some(m) = mode {
        // The table first: it is the statement's subject.
        let others = std::mem::take(&mut sum.locks);
        sum.locks.add(&table, m);
        for l in others.into_vec() {
            sum.locks.add(l.relation, l.mode);
        }
    }
    sum.kind = StatementKind::AlterTable { table, actions };
    sum
}

fn other(what: &'static str, mode: LockMode) -> (AlterAction, LockMode) {
    (
        AlterAction::Other {
            what,
            mode,
            rewrites: false,
        },
        mode,
    )
}

fn subcommand(
    cmd: &AlterTableCmd,
    table: &str,
    version: u32,
    schema: &mut Schema,
    sum: &mut Summary,
) -> (AlterAction, LockMode) {
    let subtype = T::try_from(cmd.subtype).unwrap_or(T::Undefined);
    let column = cmd.name.clone();
    match subtype {
        T::AtAddColumn | T::AtAddColumnToView => {
            match cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
                Some(NodeEnum::ColumnDef(def)) => add_column(def, table, version, schema, sum),
                _ => other("ADD COLUMN", AccessExclusive),
            }
        }
        T::AtAlterColumnType => {
            let Some(NodeEnum::ColumnDef(def)) = cmd.def.as_ref().and_then(|d| d.node.as_ref())
            else {
                return other("ALTER COLUMN TYPE", AccessExclusive);
            };
            let new = def.type_name.as_ref().map(type_parts).unwrap_or_default();
            let old = schema
                .column_types
                .get(&(table.to_string(), column.clone()));
            let coercion = coercion(old, &new, def.raw_default.is_some());
            let was_serial = old.is_some_and(|(name, _)| {
                matches!(
                    name.as_str(),
                    "serial" | "serial4" | "smallserial" | "serial2"
                )
            });
            if coercion == Coercion::Rewrite {
                sum.rewrite(table);
            }
            schema
                .column_types
                .insert((table.to_string(), column.clone()), new);
            let type_name = def
                .type_name
                .as_ref()
                .map(expr::type_sql)
                .unwrap_or_default();
            (
                AlterAction::AlterColumnType {
                    column,
                    type_name,
                    coercion,
                    was_serial,
                },
                AccessExclusive,
            )
        }
        T::AtSetNotNull => {
            let proven = schema
                .not_null_checks
                .contains(&(table.to_string(), column.clone()));
            if !proven {
                sum.scan(table);
            }
            schema
                .not_null_checks
                .insert((table.to_string(), column.clone()));
            (AlterAction::SetNotNull { column, proven }, AccessExclusive)
        }
        T::AtColumnDefault => {
            if cmd.def.is_some() {
                (AlterAction::SetDefault { column }, AccessExclusive)
            } else {
                other("DROP DEFAULT", AccessExclusive)
            }
        }
        T::AtAddConstraint
        | T::AtReAddConstraint
        | T::AtReAddDomainConstraint
        | T::AtAddIndexConstraint => match cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
            Some(NodeEnum::Constraint(c)) => add_constraint(c, table, version, schema, sum),
            _ => other("ADD CONSTRAINT", AccessExclusive),
        },
        T::AtValidateConstraint => {
            sum.scan(table);
            if let Some(referenced) = schema.foreign_keys.get(&cmd.name) {
                // Validating a foreign key reads the referenced table too.
                sum.locks.add(referenced.clone(), RowShare);
            }
            if let Some(proved) = schema.pending_not_null_checks.remove(&cmd.name) {
                schema.not_null_checks.insert(proved);
            }
            (
                AlterAction::ValidateConstraint {
                    name: cmd.name.clone(),
                },
                ShareUpdateExclusive,
            )
        }
        T::AtDropConstraint => {
            // A foreign key's triggers on the referenced table go too (traced on 13–18).
            if let Some(referenced) = schema.foreign_keys.remove(&cmd.name) {
                sum.locks.add(referenced, AccessExclusive);
            }
            (
                AlterAction::DropConstraint {
                    name: cmd.name.clone(),
                },
                AccessExclusive,
            )
        }
        T::AtDropColumn => {
            schema.drop_column(table, &column);
            (AlterAction::DropColumn { column }, AccessExclusive)
        }
        T::AtAttachPartition => {
            let partition = partition_name(cmd);
            // The new partition is scanned to prove it fits its bound,
            // unless a matching CHECK constraint already does.
            sum.locks.add(&partition, AccessExclusive);
            sum.scan(&partition);
            (
                AlterAction::AttachPartition { partition },
                ShareUpdateExclusive,
            )
        }
        T::AtDetachPartition => {
            let partition = partition_name(cmd);
            let concurrently = matches!(cmd.def.as_ref().and_then(|d| d.node.as_ref()),
                Some(NodeEnum::PartitionCmd(p)) if p.concurrent);
            if concurrently {
                sum.require(version, 14, "DETACH PARTITION … CONCURRENTLY");
                sum.transactional = false;
            }
            // Traced: 13 detaches under SHARE UPDATE EXCLUSIVE on the partition,
            // 14+ under ACCESS EXCLUSIVE — also CONCURRENTLY, whose second
            // transaction takes it (the parent then gets SHARE UPDATE EXCLUSIVE).
            let parent = if concurrently && version >= 14 {
                ShareUpdateExclusive
            } else {
                AccessExclusive
            };
            let partition_mode = if version >= 14 {
                AccessExclusive
            } else {
                ShareUpdateExclusive
            };
            sum.locks.add(&partition, partition_mode);
            (
                AlterAction::DetachPartition {
                    partition,
                    concurrently,
                },
                parent,
            )
        }
        T::AtDetachPartitionFinalize => {
            let partition = partition_name(cmd);
            sum.require(version, 14, "DETACH PARTITION … FINALIZE");
            sum.locks.add(&partition, ShareUpdateExclusive);
            (
                AlterAction::DetachPartition {
                    partition,
                    concurrently: true,
                },
                ShareUpdateExclusive,
            )
        }
        T::AtSetRelOptions | T::AtResetRelOptions => {
            let heavy = options(cmd)
                .iter()
                .any(|o| !LIGHT_RELOPTIONS.contains(&o.as_str()) && !o.starts_with("autovacuum_"));
            let what = if subtype == T::AtSetRelOptions {
                "SET (storage parameter)"
            } else {
                "RESET (storage parameter)"
            };
            other(
                what,
                if heavy {
                    AccessExclusive
                } else {
                    ShareUpdateExclusive
                },
            )
        }
        T::AtSetStatistics => other("SET STATISTICS", ShareUpdateExclusive),
        T::AtSetOptions => other("ALTER COLUMN SET (attribute option)", ShareUpdateExclusive),
        T::AtResetOptions => other(
            "ALTER COLUMN RESET (attribute option)",
            ShareUpdateExclusive,
        ),
        T::AtClusterOn => other("CLUSTER ON", ShareUpdateExclusive),
        T::AtDropCluster => other("SET WITHOUT CLUSTER", ShareUpdateExclusive),
        T::AtReAddStatistics => other("(re-add statistics)", ShareUpdateExclusive),
        T::AtEnableTrig
        | T::AtEnableAlwaysTrig
        | T::AtEnableReplicaTrig
        | T::AtEnableTrigAll
        | T::AtEnableTrigUser => other("ENABLE TRIGGER", ShareRowExclusive),
        T::AtDisableTrig | T::AtDisableTrigAll | T::AtDisableTrigUser => {
            other("DISABLE TRIGGER", ShareRowExclusive)
        }
        T::AtSetLogged
        | T::AtSetUnLogged
        | T::AtSetTableSpace
        | T::AtSetAccessMethod
        | T::AtSetExpression => {
            let what = match subtype {
                T::AtSetLogged => "SET LOGGED",
                T::AtSetUnLogged => "SET UNLOGGED",
                T::AtSetTableSpace => "SET TABLESPACE",
                T::AtSetAccessMethod => {
                    sum.require(version, 15, "SET ACCESS METHOD");
                    // Tables are `heap` unless created otherwise, and setting the
                    // current access method keeps the data file (traced on 15–18).
                    if cmd.name == "heap" {
                        return other("SET ACCESS METHOD", AccessExclusive);
                    }
                    "SET ACCESS METHOD"
                }
                _ => {
                    sum.require(version, 17, "ALTER COLUMN … SET EXPRESSION");
                    "SET EXPRESSION"
                }
            };
            sum.rewrite(table);
            (
                AlterAction::Other {
                    what,
                    mode: AccessExclusive,
                    rewrites: true,
                },
                AccessExclusive,
            )
        }
        T::AtAddInherit | T::AtDropInherit => {
            if let Some(NodeEnum::RangeVar(parent)) = cmd.def.as_ref().and_then(|d| d.node.as_ref())
            {
                sum.locks.add(range_var(parent), ShareUpdateExclusive);
            }
            other(
                if subtype == T::AtAddInherit {
                    "INHERIT"
                } else {
                    "NO INHERIT"
                },
                AccessExclusive,
            )
        }
        T::AtSetCompression => {
            sum.require(version, 14, "SET COMPRESSION");
            other("SET COMPRESSION", AccessExclusive)
        }
        T::AtDropExpression => other("DROP EXPRESSION", AccessExclusive),
        T::AtDropNotNull => {
            schema
                .not_null_checks
                .remove(&(table.to_string(), column.clone()));
            other("DROP NOT NULL", AccessExclusive)
        }
        T::AtSetStorage => other("SET STORAGE", AccessExclusive),
        T::AtCookedColumnDefault => other("SET DEFAULT", AccessExclusive),
        T::AtAddIndex | T::AtReAddIndex => other("ADD INDEX", AccessExclusive),
        T::AtAlterConstraint => other("ALTER CONSTRAINT", AccessExclusive),
        T::AtReAddComment => other("COMMENT", AccessExclusive),
        T::AtAlterColumnGenericOptions => other("ALTER COLUMN OPTIONS", AccessExclusive),
        T::AtChangeOwner => other("OWNER TO", AccessExclusive),
        T::AtDropOids => other("SET WITHOUT OIDS", AccessExclusive),
        T::AtReplaceRelOptions => other("(replace storage parameters)", AccessExclusive),
        T::AtEnableRule | T::AtEnableAlwaysRule | T::AtEnableReplicaRule => {
            other("ENABLE RULE", AccessExclusive)
        }
        T::AtDisableRule => other("DISABLE RULE", AccessExclusive),
        T::AtAddOf => other("OF", AccessExclusive),
        T::AtDropOf => other("NOT OF", AccessExclusive),
        T::AtReplicaIdentity => other("REPLICA IDENTITY", AccessExclusive),
        T::AtEnableRowSecurity => other("ENABLE ROW LEVEL SECURITY", AccessExclusive),
        T::AtDisableRowSecurity => other("DISABLE ROW LEVEL SECURITY", AccessExclusive),
        T::AtForceRowSecurity => other("FORCE ROW LEVEL SECURITY", AccessExclusive),
        T::AtNoForceRowSecurity => other("NO FORCE ROW LEVEL SECURITY", AccessExclusive),
        T::AtGenericOptions => other("OPTIONS", AccessExclusive),
        T::AtAddIdentity => other("ADD IDENTITY", AccessExclusive),
        T::AtSetIdentity => other("SET (identity option)", AccessExclusive),
        T::AtDropIdentity => other("DROP IDENTITY", AccessExclusive),
        T::Undefined => (
            AlterAction::Unknown {
                subtype: format!("subtype {}", cmd.subtype),
            },
            AccessExclusive,
        ),
    }
}

fn partition_name(cmd: &AlterTableCmd) -> String {
    match cmd.def.as_ref().and_then(|d| d.node.as_ref()) {
        Some(NodeEnum::PartitionCmd(p)) => p.name.as_ref().map(range_var).unwrap_or_default(),
        _ => String::new(),
    }
}

fn options(cmd: &AlterTableCmd) -> Vec<String> {
    let Some(NodeEnum::List(l)) = cmd.def.as_ref().and_then(|d| d.node.as_ref()) else {
        return Vec::new();
    };
    l.items
        .iter()
        .filter_map(|i| match &i.node {
            Some(NodeEnum::DefElem(d))
                if d.defnamespace.is_empty() || d.defnamespace == "toast" =>
            {
                Some(d.defname.to_ascii_lowercase())
            }
            _ => None,
        })
        .collect()
}

const SERIAL: &[&str] = &[
    "serial",
    "serial4",
    "bigserial",
    "serial8",
    "smallserial",
    "serial2",
];

fn add_column(
    def: &protobuf::ColumnDef,
    table: &str,
    version: u32,
    schema: &mut Schema,
    sum: &mut Summary,
) -> (AlterAction, LockMode) {
    let column = def.colname.clone();
    let parts = def.type_name.as_ref().map(type_parts).unwrap_or_default();
    let serial = SERIAL.contains(&parts.0.as_str());
    let mut default = expr::classify_default(def.raw_default.as_deref());
    let (mut identity, mut generated_stored, mut not_null) = (false, false, def.is_not_null);
    let mut constraints = Vec::new();
    for c in &def.constraints {
        let Some(NodeEnum::Constraint(c)) = &c.node else {
            continue;
        };
        match ConstrType::try_from(c.contype).unwrap_or(ConstrType::Undefined) {
            ConstrType::ConstrDefault => default = expr::classify_default(c.raw_expr.as_deref()),
            ConstrType::ConstrIdentity => identity = true,
            ConstrType::ConstrGenerated => {
                // 18 made VIRTUAL the default; pg_query marks STORED with 's'.
                if c.generated_kind == "s" {
                    generated_stored = true;
                } else {
                    sum.require(version, 18, "virtual generated columns");
                }
            }
            ConstrType::ConstrNotnull => not_null = true,
            _ => {
                // An inline `REFERENCES` names no column of its own: it is this one.
                let mut c = c.clone();
                if c.contype == ConstrType::ConstrForeign as i32 && c.fk_attrs.is_empty() {
                    c.fk_attrs.push(protobuf::Node {
                        node: Some(NodeEnum::String(protobuf::String {
                            sval: column.clone(),
                        })),
                    });
                }
                let mut summary = constraint_summary(&c, std::slice::from_ref(&column));
                if summary.columns.is_empty() {
                    summary.columns.push(column.clone());
                }
                constraint_effects(&summary, table, sum);
                constraints.push(summary);
            }
        }
    }
    // A domain with constraints is checked against every row: a rewrite.
    let checked_domain = schema
        .domains
        .get(&parts.0)
        .is_some_and(|checked| *checked)
        .then(|| parts.0.clone());
    if serial
        || identity
        || generated_stored
        || checked_domain.is_some()
        || matches!(default, ColumnDefault::Volatile(_))
    {
        sum.rewrite(table);
    }
    let key = (table.to_string(), column.clone());
    if not_null {
        schema.not_null_checks.insert(key.clone());
    }
    schema.column_types.insert(key, parts);
    let type_name = def
        .type_name
        .as_ref()
        .map(expr::type_sql)
        .unwrap_or_default();
    (
        AlterAction::AddColumn {
            column,
            type_name,
            default,
            serial,
            identity,
            generated_stored,
            not_null,
            constraints,
            checked_domain,
        },
        AccessExclusive,
    )
}

fn add_constraint(
    c: &Constraint,
    table: &str,
    version: u32,
    schema: &mut Schema,
    sum: &mut Summary,
) -> (AlterAction, LockMode) {
    let mut summary = constraint_summary(c, &[]);
    if summary.kind == ConstraintKind::PrimaryKey {
        // ADD PRIMARY KEY sets NOT NULL on its columns: a scan unless proven.
        if let Some(index) = &summary.using_index {
            if let Some(columns) = schema.index_columns.get(index) {
                summary.columns = columns.clone();
            }
        }
        summary.unproven_not_null = summary
            .columns
            .iter()
            .filter(|col| {
                !schema
                    .not_null_checks
                    .contains(&(table.to_string(), col.to_string()))
            })
            .cloned()
            .collect();
        if summary.using_index.is_some() && !summary.unproven_not_null.is_empty() {
            sum.scan(table);
        }
        for col in &summary.columns {
            schema
                .not_null_checks
                .insert((table.to_string(), col.clone()));
        }
    }
    if summary.kind == ConstraintKind::NotNull {
        sum.require(version, 18, "ADD CONSTRAINT … NOT NULL");
    }
    constraint_effects(&summary, table, sum);
    let name = summary.name.clone().unwrap_or_default();
    match summary.kind {
        ConstraintKind::ForeignKey => {
            if let Some(r) = &summary.references {
                schema.foreign_keys.insert(name, r.clone());
            }
        }
        ConstraintKind::Check => {
            if let Some(col) = expr::is_not_null_check(c.raw_expr.as_deref()) {
                let key = (table.to_string(), col);
                if summary.not_valid {
                    schema.pending_not_null_checks.insert(name, key);
                } else {
                    schema.not_null_checks.insert(key);
                }
            }
        }
        _ => {}
    }
    // A foreign key adds triggers on both tables: SHARE ROW EXCLUSIVE, which
    // blocks writes but not reads.
    let mode = if summary.kind == ConstraintKind::ForeignKey {
        ShareRowExclusive
    } else {
        AccessExclusive
    };
    (AlterAction::AddConstraint(summary), mode)
}

/// The locks and scans a new constraint adds beyond the table's own lock.
fn constraint_effects(c: &ConstraintSummary, table: &str, sum: &mut Summary) {
    match c.kind {
        ConstraintKind::ForeignKey => {
            if let Some(r) = &c.references {
                sum.locks.add(r.clone(), ShareRowExclusive);
            }
            if !c.not_valid {
                sum.scan(table);
            }
        }
        ConstraintKind::Check | ConstraintKind::NotNull if !c.not_valid => sum.scan(table),
        // Building the index reads the whole table.
        ConstraintKind::PrimaryKey | ConstraintKind::Unique | ConstraintKind::Exclusion
            if c.using_index.is_none() =>
        {
            sum.scan(table)
        }
        _ => {}
    }
}

pub(crate) fn constraint_summary(c: &Constraint, column: &[String]) -> ConstraintSummary {
    let kind = match ConstrType::try_from(c.contype).unwrap_or(ConstrType::Undefined) {
        ConstrType::ConstrPrimary => ConstraintKind::PrimaryKey,
        ConstrType::ConstrUnique => ConstraintKind::Unique,
        ConstrType::ConstrExclusion => ConstraintKind::Exclusion,
        ConstrType::ConstrForeign => ConstraintKind::ForeignKey,
        ConstrType::ConstrCheck => ConstraintKind::Check,
        ConstrType::ConstrNotnull => ConstraintKind::NotNull,
        _ => ConstraintKind::Other,
    };
    let columns = match kind {
        ConstraintKind::ForeignKey => strings(&c.fk_attrs),
        ConstraintKind::Check => c
            .raw_expr
            .as_ref()
            .and_then(|e| e.node.as_ref())
            .map(expr::columns_in)
            .unwrap_or_default(),
        _ => strings(&c.keys),
    };
    let columns = if columns.is_empty() {
        column.to_vec()
    } else {
        columns
    };
    ConstraintSummary {
        name: (!c.conname.is_empty()).then(|| c.conname.clone()),
        kind,
        columns,
        references: c.pktable.as_ref().map(range_var),
        // NOT ENFORCED (18) constraints are not checked either.
        not_valid: c.skip_validation
            || !c.is_enforced && matches!(kind, ConstraintKind::Check | ConstraintKind::ForeignKey),
        using_index: (!c.indexname.is_empty()).then(|| c.indexname.clone()),
        unproven_not_null: Vec::new(),
        definition: definition(c),
    }
}

/// The constraint as SQL without its name, rendered by PostgreSQL's own
/// deparser from a one-subcommand `ALTER TABLE`.
fn definition(c: &Constraint) -> String {
    let mut c = c.clone();
    c.conname = String::new();
    let stmt = AlterTableStmt {
        relation: Some(protobuf::RangeVar {
            relname: "t".into(),
            inh: true,
            relpersistence: "p".into(),
            ..Default::default()
        }),
        cmds: vec![protobuf::Node {
            node: Some(NodeEnum::AlterTableCmd(Box::new(AlterTableCmd {
                subtype: T::AtAddConstraint as i32,
                def: Some(Box::new(protobuf::Node {
                    node: Some(NodeEnum::Constraint(Box::new(c))),
                })),
                behavior: protobuf::DropBehavior::DropRestrict as i32,
                ..Default::default()
            }))),
        }],
        objtype: protobuf::ObjectType::ObjectTable as i32,
        missing_ok: false,
    };
    match NodeEnum::AlterTableStmt(stmt).deparse(Default::default()) {
        Ok(sql) => sql
            .strip_prefix("ALTER TABLE t ADD ")
            .unwrap_or(&sql)
            .to_string(),
        Err(_) => String::new(),
    }
}

/// Types a column can be changed to without a rewrite from *some* other
/// type; when the current type is unknown, changing to one of these might
/// be catalog-only.
const MAYBE_BINARY_TARGETS: &[&str] = &[
    "text",
    "varchar",
    "numeric",
    "varbit",
    "inet",
    "timestamptz",
    "citext",
    "bpchar",
];

/// Whether changing a column from `old` (if the file told us) to `new` rewrites.
fn coercion(old: Option<&(String, Vec<i64>)>, new: &(String, Vec<i64>), using: bool) -> Coercion {
    if using {
        return Coercion::Rewrite;
    }
    let Some((old_name, old_mods)) = old else {
        return if MAYBE_BINARY_TARGETS.contains(&new.0.as_str()) {
            Coercion::Unknown
        } else {
            Coercion::Rewrite
        };
    };
    let (new_name, new_mods) = (new.0.as_str(), &new.1);
    let widened = |i: usize| match (old_mods.get(i), new_mods.get(i)) {
        (_, None) => true,
        (Some(o), Some(n)) => n >= o,
        (None, Some(_)) => false,
    };
    match (old_name.as_str(), new_name) {
        (o, n) if o == n && old_mods == new_mods => Coercion::Binary,
        ("varchar" | "text" | "citext", "text") => Coercion::Binary,
        ("varchar" | "text", "varchar") if new_mods.is_empty() => Coercion::Binary,
        ("varchar", "varchar") | ("varbit", "varbit") if widened(0) => Coercion::Binary,
        // numeric(p, s) → numeric(p', s) with p' ≥ p, or unconstrained numeric
        // (a missing scale is 0: `numeric(10)` is `numeric(10,0)`).
        ("numeric", "numeric")
            if new_mods.is_empty()
                || (widened(0)
                    && !old_mods.is_empty()
                    && old_mods.get(1).unwrap_or(&0) == new_mods.get(1).unwrap_or(&0)) =>
        {
            Coercion::Binary
        }
        ("cidr", "inet") => Coercion::Binary,
        // Catalog-only when the session TimeZone is UTC (12+), else rewritten.
        ("timestamp", "timestamptz") => Coercion::Unknown,
        _ => Coercion::Rewrite,
    }
}
