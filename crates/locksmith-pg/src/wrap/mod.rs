//! Runs a migration tool that keeps its own connections (alembic, flyway,
//! psql, …) under the guard: the engine of `locksmith run -- CMD`, as a
//! library.
//!
//! The tool is started unchanged; only its environment is shaped
//! ([`env`]: `lock_timeout` through `PGOPTIONS`, an `application_name`
//! through `PGAPPNAME` so its sessions can be found, `DATABASE_URL` from the
//! given URL when the tool has none), psql is told to stop at a failed
//! statement ([`psql`]), and [`route`] decides whether a pooler is in
//! between. A second connection watches the tool's sessions
//! ([`Watcher`](crate::guard::watcher::Watcher)): a lock
//! wait over the budget is cancelled on the server, the sessions it waited
//! for are named. Behind a pooler `PGOPTIONS` is left alone (the pooler
//! would refuse or drop it), the watch alone bounds the waits, and a
//! [`warden`] process stops the tool should this one die.
//!
//! Before the first attempt, the [`plan`] is read: the tool's SQL (alembic's
//! offline mode, or a command named with [`Wrapped::sql_from`]), analysed
//! with lint's model, with today's table sizes, estimated holds, blockers
//! and online alternatives; a statement estimated to hold a
//! traffic-blocking lock past `max_hold` refuses the run before anything
//! ran.
//!
//! When an attempt lost a lock race, the tool is rerun with backoff
//! ([`guard::retry::Retry`](crate::guard::retry::Retry), the guard's own
//! decisions) — but not while long-lived sessions still hold the lock it
//! waited for: queueing behind them is the outage. Each try waits for its
//! locks a little longer (three polls of the watch, doubling up to the
//! budget): the first knows nothing of who holds what. With standbys given,
//! the look before a retry covers their sessions in the way of an `ACCESS
//! EXCLUSIVE` lock the tool waited for.
//!
//! It must not: change where the tool connects beyond the above; buffer the
//! tool's output (it passes through live, scanned on the way for
//! lock-timeout errors); rerun a tool that failed for any other reason, or
//! that committed part of its work before it lost (see
//! [`guard::commits`](crate::guard::commits)); start an attempt after the
//! deadline; leave one of the tool's lock requests queued on the server,
//! whichever way it ends; report as applied a run in which a statement
//! failed on a lock timeout or was cancelled by the watch, even when the
//! tool exits 0. Nor print, read arguments or choose exit codes: progress
//! comes as [`Event`]s, the outcome as a [`Report`] (serde: the JSON
//! contract), a run that could not start as an [`Error`] with a
//! [`kind`](Error::kind).
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! use locksmith_pg::guard::GuardPolicy;
//! use locksmith_pg::wrap::Wrapped;
//! use locksmith_pg::ConnectionSettings;
//!
//! let settings = ConnectionSettings::resolve(None)?;
//! let command = ["alembic", "upgrade", "head"].map(String::from);
//! let report = Wrapped::new(settings, GuardPolicy::default(), Vec::new())
//!     .on_event(|e| eprintln!("{e:?}"))
//!     .run(&command)
//!     .await?;
//! println!("{}", serde_json::to_string(&report)?);
//! # Ok(()) }
//! ```

mod account;
mod child;
pub mod env;
mod flow;
pub mod plan;
mod preflight;
mod process;
pub mod psql;
mod report;
pub mod route;
pub mod warden;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::guard::watcher::CancelledWait;
use crate::guard::{GuardPolicy, Holder, Interrupt};
use crate::{ConnectionSettings, ErrorKind, Pooler};
pub use plan::RunPlan;
pub use report::{CancelRecord, Report};
pub use route::PoolerReport;
pub use warden::WardenCommand;

