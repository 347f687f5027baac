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

/// The conventional exit code after a signal: 128 + its number.
pub fn exit_code(signal: Interrupt) -> u8 {
    match signal {
        Interrupt::Interrupt => 130,
        Interrupt::Terminate => 143,
    }
}
