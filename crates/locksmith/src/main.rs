//! `locksmith`: PostgreSQL schema migrations that never lock out your traffic.
//!
//! The binary is thin: `main → run(parse())`, one `match` on the command,
//! exit codes decided in one place ([`exit`]). The work lives in the library
//! crates: `locksmith-core` (analysis), `locksmith-pg` (live server),
//! `locksmith-sandbox` (throwaway clusters, simulated traffic).

mod cli;
mod cmd;
mod exit;
mod render;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    exit::finish(cmd::run(cli))
}
