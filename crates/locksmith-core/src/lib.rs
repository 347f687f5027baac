//! Pure analysis for locksmith: no I/O, no server, no clock.
//!
//! - [`lock`]: the eight table lock modes and the conflict matrix, shared by
//!   every command that reasons about who waits for whom.
//! - [`analysis`]: SQL text → per-statement summary (locks, rewrites, scans,
//!   transaction requirements). The only module that knows `pg_query`.
//! - [`lint`]: rules over that summary, one file each, with their docs.
//! - [`severity`]: the one severity scale of every finding.
//! - [`duration`]: the one duration syntax used by every flag.
//! - [`hold`]: how long a statement holds its lock at a table's size.
//! - [`source`]: migration folders of every popular layout → ordered
//!   migrations, each with its up SQL only, directives and checksum.
//! - [`online`]: the online plan: blocking statements as steps with brief locks only.
//! - [`plan`]: a migration source analysed once into what the guard runs.
//! - [`quote`]: identifier and literal quoting for SQL locksmith writes.
//! - [`server_log`]: the telltale lines of a server log (stderr or csvlog), counted.
//!
//! Everything that talks to a live server lives in `locksmith-pg`; throwaway
//! clusters and simulated traffic in `locksmith-sandbox`. This crate depends
//! on neither, so its analysis can be tested and fuzzed without a database.
//!
//! ```
//! use locksmith_core::lock::LockMode;
//! // The incident: the ALTER's AccessExclusiveLock waits for a plain SELECT's lock.
//! assert!(LockMode::AccessExclusive.conflicts_with(LockMode::AccessShare));
//! ```
#![warn(missing_docs)]

pub mod analysis;
pub mod duration;
pub mod hold;
pub mod lint;
pub mod lock;
pub mod online;
pub mod plan;
pub mod quote;
pub mod server_log;
pub mod severity;
pub mod source;

pub use severity::Severity;
