//! One picture of the server: sessions (`pg_stat_activity`), locks
//! (`pg_locks`) and prepared transactions (`pg_prepared_xacts`, with their
//! locks), taken with three queries so that `top` can refresh every second
//! on a busy server.
//!
//! A role without `pg_read_all_stats` (and not a superuser) sees other
//! roles' sessions with their pid, role and `application_name` only (state,
//! query, ages and waits are NULL), while `pg_locks` still shows their locks:
//! such sessions are [`Session::is_hidden`], their waits are read from
//! `pg_locks`, and the snapshot says which role took it and whether it sees
//! everything ([`Snapshot::sees_all_sessions`]).
//!
//! `pg_blocking_pids` briefly takes the lock manager's locks, so it is called
//! only for sessions that are waiting on a lock (`wait_event_type = 'Lock'`).
//! This module only reads; interpreting the picture is `blockers`' job.
//!
//! Both queries run in one read-only transaction: through a pooler in
//! transaction mode that keeps them on one backend (so "our own" backend is
//! the same in both), and behind a pooler the sessions whose client address
//! is the pooler's are marked `via_pooler`.

use std::time::Duration;

use crate::Connection;
use locksmith_core::lock::LockMode;
use serde::Serialize;

use crate::Error;

/// One backend, as `pg_stat_activity` shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Session {
    /// Backend process id.
    pub pid: i32,
    /// Database, when the backend is connected to one.
    pub datname: Option<String>,
    /// Role name.
    pub usename: Option<String>,
    /// `application_name` the client set.
    pub application_name: String,
    /// Connection address (`None` for Unix sockets).
    pub client_addr: Option<String>,
    /// `client backend`, `autovacuum worker`, …
    pub backend_type: String,
    /// `active`, `idle`, `idle in transaction`, `idle in transaction (aborted)`, …
    pub state: Option<String>,
    /// Age of the current transaction.
    pub xact_age_ms: Option<i64>,
    /// Time since `state` last changed (for an idle-in-transaction session: how long it has been idle).
    pub state_age_ms: Option<i64>,
    /// Age of the current (or last) query.
    pub query_age_ms: Option<i64>,
    /// The current or last query.
    pub query: String,
    /// `Lock` when waiting on a heavyweight lock.
    pub wait_event_type: Option<String>,
    /// e.g. `relation`, `transactionid`.
    pub wait_event: Option<String>,
    /// `pg_blocking_pids(pid)`, only for sessions waiting on a lock.
    pub blocked_by: Vec<i32>,
    /// Its `client_addr` is the connection pooler's (see [`Snapshot::pooler_addr`]):
    /// the application behind it is not known from here.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub via_pooler: bool,
    /// Which session this is and what it is doing, exactly: a pooled
    /// backend's pid serves one client after another, so a signal must
    /// target this, not the pid alone ([`crate::signal::send_if_unchanged`]).
    #[serde(skip)]
    pub incarnation: Incarnation,
}

/// Microsecond timestamps (since the epoch) and the state that tell one
/// moment of a backend's life from another: what the user saw when they
/// chose to signal it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Incarnation {
    /// `backend_start`.
    pub backend_start_us: Option<i64>,
    /// `xact_start`.
    pub xact_start_us: Option<i64>,
    /// `query_start`.
    pub query_start_us: Option<i64>,
    /// `state`.
    pub state: Option<String>,
}

impl Session {
    /// Waiting on a heavyweight lock (for a session hidden from our role:
    /// `pg_locks` shows a lock it waits for, and whom for).
    pub fn is_waiting_on_lock(&self) -> bool {
        self.wait_event_type.as_deref() == Some("Lock")
            || (self.is_hidden() && !self.blocked_by.is_empty())
    }

    /// Another role's session that our role may not inspect (no superuser,
    /// no `pg_read_all_stats`): `pg_stat_activity` shows its pid, role and
    /// `application_name`, nothing of its state (even its `backend_type`).
    pub fn is_hidden(&self) -> bool {
        self.state.is_none() && self.backend_type.is_empty()
    }

