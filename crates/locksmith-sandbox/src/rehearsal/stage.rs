//! Staging a rehearsal on a throwaway cluster: the schema database (the
//! setup SQL, committed), a copy of it loaded with synthetic rows — the
//! template every run copies — and the migration's tables as the catalog
//! names them (those the migration itself creates have no name yet).

use std::time::{Duration, Instant};

use locksmith_core::quote::ident;

use super::synth::{self, LoadReport};
use crate::{Cluster, Error};

/// The database holding the schema only (the tracer copies it).
pub const SCHEMA_DB: &str = "rehearse_schema";
/// The loaded database every run copies.
pub const DATA_DB: &str = "rehearse_data";

/// A staged rehearsal.
#[derive(Debug, Clone)]
pub struct Staged {
    /// What the load did.
    pub load: LoadReport,
    /// How long the load took.
    pub load_time: Duration,
    /// The tables of `touched` that exist, as `oid::regclass::text`.
    pub tables: Vec<String>,
}

/// Builds the schema from `setup` (`(name, sql)` in order; a failure is
/// [`Error::Setup`]), loads `rows(table)` rows per table, and resolves `touched`.
pub async fn stage(
    cluster: &Cluster,
    setup: &[(String, String)],
    touched: &[String],
    rows: &dyn Fn(&str) -> i64,
    progress: &mut (dyn FnMut(i64, i64) + Send),
) -> Result<Staged, Error> {
    let schema = cluster.create_database(SCHEMA_DB).await?;
    let client = schema
        .with_application_name("locksmith-rehearse-setup")
        .connect()
        .await?;
    for (name, sql) in setup {
        client
            .batch_execute(sql)
            .await
            .map_err(|source| Error::Setup {
                name: name.clone(),
                source,
            })?;
    }
    drop(client);
    cluster
        .settings("postgres", "locksmith-rehearse")
        .connect()
        .await?
        .batch_execute(&format!(
            "CREATE DATABASE {} TEMPLATE {}",
            ident(DATA_DB),
            ident(SCHEMA_DB)
        ))
        .await
        .map_err(|e| Error::Sql {
            context: "copying the schema".into(),
            source: e,
        })?;
    let client = cluster
        .settings(DATA_DB, "locksmith-rehearse-load")
        .connect()
        .await?;
    let started = Instant::now();
    let load = synth::load(&client, rows, progress).await?;
    let load_time = started.elapsed();
    let mut tables = Vec::new();
    for t in touched {
        // The table's name as the catalog prints it, if it exists before the migration.
        let name: Option<String> = client
            .query_one("SELECT to_regclass($1)::text", &[t])
            .await
            .map_err(|e| Error::Sql {
                context: format!("resolving {t}"),
                source: e,
            })?
            .get(0);
        tables.extend(name);
    }
    Ok(Staged {
        load,
        load_time,
        tables,
    })
}
