//! The catalog facts `lint --database-url` judges a migration with: the
//! columns, types and domains of the tables it names (so a type change is
//! known to rewrite or not), and how big each table it rewrites or scans is
//! (rows, bytes, and the keys of its indexes, which a rewrite rebuilds).
//!
//! Linting must never join the lock queue it warns about: `pg_table_size`
//! opens the table (`AccessShareLock`), which waits behind a pending
//! `ALTER TABLE` — so each size is read in a read-only transaction under a
//! short `lock_timeout`, and one that would wait is reported as unknown.
//! Every read here runs in such a transaction (`SET LOCAL`, never a session
//! setting): correct with or without a pooler, and nothing stays behind.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::Connection;
use locksmith_core::analysis::Schema;
use locksmith_core::hold::{KeyKind, TableFacts};
use tokio_postgres::error::SqlState;

use crate::Error;

/// How long reading a table's size may wait for its lock before the size is "unknown".
pub const SIZE_LOCK_TIMEOUT: Duration = Duration::from_secs(1);

/// Opens a read-only transaction whose lock requests give up after
/// [`SIZE_LOCK_TIMEOUT`]. Everything is per transaction (`SET LOCAL`), so it
/// holds with or without a pooler in between, and nothing stays on the
/// session (or, through a transaction pooler, on another client's backend).
async fn begin_read_only(client: &Connection, context: &str) -> Result<(), Error> {
    client
        .batch_execute(&format!(
            "BEGIN READ ONLY; SET LOCAL lock_timeout = '{}ms'",
            SIZE_LOCK_TIMEOUT.as_millis()
        ))
        .await
        .map_err(|e| Error::query(context.to_string(), e))
}

/// Ends the transaction [`begin_read_only`] opened: `COMMIT` after `result`
/// succeeded, else `ROLLBACK`; then hands `result` back.
async fn end<T>(
    client: &Connection,
    context: &str,
    result: Result<T, tokio_postgres::Error>,
) -> Result<Result<T, tokio_postgres::Error>, Error> {
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    client
        .batch_execute(end)
        .await
        .map_err(|e| Error::query(context.to_string(), e))?;
    Ok(result)
}

/// The named relations that are partitioned tables (`relkind = 'p'`), as
/// given: PostgreSQL builds no index `CONCURRENTLY` on one, so an online
/// plan must go partition by partition.
pub async fn partitioned(client: &Connection, names: &[String]) -> Result<Vec<String>, Error> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    // Catalog rows only: no lock on the tables.
    let rows = client
        .query(
            "SELECT n.name FROM unnest($1::text[]) AS n(name)
             JOIN pg_class c ON c.oid = to_regclass(n.name)
             WHERE c.relkind = 'p'",
            &[&names],
        )
        .await
        .map_err(|e| Error::query("reading which tables are partitioned", e))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Rows (estimate), size, index keys and fixed-width columns of each named
/// relation that exists, keyed by the name as given.
pub async fn facts(
    client: &Connection,
    names: &[String],
) -> Result<BTreeMap<String, TableFacts>, Error> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let context = "reading table row estimates";
    begin_read_only(client, context).await?;
    // Per name, as the search_path resolves it: the planner's row estimate,
    // its fixed-width columns, and per index whether its key is all
    // fixed-width columns (no expression) — catalog rows only, no lock.
    let rows = client
        .query(
            "SELECT n.name, c.oid, c.reltuples::bigint,
                    ARRAY(SELECT a.attname::text FROM pg_attribute a
                          WHERE a.attrelid = c.oid AND a.attnum > 0
                            AND NOT a.attisdropped AND a.attlen > 0),
                    ARRAY(SELECT i.indexprs IS NULL AND NOT EXISTS (
                                   SELECT FROM unnest(i.indkey::int2[]) AS k(attnum)
                                   JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
                                   WHERE a.attlen < 0)
                          FROM pg_index i WHERE i.indrelid = c.oid)
             FROM unnest($1::text[]) AS n(name)
             JOIN pg_class c ON c.oid = to_regclass(n.name)",
            &[&names],
        )
        .await;
    let rows = end(client, context, rows)
        .await?
        .map_err(|e| Error::query(context, e))?;
    let mut out = BTreeMap::new();
    for r in rows {
        let bytes = size(client, r.get(1)).await?;
        let fixed_columns: Vec<String> = r.get(3);
        let indexes: Vec<bool> = r.get(4);
        out.insert(
            r.get(0),
            TableFacts {
                rows: r.get(2),
                bytes,
                indexes: indexes
                    .into_iter()
                    .map(|fixed| {
                        if fixed {
                            KeyKind::Fixed
                        } else {
                            KeyKind::Varlena
                        }
                    })
                    .collect(),
                fixed_columns: fixed_columns.into_iter().collect(),
            },
        );
    }
    Ok(out)
}

