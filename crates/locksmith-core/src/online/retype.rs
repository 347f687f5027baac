//! The online form of `ALTER COLUMN … TYPE` when it rewrites the table: a
//! shadow column of the new type, kept equal to the old one by a trigger,
//! filled in key-range batches, given copies of the column's indexes built
//! `CONCURRENTLY` and its `NOT NULL` through a validated check, then one short
//! swap under the guard (drop the old column, rename the shadow, adopt the
//! indexes as the old names and constraints, move the default and the
//! sequence, re-add the foreign keys and checks `NOT VALID`), then the
//! validations. Why a shadow column and not a shadow table: docs/online.md.
//!
//! What the server knows about the column (its indexes, constraints, the
//! foreign keys that reference it, its default and sequence, and whatever
//! else depends on it) comes in as [`ColumnFacts`], read by `locksmith-pg`
//! and kept for the whole change, so a resumed run plans the same steps.
//! Pure: facts in, units out.

use serde::{Deserialize, Serialize};

use super::alter::{default_name, sibling, valid_index_exists};
use super::Unit;
use crate::analysis::split::{BatchedUpdate, Retyped};
use crate::analysis::{analyze, quote_ident, quote_qualified};
use crate::quote::{literal, split_qualified};

/// What the server says about the column a type change rewrites.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnFacts {
    /// Its type now (`format_type`).
    pub type_sql: String,
    /// Declared `NOT NULL`.
    pub not_null: bool,
    /// Its default (`pg_get_expr`), if any.
    pub default: Option<String>,
    /// Its comment, which the plain statement keeps.
    #[serde(default)]
    pub comment: Option<String>,
    /// Its statistics target, when set (`SET STATISTICS`), which the plain statement keeps.
    #[serde(default)]
    pub statistics: Option<i32>,
    /// Its options (`SET (n_distinct = …)`), as `name=value, …`, which the plain statement keeps.
    #[serde(default)]
    pub options: Option<String>,
    /// The sequence the column owns (a serial), if any.
    pub sequence: Option<OwnedSequence>,
    /// The column is an identity column: how its sequence counts.
    #[serde(default)]
    pub identity: Option<IdentityFact>,
    /// PostgreSQL 18 on: the name of the column's `NOT NULL` constraint,
    /// which the swap gives back to the new column.
    #[serde(default)]
    pub not_null_constraint: Option<String>,
    /// The indexes that use the column.
    pub indexes: Vec<IndexFact>,
    /// `CHECK` and `FOREIGN KEY` constraints of the table that use the column.
    pub constraints: Vec<ConstraintFact>,
    /// Foreign keys of other tables (or this one) that reference the column.
    pub referenced_by: Vec<ConstraintFact>,
    /// What keeps the change from being made online (a view, a generated
    /// column, …), each with what to do; empty when nothing does.
    pub obstacles: Vec<String>,
}

/// A sequence owned by the column.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnedSequence {
    /// Its name, quoted and qualified as `pg_get_serial_sequence` gives it.
    pub name: String,
    /// Its type (`smallint`, `integer`, `bigint`).
    pub type_sql: String,
}

/// An identity column's kind and its sequence's options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityFact {
    /// `GENERATED ALWAYS` (else `BY DEFAULT`).
    pub always: bool,
    /// The sequence, quoted and qualified as `pg_get_serial_sequence` gives it.
    pub sequence: String,
    /// `INCREMENT BY`.
    pub increment: i64,
    /// `CACHE`.
    pub cache: i64,
    /// `CYCLE`.
    pub cycle: bool,
}

/// An index that uses the column.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFact {
    /// Its name, unqualified (it lives in the table's schema).
    pub name: String,
    /// `pg_get_indexdef`.
    pub definition: String,
    /// `PRIMARY KEY` or `UNIQUE` when the index backs that constraint (of the same name).
    pub constraint: Option<String>,
    /// Its comment, and its constraint's: the plain statement keeps both.
    #[serde(default)]
    pub comments: Comments,
    /// The table's replica identity (`REPLICA IDENTITY USING INDEX`).
    #[serde(default)]
    pub replica_identity: bool,
    /// The index the table is clustered on (`CLUSTER ON`).
    #[serde(default)]
    pub clustered: bool,
}

