//! One cluster per process, a fresh database per test: for tests that need a
//! server but not their own (no restarts, no server settings). Starting a
//! cluster is cheap (~130 ms) but not free, and a test suite run with
//! `cargo test` (threads) then shares one server.
//!
//! The cluster is never dropped; its guardian stops and deletes it when the
//! process exits (see [`crate::cluster`]).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use locksmith_pg::ConnectionSettings;

use crate::{Cluster, Error};

static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();

/// The process-wide cluster, started on first use.
pub fn cluster() -> Result<&'static Cluster, Error> {
    SHARED
        .get_or_init(|| Cluster::start().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|log_tail| Error::StartFailed {
            log_tail: log_tail.clone(),
        })
}

/// A database name unique in this process, readable after `hint`.
pub fn unique_name(hint: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let clean: String = hint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("{clean}_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// A new, empty database on the shared cluster, named after `hint`.
pub async fn database(hint: &str) -> Result<(ConnectionSettings, &'static Cluster), Error> {
    let cluster = cluster()?;
    Ok((cluster.create_database(&unique_name(hint)).await?, cluster))
}
