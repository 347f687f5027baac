//! Everything locksmith does with a live PostgreSQL server.
//!
//! The one engine is [`migrate`]: a [`Plan`](locksmith_core::plan::Plan)
//! (every migration parsed and analysed once) run by a
//! [`Runner`](migrate::Runner) under one [`Policy`](migrate::Policy): runner
//! lock, history checks, each migration under the [`guard`], online steps,
//! and a [`RunReport`](migrate::RunReport). `locksmith apply` is this flow
//! with arguments and rendering around it; so is your own program:
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use locksmith_core::plan::Plan;
//! use locksmith_pg::migrate::{self, Event, Policy, Runner, Status};
//! use locksmith_pg::ConnectionSettings;
//!
//! let settings = ConnectionSettings::resolve(None)?; // DATABASE_URL, else PG*
//! // Every file parsed first: a syntax error stops here, nothing run.
//! let plan = Plan::new("migrations", migrate::read_folder("migrations")?, None)?;
//! let runner = Runner::new(settings, Policy::default()).on_event(|e| {
//!     if let Event::Applying { migration, .. } = e {
//!         eprintln!("applying {migration}");
//!     }
//! });
//! let report = runner.run(plan).await?;
//! match report.status {
//!     Status::Applied => println!("{} applied", report.migrations.len()),
//!     _ => {
//!         eprintln!("{}", report.error.as_deref().unwrap_or(""));
//!         for b in &report.blockers {
//!             eprintln!("blocked by pid {} ({})", b.session.pid, b.session.application_name);
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! The parts, each usable on its own:
//! - [`settings`]: where and how to connect (libpq conventions, TLS, `~/.pgpass`).
//! - [`connection`]: an open connection; every statement unnamed, safe through poolers.
//! - [`migrate`]: the whole run of a migration source (above).
//! - [`wrap`]: the whole run of a migration *tool* that keeps its own
//!   connections (`locksmith run -- alembic upgrade head`): its environment,
//!   the watch over its sessions, attempts and retries, a [`wrap::Report`].
//! - [`guard`]: runs DDL within a lock budget: look, `LOCK … NOWAIT`, bounded
//!   retries, the session watch (one, [`guard::watcher`]) over its own
//!   backend and, for a tool that keeps its own connections (`locksmith
//!   run`), over the tool's sessions.
//! - [`history`]: the history table and the runner lock.
//! - [`foreign`]: other migration tools' history tables, for adopting a database.
//! - [`online`]: a migration's online plan, step by step under the guard, resumably.
//! - [`tables`]: table sizes, for grading findings and the `--max-hold` estimate.
//! - [`throughput`]: this server's rewrite, scan and index-build rates (a
//!   cheap probe, once per run) and the hold estimate built on them.
//! - [`snapshot`]: sessions and locks at one moment, in two queries.
//! - [`blockers`]: the blocker graph built from a snapshot (pure).
//! - [`diagnosis`]: `blockers`' reading of a server and its standbys.
//! - [`signal`]: cancelling and terminating other sessions.
//! - [`audit`]: `doctor`'s settings and live-state audit (queries, then pure
//!   rules; `audit::server` the whole of it).
//! - [`trace`]: runs a migration and records the locks, rewrites and constraints
//!   each statement actually took, compared with lint's model; before a live
//!   trace, its route and the statements refused for their hold (`trace::live`).
//! - [`prepared`]: prepared transactions, which hold locks with no session.
//! - [`tls`]: TLS with libpq's `sslmode` semantics.
//!
//! Pure analysis (lock modes, statement analysis, the plan) lives in
//! `locksmith-core`; this crate adds I/O and nothing that could be computed
//! without a server.
#![warn(missing_docs)]

pub mod audit;
pub mod blockers;
mod cancel;
pub mod connection;
mod conninfo;
pub mod diagnosis;
pub mod foreign;
pub mod guard;
pub mod history;
pub mod migrate;
pub mod online;
mod pgpass;
pub mod prepared;
pub mod settings;
pub mod signal;
pub mod snapshot;
pub mod tables;
pub mod throughput;
pub mod tls;
pub mod trace;
pub mod wrap;

pub use connection::{Connection, Pooler};
pub use conninfo::redact;
pub use settings::ConnectionSettings;

