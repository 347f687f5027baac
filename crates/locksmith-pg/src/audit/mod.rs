//! `doctor`'s audit: the server and role settings, and the live state, that
//! make the story's outage likely.
//!
//! [`gather`] reads the facts (one catalog query per function in
//! [`queries`], plus one [`Snapshot`](crate::snapshot::Snapshot) for live
//! sessions); [`findings::audit`] turns facts into findings without touching
//! a server, so every rule is tested on hand-written facts. This module never
//! changes a setting: the fixes are printed for a person to run.
//! [`standby`] does the same for replication: hot standbys' settings and
//! what the primary streams to. [`server`] is the whole audit of one
//! server (and its standbys), as `doctor` runs it.

pub mod findings;
pub mod queries;
pub mod standby;

use std::collections::BTreeMap;

use crate::Connection;
use serde::Serialize;

use crate::snapshot::{Snapshot, Snapshotter};
use crate::Error;

pub use findings::{audit, Finding, Severity};

/// Per-role or per-database defaults from `pg_db_role_setting`
/// (`ALTER ROLE … SET`, `ALTER DATABASE … SET`, `ALTER ROLE … IN DATABASE … SET`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleSetting {
    /// The role, or `None` for a database-wide default.
    pub role: Option<String>,
    /// The database, or `None` for a role's default in every database.
    pub database: Option<String>,
    /// `name` → value as written, e.g. `idle_in_transaction_session_timeout` → `60s`.
    pub settings: BTreeMap<String, String>,
}

/// A role that can log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoginRole {
    /// Role name.
    pub name: String,
    /// `rolsuper`.
    pub superuser: bool,
    /// Owns tables in the current database: only an owner can `ALTER` them,
    /// so this is the role migrations run as.
    pub owns_tables: bool,
}

/// A transaction prepared for two-phase commit: it holds its locks until
/// someone commits or rolls it back, and no session shows it.
pub use crate::prepared::PreparedXact;

/// Everything the audit looks at, read from one server.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// `server_version_num`, e.g. 150018.
    pub server_version_num: i32,
    /// The database we are connected to.
    pub database: String,
    /// Server-wide values (`pg_settings.setting`, in the setting's base unit).
    pub server: BTreeMap<String, String>,
    /// Role and database defaults.
    pub role_settings: Vec<RoleSetting>,
    /// Roles that can log in.
    pub roles: Vec<LoginRole>,
    /// Sessions and locks now.
    pub snapshot: Snapshot,
    /// Prepared transactions.
    pub prepared: Vec<PreparedXact>,
}

/// Reads every fact the audit needs: four catalog queries and one snapshot.
pub async fn gather(client: &Connection) -> Result<Facts, Error> {
    let snapshotter = Snapshotter::new(client).await?;
    let snapshot = snapshotter.take(client).await?;
    let (database, server) = queries::server_settings(client).await?;
    Ok(Facts {
        server_version_num: snapshotter.server_version_num(),
        database,
        server,
        role_settings: queries::role_settings(client).await?,
        roles: queries::login_roles(client).await?,
        prepared: queries::prepared_transactions(client).await?,
        snapshot,
    })
}

/// The whole audit of the server behind `client` (reached with `settings`)
/// and of each hot standby in `replicas`: settings, live state, the pooler
/// in between if any, replication; worst first.
pub async fn server(
    client: &Connection,
    settings: &crate::ConnectionSettings,
    replicas: &[crate::ConnectionSettings],
) -> Result<Vec<Finding>, Error> {
    let mut found = audit(&gather(client).await?);
    if let Some(p) = client.pooler() {
        found.push(findings::pooler(&p, settings.has_direct()));
    }
    let primary = standby::gather_primary(client).await?;
    let mut standbys = Vec::with_capacity(replicas.len());
    for settings in replicas {
        let (server, client) = crate::guard::replica::connect_standby(
            &settings.with_application_name("locksmith doctor"),
        )
        .await?;
        standbys.push(standby::gather_standby(&client, &server).await?);
    }
    found.extend(standby::audit(&primary, &standbys));
    found.sort_by_key(|f| std::cmp::Reverse(f.severity));
    Ok(found)
}
