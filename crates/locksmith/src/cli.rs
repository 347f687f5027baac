//! Command-line arguments: raw parsing only. Turning them into working
//! objects (connection settings, policies) happens in `cmd`.

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::examples;

/// PostgreSQL schema migrations that never lock out your traffic.
#[derive(Debug, Parser)]
#[command(name = "locksmith", version, about, long_about = None, max_term_width = 100, after_help = examples::LOCKSMITH)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replay the incident on a throwaway PostgreSQL: a 250-row table, request
    /// traffic, leaked idle-in-transaction sessions and the ALTER that took
    /// production down.
    #[command(after_help = examples::DEMO)]
    Demo(DemoArgs),
    /// Apply pending SQL migrations from DIR in order, under the guard, recorded in
    /// locksmith_migrations, exactly once even when several deploys run it at once.
    #[command(after_help = examples::APPLY)]
    Apply(ApplyArgs),
    /// Run any migration tool (e.g. `alembic upgrade head`) under the guard, unchanged
    #[command(long_about = None, before_help = examples::RUN_DETAILS, help_template = examples::DETAILED, after_help = examples::RUN)]
    Run(RunArgs),
    /// Internal: started by `run` behind a pooler, stops the command if `run` is killed.
    #[command(name = "run-warden", hide = true)]
    RunWarden(WardenArgs),
    /// One-shot diagnosis: lock-wait chains, idle-in-transaction sessions, who to blame.
    #[command(after_help = examples::BLOCKERS)]
    Blockers(BlockersArgs),
    /// Live view of sessions and lock queues; cancel or terminate a session with confirmation.
    #[command(after_help = examples::TOP)]
    Top(TopArgs),
    /// Static analysis with the real PostgreSQL parser: per statement, the locks it
    /// takes, whether it rewrites the table, and findings with a runnable safe rewrite.
    #[command(after_help = examples::LINT)]
    Lint(LintArgs),
    /// Run a migration on a throwaway database (or, rolled back, on --database-url) and
    /// report the locks each statement actually took and the tables it rewrote.
    #[command(after_help = examples::TRACE)]
    Trace(TraceArgs),
    /// Audit server and role settings that make lock-queue outages likely, and scan server logs.
    #[command(after_help = examples::DOCTOR)]
    Doctor(DoctorArgs),
    /// Rehearse a migration on a throwaway copy of your schema at your size, under traffic:
    /// plain, guarded and online side by side, with a verdict and the command to run next.
    #[command(long_about = None, before_help = examples::REHEARSE_DETAILS, help_template = examples::DETAILED, after_help = examples::REHEARSE)]
    Rehearse(RehearseArgs),
    /// Print a shell completion script: bash, zsh, fish, elvish or powershell
    #[command(after_help = examples::COMPLETIONS)]
    Completions(CompletionsArgs),
    /// Internal: print the man page (roff), for packagers and scripts/release.sh.
    #[command(hide = true)]
    Man,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Where to connect: `--database-url`, else `DATABASE_URL`, else libpq's
/// `PG*` variables; and, for the commands that change the schema (`apply`,
/// `run`), the route straight to the server behind a pooler.
#[derive(Debug, Args, Clone, Default)]
pub struct ConnectionArgs {
    /// PostgreSQL URL or `key=value` connection string [default: $DATABASE_URL, else PGHOST, PGPORT, PGUSER, …]
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// When --database-url leads to a connection pooler (PgBouncer): a URL straight to the server, for locksmith's own connections (runner lock, watching, cancel and terminate, statements that cannot run in a transaction) [default: $LOCKSMITH_DIRECT_URL]
    #[arg(long, value_name = "URL")]
    pub direct_url: Option<String>,
}