/// The comments on an index and on the constraint it backs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comments {
    /// `COMMENT ON INDEX`.
    pub index: Option<String>,
    /// `COMMENT ON CONSTRAINT`.
    pub constraint: Option<String>,
}

/// A constraint, as `pg_get_constraintdef` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConstraintFact {
    /// The table it is on, quoted and qualified as `regclass` prints it.
    pub table: String,
    /// Its name.
    pub name: String,
    /// `pg_get_constraintdef`.
    pub definition: String,
    /// Already validated (re-added `NOT VALID`, then validated again).
    pub validated: bool,
    /// Its comment: the plain statement keeps it.
    #[serde(default)]
    pub comment: Option<String>,
}

/// The names a type change of `column` uses for its shadow objects.
struct Names {
    shadow: String,
    function: String,
    trigger: String,
    not_null: String,
}

impl Names {
    fn new(table: &str, column: &str) -> Names {
        let bare = split_qualified(table).pop().unwrap_or_default();
        Names {
            shadow: truncated(format!("{column}_locksmith_new")),
            function: sibling(table, &truncated(format!("{bare}_{column}_locksmith_sync"))),
            // Fires last among BEFORE triggers (they fire by name), after any
            // of the application's own that change the column.
            trigger: truncated(format!("zz_locksmith_sync_{column}")),
            not_null: default_name(table, &[column.to_string()], "locksmith_not_null"),
        }
    }
}

fn truncated(mut name: String) -> String {
    while name.len() > 63 {
        name.pop();
    }
    name
}

/// The shadow copy of index `name`.
fn shadow_index(name: &str) -> String {
    truncated(format!("{name}_locksmith_new"))
}