/// What happened, for live progress lines.
#[derive(Debug)]
pub enum Event<'a> {
    /// A connection pooler is in between: the watch alone bounds the
    /// command's lock waits, finding its sessions by name.
    Pooler {
        /// The pooler.
        pooler: Pooler,
        /// Whether the watch goes straight to the server (a direct route).
        direct: bool,
        /// The name the command's sessions carry (one per attempt from now).
        application_name: &'a str,
    },
    /// Behind a pooler, the command inherits a `PGOPTIONS` that the pooler
    /// refuses or drops.
    InheritedOptions,
    /// Behind a pooler, the user's `PGAPPNAME` is replaced by ours.
    ReplacedApplicationName {
        /// The user's.
        replaced: &'a str,
        /// Ours.
        application_name: &'a str,
    },
    /// The warden could not be started: should this process die, nobody
    /// stops the command.
    NoWarden(&'a std::io::Error),
    /// The plan, read before the command runs.
    Plan(&'a RunPlan),
    /// The plan could not be read (the message says why): the command runs
    /// as it would without one.
    NoPlan(&'a str),
    /// psql is given `-v ON_ERROR_STOP=1`.
    PsqlStopsOnError,
    /// This psqlrc sets `ON_ERROR_STOP` and wins over ours.
    PsqlrcSetsIt(&'a str),
    /// Long-lived sessions hold what an earlier attempt waited for: not
    /// starting the command again yet.
    Waiting {
        /// Who.
        holders: &'a [Holder],
        /// How long until the next look.
        next_look: Duration,
    },
    /// An attempt starts.
    Attempt {
        /// 1-based.
        number: u32,
        /// The command, passwords hidden.
        command: &'a str,
        /// Behind a pooler (the watch cancels waits past `lock_wait`), or
        /// not (the server's `lock_timeout` is `lock_wait`).
        pooled: bool,
        /// The bound on each lock wait of this attempt.
        lock_wait: Duration,
        /// The name its sessions carry.
        application_name: &'a str,
    },
    /// The deadline passed while the command ran: it is being stopped.
    DeadlinePassed {
        /// Its executable, as given.
        program: &'a str,
    },
    /// The watch cancelled a statement of the command's that waited for a
    /// lock past the budget.
    Cancelled(&'a CancelledWait),
    /// A blocker was terminated under the terminate policy.
    Terminated(&'a Holder),
    /// Something the watch could not do (said once).
    Warning(&'a str),
    /// An attempt lost a lock race and will be retried.
    LostRace {
        /// Which attempt.
        number: u32,
        /// How it lost.
        how: Lost,
        /// Whom it waited for.
        waited_for: &'a [Holder],
    },
    /// The warden found the wrapper gone with the command running: it stops
    /// the command and cancels its statements.
    WardenStopping {
        /// The attempt's `application_name`.
        application_name: &'a str,
        /// The command's process.
        pid: Option<u32>,
    },
    /// The warden stopped the command; statements cancelled on the server.
    WardenStopped {
        /// How many.
        cancelled: u64,
    },
    /// The warden could not cancel the command's statements.
    WardenCouldNotCancel {
        /// The attempt's `application_name`.
        application_name: &'a str,
        /// Why.
        error: &'a str,
    },
}

/// How an attempt lost a lock race.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// A statement failed on `lock_timeout` (the command's output says so).
    LockTimeout,
    /// The watch cancelled a lock wait over the budget.
    Cancelled,
    /// Either of the above, and the command exited 0 regardless; `cancelled`
    /// says which.
    Exited0 {
        /// The watch cancelled it (else `lock_timeout` ended it).
        cancelled: bool,
    },
}

impl Lost {
    /// How the statement failed, as the watch or the command's output showed it.
    pub fn statement(cancelled: bool) -> &'static str {
        if cancelled {
            "one of its statements waited for a lock past the budget and was cancelled by locksmith"
        } else {
            "one of its statements failed on lock_timeout (its output says so)"
        }
    }
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Exited0 { cancelled } => write!(
                f,
                "{}; the command exited 0 regardless",
                Lost::statement(*cancelled)
            ),
            Lost::LockTimeout => f.write_str("its lock wait hit lock_timeout"),
            Lost::Cancelled => {
                f.write_str("a lock wait over the budget was cancelled on the server by locksmith")
            }
        }
    }
}

/// Why the command was not run (or not to its end, for [`Error::Spawn`] and
/// [`Error::Wait`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The watch's connection could not be opened or set up.
    #[error("cannot watch the migration's sessions, so it was not run: {0}")]
    Watch(#[source] crate::Error),
    /// A hot standby given to watch cannot be watched.
    #[error(transparent)]
    Replica(crate::Error),
    /// A statement pooler is in between: refused before anything ran.
    #[error(transparent)]
    Refused(#[from] crate::connection::StatementPooling),
    /// Behind a pooler the command sets its own `application_name`, so its
    /// sessions could not be found.
    #[error("{0}")]
    OwnApplicationName(String),
    /// The command named to print the SQL (`--sql-from`) failed, or printed
    /// SQL that does not parse.
    #[error("--sql-from: {0}; nothing was run")]
    SqlFrom(String),
    /// A plan was asked for, and this command has no source of SQL.
    #[error("no plan for `{0}`: locksmith reads the SQL of `alembic upgrade` and of `psql -c`/`-f` itself; for another tool, name a command that prints it with --sql-from")]
    NoSqlSource(String),
    /// A plan was asked for, and it could not be read.
    #[error("no plan: {0}")]
    NoPlan(String),
    /// Reading the plan's sizes and blockers failed.
    #[error("reading the plan before running the command: {0}; nothing was run")]
    PlanRead(#[source] crate::Error),
    /// The mark taken before an attempt (for what it commits) failed.
    #[error("the command was not run: {0}")]
    Mark(#[source] crate::Error),
    /// The command could not be started.
    #[error("cannot run `{program}`: {source}")]
    Spawn {
        /// Its executable, as given.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for the command failed.
    #[error("waiting for `{program}`: {source}")]
    Wait {
        /// Its executable, as given.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Ctrl-C or SIGTERM before the command ran.
    #[error("interrupted ({}) before the command ran; nothing was run", match .0 { Interrupt::Interrupt => "Ctrl-C", Interrupt::Terminate => "SIGTERM" })]
    Interrupted(Interrupt),
}

impl Error {
    /// What kind of failure this is, for the caller's exit code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Refused(_)
            | Error::OwnApplicationName(_)
            | Error::SqlFrom(_)
            | Error::NoSqlSource(_) => ErrorKind::BadInput,
            Error::Interrupted(signal) => ErrorKind::Interrupted(*signal),
            Error::Replica(e) => e.kind(),
            Error::Watch(_)
            | Error::NoPlan(_)
            | Error::PlanRead(_)
            | Error::Mark(_)
            | Error::Spawn { .. }
            | Error::Wait { .. } => ErrorKind::Failed,
        }
    }

    /// A shell's exit code for a command that could not be started: 127 not
    /// found, 126 found but not runnable.
    pub fn shell_code(&self) -> Option<u8> {
        match self {
            Error::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Some(127)
            }
            Error::Spawn { .. } => Some(126),
            _ => None,
        }
    }
}

type Handler = Arc<Mutex<Box<dyn FnMut(Event<'_>) + Send>>>;

/// A migration command to run under the guard, against the database
/// `settings` name, watching `replicas` too.
pub struct Wrapped {
    settings: ConnectionSettings,
    policy: GuardPolicy,
    replicas: Vec<ConnectionSettings>,
    interrupts: watch::Receiver<Option<Interrupt>>,
    events: Handler,
    database_url: Option<String>,
    stdout_to_stderr: bool,
    warden: Option<WardenCommand>,
    sql_from: Option<String>,
}

impl Wrapped {
    /// A wrapper never interrupted, reporting no events, passing the
    /// command's output through as it is, until told otherwise.
    pub fn new(
        settings: ConnectionSettings,
        policy: GuardPolicy,
        replicas: Vec<ConnectionSettings>,
    ) -> Wrapped {
        let (_, never) = watch::channel(None);
        Wrapped {
            settings,
            policy,
            replicas,
            interrupts: never,
            events: Arc::new(Mutex::new(Box::new(|_| {}))),
            database_url: None,
            stdout_to_stderr: false,
            warden: None,
            sql_from: None,
        }
    }

    /// Stops the run when the channel turns `Some` (Ctrl-C, SIGTERM): the
    /// signal is passed on to the command and its statements are cancelled
    /// on the server. A dropped sender means never.
    pub fn interrupts(mut self, interrupts: watch::Receiver<Option<Interrupt>>) -> Wrapped {
        self.interrupts = interrupts;
        self
    }

    /// Receives progress events.
    pub fn on_event(self, f: impl FnMut(Event<'_>) + Send + 'static) -> Wrapped {
        *self.events.lock().unwrap_or_else(|e| e.into_inner()) = Box::new(f);
        self
    }

    /// The connection string the command gets as `DATABASE_URL` when its
    /// environment has none (`--database-url`).
    pub fn database_url(mut self, url: Option<String>) -> Wrapped {
        self.database_url = url;
        self
    }

    /// Sends the command's stdout to our stderr, so that our stdout carries
    /// only a report (`--format json`). Either way its output passes through
    /// live.
    pub fn stdout_to_stderr(mut self, yes: bool) -> Wrapped {
        self.stdout_to_stderr = yes;
        self
    }

    /// Behind a pooler, starts a [`warden`] this way, which stops the
    /// command should this process die while it runs. Without one, nobody
    /// does.
    pub fn warden(mut self, how: WardenCommand) -> Wrapped {
        self.warden = Some(how);
        self
    }

    /// The command that prints the SQL the wrapped command will run
    /// (`--sql-from`), for the plan; without one, only `alembic upgrade` is
    /// planned (see [`plan`]). Should it fail, nothing is run.
    pub fn sql_from(mut self, command: Option<String>) -> Wrapped {
        self.sql_from = command;
        self
    }

    fn emit(&self, event: Event<'_>) {
        (self.events.lock().unwrap_or_else(|e| e.into_inner()))(event);
    }
}
