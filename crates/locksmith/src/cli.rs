//! Command-line arguments: raw parsing only. Turning them into working
//! objects (connection settings, policies) happens in `cmd`.

use clap::{Args, Parser, Subcommand, ValueEnum};

/// PostgreSQL schema migrations that never lock out your traffic.
#[derive(Debug, Parser)]
#[command(name = "locksmith", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay the incident on a throwaway PostgreSQL: a 250-row table, request
    /// traffic, leaked idle-in-transaction sessions and the ALTER that took
    /// production down.
    Demo(DemoArgs),
    /// One-shot diagnosis: lock-wait chains, idle-in-transaction sessions, who to blame.
    Blockers(BlockersArgs),
    /// Static analysis with the real PostgreSQL parser: per statement, the locks it
    /// takes, whether it rewrites the table, and findings with a runnable safe rewrite.
    Lint(LintArgs),
    /// Run a migration on a throwaway database (or, rolled back, on --database-url) and
    /// report the locks each statement actually took and the tables it rewrote.
    Trace(TraceArgs),
}

/// Where to connect: `--database-url`, else `DATABASE_URL`, else libpq's `PG*` variables.
#[derive(Debug, Args, Clone, Default)]
pub struct ConnectionArgs {
    /// PostgreSQL URL or `key=value` connection string [default: $DATABASE_URL, else PGHOST, PGPORT, PGUSER, …]
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Args)]
pub struct BlockersArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print a machine-readable result instead of the live view.
    #[arg(long)]
    pub json: bool,
    /// Directory with the PostgreSQL server binaries (initdb, postgres) [default: $LOCKSMITH_PG_BIN, pg_config --bindir, PATH, /usr/lib/postgresql/*/bin]
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<std::path::PathBuf>,
    /// How long the naive ALTER may wait before it is cancelled on the server.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub cap: std::time::Duration,
}

/// Options shared by `apply` and `run`: the lock budget and how long to keep trying.
#[derive(Debug, Args, Clone)]
pub struct GuardArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// The most one lock attempt may make traffic wait.
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = duration)]
    pub lock_timeout: std::time::Duration,
    /// Lock attempts before giving up (exit 3).
    #[arg(long, value_name = "N", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Total time before giving up (exit 3).
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = duration)]
    pub deadline: std::time::Duration,
    /// Terminate sessions idle in transaction at least this long that block the migration (never active queries, never other databases) [default: off]
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub terminate_idle_after: Option<std::time::Duration>,
    /// Output format of the final report.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

impl GuardArgs {
    /// The guard policy these flags describe.
    pub fn policy(&self) -> locksmith_pg::guard::GuardPolicy {
        locksmith_pg::guard::GuardPolicy {
            lock_timeout: self.lock_timeout,
            max_attempts: self.max_attempts,
            deadline: self.deadline,
            terminate_idle_after: self.terminate_idle_after,
        }
    }
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// SQL files, directories (their `*.sql`, recursively, in name order), or `-` for stdin
    #[arg(value_name = "FILE|DIR|-", required = true)]
    pub paths: Vec<std::path::PathBuf>,
    /// PostgreSQL major version to lint for, 13 to 18 [default: `pg_version` in locksmith.toml, else 18]
    #[arg(long, value_name = "N", value_parser = pg_version)]
    pub pg_version: Option<u32>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: LintFormat,
    /// Configuration file [default: ./locksmith.toml when present]
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// SQL files or directories (their `*.sql`, recursively, in name order), run in order
    #[arg(value_name = "FILE", required = true)]
    pub paths: Vec<std::path::PathBuf>,
    /// Run on this database instead, inside one transaction that is always rolled back
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// SQL run (and committed, on the throwaway database) before the migration
    #[arg(long, value_name = "FILE")]
    pub setup: Option<std::path::PathBuf>,
    /// PostgreSQL major version of the throwaway server and of lint's model, 13 to 18 [default: the server's]
    #[arg(long, value_name = "N", value_parser = pg_version)]
    pub pg_version: Option<u32>,
    /// Directory with the server binaries for the throwaway database [default: $LOCKSMITH_PG_BIN, $LOCKSMITH_PG_BINS, pg_config --bindir, PATH, /usr/lib/postgresql/*/bin]
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: LintFormat,
    /// Configuration file for lint's findings [default: ./locksmith.toml when present]
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LintFormat {
    #[default]
    Human,
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
    /// GitHub Actions workflow commands (`::error file=…`).
    Github,
}

/// A supported PostgreSQL major version, for clap.
pub fn pg_version(s: &str) -> Result<u32, String> {
    let v: u32 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a major version number"))?;
    locksmith_core::lint::config::check_version(v)
}

/// The one duration parser, for clap.
pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    locksmith_core::duration::parse_duration(s).map_err(|e| e.to_string())
}
