//! What the synthetic load reads from the throwaway database's catalog:
//! each user table's columns (typed down to the base type), its unique
//! keys, foreign keys and checks. One query per function.

use std::collections::BTreeMap;

use locksmith_pg::Connection;

use super::values::Column;
use crate::Error;

/// One table as the generator sees it.
#[derive(Debug, Clone)]
pub(super) struct Table {
    /// `oid::regclass::text`: quoted and qualified as needed.
    pub(super) name: String,
    pub(super) columns: Vec<Column>,
    /// Column sets that must be distinct (primary keys, unique indexes).
    pub(super) unique: Vec<Vec<String>>,
    pub(super) foreign: Vec<ForeignKey>,
    /// `CHECK` constraints: (name, expression).
    pub(super) checks: Vec<(String, String)>,
    pub(super) identity_always: bool,
}

#[derive(Debug, Clone)]
pub(super) struct ForeignKey {
    pub(super) columns: Vec<String>,
    pub(super) parent: String,
    pub(super) parent_columns: Vec<String>,
}

// The user tables (not partitions) with their columns, keys and checks.
pub(super) async fn tables(client: &Connection) -> Result<Vec<Table>, Error> {
    let rows = client
        .query(
            "SELECT c.oid::regclass::text, a.attname::text, format_type(a.atttypid, a.atttypmod),
                    b.typname::text, b.typtype::text, b.typcategory::text, a.attnotnull,
                    a.atthasdef OR a.attidentity <> '', a.attgenerated <> '', a.attidentity = 'a'
               FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
               JOIN pg_type t ON t.oid = a.atttypid
               JOIN pg_type b ON b.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
              WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
                AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
              ORDER BY c.oid, a.attnum",
            &[],
        )
        .await
        .map_err(|e| super::synth::sql("reading the tables to load", e))?;
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    for r in rows {
        let name: String = r.get(0);
        let table = tables.entry(name.clone()).or_insert_with(|| Table {
            name,
            columns: Vec::new(),
            unique: Vec::new(),
            foreign: Vec::new(),
            checks: Vec::new(),
            identity_always: false,
        });
        if r.get::<_, bool>(8) {
            continue; // generated columns compute themselves
        }
        table.identity_always |= r.get::<_, bool>(9);
        table.columns.push(Column {
            name: r.get(1),
            declared: r.get(2),
            base: r.get(3),
            typtype: r.get(4),
            category: r.get(5),
            not_null: r.get(6),
            has_default: r.get(7),
        });
    }
    for r in constraints(client).await? {
        let (table, kind, name, def): (String, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        let Some(t) = tables.get_mut(&table) else {
            continue;
        };
        let columns: Vec<String> = r.get(4);
        match kind.as_str() {
            "u" => t.unique.push(columns),
            "f" => t.foreign.push(ForeignKey {
                columns,
                parent: r.get(5),
                parent_columns: r.get(6),
            }),
            "c" => {
                let expr = def
                    .trim_start_matches("CHECK ")
                    .trim_end_matches(" NOT VALID")
                    .to_string();
                t.checks.push((name, expr));
            }
            _ => {}
        }
    }
    Ok(tables.into_values().collect())
}

// Unique indexes (u), foreign keys (f) and checks (c) of user tables, with column names in key order.
async fn constraints(client: &Connection) -> Result<Vec<tokio_postgres::Row>, Error> {
    client
        .query(
            "SELECT x.indrelid::regclass::text, 'u', x.indexrelid::regclass::text, '',
                    ARRAY(SELECT a.attname::text FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(num, ord)
                            JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.num ORDER BY k.ord),
                    '', ARRAY[]::text[]
               FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE x.indisunique AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
             UNION ALL
             SELECT con.conrelid::regclass::text, con.contype::text, con.conname::text, pg_get_constraintdef(con.oid),
                    ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY AS k(num, ord)
                            JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.ord),
                    coalesce(con.confrelid::regclass::text, ''),
                    ARRAY(SELECT a.attname::text FROM unnest(coalesce(con.confkey, '{}')) WITH ORDINALITY AS k(num, ord)
                            JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.ord)
               FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE con.contype IN ('f', 'c') AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .map_err(|e| super::synth::sql("reading the constraints to honour", e))
}
