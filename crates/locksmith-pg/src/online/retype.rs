//! What the server knows about a column whose type change rewrites the
//! table ([`ColumnFacts`]), read from the catalog, and the expansion of a
//! migration's type-change units into their shadow-column units
//! ([`locksmith_core::online::retype`]).
//!
//! The facts are kept in `locksmith_online_steps` (a row of their own,
//! `unit` below zero) by the first unit of the change, in its transaction:
//! a resumed run plans from the same facts, whatever the swap has changed
//! since, so it meets the steps it recorded. Until that unit commits nothing
//! is kept, and nothing of the change exists.
//!
//! Reads only catalog rows: no lock on the tables.

use locksmith_core::online::retype::{self, ColumnFacts, ConstraintFact, IndexFact, OwnedSequence};
use locksmith_core::online::{Retyped, Unit};
use locksmith_core::quote::{literal, qualified};

use locksmith_core::analysis::{AlterAction, Statement, StatementKind};

use super::STEPS_TABLE;
use crate::{Connection, Error};

/// A type change that cannot be made online.
#[derive(Debug)]
pub struct Refused {
    /// The statement.
    pub statement: locksmith_core::analysis::Statement,
    /// Why, and what to do.
    pub why: String,
}

/// `units` of migration `version` with each type change expanded into its
/// shadow-column units, planned from the facts an earlier run kept, else
/// from the catalog now; `Ok(Err((unit, why)))` when one cannot be done
/// online (nothing has run).
/// Facts are kept per statement of the migration (`statements`, its
/// position there; by unit when the caller has no migration, a rehearsal).
pub async fn expand(
    client: &Connection,
    version: i64,
    units: Vec<Unit>,
    statements: &[Statement],
    pg_version: u32,
) -> Result<Result<Vec<Unit>, Refused>, Error> {
    if units.iter().all(|u| u.unexpanded().is_none()) {
        return Ok(Ok(units));
    }
    let mut out = Vec::with_capacity(units.len());
    for (i, unit) in units.into_iter().enumerate() {
        let Some(r) = unit.unexpanded().cloned() else {
            out.push(unit);
            continue;
        };
        let at = statements
            .iter()
            .position(|s| s.offset == unit.statements[0].offset && s.sql == unit.statements[0].sql)
            .unwrap_or(i);
        let key = -1 - at as i32;
        let facts = match kept(client, version, key).await? {
            Some(facts) => facts,
            None => read(client, &r).await?,
        };
        let refused = |why| {
            Ok(Err(Refused {
                statement: unit.statements[0].clone(),
                why,
            }))
        };
        let mut expanded = match retype::units(&r, &facts, pg_version) {
            Ok(units) => units,
            Err(why) => return refused(why),
        };
        for fill in expanded.iter().filter_map(|u| u.batch.as_ref()) {
            if let Some(why) = super::unbatchable(client, fill).await? {
                return refused(why);
            }
        }
        {
            // Kept by the first unit's own transaction: no facts without a
            // change begun. (Planned on resumption too: the unit is the same.)
            let json = serde_json::to_string(&facts).unwrap_or_default();
            let keep = format!(
                "INSERT INTO {STEPS_TABLE} (version, unit, done, facts) VALUES ({version}, {key}, false, {}) ON CONFLICT DO NOTHING",
                literal(&json)
            );
            let Ok(mut statement) = locksmith_core::analysis::analyze(&keep, pg_version) else {
                return Ok(Err(Refused {
                    statement: unit.statements[0].clone(),
                    why: "could not plan keeping the column's facts".into(),
                }));
            };
            expanded[0].statements.append(&mut statement);
        }
        out.extend(expanded);
    }
    Ok(Ok(out))
}

/// The table of `s` when it is a one-subcommand `ALTER COLUMN … TYPE`.
pub fn type_change(s: &Statement) -> Option<String> {
    match &s.kind {
        StatementKind::AlterTable { table, actions }
            if matches!(actions.as_slice(), [AlterAction::AlterColumnType { .. }]) =>
        {
            Some(table.clone())
        }
        _ => None,
    }
}

/// The statements (positions in the migration) of migration `version` whose
/// type change an earlier run began: it keeps their facts.
pub async fn kept_statements(client: &Connection, version: i64) -> Result<Vec<usize>, Error> {
    // The kept facts' rows (unit -1 - position) of this migration, if the progress table has them.
    let rows = client
        .query(
            &format!("SELECT -1 - unit FROM {STEPS_TABLE} WHERE version = $1 AND unit < 0 AND facts IS NOT NULL"),
            &[&version],
        )
        .await;
    match rows {
        Ok(rows) => Ok(rows.iter().map(|r| r.get::<_, i32>(0) as usize).collect()),
        Err(e)
            if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
                || e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_COLUMN) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(Error::query(format!("reading {STEPS_TABLE}"), e)),
    }
}

