//! One module per command, plus `fleet` (`--targets`: one command on many
//! databases), `signals` (Ctrl-C and SIGTERM as the libraries' interrupt)
//! and `sources` (a single migration file's up section). Each turns parsed
//! arguments into working objects, calls the library crates, hands the
//! result to a renderer (`render`, where progress lines live too) and picks
//! the outcome that `exit` turns into a code. No database call, retry or
//! plan of its own: those are the libraries'.

mod apply;
mod blockers;
mod completions;
mod demo;
mod doctor;
mod fleet;
mod lint;
mod rehearse;
mod run;
mod signals;
mod sources;
mod trace;

use crate::cli::{Cli, Command, ConnectionArgs};
// The guard's progress lines are rendering (`render::progress`); commands
// still name them `super::progress`.
use crate::exit::{CmdResult, Failure};
use crate::render::progress;
use locksmith_pg::ConnectionSettings;

/// The conventional exit code after a signal: 128 + its number.
pub fn signal_exit_code(signal: locksmith_pg::guard::Interrupt) -> u8 {
    signals::exit_code(signal)
}

/// Runs the command on a fresh tokio runtime.
pub fn run(cli: Cli) -> CmdResult {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::other(miette::miette!("starting the async runtime: {e}")))?;
    runtime.block_on(async move {
        match cli.command {
            Command::Apply(args) => apply::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Blockers(args) => blockers::run(args).await,
            Command::Lint(args) => lint::run(args).await,
            Command::Run(args) => run::run(args).await,
            Command::RunWarden(args) => run::warden(args).await,
            Command::Top(args) => crate::top::run(args).await,
            Command::Doctor(args) => doctor::run(args).await,
            Command::Trace(args) => trace::run(args).await,
            Command::Rehearse(args) => rehearse::run(args).await,
            Command::Completions(args) => completions::completions(args),
            Command::Man => completions::man(),
        }
    })
}

/// Resolves connection settings from `--database-url`, `DATABASE_URL` or libpq's variables.
/// With `--direct-url` (or `LOCKSMITH_DIRECT_URL`), locksmith's own
/// connections take that route to the server (see [`ConnectionSettings::direct`]).
pub fn settings(args: &ConnectionArgs) -> Result<ConnectionSettings, Failure> {
    let settings =
        ConnectionSettings::resolve(args.database_url.as_deref()).map_err(Failure::bad_input)?;
    let direct = args
        .direct_url
        .clone()
        .or_else(|| std::env::var("LOCKSMITH_DIRECT_URL").ok())
        .filter(|u| !u.trim().is_empty());
    match direct {
        Some(url) => {
            let direct = ConnectionSettings::resolve(Some(&url))
                .map_err(|e| Failure::input(miette::miette!("--direct-url: {e}")))?;
            Ok(settings.with_direct(direct))
        }
        None => Ok(settings),
    }
}

/// The standbys given with `--replica URL`, or else `LOCKSMITH_REPLICA_URLS`
/// (comma-separated); each resolved as a connection string (bad → exit 2).
pub fn replica_settings(given: &[String]) -> Result<Vec<ConnectionSettings>, Failure> {
    let mut urls: Vec<String> = given.to_vec();
    if urls.is_empty() {
        if let Ok(list) = std::env::var("LOCKSMITH_REPLICA_URLS") {
            urls = list
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(String::from)
                .collect();
        }
    }
    urls.iter()
        .map(|url| {
            ConnectionSettings::resolve(Some(url))
                .map_err(|e| Failure::input(miette::miette!("--replica: {e}")))
        })
        .collect()
}

/// Says on stderr, once per command, that a connection pooler is in between
/// ([`render::pooler_notice`](crate::render::pooler_notice) has the wording);
/// silent without one. `human` is false for machine formats, whose report
/// carries a `pooler` key instead ([`PoolerJson`](crate::render::PoolerJson)).
pub fn note_pooler(
    command: &str,
    connection: &locksmith_pg::Connection,
    settings: &ConnectionSettings,
    human: bool,
) {
    if let (Some(pooler), true) = (connection.pooler(), human) {
        eprintln!(
            "{}",
            crate::render::pooler_notice(command, &pooler, settings.has_direct())
        );
    }
}

/// Connects, turning a connection failure into a one-line error (exit 1).
/// Every command reads in transactions (sessions and locks at one moment,
/// table sizes under a `lock_timeout`, a trace rolled back), so behind a
/// statement pooler it takes `--direct-url`, or is refused (exit 2) before
/// anything ran.
pub async fn connect(settings: &ConnectionSettings) -> Result<locksmith_pg::Connection, Failure> {
    locksmith_pg::guard::connect_for_transactions(settings, READS_IN_TRANSACTIONS)
        .await
        .map_err(Failure::from)
}

/// What needs transaction blocks in the commands that only read (and trace).
pub const READS_IN_TRANSACTIONS: &str =
    "locksmith reads sessions, locks and the catalog in transactions (and trace runs the \
     migration in one)";
