//! Other migration tools' history tables, read so that `apply` on a database
//! another tool built can say which `--baseline` adopts it instead of
//! running every migration again. Read-only; one query per function.
//!
//! | tool | table | latest version |
//! |---|---|---|
//! | Flyway | `flyway_schema_history` | last successful versioned row |
//! | sqlx | `_sqlx_migrations` | highest successful version |
//! | goose | `goose_db_version` | highest version whose last row is applied |
//! | golang-migrate | `schema_migrations (version bigint, dirty bool)` | its one row |
//! | dbmate | `schema_migrations (version varchar)` | highest version |

use crate::Connection;
use locksmith_core::source::Version;

use crate::Error;

/// What another tool recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignHistory {
    /// The tool, e.g. `golang-migrate`.
    pub tool: &'static str,
    /// Its table.
    pub table: &'static str,
    /// The latest version it applied, canonical (`1.1`, `20240101120000`).
    pub latest: String,
    /// golang-migrate's `dirty` flag: its last migration failed halfway.
    pub dirty: bool,
}

/// The first other tool's history found on the search path, with the latest
/// version it applied; `None` when there is none (or it records nothing).
pub async fn find(client: &Connection) -> Result<Option<ForeignHistory>, Error> {
    for table in [
        "flyway_schema_history",
        "_sqlx_migrations",
        "goose_db_version",
        "schema_migrations",
    ] {
        if !exists(client, table).await? {
            continue;
        }
        let found = match table {
            "flyway_schema_history" => latest(client, "Flyway", table, FLYWAY).await?,
            "_sqlx_migrations" => latest(client, "sqlx", table, SQLX).await?,
            "goose_db_version" => latest(client, "goose", table, GOOSE).await?,
            _ if has_dirty_column(client).await? => golang_migrate(client).await?,
            _ => latest(client, "dbmate", table, DBMATE).await?,
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Flyway: the last successful versioned migration (baseline rows included).
const FLYWAY: &str = "SELECT version::text FROM flyway_schema_history WHERE success AND version IS NOT NULL ORDER BY installed_rank DESC LIMIT 1";
/// sqlx: the highest successful version.
const SQLX: &str =
    "SELECT max(version)::text FROM _sqlx_migrations WHERE success HAVING max(version) IS NOT NULL";
/// goose: each version's last row says whether it is applied now; version 0 is goose's own marker.
const GOOSE: &str = "SELECT max(version_id)::text FROM (SELECT DISTINCT ON (version_id) version_id, is_applied FROM goose_db_version ORDER BY version_id, id DESC) last WHERE is_applied AND version_id > 0 HAVING max(version_id) IS NOT NULL";
/// dbmate: the highest version (text: longer is higher, then by characters).
const DBMATE: &str =
    "SELECT version::text FROM schema_migrations ORDER BY length(version::text) DESC, version DESC LIMIT 1";

/// Whether `table` is visible on the search path.
async fn exists(client: &Connection, table: &str) -> Result<bool, Error> {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::query(format!("looking for {table}"), e))
}

/// Whether `schema_migrations` has golang-migrate's `dirty` column (dbmate's has none).
async fn has_dirty_column(client: &Connection) -> Result<bool, Error> {
    client
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass('schema_migrations') AND attname = 'dirty' AND NOT attisdropped)",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .map_err(|e| Error::query("reading schema_migrations' columns", e))
}

/// Runs one of the `latest version` queries above.
async fn latest(
    client: &Connection,
    tool: &'static str,
    table: &'static str,
    sql: &str,
) -> Result<Option<ForeignHistory>, Error> {
    let row = client
        .query_opt(sql, &[])
        .await
        .map_err(|e| Error::query(format!("reading {tool}'s {table}"), e))?;
    Ok(row.map(|r| ForeignHistory {
        tool,
        table,
        latest: canonical(r.get(0)),
        dirty: false,
    }))
}

/// golang-migrate's one row: the version and whether it is dirty.
async fn golang_migrate(client: &Connection) -> Result<Option<ForeignHistory>, Error> {
    let row = client
        .query_opt(
            "SELECT version::text, dirty FROM schema_migrations LIMIT 1",
            &[],
        )
        .await
        .map_err(|e| Error::query("reading golang-migrate's schema_migrations", e))?;
    Ok(row.map(|r| ForeignHistory {
        tool: "golang-migrate",
        table: "schema_migrations",
        latest: canonical(r.get(0)),
        dirty: r.get(1),
    }))
}

/// The version as locksmith spells it (`001` → `1`); other text as is.
fn canonical(text: String) -> String {
    Version::parse(&text).map_or(text, |v| v.to_string())
}