    /// Idle inside an open transaction (including an aborted one).
    pub fn is_idle_in_transaction(&self) -> bool {
        idle_in_transaction(self.state.as_deref())
    }

    /// The `application_name`; for a server process without one (the
    /// autovacuum launcher, a WAL sender…) its `backend_type` in brackets.
    pub fn name(&self) -> String {
        match (self.application_name.is_empty(), self.backend_type.as_str()) {
            (false, _) => self.application_name.clone(),
            (true, "client backend") => "(no application_name)".into(),
            (true, kind) => format!("[{kind}]"),
        }
    }

    /// `application@client` for one-line reports; a pooler's address says so.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name(), self.client())
    }

    /// The client address as reports show it: `local` for a Unix socket,
    /// `10.0.0.5 via pooler` when the address is the pooler's.
    pub fn client(&self) -> String {
        client_label(self.client_addr.as_deref(), self.via_pooler)
    }
}

/// What every report says about a session: who it is, what it is doing and
/// since when. Blockers, idle sessions and the guard's holders all carry one,
/// flattened, so their JSON keys are the same everywhere.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SessionSummary {
    /// Backend pid; [`crate::prepared::NO_BACKEND`] (`null` in JSON) for a
    /// prepared transaction, which has none.
    #[serde(serialize_with = "crate::prepared::serialize_pid")]
    pub pid: i32,
    /// `idle in transaction`, `active`, …; `None` when our role may not see it.
    pub state: Option<String>,
    /// The client's `application_name`.
    pub application_name: String,
    /// Connection address (`None` for Unix sockets).
    pub client_addr: Option<String>,
    /// Role.
    pub usename: Option<String>,
    /// Transaction age.
    pub xact_age_ms: Option<i64>,
    /// Time in the current state: for an idle-in-transaction session, its idle time.
    pub state_age_ms: Option<i64>,
    /// Current or last query.
    pub query: String,
    /// Its `client_addr` is the connection pooler's ([`Snapshot::pooler_addr`],
    /// [`crate::guard::GuardReport::pooler_addr`]): the application is behind it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub via_pooler: bool,
}

/// The columns [`SessionSummary::from_row`] reads, in order, from a query
/// with `pg_stat_activity a` in its FROM clause: one spelling of "who is it".
pub const SUMMARY_COLUMNS: &str =
    "a.pid, a.state, coalesce(a.application_name, ''), host(a.client_addr), a.usename::text,
    (extract(epoch FROM now() - a.xact_start) * 1000)::bigint,
    (extract(epoch FROM now() - a.state_change) * 1000)::bigint,
    coalesce(a.query, '')";

impl SessionSummary {
    /// Reads [`SUMMARY_COLUMNS`] from `row`, starting at column `at`.
    pub fn from_row(row: &tokio_postgres::Row, at: usize) -> SessionSummary {
        SessionSummary {
            pid: row.get(at),
            state: row.get(at + 1),
            application_name: row.get(at + 2),
            client_addr: row.get(at + 3),
            usename: row.get(at + 4),
            xact_age_ms: row.get(at + 5),
            state_age_ms: row.get(at + 6),
            query: row.get(at + 7),
            via_pooler: false,
        }
    }

    /// Idle inside a transaction (or an aborted one): holding locks while doing nothing.
    pub fn is_idle_in_transaction(&self) -> bool {
        idle_in_transaction(self.state.as_deref())
    }

    /// How long it has been in its current state (idle, for an idle-in-transaction session).
    pub fn idle_for(&self) -> Duration {
        Duration::from_millis(self.state_age_ms.unwrap_or(0).max(0) as u64)
    }

    /// Whether our role may see this session's state: without superuser,
    /// `pg_read_all_stats` or the same role, `pg_stat_activity` hides it.
    pub fn is_visible(&self) -> bool {
        self.state.is_some()
    }

