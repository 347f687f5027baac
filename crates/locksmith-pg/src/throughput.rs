//! How fast this server rewrites, reads and indexes a table, measured once
//! per run by a cheap probe, and the sizes of the tables a migration touches:
//! together, how long each statement would hold its lock
//! ([`Sizes::hold`]) and which risk dominates ([`Sizes::verdict`]).
//!
//! The probe ([`measure`]) builds a table of [`PROBE_ROWS`] rows of a
//! typical width (two integers, two short texts, a timestamp: about 100
//! bytes a row, ~10 MB) inside a transaction it rolls back, and times on it
//! what migrations do: a validation scan, a rewrite (`ALTER COLUMN … TYPE`),
//! a btree build on an integer and on a text key, and a foreign-key check.
//! Nothing stays behind: no table, no setting (all `SET LOCAL`); the cost is
//! a few hundred milliseconds and ~10 MB of WAL. It runs on a regular table
//! (WAL and shared buffers, like the real ones), else on a temporary one
//! (no `CREATE` on the schema), and not at all on a standby or in a
//! read-only session, nor when every table involved is under
//! [`PROBE_FROM`] bytes (its hold is milliseconds either way): then
//! [`Throughput::DEFAULT`], conservative rates, and the reason is said
//! ([`Calibration`]).
//!
//! It must not touch an existing table: the probe's table is its own, with
//! a name no one else uses, and every catalog read goes through
//! [`crate::tables`] (which never queues for a lock).
//!
//! ```no_run
//! # async fn f(client: &locksmith_pg::Connection, statements: &[locksmith_core::analysis::Statement]) -> Result<(), locksmith_pg::Error> {
//! let sizes = locksmith_pg::throughput::Sizes::read(client, statements).await?;
//! for s in statements {
//!     if let Some(e) = sizes.hold(s) {
//!         println!("{}: ~{:?} on {} ({})", s.line, e.hold, e.relation, sizes.throughput.calibration);
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use locksmith_core::analysis::Statement;
pub use locksmith_core::hold::{Calibration, TableFacts, Throughput};
use locksmith_core::lint::live::{self, HoldEstimate, Verdict};

use crate::{Connection, Error};

/// Rows of the probe's table: ~10 MB, big enough that each timing is well
/// above a statement's fixed cost, small enough to take a few hundred ms.
pub const PROBE_ROWS: u64 = 100_000;

/// Tables smaller than this are not worth a probe: their hold is
/// milliseconds at any plausible rate.
pub const PROBE_FROM: i64 = 4 * 1024 * 1024;

/// The probe's own limit: a server this slow gets the default rates.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// The sizes of the tables some statements rewrite, read or index, and the
/// server's throughput: what [`Sizes::hold`] estimates from.
#[derive(Debug, Clone)]
pub struct Sizes {
    /// Each table the statements touch that exists, by name as written.
    pub facts: BTreeMap<String, TableFacts>,
    /// Measured on this server, or the default and why.
    pub throughput: Throughput,
}

impl Sizes {
    /// Reads the sizes of every table `statements` lock, rewrite or read,
    /// and measures the server's throughput when one of them is big enough
    /// for it to matter ([`PROBE_FROM`]). Never waits for a table's lock.
    pub async fn read<'a>(
        client: &Connection,
        statements: impl IntoIterator<Item = &'a Statement>,
    ) -> Result<Sizes, Error> {
        let statements: Vec<&Statement> = statements.into_iter().collect();
        let names = live::relations(statements.iter().copied());
        let facts = crate::tables::facts(client, &names).await?;
        let biggest = statements
            .iter()
            .flat_map(|s| s.rewrites.iter().chain(&s.scans))
            .filter_map(|r| facts.get(r)?.bytes)
            .max();
        let throughput = match biggest {
            Some(b) if b >= PROBE_FROM => measure(client).await,
            _ => Throughput::default_because("every table involved is small, no probe needed"),
        };
        Ok(Sizes { facts, throughput })
    }

    /// How long `s` would hold a traffic-blocking lock, at the longest.
    pub fn hold(&self, s: &Statement) -> Option<HoldEstimate> {
        live::traffic_hold(s, &self.facts, &self.throughput)
    }

    /// The size verdict on `s` (see `locksmith_core::lint::live::verdict`).
    pub fn verdict(&self, s: &Statement, pg_version: u32) -> Option<Verdict> {
        live::verdict(s, &self.facts, &self.throughput, pg_version)
    }
}

/// The server's throughput, measured by the probe; the default rates (and
/// why) when it cannot run. Never fails: a probe that errs is a reason.
pub async fn measure(client: &Connection) -> Throughput {
    match writable(client).await {
        Ok(None) => {}
        Ok(Some(why)) => return Throughput::default_because(why),
        Err(e) => return Throughput::default_because(format!("the probe could not run: {e}")),
    }
    let regular = probe(client, false).await;
    let result = match regular {
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE) => {
            probe(client, true).await
        }
        other => other,
    };
    result.unwrap_or_else(|e| {
        Throughput::default_because(format!(
            "the probe failed: {}",
            crate::describe_sql_error(&e)
        ))
    })
}

