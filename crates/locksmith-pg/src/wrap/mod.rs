//! Runs a migration tool that keeps its own connections (alembic, flyway,
//! psql, …) under the guard: what `locksmith run -- CMD` does.
//!
//! The tool is started unchanged; only its environment is shaped
//! ([`env`]: `lock_timeout` through `PGOPTIONS`, an `application_name`
//! through `PGAPPNAME` so its sessions can be found, `DATABASE_URL`), psql is
//! told to stop at a failed statement ([`psql`]), and the route decides
//! whether a pooler is in between ([`route`]).
//!
//! It must not print, read arguments, or choose exit codes.

pub mod env;
pub mod psql;
pub mod route;
