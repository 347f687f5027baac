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

use crate::snapshot::{Incarnation, Session};
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

/// The session a person chose to signal, as they saw it: its pid, and what
/// tells this moment of the backend's life from a later one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Backend pid.
    pub pid: i32,
    /// `backend_start`, `xact_start`, `query_start` and `state` as shown.
    pub incarnation: Incarnation,
}

impl From<&Session> for Target {
    fn from(s: &Session) -> Self {
        Target {
            pid: s.pid,
            incarnation: s.incarnation.clone(),
        }
    }
}

/// What became of a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// Sent to the session as shown.
    Signalled,
    /// The pid is no backend any more.
    Gone,
    /// The backend is doing something else now (another transaction, another
    /// statement, or, behind a pooler, another client): nothing was sent.
    MovedOn,
}

/// Sends `signal` to `target.pid` only if that backend is still where the
/// person saw it: same `backend_start`, `xact_start`, `query_start` and
/// `state`, checked in the statement that signals. Behind a pooler a pid
/// serves one client after another; this never signals someone else's work.
pub async fn send_if_unchanged(
    client: &Connection,
    signal: Signal,
    target: &Target,
) -> Result<Sent, Error> {
    let i = &target.incarnation;
    // Signals the backend only while it is the same session doing the same thing as shown.
    let sql = format!(
        "SELECT CASE
                  WHEN a.pid IS NULL THEN 'gone'
                  WHEN (extract(epoch FROM a.backend_start) * 1000000)::bigint IS NOT DISTINCT FROM $2
                   AND (extract(epoch FROM a.xact_start) * 1000000)::bigint IS NOT DISTINCT FROM $3
                   AND (extract(epoch FROM a.query_start) * 1000000)::bigint IS NOT DISTINCT FROM $4
                   AND a.state IS NOT DISTINCT FROM $5
                  THEN CASE WHEN {}(a.pid) THEN 'signalled' ELSE 'gone' END
                  ELSE 'moved on'
                END
         FROM (SELECT $1::int AS pid) t
         LEFT JOIN pg_stat_activity a ON a.pid = t.pid",
        signal.function()
    );
    let pid = target.pid;
    let params: [&dyn crate::connection::Param; 5] = [
        &pid,
        &i.backend_start_us,
        &i.xact_start_us,
        &i.query_start_us,
        &i.state,
    ];
    match client.query_one(&sql, &params).await {
        Ok(row) => Ok(match row.get::<_, &str>(0) {
            "signalled" => Sent::Signalled,
            "moved on" => Sent::MovedOn,
            _ => Sent::Gone,
        }),
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