/// Where to connect, for the commands that only read and signal sessions
/// (`blockers`, `top`): everything they do works through a session or
/// transaction pooler; only a statement pooler, which refuses the
/// transaction each snapshot is read in, needs a direct route.
#[derive(Debug, Args, Clone, Default)]
pub struct ReadConnectionArgs {
    /// PostgreSQL URL or `key=value` connection string [default: $DATABASE_URL, else PGHOST, PGPORT, PGUSER, …]
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// When --database-url leads to a statement pooler (PgBouncer pool_mode=statement), which refuses the transaction each read is made in: a URL straight to the server, read instead (doctor also takes it as the route apply and run will have) [default: $LOCKSMITH_DIRECT_URL]
    #[arg(long, value_name = "URL")]
    pub direct_url: Option<String>,
}

impl From<&ReadConnectionArgs> for ConnectionArgs {
    fn from(t: &ReadConnectionArgs) -> Self {
        ConnectionArgs {
            database_url: t.database_url.clone(),
            direct_url: t.direct_url.clone(),
        }
    }
}

/// A fleet: the same command on many databases, one report (`apply`, `blockers`, `doctor`).
#[derive(Debug, Args, Clone, Default)]
pub struct TargetsArgs {
    /// Every database listed in FILE (`-`: stdin), one connection string per line (URL or key=value; blank lines and # comments skipped), each on its own: one report, each entry naming its target (password hidden)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["database_url", "direct_url", "replicas"])]
    pub targets: Option<std::path::PathBuf>,
    /// With --targets: at most N databases at a time
    #[arg(long, value_name = "N", default_value_t = 4, requires = "targets", value_parser = clap::value_parser!(u32).range(1..))]
    pub parallel: u32,
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
    pub connection: ReadConnectionArgs,
    #[command(flatten)]
    pub fleet: TargetsArgs,
    /// A hot standby to diagnose too (repeatable; also LOCKSMITH_REPLICA_URLS, comma-separated): its sessions, and its replay when it waits on a lock the primary took
    #[arg(long = "replica", value_name = "URL")]
    pub replicas: Vec<String>,
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
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration, allow_hyphen_values = true)]
    pub cap: std::time::Duration,
    /// Add a fourth act: a hot standby with a long report on it, its reads stalled by the plain migration and kept flowing by the guard watching it (`apply --replica`).
    #[arg(long)]
    pub replica: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Folder of migrations: sqlx, golang-migrate, Flyway, dbmate, goose or Prisma layout (down sections and files never run)
    #[arg(value_name = "DIR", default_value = "migrations")]
    pub dir: std::path::PathBuf,
    #[command(flatten)]
    pub guard: GuardArgs,
    /// Show the plan (statements, locks, who would block them now) and execute nothing.
    #[arg(long, conflicts_with = "targets")]
    pub dry_run: bool,
    /// Accept applied migrations whose file was edited since (same version and name; their checksum is not updated); never another migration under an applied version
    #[arg(long)]
    pub allow_changed: bool,
    /// Apply a pending migration even when a later version is already applied.
    #[arg(long)]
    pub out_of_order: bool,
    /// Run statements that would block traffic while they build an index, scan or rewrite as
    /// their online equivalents (CREATE INDEX CONCURRENTLY, NOT VALID + VALIDATE, …), one guarded
    /// step at a time, resumable after any interruption; refuse, before anything runs, what has none
    #[arg(long)]
    pub online: bool,
    #[command(flatten)]
    pub throttle: ThrottleArgs,
    /// With --online: take back what an unfinished online migration did (indexes built, constraints added NOT VALID, a type change before its swap), last step first, and forget its progress; the migration stays pending. Refuses what cannot be taken back (an UPDATE that changed rows)
    #[arg(long, requires = "online", conflicts_with_all = ["dry_run", "targets"])]
    pub abort: bool,
    /// Adopt a database another tool built: record every migration up to VERSION as applied without running it, then apply the rest.
    #[arg(long, value_name = "VERSION")]
    pub baseline: Option<String>,
    /// PostgreSQL major version the files are analysed for, 13 to 18 [default: the server's]
    #[arg(long, value_name = "N", value_parser = pg_version)]
    pub pg_version: Option<u32>,
    #[command(flatten)]
    pub fleet: TargetsArgs,
    /// With --targets: the first N databases first; if any of them fails or gives up, the rest are skipped
    #[arg(long, value_name = "N", requires = "targets")]
    pub canary: Option<u32>,
}