/// The units that change `r.column` of `r.table` to `r.type_sql` online,
/// given what the server says about it; `Err` says why it cannot be done
/// online and what to do, before anything runs.
pub fn units(r: &Retyped, facts: &ColumnFacts, pg_version: u32) -> Result<Vec<Unit>, String> {
    if let Some(first) = facts.obstacles.first() {
        return Err(first.clone());
    }
    let t = quote_qualified(&r.table);
    let c = quote_ident(&r.column);
    let names = Names::new(&r.table, &r.column);
    let s = quote_ident(&names.shadow);
    let bare = split_qualified(&r.table).pop().unwrap_or_default();
    let unit =
        |sqls: Vec<String>, done_when: Option<String>| make_unit(sqls, done_when, pg_version);
    let mut units = Vec::new();

    // 1. The shadow column: no default, no NOT NULL, so adding it rewrites nothing.
    units.push(unit(
        vec![format!("ALTER TABLE {t} ADD COLUMN {s} {}", r.type_sql)],
        None,
    )?);
    // 2. Every write from now on keeps it equal to the old column, converted.
    let converted_new = match &r.using {
        Some(using) => format!(
            "(SELECT {using} FROM (SELECT NEW.*) AS {})",
            quote_ident(&bare)
        ),
        None => format!("NEW.{c}"),
    };
    units.push(unit(
        vec![
            format!(
                "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $locksmith$\nBEGIN\n  NEW.{s} := {converted_new};\n  RETURN NEW;\nEND\n$locksmith$",
                names.function
            ),
            format!(
                "CREATE TRIGGER {} BEFORE INSERT OR UPDATE ON {t} FOR EACH ROW EXECUTE FUNCTION {}()",
                quote_ident(&names.trigger),
                names.function
            ),
        ],
        None,
    )?);
    // 3. The rows already there, in batches: a value that does not convert fails here, before the swap.
    let converted = r.using.clone().unwrap_or_else(|| c.clone());
    let backfill = format!("UPDATE {t} SET {s} = {converted}");
    let mut fill = unit(vec![backfill.clone()], None)?;
    fill.batch = Some(BatchedUpdate {
        table: r.table.clone(),
        update: backfill,
        condition: None,
    });
    // Marks the fill of this change: a value that does not convert undoes it ([`undo`]).
    fill.retype = Some(r.clone());
    units.push(fill);
    // 4. Its indexes, built beside the old ones without blocking writes,
    //    expressions and predicates over the shadow as the plain statement
    //    would parse them again over the new type.
    for index in &facts.indexes {
        let name = shadow_index(&index.name);
        let sql = crate::analysis::index_copy::on_shadow_column(
            &index.definition,
            &r.column,
            &names.shadow,
            &name,
        )
        .map_err(|why| {
            format!(
                "the index {} ({}) cannot be built again on the shadow column: {why}; drop it in a \
                 migration before this one and create it again after, or change the type by hand",
                index.name, index.definition
            )
        })?;
        units.push(unit(
            vec![sql],
            Some(valid_index_exists(&sibling(&r.table, &name))),
        )?);
    }
    // 5. NOT NULL, proven by a check validated under a lock that lets traffic through.
    let k = quote_ident(&names.not_null);
    if facts.not_null {
        units.push(unit(
            vec![format!(
                "ALTER TABLE {t} ADD CONSTRAINT {k} CHECK ({s} IS NOT NULL) NOT VALID"
            )],
            None,
        )?);
        units.push(unit(
            vec![format!("ALTER TABLE {t} VALIDATE CONSTRAINT {k}")],
            None,
        )?);
    }
    // 6. The swap: one short transaction under ACCESS EXCLUSIVE.
    let mut swap = vec![
        format!("DROP TRIGGER {} ON {t}", quote_ident(&names.trigger)),
        format!("DROP FUNCTION {}()", names.function),
    ];
    for fk in &facts.referenced_by {
        swap.push(format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            fk.table,
            quote_ident(&fk.name)
        ));
    }
    // An identity moves to the shadow, its sequence going on where it was:
    // read, dropped with the old identity, made again under the same name.
    // (The shadow needs NOT NULL first; its check proves it without a scan.)
    if let Some(id) = &facts.identity {
        swap.push(format!("ALTER TABLE {t} ALTER COLUMN {s} SET NOT NULL"));
        swap.push(format!(
            "DO $locksmith$\nDECLARE next bigint;\nBEGIN\n  SELECT CASE WHEN is_called THEN last_value + {increment} ELSE last_value END INTO next FROM {seq};\n  ALTER TABLE {t} ALTER COLUMN {c} DROP IDENTITY;\n  EXECUTE format('ALTER TABLE {t_lit} ALTER COLUMN {s_lit} ADD GENERATED {kind} AS IDENTITY (SEQUENCE NAME {seq_lit} START WITH %s RESTART WITH %s INCREMENT BY {increment} CACHE {cache}{cycle})', next, next);\nEND\n$locksmith$",
            increment = id.increment,
            seq = id.sequence,
            t_lit = t.replace('\'', "''"),
            s_lit = s.replace('\'', "''"),
            seq_lit = id.sequence.replace('\'', "''"),
            kind = if id.always { "ALWAYS" } else { "BY DEFAULT" },
            cache = id.cache,
            cycle = if id.cycle { " CYCLE" } else { "" },
        ));
    }
    // The default and the sequence move before the old column goes: dropping
    // it would drop what it owns.
    if let Some(seq) = facts.sequence.as_ref().filter(|_| facts.identity.is_none()) {
        swap.push(format!("ALTER SEQUENCE {} OWNED BY {t}.{s}", seq.name));
        if let Some(wider) = wider_sequence_type(&seq.type_sql, &r.type_sql) {
            swap.push(format!("ALTER SEQUENCE {} AS {wider}", seq.name));
        }
    }
    if let Some(default) = &facts.default {
        swap.push(format!(
            "ALTER TABLE {t} ALTER COLUMN {s} SET DEFAULT {default}"
        ));
    }
    swap.push(format!("ALTER TABLE {t} DROP COLUMN {c}"));
    swap.push(format!("ALTER TABLE {t} RENAME COLUMN {s} TO {c}"));
    if let Some(comment) = &facts.comment {
        swap.push(format!("COMMENT ON COLUMN {t}.{c} IS {}", literal(comment)));
    }
    if let Some(target) = facts.statistics {
        swap.push(format!(
            "ALTER TABLE {t} ALTER COLUMN {c} SET STATISTICS {target}"
        ));
    }
    if let Some(options) = &facts.options {
        swap.push(format!("ALTER TABLE {t} ALTER COLUMN {c} SET ({options})"));
    }
    if facts.not_null {
        swap.push(format!("ALTER TABLE {t} ALTER COLUMN {c} SET NOT NULL"));
        swap.push(format!("ALTER TABLE {t} DROP CONSTRAINT {k}"));
    }
    // PostgreSQL 18 names a NOT NULL constraint after the column it was set
    // on (the shadow, for an identity): the column gets its old name back.
    if let Some(name) = &facts.not_null_constraint {
        swap.push(format!(
            "DO $locksmith$\nDECLARE n name;\nBEGIN\n  SELECT conname INTO n FROM pg_constraint\n   WHERE conrelid = '{t_lit}'::regclass AND contype = 'n'\n     AND conkey = ARRAY[(SELECT attnum FROM pg_attribute WHERE attrelid = '{t_lit}'::regclass AND attname = '{c_lit}')];\n  IF n IS NOT NULL AND n <> '{name_lit}' THEN\n    EXECUTE format('ALTER TABLE %s RENAME CONSTRAINT %I TO %I', '{t_lit}'::regclass, n, '{name_lit}');\n  END IF;\nEND\n$locksmith$",
            t_lit = t.replace('\'', "''"),
            c_lit = r.column.replace('\'', "''"),
            name_lit = name.replace('\'', "''"),
        ));
    }
    for index in &facts.indexes {
        let shadow = quote_ident(&shadow_index(&index.name));
        let name = quote_ident(&index.name);
        swap.push(match &index.constraint {
            Some(kind) => {
                format!("ALTER TABLE {t} ADD CONSTRAINT {name} {kind} USING INDEX {shadow}")
            }
            None => format!(
                "ALTER INDEX {} RENAME TO {name}",
                sibling(&r.table, &shadow_index(&index.name))
            ),
        });
        // What the plain statement carries over from the old index.
        if let Some(comment) = &index.comments.index {
            swap.push(format!(
                "COMMENT ON INDEX {} IS {}",
                sibling(&r.table, &index.name),
                literal(comment)
            ));
        }
        if let (Some(comment), Some(_)) = (&index.comments.constraint, &index.constraint) {
            swap.push(format!(
                "COMMENT ON CONSTRAINT {name} ON {t} IS {}",
                literal(comment)
            ));
        }
        if index.replica_identity {
            swap.push(format!(
                "ALTER TABLE {t} REPLICA IDENTITY USING INDEX {name}"
            ));
        }
        if index.clustered {
            swap.push(format!("ALTER TABLE {t} CLUSTER ON {name}"));
        }
        // An index column takes its name from the table column it was built
        // on (a key, or a cast of it) and keeps it when that column is
        // renamed: the plain statement's index says `id`, the shadow's
        // `id_locksmith_new` until renamed here (run through EXECUTE: the
        // guard locks tables, and this names an index).
        swap.push(format!(
            "DO $locksmith$\nBEGIN\n  IF EXISTS (SELECT FROM pg_attribute WHERE attrelid = {index_lit}::regclass AND attname = {shadow_lit}) THEN\n    EXECUTE format('ALTER TABLE %s RENAME COLUMN %I TO %I', {index_lit}::regclass, {shadow_lit}, {column_lit});\n  END IF;\nEND\n$locksmith$",
            index_lit = literal(&sibling(&r.table, &index.name)),
            shadow_lit = literal(&names.shadow),
            column_lit = literal(&r.column),
        ));
    }
    let mut validate = Vec::new();
    for con in facts.constraints.iter().chain(&facts.referenced_by) {
        let definition = con.definition.trim_end_matches(" NOT VALID");
        swap.push(format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {definition} NOT VALID",
            con.table,
            quote_ident(&con.name)
        ));
        if let Some(comment) = &con.comment {
            swap.push(format!(
                "COMMENT ON CONSTRAINT {} ON {} IS {}",
                quote_ident(&con.name),
                con.table,
                literal(comment)
            ));
        }
        if con.validated {
            validate.push(format!(
                "ALTER TABLE {} VALIDATE CONSTRAINT {}",
                con.table,
                quote_ident(&con.name)
            ));
        }
    }
    units.push(unit(swap, None)?);
    // 7. The constraints re-added NOT VALID are checked again, under locks that let traffic through.
    for sql in validate {
        units.push(unit(vec![sql], None)?);
    }
    Ok(units)
}