/// What can go wrong talking to a server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection string could not be understood.
    #[error("invalid connection string `{url}`: {reason}")]
    BadUrl {
        /// The string, password redacted.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server could not be reached or refused us.
    #[error("could not connect to {target}: {reason}")]
    Connect {
        /// `user@host:port/db`.
        target: String,
        /// Why, without the password.
        reason: String,
    },
    /// TLS could not be set up as `sslmode` asks.
    #[error("TLS: {reason}")]
    Tls {
        /// Why.
        reason: String,
    },
    /// The role lacks a privilege the action needs.
    #[error(
        "not allowed to {action}: the role needs {needs} (GRANT {needs} TO <role>) or superuser"
    )]
    Permission {
        /// What we tried.
        action: String,
        /// The missing role or privilege.
        needs: String,
    },
    /// A concurrent index build found a valid index of another definition under its name.
    #[error(
        "index {name} already exists and is not the one the statement builds:\n  existing:  {found}\n  statement: {wanted}\n\
         Give the statement's index another name, or drop the existing one (DROP INDEX CONCURRENTLY {name}) if it is obsolete"
    )]
    IndexExists {
        /// The existing index, qualified.
        name: String,
        /// Its definition (`pg_get_indexdef`).
        found: String,
        /// The definition the statement would build.
        wanted: String,
    },
    /// A hot standby given with `--replica` cannot be watched.
    #[error("standby {server}: {reason}")]
    Replica {
        /// `host:port`.
        server: String,
        /// Why.
        reason: String,
    },
    /// An online migration changed after an earlier run recorded some of its
    /// steps: resuming would skip what it now says at those places.
    #[error(
        "online step {step} of {steps} was done and recorded by an earlier run, but the migration \
         now plans a different step there: the file was edited after that run stopped. Restore \
         the file as it was and apply again to finish it, then change the schema in a new \
         migration; or undo what the recorded steps did and clear their progress \
         (DELETE FROM locksmith_online_steps WHERE version = {version}) before applying the edited file"
    )]
    EditedMidway {
        /// 1-based step whose recorded work differs from the plan.
        step: usize,
        /// Steps the migration now plans.
        steps: usize,
        /// The migration's history key as the progress table has it.
        version: i64,
    },
    /// A step planned online cannot run online after all (why, and what to do).
    #[error("{0}")]
    NotOnline(String),
    /// An online change failed and was undone: what failed, and that
    /// nothing of it is left.
    #[error("{0}")]
    Undone(String),
    /// A query failed.
    #[error("{context}: {}", describe_sql_error(.source))]
    Query {
        /// What we were doing.
        context: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
}

/// What kind of failure an error is: what a caller's exit code is made of,
/// never its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user gave something wrong: a connection string, a migration, a flag.
    BadInput,
    /// The server could not be reached, or refused the login or TLS.
    Unreachable,
    /// The role lacks a privilege the action needs.
    Permission,
    /// Ctrl-C or SIGTERM stopped it.
    Interrupted(guard::Interrupt),
    /// It stayed blocked (by another session, or another runner) until the deadline.
    Blocked,
    /// Anything else: a query failed.
    Failed,
}

impl Error {
    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadUrl { .. } => ErrorKind::BadInput,
            Error::Connect { .. } | Error::Tls { .. } | Error::Replica { .. } => {
                ErrorKind::Unreachable
            }
            Error::Permission { .. } => ErrorKind::Permission,
            Error::EditedMidway { .. } | Error::NotOnline(_) => ErrorKind::BadInput,
            Error::IndexExists { .. } | Error::Query { .. } | Error::Undone(_) => ErrorKind::Failed,
        }
    }

    /// Wraps a query error with what we were doing.
    pub fn query(context: impl Into<String>, source: tokio_postgres::Error) -> Self {
        Error::Query {
            context: context.into(),
            source,
        }
    }

    /// The SQLSTATE of a server error, e.g. `55P03` for `lock_not_available`.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            Error::Query { source, .. } => source.code().map(|c| c.code()),
            _ => None,
        }
    }
}

/// A server error's message with its SQLSTATE, detail and hint; the driver's text otherwise.
pub fn describe_sql_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            // Their own final periods dropped: callers continue the sentence.
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {}", detail.trim_end_matches('.')));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {}", hint.trim_end_matches('.')));
            }
            text
        }
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                text = format!("{text}: {s}");
                source = s.source();
            }
            text
        }
    }
}