/// Whether the shadow column of type change `r` is there (the change began
/// and has not been swapped in).
pub async fn shadow_exists(client: &Connection, r: &Retyped) -> Result<bool, Error> {
    // The shadow column, not dropped.
    client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = $2 AND NOT attisdropped)",
            &[&qualified(&r.table), &retype::shadow_column(r)],
        )
        .await
        .map(|row| row.get(0))
        .map_err(|e| Error::query(format!("looking for the shadow column of {}", r.table), e))
}

/// The facts an earlier run of migration `version` kept for its type change `key`.
async fn kept(client: &Connection, version: i64, key: i32) -> Result<Option<ColumnFacts>, Error> {
    // The facts the first unit of the change recorded, if the progress table has them.
    let row = client
        .query_opt(
            &format!("SELECT facts FROM {STEPS_TABLE} WHERE version = $1 AND unit = $2"),
            &[&version, &key],
        )
        .await;
    let row = match row {
        Ok(row) => row,
        // No progress table (or an old one without the column): nothing kept.
        Err(e)
            if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE)
                || e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_COLUMN) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(Error::query(format!("reading {STEPS_TABLE}"), e)),
    };
    Ok(row
        .and_then(|r| r.get::<_, Option<String>>(0))
        .and_then(|json| serde_json::from_str(&json).ok()))
}

/// What the catalog says about the column `r` changes.
pub async fn read(client: &Connection, r: &Retyped) -> Result<ColumnFacts, Error> {
    let table = qualified(&r.table);
    let column = column(client, &table, &r.column).await?;
    let mut facts = ColumnFacts {
        type_sql: column.type_sql,
        not_null: column.not_null,
        default: column.default,
        comment: column.comment,
        statistics: column.statistics,
        options: column.options,
        ..ColumnFacts::default()
    };
    facts.obstacles.extend(column.obstacles);
    facts.sequence = sequence(client, &table, &r.column).await?;
    facts.identity = identity(client, &table, &r.column).await?;
    facts.not_null_constraint = not_null_constraint(client, &table, column.attnum).await?;
    facts.indexes = indexes(client, &table, column.attnum).await?;
    let (constraints, obstacles) = constraints(client, &table, column.attnum).await?;
    facts.constraints = constraints;
    facts.obstacles.extend(obstacles);
    facts.referenced_by = referenced_by(client, &table, column.attnum).await?;
    facts
        .obstacles
        .extend(dependents(client, &table, column.attnum).await?);
    Ok(facts)
}

struct Column {
    type_sql: String,
    not_null: bool,
    default: Option<String>,
    comment: Option<String>,
    statistics: Option<i32>,
    options: Option<String>,
    attnum: i16,
    obstacles: Vec<String>,
}

async fn column(client: &Connection, table: &str, name: &str) -> Result<Column, Error> {
    // The column's type, NOT NULL, default, comment, statistics target and options, and what about it or its table has no online form.
    let row = client
        .query_opt(
            "SELECT format_type(a.atttypid, a.atttypmod), a.attnotnull,
                    pg_get_expr(d.adbin, d.adrelid), a.attnum,
                    a.attgenerated <> '', a.attidentity <> '', c.relkind::text,
                    EXISTS (SELECT FROM pg_inherits WHERE inhrelid = c.oid OR inhparent = c.oid),
                    col_description(a.attrelid, a.attnum), a.attacl IS NOT NULL,
                    CASE WHEN a.attstattarget >= 0 THEN a.attstattarget::int END,
                    array_to_string(a.attoptions, ', ')
               FROM pg_attribute a
               JOIN pg_class c ON c.oid = a.attrelid
               LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND NOT a.attisdropped",
            &[&table, &name],
        )
        .await
        .map_err(|e| Error::query(format!("reading the column {name} of {table}"), e))?;
    let Some(row) = row else {
        return Ok(Column {
            type_sql: String::new(),
            not_null: false,
            default: None,
            comment: None,
            statistics: None,
            options: None,
            attnum: 0,
            obstacles: vec![format!(
                "{table} has no column {name} (yet): a type change planned online needs the column to exist when it is planned"
            )],
        });
    };
    let mut obstacles = Vec::new();
    if row.get::<_, bool>(4) {
        obstacles.push(format!(
            "{name} is a generated column: its values come from its expression, not from a copy; change it by hand (drop and add it again) in a migration of its own"
        ));
    }
    if row.get::<_, bool>(9) {
        obstacles.push(format!(
            "{name} has column privileges (GRANT … ({name}) ON {table}), which would go with the old column: revoke them in a migration before this one and grant them again after, or change the type by hand"
        ));
    }
    match row.get::<_, String>(6).as_str() {
        "p" => obstacles.push(format!(
            "{table} is partitioned: its partitions hold the rows; change the type partition by partition, or by hand"
        )),
        _ if row.get::<_, bool>(7) => obstacles.push(format!(
            "{table} inherits or is inherited from: the column is shared along the hierarchy; change it by hand"
        )),
        _ => {}
    }
    Ok(Column {
        type_sql: row.get(0),
        not_null: row.get(1),
        default: row.get(2),
        comment: row.get(8),
        statistics: row.get(10),
        options: row.get(11),
        attnum: row.get(3),
        obstacles,
    })
}