    /// `pid 4242 app@10.0.0.5 idle 41s` for one-line reports.
    pub fn label(&self) -> String {
        let app = if self.application_name.is_empty() {
            "(no application_name)"
        } else {
            &self.application_name
        };
        let client = client_label(self.client_addr.as_deref(), self.via_pooler);
        let age = locksmith_core::duration::human(self.idle_for());
        match self.state.as_deref() {
            Some(s) if idle_in_transaction(Some(s)) => {
                format!("pid {} {app}@{client} idle {age}", self.pid)
            }
            Some(s) => format!("pid {} {app}@{client} {s} for {age}", self.pid),
            // Its client address is hidden too: not "local".
            None => format!(
                "pid {} {app} (role {}; its state is hidden from this role: GRANT pg_read_all_stats to it)",
                self.pid,
                self.usename.as_deref().unwrap_or("?")
            ),
        }
    }
}

impl From<&Session> for SessionSummary {
    fn from(s: &Session) -> Self {
        SessionSummary {
            pid: s.pid,
            state: s.state.clone(),
            application_name: s.application_name.clone(),
            client_addr: s.client_addr.clone(),
            usename: s.usename.clone(),
            xact_age_ms: s.xact_age_ms,
            state_age_ms: s.state_age_ms,
            query: s.query.clone(),
            via_pooler: s.via_pooler,
        }
    }
}

/// One row of `pg_locks` that matters here: relation locks, and any lock
/// that is not granted (a wait).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LockRow {
    /// Backend holding or waiting for the lock.
    pub pid: i32,
    /// `relation`, `transactionid`, `advisory`, …
    pub locktype: String,
    /// The relation's name (schema-qualified when not on the search path), for relation locks
    /// in the current database; `relation N in database D` for other databases (its
    /// name can only be read from inside that database).
    pub relation: Option<String>,
    /// `pg_locks.mode`, e.g. `AccessExclusiveLock`.
    pub mode: String,
    /// Held (`true`) or waited for (`false`).
    pub granted: bool,
    /// How long it has been waited for (PostgreSQL 14+: `waitstart`).
    pub waiting_ms: Option<i64>,
}

/// A client address for people: `local` for a Unix socket, and the
/// pooler's address marked `via pooler` (the application is behind it).
pub fn client_label(addr: Option<&str>, via_pooler: bool) -> String {
    match (addr, via_pooler) {
        (Some(addr), true) => format!("{addr} via pooler"),
        (Some(addr), false) => addr.to_string(),
        (None, _) => "local".into(),
    }
}

/// Sessions and locks at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// `max_connections`.
    pub max_connections: i32,
    /// `superuser_reserved_connections` (plus `reserved_connections` on 16+).
    pub reserved_connections: i32,
    /// The pid of the connection that took the snapshot (left out of `sessions`).
    pub own_pid: i32,
    /// Every other backend.
    pub sessions: Vec<Session>,
    /// Relation locks and ungranted locks.
    pub locks: Vec<LockRow>,
    /// Prepared transactions (any database), oldest first, with their locks:
    /// they hold locks with no session, and `pg_blocking_pids` calls them pid 0.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prepared: Vec<crate::prepared::PreparedLocks>,
    /// The role that took the snapshot.
    pub role: String,
    /// Whether that role sees every session's state (superuser or
    /// `pg_read_all_stats`); if not, other roles' sessions are hidden.
    pub sees_all_sessions: bool,
    /// When the snapshot was taken through a connection pooler: the address
    /// our own backend sees as its client (`inet_client_addr()`), which is
    /// the pooler's. Sessions from that address are marked `via_pooler`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pooler_addr: Option<String>,
}

