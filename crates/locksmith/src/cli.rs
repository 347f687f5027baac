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
    /// Live view of sessions and lock queues; cancel or terminate a session with confirmation.
    Top(TopArgs),
    /// Audit server and role settings that make lock-queue outages likely, and scan server logs.
    Doctor(DoctorArgs),
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

/// The one duration parser, for clap.
pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    locksmith_core::duration::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// How often to refresh.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = duration)]
    pub interval: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Server log files to scan (plain stderr or csvlog format).
    #[arg(long = "log", value_name = "FILE", num_args = 1..)]
    pub logs: Vec<std::path::PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}