async fn sequence(
    client: &Connection,
    table: &str,
    column: &str,
) -> Result<Option<OwnedSequence>, Error> {
    // The sequence the column owns (a serial's), and its type.
    let row = client
        .query_opt(
            "SELECT s.name, format_type(q.seqtypid, NULL)
               FROM (SELECT pg_get_serial_sequence($1, $2) AS name) s
               JOIN pg_sequence q ON q.seqrelid = to_regclass(s.name)",
            &[&table, &column],
        )
        .await
        .map_err(|e| Error::query(format!("reading the sequence of {table}.{column}"), e))?;
    Ok(row.map(|r| OwnedSequence {
        name: r.get(0),
        type_sql: r.get(1),
    }))
}

async fn identity(
    client: &Connection,
    table: &str,
    column: &str,
) -> Result<Option<locksmith_core::online::retype::IdentityFact>, Error> {
    // An identity column's kind, and its sequence's increment, cache and cycle.
    let row = client
        .query_opt(
            "SELECT a.attidentity = 'a', pg_get_serial_sequence($1, $2), q.seqincrement, q.seqcache, q.seqcycle
               FROM pg_attribute a
               JOIN pg_sequence q ON q.seqrelid = to_regclass(pg_get_serial_sequence($1, $2))
              WHERE a.attrelid = to_regclass($1) AND a.attname = $2 AND a.attidentity <> ''",
            &[&table, &column],
        )
        .await
        .map_err(|e| Error::query(format!("reading the identity of {table}.{column}"), e))?;
    Ok(row.map(|r| locksmith_core::online::retype::IdentityFact {
        always: r.get(0),
        sequence: r.get(1),
        increment: r.get(2),
        cache: r.get(3),
        cycle: r.get(4),
    }))
}

async fn indexes(client: &Connection, table: &str, attnum: i16) -> Result<Vec<IndexFact>, Error> {
    // The indexes that use the column (as a key, in INCLUDE, an expression or the predicate), with the PRIMARY KEY or UNIQUE constraint each backs, their comments, and whether the table's replica identity or CLUSTER ON names it.
    let rows = client
        .query(
            "SELECT i.relname::text, pg_get_indexdef(i.oid),
                    CASE con.contype WHEN 'p' THEN 'PRIMARY KEY' WHEN 'u' THEN 'UNIQUE' END,
                    obj_description(i.oid, 'pg_class'), obj_description(con.oid, 'pg_constraint'),
                    x.indisreplident, x.indisclustered
               FROM pg_index x
               JOIN pg_class i ON i.oid = x.indexrelid
               LEFT JOIN pg_constraint con ON con.conindid = i.oid AND con.conrelid = x.indrelid
                    AND con.contype IN ('p', 'u')
              WHERE x.indrelid = to_regclass($1)
                AND ($2 = ANY(x.indkey::int2[])
                     OR EXISTS (SELECT FROM pg_depend d
                                 WHERE d.classid = 'pg_class'::regclass AND d.objid = i.oid
                                   AND d.refclassid = 'pg_class'::regclass
                                   AND d.refobjid = x.indrelid AND d.refobjsubid = $2))
              ORDER BY i.relname",
            &[&table, &attnum],
        )
        .await
        .map_err(|e| Error::query(format!("reading the indexes of {table}"), e))?;
    Ok(rows
        .iter()
        .map(|r| IndexFact {
            name: r.get(0),
            definition: r.get(1),
            constraint: r.get(2),
            comments: locksmith_core::online::retype::Comments {
                index: r.get(3),
                constraint: r.get(4),
            },
            replica_identity: r.get(5),
            clustered: r.get(6),
        })
        .collect())
}