impl Snapshot {
    /// The snapshot as one database of the server sees it: its sessions,
    /// those elsewhere that they wait for (a lock on a shared catalog, e.g.
    /// a role's row), and its prepared transactions. For a report per
    /// database (`blockers --targets`), where the server-wide view would
    /// show each database's lock queue under every database of the server.
    pub fn of_database(&self, name: &str) -> Snapshot {
        let mut kept: std::collections::HashSet<i32> = self
            .sessions
            .iter()
            .filter(|s| s.datname.as_deref() == Some(name))
            .map(|s| s.pid)
            .collect();
        // Whom they wait for, and whom those wait for, wherever they are.
        loop {
            let more: Vec<i32> = self
                .sessions
                .iter()
                .filter(|s| kept.contains(&s.pid))
                .flat_map(|s| s.blocked_by.iter().copied())
                .filter(|pid| !kept.contains(pid))
                .collect();
            if more.is_empty() {
                break;
            }
            kept.extend(more);
        }
        let mut copy = self.clone();
        copy.sessions.retain(|s| kept.contains(&s.pid));
        copy.locks.retain(|l| kept.contains(&l.pid));
        copy.prepared.retain(|p| p.xact.database == name);
        copy
    }

    /// Connection connections in use, including the one that took the snapshot.
    pub fn connections_used(&self) -> usize {
        1 + self
            .sessions
            .iter()
            .filter(|s| {
                s.backend_type == "client backend"
                    // Hidden from our role, even its backend_type: a session
                    // of a database and a role is a client's (or a parallel worker's).
                    || (s.is_hidden() && s.datname.is_some() && s.usename.is_some())
            })
            .count()
    }

    /// The session with this pid.
    pub fn session(&self, pid: i32) -> Option<&Session> {
        self.sessions.iter().find(|s| s.pid == pid)
    }

    /// Marks the sessions whose client address is the pooler's
    /// ([`Snapshot::pooler_addr`]). Behind a pooler that is all its server
    /// connections, and also any other client on the pooler's host: the
    /// server cannot tell them apart.
    pub fn mark_pooled(&mut self) {
        let Some(addr) = self.pooler_addr.as_deref() else {
            return;
        };
        for s in &mut self.sessions {
            s.via_pooler = s.client_addr.as_deref() == Some(addr);
        }
    }

    /// On a hot standby, `pg_blocking_pids` of the startup process is empty
    /// even while its replay of a lock waits (measured on 15: it is not in
    /// the proc array that function searches). Its blockers are then the
    /// sessions holding a conflicting lock on the object it waits for.
    pub fn find_replay_blockers(&mut self) {
        for i in 0..self.sessions.len() {
            let s = &self.sessions[i];
            if s.backend_type != "startup" || !s.is_waiting_on_lock() || !s.blocked_by.is_empty() {
                continue;
            }
            let Some(wanted) = self.locks.iter().find(|l| l.pid == s.pid && !l.granted) else {
                continue;
            };
            let want = LockMode::from_pg_name(&wanted.mode);
            let mut holders: Vec<i32> = self
                .locks
                .iter()
                .filter(|l| {
                    l.granted
                        && l.pid != wanted.pid
                        && l.locktype == wanted.locktype
                        && l.relation == wanted.relation
                        && match (want, LockMode::from_pg_name(&l.mode)) {
                            (Some(w), Some(h)) => w.conflicts_with(h),
                            _ => true,
                        }
                })
                .map(|l| l.pid)
                .collect();
            holders.sort_unstable();
            holders.dedup();
            self.sessions[i].blocked_by = holders;
        }
    }
}

/// Takes snapshots over one connection; remembers the server version,
/// which decides whether `pg_locks.waitstart` exists.
pub struct Snapshotter {
    server_version_num: i32,
}

impl Snapshotter {
    /// Reads the server version once.
    pub async fn new(client: &Connection) -> Result<Snapshotter, Error> {
        // The server's version decides which catalog columns exist.
        let row = client
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .map_err(|e| Error::query("reading the server version", e))?;
        Ok(Snapshotter {
            server_version_num: row.get(0),
        })
    }

