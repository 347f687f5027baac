//! One run of the wrapped command, with the environment [`super::env`]
//! makes: started, its output passed through live and scanned for
//! lock-timeout errors, and stopped on Ctrl-C, SIGTERM or the deadline, its
//! statements cancelled on the server too (killing a client never removes
//! its queued lock request; a cancel does).

use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::env::ChildEnv;
use super::warden::Warden;
use super::{process, Error, Event};
use crate::guard::watcher::Watcher;
use crate::guard::{next_interrupt, Interrupt};

/// How long a statement of the watch may take when the command has ended or
/// must be stopped: through a pooler with every backend busy, it may never
/// get one.
pub(crate) const SIDECAR_BOUND: Duration = Duration::from_secs(5);

/// How one run of the command ended.
pub(crate) struct AttemptEnd {
    pub(crate) status: ExitStatus,
    /// Its output carried a lock-timeout error.
    pub(crate) lock_race_in_output: bool,
    /// Ctrl-C or SIGTERM arrived while it ran.
    pub(crate) interrupted: Option<Interrupt>,
    /// It was stopped at the deadline.
    pub(crate) deadline_hit: bool,
}

/// Runs the command once, its output passing through live while scanned.
/// With `stdout_to_stderr`, its stdout goes to our stderr (so ours carries
/// only a report).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn attempt(
    cmd: &[String],
    env: &ChildEnv,
    stdout_to_stderr: bool,
    dog: &Watcher,
    stop_at: Instant,
    interrupt: &mut watch::Receiver<Option<Interrupt>>,
    warden: Option<&mut Warden>,
    emit: &dyn Fn(Event<'_>),
) -> Result<AttemptEnd, Error> {
    let mut child = env
        .command(cmd, Stdio::inherit())
        .spawn()
        .map_err(|source| Error::Spawn {
            program: cmd[0].clone(),
            source,
        })?;
    let pid = child.id();
    if let Some(warden) = warden {
        warden.attempt(&env.app_name, pid);
    }
    let race = Arc::new(AtomicBool::new(false));
    let pumps = [
        tokio::spawn(pump(
            child.stdout.take().expect("piped"),
            stdout_to_stderr,
            race.clone(),
        )),
        tokio::spawn(pump(
            child.stderr.take().expect("piped"),
            true,
            race.clone(),
        )),
    ];
    let mut interrupted = None;
    let mut deadline_hit = false;
    let status = tokio::select! {
        status = child.wait() => status,
        signal = next_interrupt(interrupt) => {
            interrupted = Some(signal);
            stop_child(&mut child, pid, signal, dog).await
        }
        _ = tokio::time::sleep_until(stop_at.into()) => {
            deadline_hit = true;
            emit(Event::DeadlinePassed { program: &cmd[0] });
            stop_child(&mut child, pid, Interrupt::Terminate, dog).await
        }
    }
    .map_err(|source| Error::Wait {
        program: cmd[0].clone(),
        source,
    })?;
    // A grandchild may hold the pipes open; don't wait for it forever.
    for pump in pumps {
        let _ = tokio::time::timeout(Duration::from_secs(2), pump).await;
    }
    Ok(AttemptEnd {
        status,
        lock_race_in_output: race.load(Ordering::Relaxed),
        interrupted,
        deadline_hit,
    })
}

/// Ctrl-C, SIGTERM or the deadline while the command runs: pass the signal on, cancel its
/// statements on the server (killing a client never removes its queued lock
/// request; a cancel does), and give it a moment to exit before insisting.
async fn stop_child(
    child: &mut tokio::process::Child,
    pid: Option<u32>,
    signal: Interrupt,
    dog: &Watcher,
) -> std::io::Result<ExitStatus> {
    let mut sent = false;
    if let Some(pid) = pid {
        if signal == Interrupt::Terminate || !process::terminal_delivers_to_group() {
            process::send(pid, signal);
            sent = true;
        }
    }
    let _ = tokio::time::timeout(SIDECAR_BOUND, dog.cancel_all()).await;
    if let Ok(status) = tokio::time::timeout(Duration::from_secs(3), child.wait()).await {
        return status;
    }
    if let (Some(pid), false) = (pid, sent) {
        process::send(pid, signal);
    }
    if let Ok(status) = tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
        return status;
    }
    let _ = child.start_kill();
    child.wait().await
}

/// Copies a child's stream to ours as it comes, flagging lock-timeout errors.
async fn pump(mut from: impl AsyncRead + Unpin, to_stderr: bool, race: Arc<AtomicBool>) {
    let mut scanner = LockRaceScanner::default();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if scanner.feed(&buf[..n]) {
            race.store(true, Ordering::Relaxed);
        }
        // A closed stdout of ours must not stop the command: keep draining its pipe.
        let _ = if to_stderr {
            let mut out = tokio::io::stderr();
            match out.write_all(&buf[..n]).await {
                Ok(()) => out.flush().await,
                Err(e) => Err(e),
            }
        } else {
            let mut out = tokio::io::stdout();
            match out.write_all(&buf[..n]).await {
                Ok(()) => out.flush().await,
                Err(e) => Err(e),
            }
        };
    }
}

/// Finds lock-timeout errors in a byte stream, across chunk boundaries.
#[derive(Default)]
struct LockRaceScanner {
    tail: Vec<u8>,
}

/// What drivers print when a lock wait hit `lock_timeout` or `NOWAIT` failed:
/// the SQLSTATE, its name, psycopg2's class name and the server's messages.
const LOCK_RACE_MARKERS: [&str; 5] = [
    "55p03",
    "lock_not_available",
    "locknotavailable",
    "lock timeout",
    "could not obtain lock",
];

impl LockRaceScanner {
    fn feed(&mut self, chunk: &[u8]) -> bool {
        let mut text = std::mem::take(&mut self.tail);
        text.extend(chunk.iter().map(u8::to_ascii_lowercase));
        let found = LOCK_RACE_MARKERS
            .iter()
            .any(|m| text.windows(m.len()).any(|w| w == m.as_bytes()));
        // Keep enough to find a marker split across two chunks.
        let keep = LOCK_RACE_MARKERS.iter().map(|m| m.len()).max().unwrap_or(0);
        self.tail = text[text.len().saturating_sub(keep)..].to_vec();
        found
    }
}

/// The code to pass through: the command's own, or 128 + the signal that killed it.
pub(crate) fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(signal)) => (128 + signal).clamp(0, 255) as u8,
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_finds_markers_across_chunks() {
        let mut s = LockRaceScanner::default();
        assert!(!s.feed(b"INFO  [alembic] Running upgrade\n"));
        assert!(!s.feed(b"psycopg2.errors.LockNotAv"));
        assert!(s.feed(b"ailable: canceling statement due to lock timeout\n"));
        let mut s = LockRaceScanner::default();
        assert!(s.feed(b"ERROR:  could not obtain lock on relation \"t\"\n"));
        let mut s = LockRaceScanner::default();
        assert!(
            !s.feed(b"ERROR: duplicate key value violates unique constraint (SQLSTATE 23505)\n")
        );
        assert!(s.feed(b"SQLSTATE 55P03"));
    }
}