/// `pg_table_size` of one table, or `None` when its lock is not granted
/// within [`SIZE_LOCK_TIMEOUT`].
async fn size(client: &Connection, oid: u32) -> Result<Option<i64>, Error> {
    let context = "reading a table's size";
    begin_read_only(client, context).await?;
    // Heap, TOAST and free-space map of the table.
    let result = client
        .query_one("SELECT pg_table_size($1::oid::regclass)", &[&oid])
        .await;
    let result = end(client, context, result).await?;
    match result {
        Ok(row) => Ok(row.get(0)),
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => Ok(None),
        Err(e) => Err(Error::query(context, e)),
    }
}

/// Teaches `schema` what the catalog says about the named relations'
/// columns (types, `NOT NULL`) and about the database's domains.
pub async fn learn_schema(
    client: &Connection,
    names: &[String],
    schema: &mut Schema,
) -> Result<(), Error> {
    let context = "reading the catalog";
    begin_read_only(client, context).await?;
    let read =
        async { Ok::<_, Error>((columns(client, names).await?, domains(client).await?)) }.await;
    let end = if read.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = client.batch_execute(end).await;
    let (columns, domains) = read?;
    ended.map_err(|e| Error::query(context, e))?;
    for c in columns {
        schema.learn_column(&c.table, &c.column, &c.type_name, c.modifiers, c.not_null);
    }
    for (name, constrained) in domains {
        schema.learn_domain(&name, constrained);
    }
    Ok(())
}

/// One column as the catalog has it.
struct LiveColumn {
    table: String,
    column: String,
    type_name: String,
    modifiers: Vec<i64>,
    not_null: bool,
}

async fn columns(client: &Connection, names: &[String]) -> Result<Vec<LiveColumn>, Error> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    // Each named relation's live columns: type name, type modifier, NOT NULL (catalog rows only, no lock).
    let rows = client
        .query(
            "SELECT n.name, a.attname::text, t.typname::text, a.atttypmod, a.attnotnull
             FROM unnest($1::text[]) AS n(name)
             JOIN pg_attribute a ON a.attrelid = to_regclass(n.name)
             JOIN pg_type t ON t.oid = a.atttypid
             WHERE a.attnum > 0 AND NOT a.attisdropped",
            &[&names],
        )
        .await
        .map_err(|e| Error::query("reading column types", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let type_name: String = r.get(2);
            LiveColumn {
                table: r.get(0),
                column: r.get(1),
                modifiers: modifiers(&type_name, r.get(3)),
                type_name,
                not_null: r.get(4),
            }
        })
        .collect())
}

async fn domains(client: &Connection) -> Result<Vec<(String, bool)>, Error> {
    // Every user domain, and whether it has a CHECK or NOT NULL constraint.
    let rows = client
        .query(
            "SELECT t.typname::text,
                    t.typnotnull OR EXISTS (SELECT 1 FROM pg_constraint c WHERE c.contypid = t.oid)
             FROM pg_type t
             WHERE t.typtype = 'd'
               AND t.typnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)",
            &[],
        )
        .await
        .map_err(|e| Error::query("reading domains", e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// `atttypmod` as the modifiers written in SQL: `varchar(50)` is stored as
/// 54, `numeric(10,2)` as `(10 << 16 | 2) + 4`; -1 means none.
fn modifiers(type_name: &str, typmod: i32) -> Vec<i64> {
    if typmod < 0 {
        return Vec::new();
    }
    let typmod = i64::from(typmod);
    match type_name {
        "varchar" | "bpchar" => vec![typmod - 4],
        "numeric" => vec![(typmod - 4) >> 16, (typmod - 4) & 0xffff],
        _ => vec![typmod],
    }
}

#[cfg(test)]
mod tests {
    use super::modifiers;

    #[test]
    fn typmods_become_sql_modifiers() {
        assert_eq!(modifiers("varchar", 54), [50]);
        assert_eq!(modifiers("numeric", (10 << 16 | 2) + 4), [10, 2]);
        assert_eq!(modifiers("text", -1), Vec::<i64>::new());
        assert_eq!(modifiers("timestamptz", 3), [3]);
    }
}
