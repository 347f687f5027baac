//! The embedded default: throwaway PostgreSQL clusters and simulated traffic.
//!
//! - [`cluster`]: a cluster from the installed server binaries, in a temporary
//!   folder, on a free loopback port; stopped and deleted on drop, on panic and
//!   even on `kill -9` of the owning process.
//! - [`bin_dir`]: finding those binaries.
//! - [`traffic`]: open-loop request traffic with latency recording, and leaked
//!   idle-in-transaction sessions.
//! - [`scene`]: a migration under traffic and leaked sessions, with warm-up and cool-down.
//! - [`bench_doc`]: benchmark sections of docs/benchmarks.md.
//! - [`shared`]: one cluster per process, a fresh database per test.
//! - [`queue`]: the incident frozen at its worst moment (leakers, queued ALTER, queued readers).
//! - [`incident`]: the story's table and roles, staged on a cluster.
//! - [`demo`]: `locksmith demo`'s scenario: the incident played plain and
//!   guarded under traffic, and the hot-standby act.
//! - [`rehearsal`]: a user's migration rehearsed plain, guarded and online under traffic.
//! - [`pooler`]: a throwaway PgBouncer in front of a cluster, in session or
//!   transaction pooling.
//! - [`wait`]: polling for a condition with a generous bound, for tests.
//!
//! Used by `locksmith demo`, `locksmith trace`, `locksmith rehearse` and by
//! every test that needs a real server. Nothing here writes to a user's
//! database: the one part that connects to one, `rehearsal::source`
//! (`rehearse --database-url`), reads its schema and sizes in read-only
//! sessions under a short `lock_timeout`; everything else runs on clusters
//! this crate started.
//!
//! ```no_run
//! # async fn f() -> Result<(), locksmith_sandbox::Error> {
//! let cluster = locksmith_sandbox::cluster::Cluster::start()?;
//! let db = cluster.create_database("scratch").await?;
//! let client = db.connect().await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod bench_doc;
pub mod bin_dir;
pub mod cluster;
pub mod demo;
mod guardian;
pub mod incident;
pub mod orm;
pub mod pooler;
pub mod queue;
pub mod rehearsal;
pub mod scene;
pub mod served;
pub mod shared;
pub mod traffic;
pub mod wait;

pub use cluster::Cluster;
pub use pooler::{PoolMode, Pooler};

/// What can go wrong starting or using a throwaway cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No PostgreSQL server binaries were found.
    #[error("no PostgreSQL server binaries found (looked in {looked}); install them with `apt-get install postgresql`, or point --pg-bin / LOCKSMITH_PG_BIN at the folder holding initdb and postgres")]
    NoServer {
        /// Where we looked.
        looked: String,
    },
    /// A folder listed as holding server binaries holds none.
    #[error("{dir} (listed in {listed_in}) holds no PostgreSQL server (initdb, postgres)")]
    NotAServer {
        /// The folder.
        dir: String,
        /// Where it was listed, e.g. `LOCKSMITH_PG_BINS`.
        listed_in: &'static str,
    },
    /// Running as root, but there is no `postgres` OS user to run the server as.
    #[error("running as root, and PostgreSQL refuses to run as root, but there is no `postgres` OS user to run it as; create one (`useradd --system postgres`) or run locksmith as an ordinary user")]
    NoPostgresUser,
    /// A helper command failed.
    #[error("{what} failed:\n{output}")]
    Command {
        /// Which command.
        what: String,
        /// The tail of its output.
        output: String,
    },
    /// The server did not start.
    #[error("the PostgreSQL server did not start; the end of its log:\n{log_tail}")]
    StartFailed {
        /// The tail of the server log.
        log_tail: String,
    },
    /// No `pgbouncer` binary was found.
    #[error("no pgbouncer found (looked in {looked}); install it with `scripts/setup.sh --tests` (Debian's `pgbouncer` package), or point LOCKSMITH_PGBOUNCER at the binary")]
    NoPooler {
        /// Where we looked.
        looked: String,
    },
    /// PgBouncer did not start.
    #[error("pgbouncer did not start; the end of its log:\n{log_tail}")]
    PoolerStartFailed {
        /// The tail of its log.
        log_tail: String,
    },
    /// Something expected on the cluster did not happen in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A file system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A rehearsal's schema SQL failed (the user's input).
    #[error("{name}: building the schema failed: {}", locksmith_pg::describe_sql_error(.source))]
    Setup {
        /// The file (or source) whose SQL failed.
        name: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
    /// The migration to rehearse does not parse.
    #[error("{name}:{line}:{column}: {message}")]
    Syntax {
        /// The migration's name (its files).
        name: String,
        /// 1-based.
        line: u32,
        /// 1-based.
        column: u32,
        /// The parser's message.
        message: String,
    },
    /// The migration to rehearse has no statements.
    #[error("the migration has no statements")]
    NoStatements,
    /// A folder to rehearse holds no migration.
    #[error("no migrations found in {dir}")]
    NoMigrations {
        /// The folder.
        dir: String,
    },
    /// A migration folder that cannot be read.
    #[error(transparent)]
    Folder(#[from] locksmith_pg::migrate::FolderError),
    /// The live schema would be read through a pooler without a direct route.
    #[error(
        "--database-url goes through {pooler}. Reading the schema runs pg_dump, whose session \
         settings (statement_timeout = 0, lock_timeout = 0, …) would stay on the pooler's backends \
         for the application. Nothing was read. Give a URL straight to the server with \
         --direct-url (or LOCKSMITH_DIRECT_URL)"
    )]
    ReadNeedsDirectRoute {
        /// The pooler, as `Pooler` displays it.
        pooler: String,
    },
    /// One run of a rehearsal failed.
    #[error("the {way} run")]
    Run {
        /// `naive`, `guarded` or `online`.
        way: &'static str,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// Talking to the cluster failed.
    #[error(transparent)]
    Pg(#[from] locksmith_pg::Error),
    /// The guard could not start on the cluster.
    #[error(transparent)]
    GuardConnect(#[from] locksmith_pg::guard::ConnectError),
    /// A migration the guard ran on the cluster failed.
    #[error(transparent)]
    Guard(#[from] locksmith_pg::guard::GuardError),
    /// A statement on the cluster failed.
    #[error("{context}: {}", locksmith_pg::describe_sql_error(.source))]
    Sql {
        /// What we were doing.
        context: String,
        /// The driver's error.
        source: tokio_postgres::Error,
    },
}

impl Error {
    /// What kind of failure this is (the binary's exit code comes from it):
    /// the user's input (files, setup SQL, a route the live read cannot take)
    /// is bad input; a server error keeps its own kind.
    pub fn kind(&self) -> locksmith_pg::ErrorKind {
        use locksmith_pg::ErrorKind;
        match self {
            Error::Setup { .. }
            | Error::Syntax { .. }
            | Error::NoStatements
            | Error::NoMigrations { .. }
            | Error::Folder(_)
            | Error::ReadNeedsDirectRoute { .. } => ErrorKind::BadInput,
            Error::Pg(e) => e.kind(),
            Error::GuardConnect(e) => e.kind(),
            Error::Run { source, .. } => source.kind(),
            _ => ErrorKind::Failed,
        }
    }

    pub(crate) fn io(what: &str, source: std::io::Error) -> Self {
        Error::Io {
            what: what.to_string(),
            source,
        }
    }
}
