//! The schema and sizes of a user's live server, read without writing and
//! without any lock stronger than `ACCESS SHARE`: the tables the migration
//! touches and the tables they reference (foreign keys, transitively), as
//! `pg_dump --schema-only` prints them, and their row estimates from
//! `pg_class.reltuples`. Every query runs read-only under a short
//! `lock_timeout`, so a busy server makes this fail fast, never wait.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use locksmith_pg::ConnectionSettings;

use crate::Error;

/// How long any read on the live server may wait for a lock.
const LOCK_TIMEOUT_MS: u32 = 1000;

/// What was read from the live server.
#[derive(Debug, Clone, Default)]
pub struct LiveSchema {
    /// The DDL, ready to run on a throwaway database.
    pub sql: String,
    /// Estimated rows per table (`schema.table` as `regclass` prints it there).
    pub rows: BTreeMap<String, i64>,
}

/// Reads `tables` (and what they reference) from `settings`, using `pg_dump`.
pub async fn read(
    settings: &ConnectionSettings,
    pg_dump: &Path,
    tables: &[String],
) -> Result<LiveSchema, Error> {
    let settings = settings.with_application_name("locksmith rehearse (read-only)");
    let client = settings.connect().await?;
    client
        .batch_execute(&format!(
            "SET default_transaction_read_only = on; SET lock_timeout = '{LOCK_TIMEOUT_MS}ms'; SET statement_timeout = '30s'"
        ))
        .await
        .map_err(|e| sql("making the session read-only", e))?;
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = tables.to_vec();
    let mut out = LiveSchema::default();
    let mut patterns = Vec::new();
    while let Some(name) = todo.pop() {
        // One table: its qualified name, row estimate and the tables its foreign keys reference.
        let Some(row) = client
            .query_opt(
                "SELECT c.oid::regclass::text, n.nspname::text, c.relname::text, greatest(c.reltuples, 0)::bigint,
                        ARRAY(SELECT f.confrelid::regclass::text FROM pg_constraint f
                               WHERE f.conrelid = c.oid AND f.contype = 'f')
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = to_regclass($1)",
                &[&name],
            )
            .await
            .map_err(|e| sql(&format!("reading {name} on the source server"), e))?
        else {
            continue; // created by the migration itself
        };
        let qualified: String = row.get(0);
        if !seen.insert(qualified.clone()) {
            continue;
        }
        let (schema, relname): (String, String) = (row.get(1), row.get(2));
        patterns.push(format!(
            "{}.{}",
            locksmith_core::quote::ident(&schema),
            locksmith_core::quote::ident(&relname)
        ));
        out.rows.insert(qualified, row.get(3));
        todo.extend(row.get::<_, Vec<String>>(4));
    }
    if patterns.is_empty() {
        return Ok(out);
    }
    let mut cmd = tokio::process::Command::new(pg_dump);
    cmd.args([
        "--schema-only",
        "--no-owner",
        "--no-privileges",
        "--no-comments",
        &format!("--lock-wait-timeout={LOCK_TIMEOUT_MS}"),
    ]);
    for p in &patterns {
        cmd.arg("-t").arg(p);
    }
    cmd.envs(settings.libpq_env());
    cmd.env("PGAPPNAME", "locksmith rehearse (pg_dump)");
    let output = cmd
        .output()
        .await
        .map_err(|e| Error::io("running pg_dump", e))?;
    if !output.status.success() {
        return Err(Error::Command {
            what: "pg_dump --schema-only on the source server".into(),
            output: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    // `pg_dump -t` leaves out the tables' schemas and enum types: create them first.
    let mut sql = prerequisites(&client, &out.rows.keys().cloned().collect::<Vec<_>>()).await?;
    // psql meta-commands (`\restrict` in recent dumps) are not SQL.
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        if !line.starts_with('\\') {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    out.sql = sql;
    Ok(out)
}

/// `CREATE SCHEMA` for the tables' schemas and `CREATE TYPE … AS ENUM` for
/// the enums their columns use (directly or as arrays).
async fn prerequisites(
    client: &locksmith_pg::Connection,
    tables: &[String],
) -> Result<String, Error> {
    use locksmith_core::quote::{ident, literal};
    let mut sql = String::new();
    // The schemas of the tables and of the enum types they use, other than public.
    let schemas = client
        .query(
            "SELECT DISTINCT n.nspname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE c.oid = ANY($1::text[]::regclass[]) AND n.nspname <> 'public'
             UNION
             SELECT DISTINCT n.nspname::text FROM pg_attribute a
               JOIN pg_type t ON t.oid = a.atttypid OR t.typarray = a.atttypid
               JOIN pg_namespace n ON n.oid = t.typnamespace
              WHERE a.attrelid = ANY($1::text[]::regclass[]) AND t.typtype = 'e' AND n.nspname <> 'public'",
            &[&tables],
        )
        .await
        .map_err(|e| self::sql("reading the tables' schemas on the source server", e))?;
    for r in schemas {
        sql.push_str(&format!(
            "CREATE SCHEMA IF NOT EXISTS {};\n",
            ident(r.get(0))
        ));
    }
    // The enum types the tables' columns use, with their labels in order.
    let enums = client
        .query(
            "SELECT DISTINCT n.nspname::text, t.typname::text,
                    ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid ORDER BY e.enumsortorder)
               FROM pg_attribute a
               JOIN pg_type t ON t.oid = a.atttypid OR t.typarray = a.atttypid
               JOIN pg_namespace n ON n.oid = t.typnamespace
              WHERE a.attrelid = ANY($1::text[]::regclass[]) AND t.typtype = 'e'",
            &[&tables],
        )
        .await
        .map_err(|e| self::sql("reading the enum types on the source server", e))?;
    for r in enums {
        let labels: Vec<String> = r
            .get::<_, Vec<String>>(2)
            .iter()
            .map(|l| literal(l))
            .collect();
        sql.push_str(&format!(
            "CREATE TYPE {}.{} AS ENUM ({});\n",
            ident(r.get(0)),
            ident(r.get(1)),
            labels.join(", ")
        ));
    }
    Ok(sql)
}

fn sql(context: &str, source: tokio_postgres::Error) -> Error {
    Error::Sql {
        context: context.into(),
        source,
    }
}

/// Where the live schema is read from: `settings` itself, or behind a
/// connection pooler its direct route (and the pooler, for the caller to
/// say so). `pg_dump` sets session settings (`statement_timeout = 0`,
/// `lock_timeout = 0`, `row_security`, …) that a transaction pooler would
/// leave on its backends for the application, so without a direct route
/// the read is refused ([`Error::ReadNeedsDirectRoute`]) before anything runs.
pub async fn read_route(
    settings: &ConnectionSettings,
) -> Result<(ConnectionSettings, Option<locksmith_pg::Pooler>), Error> {
    // Any pooler is seen here (a statement pooler too: `connect` would hand
    // back the direct route, and pg_dump would then be sent to the pooler).
    let target = settings.connect().await?;
    let Some(pooler) = target.pooler() else {
        return Ok((settings.clone(), None));
    };
    if !settings.has_direct() {
        return Err(Error::ReadNeedsDirectRoute {
            pooler: pooler.to_string(),
        });
    }
    settings.connect_direct(&target).await?;
    Ok((settings.direct().clone(), Some(pooler)))
}
