//! Ctrl-C and SIGTERM as a value the guard can watch: the guard then cancels
//! its in-flight statement on the server and rolls back, instead of the
//! process dying and leaving a queued lock request behind.

use locksmith_pg::guard::Interrupt;
use tokio::sync::watch;

/// Starts listening for SIGINT and SIGTERM; the receiver turns `Some` on the first one.
pub fn interrupts() -> watch::Receiver<Option<Interrupt>> {
    let (tx, rx) = watch::channel(None);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        let which = tokio::select! {
            _ = tokio::signal::ctrl_c() => Interrupt::Interrupt,
            _ = term.recv() => Interrupt::Terminate,
        };
        let _ = tx.send(Some(which));
    });
    rx
}

/// The conventional exit code after a signal: 128 + its number.
pub fn exit_code(signal: Interrupt) -> u8 {
    match signal {
        Interrupt::Interrupt => 130,
        Interrupt::Terminate => 143,
    }
}