/// When `apply --online` backfills wait between batches (as gh-ost throttles).
#[derive(Debug, Args, Clone)]
pub struct ThrottleArgs {
    /// With --online: pause backfills while a --replica standby replays more than this behind
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = duration)]
    pub max_lag: std::time::Duration,
    /// With --online: pause backfills while more than N backends are active on the primary [default: off]
    #[arg(long, value_name = "N", requires = "online")]
    pub max_active: Option<u32>,
    /// With --online: pause backfills while this file exists (touch it to pause, remove it to go on)
    #[arg(long, value_name = "PATH", requires = "online")]
    pub pause_file: Option<std::path::PathBuf>,
}

impl ThrottleArgs {
    /// The engine's throttle.
    pub fn throttle(&self) -> locksmith_pg::online::Throttle {
        locksmith_pg::online::Throttle {
            max_lag: self.max_lag,
            max_active: self.max_active,
            pause_file: self.pause_file.clone(),
        }
    }
}

/// The warden's connection: `run`'s own, passed in the environment.
#[derive(Debug, Args)]
pub struct WardenArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub guard: GuardArgs,
    /// A command that prints the SQL the migration command will run (e.g. `python manage.py sqlmigrate app 0042`), run through `sh -c` with the same environment: its plan (locks, table sizes, estimated holds, sessions in the way, online alternatives) is printed first, and a statement estimated to hold a traffic-blocking lock past --max-hold refuses the run. Should it fail, nothing runs (exit 2). `alembic upgrade` is planned without it, through alembic's offline mode
    #[arg(long, value_name = "CMD")]
    pub sql_from: Option<String>,
    /// Print the plan (see --sql-from) and exit without running the command
    #[arg(long)]
    pub plan_only: bool,
    /// The migration command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

/// Options shared by `apply` and `run`: the lock budget and how long to keep trying.
#[derive(Debug, Args, Clone)]
pub struct GuardArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// The most one lock attempt may make traffic wait.
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = duration, allow_hyphen_values = true)]
    pub lock_timeout: std::time::Duration,
    /// Lock attempts before giving up (exit 3).
    #[arg(long, value_name = "N", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Total time before giving up (exit 3).
    #[arg(long, value_name = "DURATION", default_value = "3m", value_parser = duration, allow_hyphen_values = true)]
    pub deadline: std::time::Duration,
    /// Terminate sessions idle in transaction at least this long that block the migration (never active queries, never other databases) [default: off]
    #[arg(long, value_name = "DURATION", value_parser = duration, allow_hyphen_values = true)]
    pub terminate_idle_after: Option<std::time::Duration>,
    /// The most a statement may hold a lock that blocks reads or writes (a rewrite, an index build, a validation scan); enforced by the server, which stops and rolls back a statement that would hold it longer (exit 3)
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = duration, allow_hyphen_values = true)]
    pub max_hold: std::time::Duration,
    /// A hot standby to watch too (repeatable; also LOCKSMITH_REPLICA_URLS, comma-separated): it replays the migration's ACCESS EXCLUSIVE locks, so its sessions in the way are looked for before locking and waited out, never raced, however young (idle ones terminated under --terminate-idle-after; `run`: before each retry, since the first try knows no tables yet)
    #[arg(long = "replica", value_name = "URL")]
    pub replicas: Vec<String>,
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
            max_hold: self.max_hold,
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
    /// Output format: sarif is SARIF 2.1.0 for code-scanning dashboards, github is GitHub Actions annotations (`::error file=…`), gitlab is GitLab Code Quality JSON (a `codequality` report artifact)
    #[arg(long, value_enum, default_value_t)]
    pub format: LintFormat,
    /// Configuration file [default: ./locksmith.toml when present]
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    /// Grade with a live server: each statement that rewrites, reads or indexes a table gets a
    /// size verdict (rows, bytes, estimated hold from rates a probe measures on the server; LS601),
    /// and sessions holding conflicting locks now are reported (LS602). Read-only but for the
    /// probe's rolled-back transaction.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Judge every file as if its migration tool runs it inside one transaction (squawk's name) [default: from the folder's layout and the file's no-transaction marker, else `assume_in_transaction` in locksmith.toml]
    #[arg(long)]
    pub assume_in_transaction: bool,
    /// Rewrite the newest migration of DIR (or the FILE given) into what its tool (detected from the layout) runs safely: each statement replaced by its fix, and steps that cannot share a transaction moved to new migration files with the tool's no-transaction marker
    #[arg(long, conflicts_with = "database_url")]
    pub fix: bool,
    /// With --fix: print the changes as a unified diff instead of writing them
    #[arg(long, requires = "fix")]
    pub diff: bool,
}

