//! `locksmith run [GUARD] -- CMD ARGS…`: runs any migration tool, unchanged,
//! under the guard. The run itself — route, the child's environment, the
//! session watch, attempts and retries, the warden — is
//! `locksmith_pg::wrap`'s; this module only turns flags into a
//! [`Wrapped`], events into `locksmith run: …` lines, and the report into
//! text or JSON and an exit code (the command's own when it failed).

use std::io::IsTerminal;

use locksmith_pg::migrate::Status;
use locksmith_pg::wrap::{self, Event, Report, WardenCommand, Wrapped};

use super::progress::WaitingLines;
use super::signals;
use crate::cli::{ConnectionArgs, Format, RunArgs, WardenArgs};
use crate::exit::{CmdResult, Failure, Outcome};
use crate::render;
use crate::render::style::Style;

/// The hidden subcommand that runs the warden.
const WARDEN: &str = "run-warden";

/// Runs the command until it succeeds, fails for a reason other than a lost
/// lock race, or attempts or the deadline run out.
pub async fn run(args: RunArgs) -> CmdResult {
    let settings = super::settings(&args.guard.connection)?;
    let replicas = super::replica_settings(&args.guard.replicas)?;
    let json = args.guard.format == Format::Json;
    let mut waiting = WaitingLines::default();
    let wrapped = Wrapped::new(settings, args.guard.policy(), replicas)
        .interrupts(signals::interrupts())
        .database_url(args.guard.connection.database_url.clone())
        // With --format json, stdout carries only the report.
        .stdout_to_stderr(json)
        .warden(warden_command(&args.guard.connection))
        .sql_from(args.sql_from.clone())
        .on_event(move |e| {
            if !matches!(e, Event::Waiting { .. }) || waiting.due() {
                progress(&e)
            }
        });
    if args.plan_only {
        let plan = wrapped.plan(&args.cmd).await?;
        let mut out = crate::output::stdout();
        match json {
            true => render::json(
                &mut out,
                &serde_json::json!({"status": "planned", "plan": plan}),
            )?,
            false => std::io::Write::write_all(&mut out, render::run::plan(&plan).as_bytes())?,
        }
        return Ok(Outcome::Done);
    }
    let report = match wrapped.run(&args.cmd).await {
        Ok(report) => report,
        // Stopped before the command ran: nothing to report.
        Err(wrap::Error::Interrupted(signal)) => {
            return Ok(Outcome::Code(signals::exit_code(signal)))
        }
        Err(e) => {
            let code = e.shell_code();
            let mut failure = Failure::from(e);
            failure.code = code.unwrap_or(failure.code);
            return Err(failure);
        }
    };
    // A report that cannot be printed after a signal still exits 130/143.
    let printed = print(&report, json);
    if let Some(signal) = report.run.interrupted {
        return Ok(Outcome::Code(signals::exit_code(signal)));
    }
    printed?;
    Ok(match report.run.status {
        Status::Applied => Outcome::Done,
        Status::Blocked | Status::HoldExceeded => Outcome::Blocked,
        // The command's own code; 1 when it exited 0 with a statement not run.
        Status::Failed => Outcome::Code(report.command_exit_code.filter(|c| *c != 0).unwrap_or(1)),
    })
}

/// The final report: JSON on stdout, or human text on stderr.
fn print(report: &Report, json: bool) -> Result<(), Failure> {
    if json {
        render::json(&mut crate::output::stdout(), report)?;
    } else {
        let style = match std::io::stderr().is_terminal() {
            true => Style::detect(),
            false => Style::plain(),
        };
        eprint!(
            "{}",
            render::run::human(&report.run, &report.command, style)
        );
    }
    Ok(())
}

/// A live line on stderr, between the command's own output.
fn progress(event: &Event<'_>) {
    eprintln!("locksmith run: {}", render::run::event(event));
}

/// The warden is this executable again, `run`'s connection flags in its
/// environment (never on its command line, where `ps` would show a password).
fn warden_command(connection: &ConnectionArgs) -> WardenCommand {
    let vars = [
        ("DATABASE_URL", &connection.database_url),
        ("LOCKSMITH_DIRECT_URL", &connection.direct_url),
    ];
    WardenCommand {
        args: vec![WARDEN.to_string()],
        env: vars
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.clone()?)))
            .collect(),
    }
}

/// `locksmith run-warden`: stops the command should `run` die (see
/// [`locksmith_pg::wrap::warden`]).
pub async fn warden(args: WardenArgs) -> CmdResult {
    let settings = super::settings(&args.connection)?;
    wrap::warden::serve(&settings, tokio::io::stdin(), |e| progress(&e)).await;
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn the_command_is_required() {
        assert!(crate::cli::Cli::try_parse_from(["locksmith", "run"]).is_err());
        assert!(crate::cli::Cli::try_parse_from(["locksmith", "run", "--"]).is_err());
    }
}