/// The unit that removes what the steps before the swap added (the
/// trigger, its function, the shadow column with its indexes and check),
/// leaving the table as it was before the change.
pub fn undo(r: &Retyped, pg_version: u32) -> Result<Unit, String> {
    let t = quote_qualified(&r.table);
    let names = Names::new(&r.table, &r.column);
    make_unit(
        vec![
            format!(
                "DROP TRIGGER IF EXISTS {} ON {t}",
                quote_ident(&names.trigger)
            ),
            format!("DROP FUNCTION IF EXISTS {}()", names.function),
            format!(
                "ALTER TABLE {t} DROP COLUMN IF EXISTS {}",
                quote_ident(&names.shadow)
            ),
        ],
        None,
        pg_version,
    )
}

/// The shadow column a type change of `r` adds.
pub fn shadow_column(r: &Retyped) -> String {
    Names::new(&r.table, &r.column).shadow
}

/// Whether `unit` is one of the steps before the swap of the type change
/// `r` (they all name its shadow column or its trigger).
pub fn belongs(r: &Retyped, unit: &Unit) -> bool {
    let names = Names::new(&r.table, &r.column);
    unit.statements
        .iter()
        .any(|s| s.sql.contains(&names.shadow) || s.sql.contains(&names.trigger))
}

/// The type an owned sequence must be widened to for a column of `column_type`.
fn wider_sequence_type(sequence: &str, column: &str) -> Option<&'static str> {
    let rank = |t: &str| match t {
        "smallint" | "int2" => Some(1),
        "integer" | "int" | "int4" => Some(2),
        "bigint" | "int8" => Some(3),
        _ => None,
    };
    let (s, c) = (rank(sequence)?, rank(column)?);
    (c > s).then_some(match c {
        2 => "integer",
        _ => "bigint",
    })
}