#[derive(Debug, Args)]
pub struct TraceArgs {
    /// SQL files or directories (their `*.sql`, recursively, in name order), run in order
    #[arg(value_name = "FILE", required = true)]
    pub paths: Vec<std::path::PathBuf>,
    /// Run on this database instead, inside one transaction that is always rolled back, under the guard's budget: statements that would rewrite or scan a table for longer than --lock-timeout (estimated from its size) are refused up front (exit 2), sessions in a transaction holding conflicting locks make it give up and name them (exit 3), each lock is asked for under --lock-timeout and each statement runs at most --max-hold. Trace big rewrites on the throwaway cluster (no --database-url, with --setup)
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// When --database-url leads to a connection pooler (PgBouncer): a URL straight to the server, for locksmith's own connections (runner lock, watching, cancel and terminate, statements that cannot run in a transaction, trace) [default: $LOCKSMITH_DIRECT_URL]
    #[arg(long, value_name = "URL", requires = "database_url")]
    pub direct_url: Option<String>,
    /// With --database-url: the most one lock request may make traffic wait; past it the trace gives up (exit 3)
    #[arg(long, value_name = "DURATION", default_value = "200ms", value_parser = duration, allow_hyphen_values = true)]
    pub lock_timeout: std::time::Duration,
    /// With --database-url: the most one statement may run, and so hold its locks (the server stops it: statement_timeout)
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = duration, allow_hyphen_values = true)]
    pub max_hold: std::time::Duration,
    /// With --database-url: how long a blocked trace may wait out (without queueing) the sessions in its way and run again from the start, as the guard retries; 0s gives up at once
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = duration, allow_hyphen_values = true)]
    pub deadline: std::time::Duration,
    /// SQL run (and committed, on the throwaway database) before the migration
    #[arg(long, value_name = "FILE")]
    pub setup: Option<std::path::PathBuf>,
    /// PostgreSQL major version of the throwaway server and of lint's model, 13 to 18 [default: the server's]
    #[arg(long, value_name = "N", value_parser = pg_version)]
    pub pg_version: Option<u32>,
    /// Directory with the server binaries for the throwaway database [default: $LOCKSMITH_PG_BIN, $LOCKSMITH_PG_BINS, pg_config --bindir, PATH, /usr/lib/postgresql/*/bin]
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<std::path::PathBuf>,
    /// Output format: sarif is SARIF 2.1.0 for code-scanning dashboards, github is GitHub Actions annotations (`::error file=…`), gitlab is GitLab Code Quality JSON (a `codequality` report artifact)
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
    // Described in the `--format` help, not here: a described value would
    // give `lint` and `trace` a long help page of their own (see examples::DETAILED).
    // SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
    // GitHub Actions workflow commands (`::error file=…`).
    Github,
    // GitLab Code Quality JSON (a `codequality` report artifact).
    Gitlab,
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

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub connection: ReadConnectionArgs,
    /// A hot standby to watch too (repeatable; also LOCKSMITH_REPLICA_URLS, comma-separated): its lock waits, replay among them, in their own section
    #[arg(long = "replica", value_name = "URL")]
    pub replicas: Vec<String>,
    /// How often to refresh.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = duration, allow_hyphen_values = true)]
    pub interval: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub connection: ReadConnectionArgs,
    #[command(flatten)]
    pub fleet: TargetsArgs,
    /// Server log files to scan (plain stderr or csvlog format).
    #[arg(long = "log", value_name = "FILE", num_args = 1.., conflicts_with = "targets")]
    pub logs: Vec<std::path::PathBuf>,
    /// A hot standby to audit too (repeatable; also LOCKSMITH_REPLICA_URLS, comma-separated): how long its replay of a migration's lock may wait for its readers
    #[arg(long = "replica", value_name = "URL")]
    pub replicas: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RehearseArgs {
    /// The migration: SQL files (run in order), or a folder whose last file is the migration and the earlier ones its schema
    #[arg(value_name = "MIGRATION|DIR", required = true)]
    pub paths: Vec<std::path::PathBuf>,
    /// An SQL file that builds the schema before the migration (repeatable: run in the order given)
    #[arg(long, value_name = "FILE")]
    pub setup: Vec<std::path::PathBuf>,
    /// Read the schema and table sizes from this server (read-only)
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// When --database-url leads to a connection pooler (PgBouncer): a URL straight to the server to read from, since pg_dump's session settings would stay on pooled backends [default: $LOCKSMITH_DIRECT_URL]
    #[arg(long, value_name = "URL", requires = "database_url")]
    pub direct_url: Option<String>,
    /// Rows per table: the cap on the live size, or the size without a live server [default: 100000]
    #[arg(long, value_name = "N", conflicts_with = "scale")]
    pub rows: Option<i64>,
    /// Multiply the live tables' sizes (or the default 100000 rows) by this factor
    #[arg(long, value_name = "N")]
    pub scale: Option<f64>,
    /// Request templates with rates (see above) instead of the default mix
    #[arg(long, value_name = "FILE")]
    pub traffic: Option<std::path::PathBuf>,
    /// Sessions left idle in transaction on the first table the migration touches (the story had 3)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub leaks: usize,
    /// Also rehearse the online plan (what `apply --online` runs)
    #[arg(long)]
    pub online: bool,
    /// Write a self-contained HTML report: latency timelines with lock holds, and the tables
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// The worst request stall the plain run may cause before the rehearsal exits 1
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = duration, allow_hyphen_values = true)]
    pub max_stall: std::time::Duration,
    /// How long the plain run may take before it is cancelled, and the guard's deadline
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration, allow_hyphen_values = true)]
    pub cap: std::time::Duration,
    /// Directory with the server binaries for the throwaway cluster [default: $LOCKSMITH_PG_BIN, pg_config --bindir, PATH, /usr/lib/postgresql/*/bin]
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<std::path::PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `--setup` takes one file: the migration after it is the migration, as
    /// users write it (`rehearse --setup schema.sql m.sql` was a usage error).
    #[test]
    fn rehearse_setup_takes_one_file_each_time() {
        let cli = Cli::try_parse_from([
            "locksmith",
            "rehearse",
            "--setup",
            "a.sql",
            "--setup",
            "b.sql",
            "m.sql",
        ])
        .unwrap();
        let Command::Rehearse(args) = cli.command else {
            panic!("not rehearse");
        };
        assert_eq!(args.setup, ["a.sql", "b.sql"].map(std::path::PathBuf::from));
        assert_eq!(args.paths, [std::path::PathBuf::from("m.sql")]);
    }
}
