//! Signals to the wrapped command's process (and the warden's checks on it):
//! kill(2), and whether the terminal already delivered a Ctrl-C to it.
//!
//! It must not signal any process but one this wrapper spawned (or, in the
//! warden, the one `run` said it spawned).

use crate::guard::Interrupt;

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
pub(crate) fn terminal_delivers_to_group() -> bool {
    // SAFETY: plain queries of the process group ids, no memory involved.
    unsafe {
        let foreground = libc::tcgetpgrp(libc::STDIN_FILENO);
        foreground > 0 && foreground == libc::getpgrp()
    }
}

/// Sends `signal` to the process `pid` (a child we spawned and have not reaped).
pub(crate) fn send(pid: u32, signal: Interrupt) {
    // SAFETY: kill(2) with a pid we own; a failure (already exited) is harmless.
    unsafe {
        libc::kill(pid as libc::pid_t, signal_number(signal));
    }
}

/// Whether process `pid` still exists (a zombie counts until reaped).
pub(crate) fn alive(pid: u32) -> bool {
    // SAFETY: kill(2) with signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// SIGKILL to `pid`; a failure (already exited) is harmless.
pub(crate) fn kill(pid: u32) {
    // SAFETY: kill(2); nothing is touched on our side.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
}
