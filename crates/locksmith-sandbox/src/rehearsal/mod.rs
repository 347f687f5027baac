//! A rehearsal: the user's migration run three ways — plain (as psql would
//! run it), under the guard, and under the guard as its online plan — each
//! on an identical copy of a loaded database (`CREATE DATABASE … TEMPLATE`),
//! each under the same simulated traffic and leaked sessions, with every
//! request's latency and every statement's lock window recorded.
//!
//! - [`stage`]: the schema database and its loaded copy, which the runs copy.
//! - [`synth`]: synthetic rows typed from the catalog, constraints honoured.
//! - [`source`]: the schema and table sizes of a live server, read-only.
//! - [`mix`]: the default request mix and the `--traffic` file format.
//! - [`prepare`]: the migration and schema from the user's files, rows per
//!   table, the traffic, the cluster.
//! - [`runs`]: the three runs; [`plain`]: psql's way, which `demo` uses too.
//!
//! `locksmith rehearse` drives this; the throwaway [`crate::Cluster`] holds
//! every database, and nothing here writes to a user's server.

mod catalog;
mod guarded;
pub mod mix;
pub mod plain;
pub mod prepare;
pub mod runs;
pub mod source;
pub mod stage;
pub mod synth;
pub mod values;

pub use plain::{plain, PlainEnd, PlainRun};
pub use runs::{rehearse, Plan, Run, StatementRun, Stop, Way};
