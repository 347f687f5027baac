//! Table sizes from the catalog, for `lint --database-url`: how big is each
//! table a migration rewrites or scans. Reads only `pg_class`; takes no lock.

use std::collections::BTreeMap;

use locksmith_core::lint::live::TableFacts;
use tokio_postgres::Client;

use crate::Error;

/// Rows (estimate) and size of each named relation that exists, keyed by the name as given.
pub async fn facts(
    client: &Client,
    names: &[String],
) -> Result<BTreeMap<String, TableFacts>, Error> {
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    // Planner row estimate and on-disk size (heap, TOAST, FSM) per name, as the search_path resolves it.
    let rows = client
        .query(
            "SELECT n.name, c.reltuples::bigint, pg_table_size(c.oid)
             FROM unnest($1::text[]) AS n(name)
             JOIN pg_class c ON c.oid = to_regclass(n.name)",
            &[&names],
        )
        .await
        .map_err(|e| Error::query("reading table sizes", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                TableFacts {
                    rows: r.get(1),
                    bytes: r.get(2),
                },
            )
        })
        .collect())
}