/// PostgreSQL 18 on: the name of the column's `NOT NULL` constraint (none
/// before: no such constraint exists there).
async fn not_null_constraint(
    client: &Connection,
    table: &str,
    attnum: i16,
) -> Result<Option<String>, Error> {
    let row = client
        .query_opt(
            "SELECT conname::text FROM pg_constraint
              WHERE conrelid = to_regclass($1) AND contype = 'n' AND conkey = ARRAY[$2::int2]",
            &[&table, &attnum],
        )
        .await
        .map_err(|e| Error::query(format!("reading the NOT NULL constraint of {table}"), e))?;
    Ok(row.map(|r| r.get(0)))
}

async fn constraints(
    client: &Connection,
    table: &str,
    attnum: i16,
) -> Result<(Vec<ConstraintFact>, Vec<String>), Error> {
    // The table's constraints that use the column, other than the ones its indexes back.
    let rows = client
        .query(
            "SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid), convalidated,
                    contype::text, condeferrable, obj_description(oid, 'pg_constraint')
               FROM pg_constraint
              WHERE conrelid = to_regclass($1) AND $2 = ANY(conkey)
              ORDER BY conname",
            &[&table, &attnum],
        )
        .await
        .map_err(|e| Error::query(format!("reading the constraints of {table}"), e))?;
    let mut kept = Vec::new();
    let mut obstacles = Vec::new();
    for r in &rows {
        let name: String = r.get(1);
        match (r.get::<_, String>(4).as_str(), r.get::<_, bool>(5)) {
            (_, true) => obstacles.push(format!(
                "the constraint {name} is DEFERRABLE, which an index adopted by the swap cannot carry yet: change the type by hand"
            )),
            ("c" | "f", false) => kept.push(ConstraintFact {
                table: r.get(0),
                name,
                definition: r.get(2),
                validated: r.get(3),
                comment: r.get(6),
            }),
            // PostgreSQL 18 keeps NOT NULL as a constraint too ('n'): the
            // column's NOT NULL is carried by the steps (attnotnull).
            ("p" | "u" | "n", false) => {}
            ("x", false) => obstacles.push(format!(
                "the exclusion constraint {name} uses the column: it cannot be rebuilt beside the old one; change the type by hand"
            )),
            (_, false) => obstacles.push(format!(
                "the constraint {name} uses the column and has no online form here: change the type by hand"
            )),
        }
    }
    Ok((kept, obstacles))
}

async fn referenced_by(
    client: &Connection,
    table: &str,
    attnum: i16,
) -> Result<Vec<ConstraintFact>, Error> {
    // Foreign keys that reference the column.
    let rows = client
        .query(
            "SELECT conrelid::regclass::text, conname::text, pg_get_constraintdef(oid), convalidated,
                    obj_description(oid, 'pg_constraint')
               FROM pg_constraint
              WHERE contype = 'f' AND confrelid = to_regclass($1) AND $2 = ANY(confkey)
              ORDER BY conrelid::regclass::text, conname",
            &[&table, &attnum],
        )
        .await
        .map_err(|e| Error::query(format!("reading the foreign keys that reference {table}"), e))?;
    Ok(rows
        .iter()
        .map(|r| ConstraintFact {
            table: r.get(0),
            name: r.get(1),
            definition: r.get(2),
            validated: r.get(3),
            comment: r.get(4),
        })
        .collect())
}

async fn dependents(client: &Connection, table: &str, attnum: i16) -> Result<Vec<String>, Error> {
    // Objects that depend on the column other than its indexes, constraints, default and sequence (views, rules, policies, triggers, statistics).
    let rows = client
        .query(
            "SELECT DISTINCT pg_describe_object(
                        CASE WHEN d.classid = 'pg_rewrite'::regclass THEN 'pg_class'::regclass ELSE d.classid END,
                        CASE WHEN d.classid = 'pg_rewrite'::regclass THEN r.ev_class ELSE d.objid END, 0)
               FROM pg_depend d
               LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
              WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = to_regclass($1)
                AND d.refobjsubid = $2 AND d.deptype IN ('n', 'a')
                AND d.classid NOT IN ('pg_class'::regclass, 'pg_constraint'::regclass, 'pg_attrdef'::regclass)
              ORDER BY 1",
            &[&table, &attnum],
        )
        .await
        .map_err(|e| Error::query(format!("reading what depends on a column of {table}"), e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let what: String = r.get(0);
            format!(
                "{what} depends on the column, and would have to be dropped and created again around the swap: drop it in a migration before this one and create it again after, or change the type by hand"
            )
        })
        .collect())
}
