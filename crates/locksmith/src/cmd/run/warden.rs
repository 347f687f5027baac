//! The warden: a small second process that finishes `run`'s job if `run`
//! itself dies (`kill -9`, OOM killer) while the command is running behind
//! a connection pooler.
//!
//! There the command's lock waits have no server-side `lock_timeout` (a
//! pooler refuses or drops `PGOPTIONS`): only `run`'s watch bounds them. With
//! the watch gone, the command's `ALTER` would wait behind the leakers for
//! as long as they live, and all traffic on the table behind it, which is the
//! incident itself. So `run` starts the warden (its own executable, hidden
//! subcommand `run-warden`, in its own process group so a Ctrl-C meant for
//! `run` does not reach it) and tells it, over a pipe, which attempt is
//! running: its `application_name` and the command's pid. When the pipe
//! closes without `done`, `run` is gone: the warden stops the command
//! (SIGTERM, then SIGKILL) and cancels the statements of its sessions on the
//! server, as `run` does at its deadline, then exits.
//!
//! Not started for a direct connection: there `PGOPTIONS` carries the
//! `lock_timeout`, and the server bounds each wait by itself.
//!
//! It never terminates a session and never touches one not carrying the
//! attempt's name (`locksmith-run-<pid>-<attempt>`, unique to the run).

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use locksmith_pg::guard::sessions::{Scope, SessionWatchdog};
use locksmith_pg::guard::Interrupt;
use tokio::io::AsyncBufReadExt;

use super::child::SIDECAR_BOUND;
use super::progress;
use crate::cli::{ConnectionArgs, WardenArgs};
use crate::cmd::signals;
use crate::exit::{CmdResult, Outcome};
use locksmith_pg::wrap::route::Route;

/// The hidden subcommand that runs the warden.
pub const SUBCOMMAND: &str = "run-warden";

/// How long the command gets to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// `run`'s end of the pipe to its warden.
pub struct Warden {
    pipe: ChildStdin,
    process: Child,
}

impl Warden {
    /// Starts the warden with `run`'s connection flags (passed in its
    /// environment, never on its command line, where `ps` would show a
    /// password). `None`, said on stderr, when it cannot be started.
    pub fn start(connection: &ConnectionArgs) -> Option<Warden> {
        let started = std::env::current_exe().and_then(|exe| {
            let mut command = Command::new(exe);
            command
                .arg(SUBCOMMAND)
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            if let Some(url) = &connection.database_url {
                command.env("DATABASE_URL", url);
            }
            if let Some(url) = &connection.direct_url {
                command.env("LOCKSMITH_DIRECT_URL", url);
            }
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
            command.spawn()
        });
        match started {
            Ok(mut process) => Some(Warden {
                pipe: process.stdin.take().expect("piped"),
                process,
            }),
            Err(e) => {
                progress(&format!(
                    "warning: cannot start the warden that stops the command if locksmith is killed ({e}); \
                     if locksmith dies, stop the command yourself"
                ));
                None
            }
        }
    }

    /// The command runs now, as `pid`, its sessions named `application_name`.
    pub fn attempt(&mut self, application_name: &str, pid: Option<u32>) {
        let pid = pid.map_or_else(|| "-".to_string(), |p| p.to_string());
        let _ = writeln!(self.pipe, "attempt {application_name} {pid}");
    }

    /// The command has ended.
    pub fn idle(&mut self) {
        let _ = writeln!(self.pipe, "idle");
    }
}

impl Drop for Warden {
    /// `run` is ending normally (or unwinding): the warden has nothing to do.
    fn drop(&mut self) {
        let _ = writeln!(self.pipe, "done");
        let _ = self.pipe.flush();
        // Closing the pipe ends it; reap it if it is already gone.
        let _ = self.process.try_wait();
    }
}

/// What the warden last heard.
#[derive(Debug, PartialEq)]
enum Heard {
    /// Nothing runs (before the first attempt, between attempts).
    Idle,
    /// The command runs.
    Attempt { name: String, pid: Option<u32> },
    /// `run` ended normally.
    Done,
}

fn parse(line: &str, before: Heard) -> Heard {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("attempt") => match words.next() {
            Some(name) => Heard::Attempt {
                name: name.to_string(),
                pid: words.next().and_then(|p| p.parse().ok()),
            },
            None => before,
        },
        Some("idle") => Heard::Idle,
        Some("done") => Heard::Done,
        _ => before,
    }
}

/// The warden process: listens until the pipe closes, then acts if `run`
/// died with the command running.
pub async fn serve(args: WardenArgs) -> CmdResult {
    let mut heard = Heard::Idle;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        heard = parse(&line, heard);
    }
    let Heard::Attempt { name, pid } = heard else {
        return Ok(Outcome::Done);
    };
    progress(&format!(
        "locksmith run ended while its command was running (killed?): the warden stops the \
         command{} and cancels its statements on the server (application_name {name})",
        pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    ));
    if let Some(pid) = pid {
        signals::send(pid, Interrupt::Terminate);
    }
    let settings = crate::cmd::settings(&args.connection)?;
    let cancelled = cancel_statements(&settings, &name, pid).await;
    match cancelled {
        Ok(n) => progress(&format!(
            "warden: the command is stopped; {n} statement{} cancelled on the server",
            if n == 1 { "" } else { "s" }
        )),
        Err(e) => progress(&format!(
            "warden: could not cancel the command's statements ({e}): look for application_name \
             {name} in pg_stat_activity and cancel them (pg_cancel_backend)"
        )),
    }
    Ok(Outcome::Done)
}

/// Cancels the running statements of the sessions named `name` until the
/// command (`pid`) is gone, insisting with SIGKILL after [`GRACE`].
async fn cancel_statements(
    settings: &locksmith_pg::ConnectionSettings,
    name: &str,
    pid: Option<u32>,
) -> Result<u64, String> {
    let route = Route::open(settings).await.map_err(|e| e.to_string())?;
    let dog = SessionWatchdog::start(
        route.sidecar,
        name,
        Scope::Pooled,
        SIDECAR_BOUND,
        None,
        None,
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut cancelled = cancel_all(&dog).await?;
    let since = Instant::now();
    while pid.is_some_and(signals::alive) {
        if since.elapsed() > GRACE {
            if let Some(pid) = pid {
                signals::kill(pid);
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What the command started before it stopped.
    cancelled += cancel_all(&dog).await?;
    dog.stop().await;
    Ok(cancelled)
}

/// Cancels every running statement of the watched sessions, bounded in time.
async fn cancel_all(dog: &SessionWatchdog) -> Result<u64, String> {
    match tokio::time::timeout(SIDECAR_BOUND, dog.cancel_all()).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the server gave no answer in time".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_warden_hears() {
        let h = parse("attempt locksmith-run-7-1 42", Heard::Idle);
        assert_eq!(
            h,
            Heard::Attempt {
                name: "locksmith-run-7-1".into(),
                pid: Some(42)
            }
        );
        assert_eq!(parse("idle", h), Heard::Idle);
        let h = parse("attempt locksmith-run-7-2 -", Heard::Idle);
        assert_eq!(
            h,
            Heard::Attempt {
                name: "locksmith-run-7-2".into(),
                pid: None
            }
        );
        assert_eq!(parse("garbage", Heard::Done), Heard::Done);
        assert_eq!(parse("done", h), Heard::Done);
    }
}