    /// `server_version_num`, e.g. 150018.
    pub fn server_version_num(&self) -> i32 {
        self.server_version_num
    }

    /// Takes one snapshot: two queries, in one read-only transaction so that
    /// both see the same backend as our own even through a transaction
    /// pooler (and `pg_stat_activity` is read once).
    pub async fn take(&self, client: &Connection) -> Result<Snapshot, Error> {
        let context = "reading sessions and locks in one transaction";
        client
            .batch_execute("BEGIN READ ONLY")
            .await
            .map_err(|e| Error::query(context, e))?;
        let read = async {
            let mut snapshot = self.sessions(client).await?;
            snapshot.locks = self.locks(client).await?;
            snapshot.prepared = crate::prepared::with_locks(client).await?;
            Ok::<_, Error>(snapshot)
        }
        .await;
        let end = if read.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = client.batch_execute(end).await;
        let mut snapshot = read?;
        ended.map_err(|e| Error::query(context, e))?;
        if client.pooler().is_some() {
            snapshot.mark_pooled();
        } else {
            snapshot.pooler_addr = None;
        }
        snapshot.find_replay_blockers();
        Ok(snapshot)
    }

    async fn sessions(&self, client: &Connection) -> Result<Snapshot, Error> {
        let reserved = if self.server_version_num >= 160000 {
            "current_setting('superuser_reserved_connections')::int + current_setting('reserved_connections')::int"
        } else {
            "current_setting('superuser_reserved_connections')::int"
        };
        // Every other backend with ages in ms, plus the connection limits and
        // what our role may see; blocking pids only for lock waiters (a hidden
        // session's wait is seen in pg_locks only).
        let sql = format!(
            "SELECT current_setting('max_connections')::int, {reserved}, pg_backend_pid(),
                    a.pid, a.datname::text, a.usename::text, coalesce(a.application_name, ''),
                    host(a.client_addr), coalesce(a.backend_type, ''), a.state,
                    (extract(epoch FROM now() - a.xact_start) * 1000)::bigint,
                    (extract(epoch FROM now() - a.state_change) * 1000)::bigint,
                    (extract(epoch FROM now() - a.query_start) * 1000)::bigint,
                    coalesce(a.query, ''), a.wait_event_type, a.wait_event,
                    CASE WHEN a.wait_event_type = 'Lock'
                           OR (a.backend_type IS NULL AND a.pid IN (SELECT w.pid FROM pg_locks w WHERE NOT w.granted))
                         THEN pg_blocking_pids(a.pid) END,
                    host(inet_client_addr()),
                    (extract(epoch FROM a.backend_start) * 1000000)::bigint,
                    (extract(epoch FROM a.xact_start) * 1000000)::bigint,
                    (extract(epoch FROM a.query_start) * 1000000)::bigint,
                    current_user::text, pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')
             FROM (SELECT 1) AS one
             LEFT JOIN pg_stat_activity a ON a.pid <> pg_backend_pid()
             ORDER BY a.xact_start NULLS LAST, a.pid"
        );
        let rows = client
            .query(&sql, &[])
            .await
            .map_err(|e| Error::query("reading pg_stat_activity", e))?;
        let mut snapshot = Snapshot::default();
        for row in rows {
            snapshot.max_connections = row.get(0);
            snapshot.reserved_connections = row.get(1);
            snapshot.own_pid = row.get(2);
            snapshot.pooler_addr = row.get(17);
            snapshot.role = row.get(21);
            snapshot.sees_all_sessions = row.get(22);
            let Some(pid) = row.get::<_, Option<i32>>(3) else {
                continue;
            };
            snapshot.sessions.push(Session {
                pid,
                datname: row.get(4),
                usename: row.get(5),
                application_name: row.get(6),
                client_addr: row.get(7),
                backend_type: row.get(8),
                state: row.get(9),
                xact_age_ms: row.get(10),
                state_age_ms: row.get(11),
                query_age_ms: row.get(12),
                query: row.get(13),
                wait_event_type: row.get(14),
                wait_event: row.get(15),
                blocked_by: row.get::<_, Option<Vec<i32>>>(16).unwrap_or_default(),
                via_pooler: false,
                incarnation: Incarnation {
                    backend_start_us: row.get(18),
                    xact_start_us: row.get(19),
                    query_start_us: row.get(20),
                    state: row.get(9),
                },
            });
        }
        Ok(snapshot)
    }

