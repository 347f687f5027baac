//! Did a failed attempt of a wrapped tool commit part of its work? Rerunning
//! a tool that committed some statements before it lost a lock race (psql
//! without `-1`, a tool with one transaction per migration) repeats them and
//! can leave a table half-migrated, so `locksmith run` retries only when
//! nothing of the failed attempt was committed.
//!
//! Two signs, both read from the server:
//! - a transaction id one of the tool's sessions held (seen by the session
//!   watch) that ended committed (`txid_status`);
//! - catalog rows (tables, columns, constraints, functions, triggers,
//!   schemas; temporary ones aside) written by a transaction whose id was
//!   assigned during the attempt, and committed: a schema change too quick
//!   for a poll to see.

use crate::Connection;

use crate::Error;

/// A transaction id (64-bit, with epoch) no later than any assigned from now
/// on (the current snapshot's `xmax`): a mark taken before an attempt, for
/// [`committed_since`].
pub async fn next_txid(client: &Connection) -> Result<i64, Error> {
    // The next transaction id to be assigned, without assigning one.
    let row = client
        .query_one("SELECT txid_snapshot_xmax(txid_current_snapshot())", &[])
        .await
        .map_err(|e| Error::query("reading the next transaction id", e))?;
    Ok(row.get(0))
}

/// What committed since `mark` that a rerun would repeat, if anything: one of
/// `xids` (32-bit ids the tool's sessions held) committed, or catalog rows
/// changed by a transaction begun since `mark`.
pub async fn committed_since(
    client: &Connection,
    mark: i64,
    xids: &[i64],
) -> Result<Option<String>, Error> {
    // Which of the sessions' transaction ids committed (32-bit ids widened with the current epoch).
    let row = client
        .query_one(
            "SELECT count(*) FROM unnest($1::bigint[]) AS x,
                 (SELECT txid_snapshot_xmax(txid_current_snapshot()) AS nx) n
             WHERE txid_status((((n.nx >> 32)
                     - CASE WHEN x > (n.nx & 4294967295) THEN 1 ELSE 0 END) << 32) | x)
                   = 'committed'",
            &[&xids],
        )
        .await
        .map_err(|e| Error::query("checking whether the command's transactions committed", e))?;
    let committed: i64 = row.get(0);
    // Both signs are read even when the first already answers: what the
    // catalog shows names the work ("table side_effect"), which a bare count
    // of transactions does not, and the user has to check it before a rerun.
    // Visible (so committed) catalog rows written by a transaction whose id is
    // at or after the mark (32-bit ids compared on the circle; 0-2 are special).
    let row = client
        .query_one(
            "WITH rows AS (
                 SELECT c.xmin, 'table ' || c.oid::regclass::text AS what FROM pg_class c
                   WHERE c.relpersistence <> 't'
                 UNION ALL SELECT a.xmin, 'column ' || a.attname || ' of ' || c.oid::regclass::text
                   FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                   WHERE c.relpersistence <> 't' AND a.attnum > 0
                 UNION ALL SELECT k.xmin, 'constraint ' || k.conname FROM pg_constraint k
                   LEFT JOIN pg_class c ON c.oid = k.conrelid
                   WHERE c.relpersistence IS DISTINCT FROM 't'
                 UNION ALL SELECT p.xmin, 'function ' || p.oid::regprocedure::text FROM pg_proc p
                 UNION ALL SELECT t.xmin, 'trigger ' || t.tgname FROM pg_trigger t
                 UNION ALL SELECT n.xmin, 'schema ' || n.nspname FROM pg_namespace n
                   WHERE n.nspname NOT LIKE 'pg\\_%temp\\_%'
             )
             SELECT string_agg(DISTINCT what, ', ') FROM rows
             WHERE rows.xmin::text::bigint >= 3
               AND (rows.xmin::text::bigint - $1 % 4294967296 + 4294967296) % 4294967296
                   < 2147483648",
            &[&mark],
        )
        .await
        .map_err(|e| Error::query("checking whether the command changed the schema", e))?;
    let schema = row
        .get::<_, Option<String>>(0)
        .map(|what| format!("the schema changed ({what})"));
    let transactions = (committed > 0).then(|| {
        // "1 of its transactions", never "1 of its transaction".
        format!("{committed} of its transactions committed")
    });
    Ok(match (transactions, schema) {
        (Some(t), Some(s)) => Some(format!("{t}; {s}")),
        (t, s) => t.or(s),
    })
}