/// `Some(why)` when nothing can be written in this session.
async fn writable(client: &Connection) -> Result<Option<&'static str>, Error> {
    // Standby, or a read-only default for this role or database.
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), current_setting('transaction_read_only') = 'on'",
            &[],
        )
        .await
        .map_err(|e| Error::query("checking whether the probe can write", e))?;
    Ok(if row.get(0) {
        Some("the server is a standby (hot_standby), where the probe cannot write")
    } else if row.get(1) {
        Some("the session is read-only (default_transaction_read_only), where the probe cannot write")
    } else {
        None
    })
}

/// The probe, on a regular or a temporary table, rolled back whatever happens.
async fn probe(client: &Connection, temporary: bool) -> Result<Throughput, tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL statement_timeout = '{}ms'; SET LOCAL lock_timeout = '1s'",
            PROBE_TIMEOUT.as_millis()
        ))
        .await?;
    let result = timings(client, temporary).await;
    let rollback = client.batch_execute("ROLLBACK").await;
    let t = result?;
    rollback?;
    Ok(t)
}

/// Builds the probe's table and times each kind of work on it.
async fn timings(
    client: &Connection,
    temporary: bool,
) -> Result<Throughput, tokio_postgres::Error> {
    let name = locksmith_core::quote::ident(&format!("locksmith_probe_{}", fastrand::u32(..)));
    client
        .batch_execute(&format!(
            "CREATE {} TABLE {name} AS
               SELECT i::int AS id, i::bigint AS ref, 'University ' || i AS name,
                      md5(i::text) AS k, now() AS at
               FROM generate_series(1, {PROBE_ROWS}) AS i",
            if temporary { "TEMPORARY" } else { "" }
        ))
        .await?;
    // The probe's own table, created by this transaction.
    let bytes: i64 = client
        .query_one(&format!("SELECT pg_table_size('{name}')"), &[])
        .await?
        .get(0);
    let time = |sql: String| async move {
        let started = Instant::now();
        client.batch_execute(&sql).await?;
        Ok::<f64, tokio_postgres::Error>(started.elapsed().as_secs_f64())
    };
    let scan = time(format!(
        "SELECT count(*) FROM {name} WHERE NOT (length(name) > 0 AND id > 0)"
    ))
    .await?;
    let rewrite = time(format!("ALTER TABLE {name} ALTER COLUMN id TYPE bigint")).await?;
    let fixed = time(format!("CREATE UNIQUE INDEX ON {name} (id)")).await?;
    let varlena = time(format!("CREATE INDEX ON {name} (k)")).await?;
    let foreign_key = time(format!(
        "ALTER TABLE {name} ADD FOREIGN KEY (ref) REFERENCES {name} (id)"
    ))
    .await?;
    Ok(rates(
        bytes as f64,
        Timings {
            scan,
            rewrite,
            fixed,
            varlena,
            foreign_key,
        },
        temporary,
    ))
}

/// Seconds each kind of work took on the probe's table.
#[derive(Debug, Clone, Copy)]
struct Timings {
    scan: f64,
    rewrite: f64,
    fixed: f64,
    varlena: f64,
    foreign_key: f64,
}

/// Rates from the probe's timings on `bytes` of [`PROBE_ROWS`] rows: an
/// index build is a scan plus a sort, a foreign-key check two scans plus a
/// lookup per row, so those parts are taken apart (each at least a tenth of
/// the whole, against a noisy scan).
fn rates(bytes: f64, t: Timings, temporary: bool) -> Throughput {
    let rows = PROBE_ROWS as f64;
    let tiny = 1e-6;
    let beyond = |total: f64, scans: f64| (total - scans).max(total / 10.0).max(tiny) / rows * 1e9;
    Throughput {
        scan_bytes_per_sec: bytes / t.scan.max(tiny),
        rewrite_bytes_per_sec: bytes / t.rewrite.max(tiny),
        sort_fixed_ns_per_row: beyond(t.fixed, t.scan),
        sort_varlena_ns_per_row: beyond(t.varlena, t.scan),
        foreign_key_ns_per_row: beyond(t.foreign_key, 2.0 * t.scan),
        reference_rows: rows,
        bytes_per_row: bytes / rows,
        calibration: Calibration::Measured {
            rows: PROBE_ROWS,
            temporary,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_the_scan_out_of_builds_and_checks() {
        let t = rates(
            10e6,
            Timings {
                scan: 0.010,
                rewrite: 0.060,
                fixed: 0.025,
                varlena: 0.105,
                foreign_key: 0.040,
            },
            false,
        );
        assert!((t.scan_bytes_per_sec - 1e9).abs() < 1.0);
        assert!((t.sort_fixed_ns_per_row - 150.0).abs() < 1e-6);
        assert!((t.sort_varlena_ns_per_row - 950.0).abs() < 1e-6);
        assert!((t.foreign_key_ns_per_row - 200.0).abs() < 1e-6);
        // A scan measured slower than the build (noise) leaves a tenth of it.
        let noisy = rates(
            10e6,
            Timings {
                scan: 0.030,
                ..Timings {
                    scan: 0.0,
                    rewrite: 0.06,
                    fixed: 0.025,
                    varlena: 0.1,
                    foreign_key: 0.04,
                }
            },
            false,
        );
        assert!((noisy.sort_fixed_ns_per_row - 25.0).abs() < 1e-6);
    }
}