    async fn locks(&self, client: &Connection) -> Result<Vec<LockRow>, Error> {
        let waitstart = if self.server_version_num >= 140000 {
            "(extract(epoch FROM now() - l.waitstart) * 1000)::bigint"
        } else {
            "NULL::bigint"
        };
        // Relation locks (named when in this database) and every ungranted lock, other backends only.
        let sql = format!(
            "SELECT l.pid, l.locktype,
                    CASE WHEN l.relation IS NULL THEN NULL
                         WHEN l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                           OR l.database = 0
                         THEN l.relation::regclass::text
                         ELSE 'relation ' || l.relation::text || ' in database '
                              || coalesce((SELECT quote_ident(datname) FROM pg_database WHERE oid = l.database),
                                          l.database::text) END,
                    l.mode, l.granted, {waitstart}
             FROM pg_locks l
             WHERE l.pid IS NOT NULL AND l.pid <> pg_backend_pid()
               AND (l.locktype = 'relation' OR NOT l.granted)
             ORDER BY l.pid, l.granted DESC"
        );
        let rows = client
            .query(&sql, &[])
            .await
            .map_err(|e| Error::query("reading pg_locks", e))?;
        Ok(rows
            .iter()
            .map(|row| LockRow {
                pid: row.get(0),
                locktype: row.get(1),
                relation: row.get(2),
                mode: row.get(3),
                granted: row.get(4),
                waiting_ms: row.get(5),
            })
            .collect())
    }
}

/// `idle in transaction` or `idle in transaction (aborted)`: holding locks while doing nothing.
fn idle_in_transaction(state: Option<&str>) -> bool {
    state.is_some_and(|s| s.starts_with("idle in transaction"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pid: i32, addr: Option<&str>) -> Session {
        Session {
            pid,
            datname: None,
            usename: None,
            application_name: "app".into(),
            client_addr: addr.map(Into::into),
            backend_type: "client backend".into(),
            state: Some("idle".into()),
            xact_age_ms: None,
            state_age_ms: None,
            query_age_ms: None,
            query: String::new(),
            wait_event_type: None,
            wait_event: None,
            blocked_by: Vec::new(),
            via_pooler: false,
            incarnation: Incarnation::default(),
        }
    }

    #[test]
    fn sessions_from_the_poolers_address_are_marked_and_labelled() {
        let mut snapshot = Snapshot {
            sessions: vec![
                from(1, Some("10.0.0.9")),
                from(2, Some("10.0.0.5")),
                from(3, None),
            ],
            pooler_addr: Some("10.0.0.9".into()),
            ..Snapshot::default()
        };
        snapshot.mark_pooled();
        let marked: Vec<bool> = snapshot.sessions.iter().map(|s| s.via_pooler).collect();
        assert_eq!(marked, [true, false, false]);
        assert_eq!(snapshot.sessions[0].label(), "app@10.0.0.9 via pooler");
        assert_eq!(snapshot.sessions[1].label(), "app@10.0.0.5");
        assert_eq!(snapshot.sessions[2].label(), "app@local");
    }

    #[test]
    fn without_a_pooler_nothing_is_marked() {
        let mut snapshot = Snapshot {
            sessions: vec![from(1, Some("10.0.0.9"))],
            ..Snapshot::default()
        };
        snapshot.mark_pooled();
        assert!(!snapshot.sessions[0].via_pooler);
    }
}
