//! `locksmith completions SHELL` and the hidden `locksmith man`: the shell
//! completion script and the man page, generated from the CLI definition so
//! they never fall behind it.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs};
use crate::exit::{CmdResult, Failure, Outcome};

pub fn completions(args: CompletionsArgs) -> CmdResult {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "locksmith", &mut out);
    write_stdout(&out)
}

pub fn man() -> CmdResult {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .map_err(|e| Failure::other(miette::miette!("rendering the man page: {e}")))?;
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> CmdResult {
    let mut stdout = crate::output::stdout();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(Outcome::Done)
}