/// A unit of `sqls` (one transaction, unless one of them cannot run in one).
fn make_unit(
    sqls: Vec<String>,
    done_when: Option<String>,
    pg_version: u32,
) -> Result<Unit, String> {
    let mut statements = Vec::new();
    for sql in &sqls {
        match analyze(sql, pg_version) {
            Ok(mut s) if s.len() == 1 => statements.push(s.remove(0)),
            _ => return Err(format!("could not plan `{sql}`; change the type by hand")),
        }
    }
    Ok(Unit {
        transactional: statements.iter().all(|s| s.transactional),
        statements,
        done_when,
        batch: None,
        retype: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retyped(sql: &str) -> Retyped {
        crate::analysis::split::retyped(sql).unwrap()
    }

    fn sqls(units: &[Unit]) -> Vec<String> {
        units
            .iter()
            .flat_map(|u| u.statements.iter().map(|s| s.sql.clone()))
            .collect()
    }

    #[test]
    fn a_primary_key_referenced_by_a_foreign_key_is_swapped_with_its_sequence() {
        let facts = ColumnFacts {
            type_sql: "integer".into(),
            not_null: true,
            default: Some("nextval('accounts_id_seq'::regclass)".into()),
            comment: None,
            statistics: None,
            options: None,
            sequence: Some(OwnedSequence {
                name: "public.accounts_id_seq".into(),
                type_sql: "integer".into(),
            }),
            identity: None,
            not_null_constraint: None,
            indexes: vec![IndexFact {
                name: "accounts_pkey".into(),
                definition: "CREATE UNIQUE INDEX accounts_pkey ON public.accounts USING btree (id)"
                    .into(),
                constraint: Some("PRIMARY KEY".into()),
                ..IndexFact::default()
            }],
            constraints: vec![],
            referenced_by: vec![ConstraintFact {
                table: "payments".into(),
                name: "payments_account_id_fkey".into(),
                definition: "FOREIGN KEY (account_id) REFERENCES accounts(id)".into(),
                validated: true,
                comment: None,
            }],
            obstacles: vec![],
        };
        let units = units(
            &retyped("ALTER TABLE accounts ALTER COLUMN id TYPE bigint"),
            &facts,
            15,
        )
        .unwrap();
        let all = sqls(&units);
        let at = |needle: &str| {
            all.iter()
                .position(|s| s.contains(needle))
                .unwrap_or_else(|| panic!("{needle}: {all:#?}"))
        };
        assert_eq!(
            all[0],
            "ALTER TABLE accounts ADD COLUMN id_locksmith_new bigint"
        );
        assert!(units[2].batch.is_some());
        assert!(all.contains(&"CREATE UNIQUE INDEX CONCURRENTLY accounts_pkey_locksmith_new ON public.accounts USING btree (id_locksmith_new)".to_string()), "{all:#?}");
        // Ownership and default move before the old column is dropped.
        assert!(at("OWNED BY accounts.id_locksmith_new") < at("DROP COLUMN id"));
        assert!(at("AS bigint") < at("DROP COLUMN id"));
        assert!(at("SET DEFAULT nextval") < at("DROP COLUMN id"));
        assert!(at("DROP CONSTRAINT payments_account_id_fkey") < at("DROP COLUMN id"));
        assert!(at("PRIMARY KEY USING INDEX accounts_pkey_locksmith_new") > at("RENAME COLUMN"));
        assert!(all.iter().any(|s| s == "ALTER TABLE payments ADD CONSTRAINT payments_account_id_fkey FOREIGN KEY (account_id) REFERENCES accounts(id) NOT VALID"));
        assert_eq!(
            all.last().unwrap(),
            "ALTER TABLE payments VALIDATE CONSTRAINT payments_account_id_fkey"
        );
        // The shadow column never gets the sequence's default while rows are copied.
        let swap = units.iter().position(|u| u.statements.len() > 3).unwrap();
        assert!(sqls(&units[..swap]).iter().all(|s| !s.contains("nextval")));
    }

    #[test]
    fn an_obstacle_refuses_before_any_step() {
        let facts = ColumnFacts {
            obstacles: vec!["view v depends on it".into()],
            ..ColumnFacts::default()
        };
        let e = units(
            &retyped("ALTER TABLE t ALTER COLUMN c TYPE bigint"),
            &facts,
            15,
        )
        .unwrap_err();
        assert!(e.contains("view v"));
    }

    #[test]
    fn sequences_widen_only_to_a_wider_integer() {
        assert_eq!(wider_sequence_type("integer", "bigint"), Some("bigint"));
        assert_eq!(wider_sequence_type("bigint", "bigint"), None);
        assert_eq!(wider_sequence_type("integer", "numeric"), None);
    }
}
