//! Ctrl-C and SIGTERM as a value the guard can watch: the guard then cancels
//! its in-flight statement on the server and rolls back, instead of the
//! process dying and leaving a queued lock request behind.

use locksmith_pg::guard::Interrupt;
use tokio::sync::watch;

/// Starts listening for SIGINT and SIGTERM; the receiver turns `Some` on the
/// first one. The handlers are in place when this returns, so a signal that
/// arrives while the command connects is never the default (death with a
/// lock request possibly queued) but an interrupt the run sees.
pub fn interrupts() -> watch::Receiver<Option<Interrupt>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (tx, rx) = watch::channel(None);
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return rx;
    };
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = int.recv() => Interrupt::Interrupt,
            _ = term.recv() => Interrupt::Terminate,
        };
        let _ = tx.send(Some(which));
    });
    rx
}

pub use locksmith_pg::guard::unless_interrupted;

/// The conventional exit code after a signal: 128 + its number.
pub fn exit_code(signal: Interrupt) -> u8 {
    match signal {
        Interrupt::Interrupt => 130,
        Interrupt::Terminate => 143,
    }
}

/// The signal number behind an [`Interrupt`].
fn signal_number(signal: Interrupt) -> libc::c_int {
    match signal {
        Interrupt::Interrupt => libc::SIGINT,
        Interrupt::Terminate => libc::SIGTERM,
    }
}

/// Whether a Ctrl-C typed now already reached a child in our process group:
/// the terminal sends SIGINT to its whole foreground process group, and
/// sending it a second time could interrupt the child's own clean-up.
pub fn terminal_delivers_to_group() -> bool {
    // SAFETY: plain queries of the process group ids, no memory involved.
    unsafe {
        let foreground = libc::tcgetpgrp(libc::STDIN_FILENO);
        foreground > 0 && foreground == libc::getpgrp()
    }
}

/// Sends `signal` to the process `pid` (a child we spawned and have not reaped).
pub fn send(pid: u32, signal: Interrupt) {
    // SAFETY: kill(2) with a pid we own; a failure (already exited) is harmless.
    unsafe {
        libc::kill(pid as libc::pid_t, signal_number(signal));
    }
}

/// Whether process `pid` still exists (a zombie counts until reaped).
pub fn alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// SIGKILL to `pid`; a failure (already exited) is harmless.
pub fn kill(pid: u32) {
    // SAFETY: kill(2); nothing is touched on our side.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}
