//! Ending another session's work: `pg_cancel_backend` (stop the running
//! statement) and `pg_terminate_backend` (close the session, rolling back its
//! transaction and releasing every lock it holds).
//!
//! Used by `top` (keys `c` and `k`). The guard does not use it: it
//! terminates idle-in-transaction blockers with a statement that re-checks
//! idleness as it terminates (`guard::look`). This module only sends the
//! signal; deciding *whom* to signal is the caller's job and must stay there.
//!
//! A role may signal its own sessions; other roles' sessions need membership
//! in `pg_signal_backend`, and a superuser's sessions need a superuser. The
//! server reports the refusal as SQLSTATE 42501, which is turned into an error
//! that says so.

use crate::Connection;
use tokio_postgres::error::SqlState;

use crate::Error;

/// What to do to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `pg_cancel_backend`: the running statement fails with 57014; the session stays.
    Cancel,
    /// `pg_terminate_backend`: the session ends; its transaction rolls back.
    Terminate,
}

impl Signal {
    /// The server function that sends it.
    pub fn function(self) -> &'static str {
        match self {
            Signal::Cancel => "pg_cancel_backend",
            Signal::Terminate => "pg_terminate_backend",
        }
    }

    /// A verb for messages: `cancel`, `terminate`.
    pub fn verb(self) -> &'static str {
        match self {
            Signal::Cancel => "cancel",
            Signal::Terminate => "terminate",
        }
    }
}

/// Sends `signal` to `pid`. `Ok(false)` when `pid` is not a PostgreSQL
/// backend (it already ended).
pub async fn send(client: &Connection, signal: Signal, pid: i32) -> Result<bool, Error> {
    // Signals one backend; false (with a server warning) when the pid is not a backend.
    let sql = match signal {
        Signal::Cancel => "SELECT pg_cancel_backend($1)",
        Signal::Terminate => "SELECT pg_terminate_backend($1)",
    };
    match client.query_one(sql, &[&pid]).await {
        Ok(row) => Ok(row.get::<_, Option<bool>>(0).unwrap_or(false)),
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => Err(Error::query(
            format!(
                "{} pid {pid}: not allowed; the role needs membership in pg_signal_backend \
                 (or to be the session's own role), and a superuser's session needs a superuser",
                signal.verb()
            ),
            e,
        )),
        Err(e) => Err(Error::query(format!("{} pid {pid}", signal.verb()), e)),
    }
}
