//! `locksmith`: PostgreSQL schema migrations that never lock out your traffic.
//!
//! The binary is thin: `main → run(parse())`, one `match` on the command
//! ([`cmd`]), exit codes decided in one place ([`exit`]). It is arguments
//! ([`cli`]), calls into the library crates, rendering ([`render`], the
//! [`top`] TUI) and exit codes; it makes no database call of its own. The
//! work lives in the libraries: `locksmith-core` (analysis), `locksmith-pg`
//! (live server, the one migration engine), `locksmith-sandbox` (throwaway
//! clusters, simulated traffic, `demo`'s and `rehearse`'s scenarios).

mod cli;
mod cmd;
mod examples;
mod exit;
mod output;
mod render;
mod top;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Errors are one line a user may grep for; don't wrap them at 80 columns.
    let _ = miette::set_hook(Box::new(|_| {
        Box::new(miette::MietteHandlerOpts::new().wrap_lines(false).build())
    }));
    let cli = cli::Cli::parse();
    exit::finish(cmd::run(cli))
}
