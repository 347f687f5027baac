//! The catalog queries the tracer runs between statements, one per function,
//! each reading only: user relations with their data files, a backend's
//! relation locks, user constraints, and the backend's pid and server version.
//!
//! "User" means every schema but `pg_catalog`, `information_schema`, the
//! TOAST and temporary schemas: the locks a statement takes on system
//! catalogs are noise for someone deciding whether a migration is safe.

use std::collections::HashMap;

use crate::Connection;
use locksmith_core::lock::LockMode;

use crate::Error;

/// The schemas a lock or rewrite is never reported in.
const SYSTEM_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

/// One relation of a user schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    /// The name as a statement would write it: `name` in `public`, else `schema.name`.
    pub name: String,
    /// `pg_class.relkind`: `r` table, `p` partitioned, `i`/`I` index, `S` sequence, `m`, `v`, `f`.
    pub kind: char,
    /// `pg_class.relfilenode`: a new one means the data was rewritten.
    pub filenode: i64,
}

impl Relation {
    /// A table-like relation: what `LOCK TABLE` accepts and what lint names.
    pub fn is_table(&self) -> bool {
        matches!(self.kind, 'r' | 'p' | 'v' | 'm' | 'f')
    }
}

/// One constraint of a user table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// Its table's oid.
    pub table: i64,
    /// Its name.
    pub name: String,
    /// `pg_constraint.contype`.
    pub kind: char,
    /// `pg_constraint.convalidated`.
    pub validated: bool,
}

/// One relation lock of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lock {
    /// The relation's oid.
    pub oid: i64,
    /// The mode.
    pub mode: LockMode,
    /// Held (true) or waited for (false).
    pub granted: bool,
}

fn first_char(s: &str) -> char {
    s.chars().next().unwrap_or('?')
}

/// Every relation of the user schemas with its kind and data file, by oid.
pub async fn relations(client: &Connection) -> Result<HashMap<i64, Relation>, Error> {
    let sql = format!(
        "SELECT c.oid::int8, n.nspname::text, c.relname::text, c.relkind::text, c.relfilenode::int8 \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {SYSTEM_SCHEMAS}"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| Error::query("reading the user relations (pg_class)", e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let schema: String = r.get(1);
            let name: String = r.get(2);
            let name = if schema == "public" {
                name
            } else {
                format!("{schema}.{name}")
            };
            let kind: String = r.get(3);
            (
                r.get::<_, i64>(0),
                Relation {
                    name,
                    kind: first_char(&kind),
                    filenode: r.get(4),
                },
            )
        })
        .collect())
}

/// The relation locks (held and awaited) of backend `pid` in the current database.
pub async fn locks(client: &Connection, pid: i32) -> Result<Vec<Lock>, Error> {
    let rows = client
        .query(
            "SELECT relation::int8, mode, granted FROM pg_locks \
             WHERE locktype = 'relation' AND pid = $1 \
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[&pid],
        )
        .await
        .map_err(|e| Error::query("reading the backend's locks (pg_locks)", e))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some(Lock {
                oid: r.get(0),
                mode: LockMode::from_pg_name(r.get(1))?,
                granted: r.get(2),
            })
        })
        .collect())
}

/// Whether backend `pid` waits for any heavyweight lock (relation, transaction, …).
pub async fn waiting(client: &Connection, pid: i32) -> Result<bool, Error> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted)",
            &[&pid],
        )
        .await
        .map_err(|e| Error::query("checking whether the traced statement waits", e))?;
    Ok(row.get(0))
}

/// Every constraint on a user table, with whether it is validated.
pub async fn constraints(client: &Connection) -> Result<Vec<Constraint>, Error> {
    let sql = format!(
        "SELECT con.conrelid::int8, con.conname::text, con.contype::text, con.convalidated \
         FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace \
         WHERE con.conrelid <> 0 AND {SYSTEM_SCHEMAS}"
    );
    let rows = client
        .query(&sql, &[])
        .await
        .map_err(|e| Error::query("reading the user constraints (pg_constraint)", e))?;
    Ok(rows
        .iter()
        .map(|r| Constraint {
            table: r.get(0),
            name: r.get(1),
            kind: first_char(r.get(2)),
            validated: r.get(3),
        })
        .collect())
}

/// This session's backend pid, to find its rows in pg_locks.
pub async fn backend_pid(client: &Connection) -> Result<i32, Error> {
    let row = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(|e| Error::query("reading the backend pid", e))?;
    Ok(row.get(0))
}

/// The server's major version (`server_version_num` / 10000).
pub async fn server_major(client: &Connection) -> Result<u32, Error> {
    let row = client
        .query_one("SELECT current_setting('server_version_num')::int4", &[])
        .await
        .map_err(|e| Error::query("reading the server version", e))?;
    Ok((row.get::<_, i32>(0) / 10000) as u32)
}
