//! Ending another session's work: `pg_cancel_backend` (stop the running
//! statement) and `pg_terminate_backend` (close the session, rolling back its
//! transaction and releasing every lock it holds).
//!
//! The one place locksmith signals a session: `top`'s keys `c` and `k`, the
//! session watch (`guard::watcher`: a lock wait over the budget, a hold past
//! `max_hold`, a wrapped tool's blockers idle in transaction), and the
//! guard's terminate policy (a blocker idle in transaction). Every signal is
//! one statement that re-checks, as it signals, that the backend is still
//! what the caller saw ([`Condition`]): a session that woke up, or a pooled
//! backend handed to another client, is left alone. This module only sends
//! the signal; deciding *whom* to signal is the caller's job and must stay
//! there.
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

/// What must still hold, at the instant of signalling, for the signal to be
/// sent: checked in the statement that signals.
#[derive(Debug, Clone, Copy)]
pub enum Condition<'a> {
    /// Nothing more: the backend exists (a watched lock wait of our own).
    Exists,
    /// The same session doing the same thing as a person saw it (`top`):
    /// `backend_start`, `xact_start`, `query_start` and `state`.
    Unchanged(&'a crate::snapshot::Incarnation),
    /// Still running the transaction that started at this instant
    /// (microseconds since the epoch): behind a pooler the backend serves
    /// another client as soon as that transaction ends.
    InTransaction(i64),
    /// A client backend idle in a transaction for at least this long, of
    /// this database (of any, when `any_database`: a session the server
    /// named as holding a shared catalog row we wait for).
    IdleInTransaction {
        /// The least idle time.
        idle_for: std::time::Duration,
        /// Whether another database's session may be signalled.
        any_database: bool,
    },
    /// Still the statement of a watched program (by `application_name`)
    /// that started at `query_start`, still waiting on a lock.
    WaitingStatement {
        /// The program's name.
        application_name: &'a str,
        /// When the statement started.
        query_start: std::time::SystemTime,
    },
    /// Still the transaction of a watched program (by `application_name`)
    /// that started at this instant (milliseconds since the epoch).
    NamedTransaction {
        /// The program's name.
        application_name: &'a str,
        /// `xact_start` in milliseconds.
        xact_ms: i64,
    },
}

/// Sends `signal` to `pid` only while `condition` holds, in one statement.
/// A missing privilege is [`Error::Permission`], naming `pg_signal_backend`.
pub async fn send(
    client: &Connection,
    signal: Signal,
    pid: i32,
    condition: Condition<'_>,
) -> Result<Sent, Error> {
    let idle_ms;
    let (predicate, params): (&str, Vec<&dyn crate::connection::Param>) = match &condition {
        Condition::Exists => ("true", vec![&pid]),
        Condition::Unchanged(i) => (
            "(extract(epoch FROM a.backend_start) * 1000000)::bigint IS NOT DISTINCT FROM $2
             AND (extract(epoch FROM a.xact_start) * 1000000)::bigint IS NOT DISTINCT FROM $3
             AND (extract(epoch FROM a.query_start) * 1000000)::bigint IS NOT DISTINCT FROM $4
             AND a.state IS NOT DISTINCT FROM $5",
            vec![
                &pid,
                &i.backend_start_us,
                &i.xact_start_us,
                &i.query_start_us,
                &i.state,
            ],
        ),
        Condition::InTransaction(xact) => (
            "(extract(epoch FROM a.xact_start) * 1000000)::bigint = $2",
            vec![&pid, xact],
        ),
        Condition::IdleInTransaction {
            idle_for,
            any_database,
        } => {
            idle_ms = idle_for.as_millis() as f64;
            (
                "(a.datname = current_database() OR $3)
                 AND a.backend_type = 'client backend'
                 AND a.state IN ('idle in transaction', 'idle in transaction (aborted)')
                 AND (extract(epoch FROM now() - a.state_change) * 1000)::float8 >= $2::float8",
                vec![&pid, &idle_ms, any_database],
            )
        }
        Condition::WaitingStatement {
            application_name,
            query_start,
        } => (
            "a.application_name = $2 AND a.query_start = $3 AND a.wait_event_type = 'Lock'",
            vec![&pid, application_name, query_start],
        ),
        Condition::NamedTransaction {
            application_name,
            xact_ms,
        } => (
            "a.application_name = $2
             AND (extract(epoch FROM a.xact_start) * 1000)::bigint = $3",
            vec![&pid, application_name, xact_ms],
        ),
    };
    // Signals the backend only while the condition holds, in the same statement.
    let sql = format!(
        "SELECT CASE
                  WHEN a.pid IS NULL THEN 'gone'
                  WHEN {predicate}
                  THEN CASE WHEN {}(a.pid) THEN 'signalled' ELSE 'gone' END
                  ELSE 'moved on'
                END
         FROM (SELECT $1::int AS pid) t
         LEFT JOIN pg_stat_activity a ON a.pid = t.pid",
        signal.function()
    );
    match client.query_one(&sql, &params).await {
        Ok(row) => Ok(match row.get::<_, &str>(0) {
            "signalled" => Sent::Signalled,
            "moved on" => Sent::MovedOn,
            _ => Sent::Gone,
        }),
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => Err(Error::Permission {
            action: format!("{} session {pid}", signal.verb()),
            needs: "pg_signal_backend".into(),
        }),
        Err(e) => Err(Error::query(format!("{} pid {pid}", signal.verb()), e)),
    }
}

/// Sends `signal` to `target.pid` only if that backend is still where the
/// person saw it (`top`): same `backend_start`, `xact_start`, `query_start`
/// and `state`, checked in the statement that signals. Behind a pooler a pid
/// serves one client after another; this never signals someone else's work.
pub async fn send_if_unchanged(
    client: &Connection,
    signal: Signal,
    target: &Target,
) -> Result<Sent, Error> {
    send(
        client,
        signal,
        target.pid,
        Condition::Unchanged(&target.incarnation),
    )
    .await
}

/// Cancels the running statements of every session of a watched program
/// (`application_name`, opened since `since_epoch` seconds when given),
/// only those waiting on a lock when `lock_waits_only`. How many were signalled.
pub async fn cancel_program(
    client: &Connection,
    application_name: &str,
    since_epoch: Option<f64>,
    lock_waits_only: bool,
) -> Result<u64, Error> {
    // The program's sessions (by name, opened since the watch began), cancelled
    // while running a statement: a cancel reaching an idle backend is void anyway,
    // and an idle pooled one may be handed to another client at any moment.
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_cancel_backend(pid)) FROM pg_stat_activity
             WHERE application_name = $1
               AND ($2::float8 IS NULL OR extract(epoch FROM backend_start)::float8 >= $2)
               AND pid <> pg_backend_pid() AND state = 'active'
               AND (NOT $3 OR wait_event_type = 'Lock')",
            &[&application_name, &since_epoch, &lock_waits_only],
        )
        .await;
    match row {
        Ok(row) => Ok(row.get::<_, i64>(0) as u64),
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => Err(Error::Permission {
            action: format!("cancel the statements of {application_name}"),
            needs: "pg_signal_backend".into(),
        }),
        Err(e) => Err(Error::query(
            "cancelling the watched sessions' statements",
            e,
        )),
    }
}
