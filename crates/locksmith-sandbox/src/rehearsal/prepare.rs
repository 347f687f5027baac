//! What a rehearsal needs before it runs, from the user's input: the
//! migration and its schema from a folder ([`migration_folder`]), the
//! migration analysed after the schema ([`analyse`]), the tables it touches
//! ([`touched`]), rows per table ([`Sizes`]), the traffic ([`traffic`]),
//! and the throwaway cluster ([`start_cluster`]). `locksmith rehearse`
//! reads the files and prints; everything it decides is here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use locksmith_core::analysis::{self, Statement};

use super::mix;
use super::stage::Staged;
use crate::bin_dir::BinDir;
use crate::cluster::{Cluster, ClusterOptions};
use crate::traffic::{Query, TrafficProfile};
use crate::Error;

/// Rows per table when neither a live size nor `--rows` says otherwise.
pub const DEFAULT_ROWS: i64 = 100_000;
/// Requests per second of the default mix, all tables together.
pub const DEFAULT_RATE: f64 = 40.0;

/// A migration and the schema before it, each `(name, text)`.
pub type Files = (Vec<(String, String)>, (String, String));

/// A folder read as `apply` reads it (every layout, in order, up sections
/// only): its last migration is the one rehearsed, the earlier ones its schema.
pub fn migration_folder(dir: &Path) -> Result<Files, Error> {
    let mut migrations: Vec<(String, String)> = locksmith_pg::migrate::read_folder(dir)?
        .into_iter()
        .map(|m| (m.path.clone(), m.up_sql().to_string()))
        .collect();
    let last = migrations.pop().ok_or_else(|| Error::NoMigrations {
        dir: dir.display().to_string(),
    })?;
    Ok((migrations, last))
}

/// The migration `label` analysed for PostgreSQL `version` after the
/// schema files `setup` (which must parse too); none at all is an error.
pub fn analyse(
    label: &str,
    setup: &[(String, String)],
    migration: &str,
    version: u32,
) -> Result<Vec<Statement>, Error> {
    let setup: String = setup.iter().map(|(_, t)| format!("{t};\n")).collect();
    let statements =
        analysis::analyze_after(&setup, migration, version).map_err(|e| Error::Syntax {
            name: label.to_string(),
            line: e.line,
            column: e.column,
            message: e.message,
        })?;
    if statements.is_empty() {
        return Err(Error::NoStatements);
    }
    Ok(statements)
}

/// The relations the migration locks, each once, in name order.
pub fn touched(statements: &[Statement]) -> Vec<String> {
    statements
        .iter()
        .flat_map(|s| s.locks.iter().map(|l| l.relation.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// How many rows each table gets: the live server's estimate (when read),
/// else [`DEFAULT_ROWS`], times `scale`; `rows` caps a live size and
/// replaces the default.
#[derive(Debug, Clone, Default)]
pub struct Sizes {
    /// Estimated rows per table on the live server (`--database-url`).
    pub live: Option<BTreeMap<String, i64>>,
    /// `--rows`.
    pub rows: Option<i64>,
    /// `--scale`.
    pub scale: Option<f64>,
}

impl Sizes {
    /// Rows for `table`.
    pub fn rows_for(&self, table: &str) -> i64 {
        let live = self.live.as_ref().and_then(|m| m.get(table)).copied();
        let base = live.unwrap_or(DEFAULT_ROWS);
        let scaled = self
            .scale
            .map_or(base, |s| (base as f64 * s).round() as i64);
        match (self.rows, live) {
            (Some(cap), Some(_)) => scaled.min(cap),
            (Some(rows), None) => rows,
            (None, _) => scaled,
        }
    }
}

/// The simulated application for the staged tables: the `--traffic` file's
/// queries at their own rates, else the default mix over the touched
/// tables at [`DEFAULT_RATE`]; keys up to the smallest touched table's rows.
pub async fn traffic(
    cluster: &Cluster,
    staged: &Staged,
    file: Option<Vec<Query>>,
) -> Result<TrafficProfile, Error> {
    let (queries, rate) = match file {
        Some(q) => {
            let rate = q.iter().map(|q| q.share).sum();
            (q, rate)
        }
        None => {
            let catalog = cluster
                .settings(super::stage::DATA_DB, "locksmith-rehearse")
                .connect()
                .await?;
            (
                mix::default_mix(&catalog, &staged.tables).await?,
                DEFAULT_RATE,
            )
        }
    };
    let keys = staged
        .tables
        .iter()
        .filter_map(|t| staged.load.tables.iter().find(|l| &l.table == t))
        .map(|l| l.rows)
        .min()
        .unwrap_or(DEFAULT_ROWS)
        .clamp(1, i32::MAX as i64) as i32;
    Ok(TrafficProfile {
        rate,
        queries,
        keys,
        ..TrafficProfile::default()
    })
}

/// A throwaway cluster from `bin` with connection slots for three runs'
/// traffic, leaked sessions and the tracer.
pub async fn start_cluster(bin: BinDir) -> Result<Cluster, Error> {
    let options = ClusterOptions {
        bin: Some(bin),
        settings: vec![("max_connections".into(), "200".into())],
    };
    Cluster::start_async(options).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_from_the_live_size_capped_by_rows_else_rows_else_the_default() {
        let live = Sizes {
            live: Some(BTreeMap::from([("public.t".to_string(), 5_000_000)])),
            rows: Some(1_000_000),
            scale: None,
        };
        assert_eq!(live.rows_for("public.t"), 1_000_000);
        assert_eq!(live.rows_for("public.u"), 1_000_000);
        let scaled = Sizes {
            scale: Some(0.5),
            ..Sizes::default()
        };
        assert_eq!(scaled.rows_for("public.t"), DEFAULT_ROWS / 2);
    }
}
