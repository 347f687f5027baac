//! The warden: a small second process that finishes the wrapper's job if
//! the process running [`super::Wrapped`] dies (`kill -9`, OOM killer) while the command is running behind
//! a connection pooler.
//!
//! There the command's lock waits have no server-side `lock_timeout` (a
//! pooler refuses or drops `PGOPTIONS`): only `run`'s watch bounds them. With
//! the watch gone, the command's `ALTER` would wait behind the leakers for
//! as long as they live, and all traffic on the table behind it, which is the
//! incident itself. So `run` starts the warden (its own executable again,
//! with the arguments of [`WardenCommand`] — `locksmith`'s hidden
//! subcommand `run-warden`, whose entry point calls [`serve`] — in its own
//! process group so a Ctrl-C meant for `run` does not reach it) and tells
//! it, over a pipe, which attempt is
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

use tokio::io::{AsyncBufReadExt, AsyncRead};

use super::child::SIDECAR_BOUND;
use super::route::Route;
use super::{process, Event};
use crate::guard::watcher::{Limits, Scope, Watched, Watcher};
use crate::guard::Interrupt;
use crate::ConnectionSettings;

/// How to start the warden: this same executable, with these arguments
/// (e.g. a hidden subcommand whose entry point calls [`serve`]) and these
/// environment variables (the connection, kept off the command line where
/// `ps` would show a password).
#[derive(Debug, Clone, Default)]
pub struct WardenCommand {
    /// Arguments after the executable's name.
    pub args: Vec<String>,
    /// Variables to set for it.
    pub env: Vec<(String, String)>,
}

/// How long the command gets to exit after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(3);

/// `run`'s end of the pipe to its warden.
pub(crate) struct Warden {
    pipe: ChildStdin,
    process: Child,
}

impl Warden {
    /// Starts the warden as `how` says.
    pub(crate) fn start(how: &WardenCommand) -> std::io::Result<Warden> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .args(&how.args)
            .envs(how.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut process = command.spawn()?;
        Ok(Warden {
            pipe: process.stdin.take().expect("piped"),
            process,
        })
    }

    /// The command runs now, as `pid`, its sessions named `application_name`.
    pub(crate) fn attempt(&mut self, application_name: &str, pid: Option<u32>) {
        let pid = pid.map_or_else(|| "-".to_string(), |p| p.to_string());
        let _ = writeln!(self.pipe, "attempt {application_name} {pid}");
    }

    /// The command has ended.
    pub(crate) fn idle(&mut self) {
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

/// The warden process: listens to `pipe` (its stdin) until it closes, then,
/// if `run` died with the command running, stops the command and cancels
/// its statements on the server reached by `settings` (`run`'s own).
pub async fn serve(
    settings: &ConnectionSettings,
    pipe: impl AsyncRead + Unpin,
    on_event: impl Fn(Event<'_>),
) {
    let mut heard = Heard::Idle;
    let mut lines = tokio::io::BufReader::new(pipe).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        heard = parse(&line, heard);
    }
    let Heard::Attempt { name, pid } = heard else {
        return;
    };
    on_event(Event::WardenStopping {
        application_name: &name,
        pid,
    });
    if let Some(pid) = pid {
        process::send(pid, Interrupt::Terminate);
    }
    match cancel_statements(settings, &name, pid).await {
        Ok(cancelled) => on_event(Event::WardenStopped { cancelled }),
        Err(error) => on_event(Event::WardenCouldNotCancel {
            application_name: &name,
            error: &error,
        }),
    }
}

/// Cancels the running statements of the sessions named `name` until the
/// command (`pid`) is gone, insisting with SIGKILL after [`GRACE`].
async fn cancel_statements(
    settings: &ConnectionSettings,
    name: &str,
    pid: Option<u32>,
) -> Result<u64, String> {
    let route = Route::open(settings).await.map_err(|e| e.to_string())?;
    let pooled = Watched::Program {
        application_name: name.to_string(),
        scope: Scope::Pooled,
    };
    let limits = Limits {
        budget: SIDECAR_BOUND,
        terminate_idle_after: None,
        max_hold: None,
    };
    let dog = Watcher::start(route.sidecar, pooled, limits)
        .await
        .map_err(|e| e.to_string())?;
    let mut cancelled = cancel_all(&dog).await?;
    let since = Instant::now();
    while pid.is_some_and(process::alive) {
        if since.elapsed() > GRACE {
            if let Some(pid) = pid {
                process::kill(pid);
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
async fn cancel_all(dog: &Watcher) -> Result<u64, String> {
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
