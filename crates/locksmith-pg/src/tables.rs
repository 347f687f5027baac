//! Table sizes from the catalog, for `lint --database-url`: how big is each
//! table a migration rewrites or scans.
//!
//! Linting must never join the lock queue it warns about: `pg_table_size`
//! opens the table (`AccessShareLock`), which waits behind a pending
//! `ALTER TABLE` — so each size is read in a read-only transaction under a
//! short `lock_timeout`, and one that would wait is reported as unknown.

use std::collections::BTreeMap;
use std::time::Duration;

use locksmith_core::lint::live::TableFacts;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::Error;

/// How long reading a table's size may wait for its lock before the size is "unknown".
pub const SIZE_LOCK_TIMEOUT: Duration = Duration::from_secs(1);

/// Rows (estimate) and size of each named relation that exists, keyed by the name as given.
pub async fn facts(
    client: &Client,
    names: &[String],
) -> Result<BTreeMap<String, TableFacts>, Error> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    // Planner row estimate and oid per name, as the search_path resolves it (reads pg_class only, no lock).
    let rows = client
        .query(
            "SELECT n.name, c.oid, c.reltuples::bigint
             FROM unnest($1::text[]) AS n(name)
             JOIN pg_class c ON c.oid = to_regclass(n.name)",
            &[&names],
        )
        .await
        .map_err(|e| Error::query("reading table row estimates", e))?;
    let mut out = BTreeMap::new();
    for r in rows {
        let bytes = size(client, r.get(1)).await?;
        out.insert(
            r.get(0),
            TableFacts {
                rows: r.get(2),
                bytes,
            },
        );
    }
    Ok(out)
}

/// `pg_table_size` of one table, or `None` when its lock is not granted
/// within [`SIZE_LOCK_TIMEOUT`].
async fn size(client: &Client, oid: u32) -> Result<Option<i64>, Error> {
    let context = "reading a table's size";
    client
        .batch_execute(&format!(
            "BEGIN READ ONLY; SET LOCAL lock_timeout = '{}ms'",
            SIZE_LOCK_TIMEOUT.as_millis()
        ))
        .await
        .map_err(|e| Error::query(context, e))?;
    // Heap, TOAST and free-space map of the table.
    let result = client
        .query_one("SELECT pg_table_size($1::oid::regclass)", &[&oid])
        .await;
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    client
        .batch_execute(end)
        .await
        .map_err(|e| Error::query(context, e))?;
    match result {
        Ok(row) => Ok(row.get(0)),
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => Ok(None),
        Err(e) => Err(Error::query(context, e)),
    }
}
