//! The catalog queries behind `doctor`: one query per function, each only
//! reads. Interpreting what they return is [`super::findings`]' job.

use std::collections::BTreeMap;

use crate::Connection;

use super::{LoginRole, PreparedXact, RoleSetting};
use crate::prepared::PREPARED_COLUMNS;
use crate::Error;

/// The server-wide settings the audit reads. Settings the server does not
/// have (`transaction_timeout` before 17) are simply absent.
pub const SETTINGS: [&str; 9] = [
    "idle_in_transaction_session_timeout",
    "lock_timeout",
    "statement_timeout",
    "transaction_timeout",
    "log_lock_waits",
    "deadlock_timeout",
    "max_connections",
    "superuser_reserved_connections",
    "reserved_connections",
];

/// The current database's name and the server-wide values of [`SETTINGS`].
pub async fn server_settings(
    client: &Connection,
) -> Result<(String, BTreeMap<String, String>), Error> {
    let names: Vec<String> = SETTINGS.iter().map(|s| s.to_string()).collect();
    // Server-wide values: reset_val, unless this session's role, database or client options
    // overrode it at connection start (then the built-in default: pg_file_settings is superuser-only).
    let rows = client
        .query(
            "SELECT current_database()::text, s.name,
                    CASE WHEN s.source IN ('user', 'database', 'database user', 'client')
                         THEN s.boot_val ELSE s.reset_val END
             FROM (SELECT 1) AS one
             LEFT JOIN pg_settings s ON s.name = ANY($1)",
            &[&names],
        )
        .await
        .map_err(|e| Error::query("reading pg_settings", e))?;
    let mut database = String::new();
    let mut values = BTreeMap::new();
    for row in rows {
        database = row.get(0);
        if let (Some(name), Some(value)) = (row.get(1), row.get(2)) {
            values.insert(name, value);
        }
    }
    Ok((database, values))
}

/// Every role and database default (`ALTER ROLE/DATABASE … SET`).
pub async fn role_settings(client: &Connection) -> Result<Vec<RoleSetting>, Error> {
    // pg_db_role_setting: setrole/setdatabase 0 mean "every role"/"every database".
    let rows = client
        .query(
            "SELECT r.rolname::text, d.datname::text, s.setconfig
             FROM pg_db_role_setting s
             LEFT JOIN pg_roles r ON r.oid = s.setrole
             LEFT JOIN pg_database d ON d.oid = s.setdatabase
             ORDER BY 1 NULLS FIRST, 2 NULLS FIRST",
            &[],
        )
        .await
        .map_err(|e| Error::query("reading pg_db_role_setting", e))?;
    Ok(rows
        .iter()
        .map(|row| RoleSetting {
            role: row.get(0),
            database: row.get(1),
            settings: row
                .get::<_, Option<Vec<String>>>(2)
                .unwrap_or_default()
                .iter()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .collect())
}

/// Roles that can log in, whether they are superusers, and whether they own
/// tables in the current database.
pub async fn login_roles(client: &Connection) -> Result<Vec<LoginRole>, Error> {
    // Login roles, flagged when they own an ordinary or partitioned table outside the system schemas here.
    let rows = client
        .query(
            "SELECT r.rolname::text, r.rolsuper,
                    EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE c.relowner = r.oid AND c.relkind IN ('r', 'p')
                              AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                              AND n.nspname NOT LIKE 'pg_toast%')
             FROM pg_roles r
             WHERE r.rolcanlogin
             ORDER BY r.rolname",
            &[],
        )
        .await
        .map_err(|e| Error::query("reading pg_roles", e))?;
    Ok(rows
        .iter()
        .map(|row| LoginRole {
            name: row.get(0),
            superuser: row.get(1),
            owns_tables: row.get(2),
        })
        .collect())
}

/// Transactions prepared for two-phase commit and not yet finished.
pub async fn prepared_transactions(client: &Connection) -> Result<Vec<PreparedXact>, Error> {
    // Open two-phase transactions with their age; they hold locks with no session to show for it.
    let rows = client
        .query(
            &format!("SELECT {PREPARED_COLUMNS} FROM pg_prepared_xacts pr ORDER BY pr.prepared"),
            &[],
        )
        .await
        .map_err(|e| Error::query("reading pg_prepared_xacts", e))?;
    Ok(rows
        .iter()
        .map(|row| PreparedXact::from_row(row, 0))
        .collect())
}
