//! The audit's rules: [`Facts`] in, [`Finding`]s out. Pure: no server, no
//! clock, so each rule is tested on hand-written facts.
//!
//! Each finding says what is wrong, why it matters in the story's terms (the
//! leaked idle transaction, the ALTER queued behind it, every request queued
//! behind the ALTER, the connection slots running out) and a fix a person can
//! run. Settings are judged per login role, as a new session of that role
//! would see them: `ALTER ROLE … IN DATABASE` beats `ALTER ROLE`, which beats
//! `ALTER DATABASE`, which beats the server-wide value.

use std::collections::BTreeMap;

use locksmith_core::analysis::quote_ident;
use locksmith_core::quote;
use serde::Serialize;

use super::{Facts, LoginRole};

pub use locksmith_core::Severity;

/// One problem found, with its fix. Serialises as the `doctor --format json`
/// contract: `id`, `severity`, `message`, `why`, `fix`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable identifier, e.g. `idle_in_transaction_session_timeout`.
    pub id: &'static str,
    /// How bad.
    pub severity: Severity,
    /// What is wrong, in one sentence.
    pub message: String,
    /// Why it matters, and what else to know, in prose.
    pub why: String,
    /// What to run or change: SQL that can be pasted as it is, where the fix is SQL.
    pub fix: String,
}

/// Sessions idle in transaction longer than this are reported.
pub const IDLE_IN_TRANSACTION_MS: i64 = 60_000;
/// Transactions older than this are reported.
pub const LONG_TRANSACTION_MS: i64 = 3_600_000;
/// Warn when this share of the usable connection slots is in use.
pub const HEADROOM_WARN_PERCENT: usize = 80;

/// Roles that cloud providers manage; their settings cannot be changed by users.
const PROVIDER_ROLES: [&str; 5] = [
    "rdsadmin",
    "rdsrepladmin",
    "rdstopmgr",
    "cloudsqladmin",
    "azuresu",
];

/// Runs every rule; findings come out worst first, then in rule order.
pub fn audit(facts: &Facts) -> Vec<Finding> {
    let mut findings = Vec::new();
    idle_in_transaction_timeout(facts, &mut findings);
    migration_timeouts(facts, &mut findings);
    log_lock_waits(facts, &mut findings);
    transaction_timeout(facts, &mut findings);
    connection_headroom(facts, &mut findings);
    idle_sessions(facts, &mut findings);
    long_transactions(facts, &mut findings);
    prepared_transactions(facts, &mut findings);
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    findings
}

/// Whether a timeout value (as `pg_settings` or `ALTER ROLE … SET` wrote it) means "off".
pub fn is_off(value: &str) -> bool {
    let digits: String = value
        .trim()
        .trim_matches('\'')
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse::<f64>().map(|n| n == 0.0).unwrap_or(false)
}

/// The value a new session of `role` in the current database would start with.
pub fn effective<'a>(facts: &'a Facts, role: &str, name: &str) -> Option<&'a str> {
    let db = facts.database.as_str();
    let find = |r: Option<&str>, d: Option<&str>| {
        facts
            .role_settings
            .iter()
            .find(|s| s.role.as_deref() == r && s.database.as_deref() == d)
            .and_then(|s| s.settings.get(name))
            .map(String::as_str)
    };
    find(Some(role), Some(db))
        .or_else(|| find(Some(role), None))
        .or_else(|| find(None, Some(db)))
        .or_else(|| facts.server.get(name).map(String::as_str))
}

fn user_roles(facts: &Facts) -> impl Iterator<Item = &LoginRole> {
    facts
        .roles
        .iter()
        .filter(|r| !PROVIDER_ROLES.contains(&r.name.as_str()))
}

fn idle_in_transaction_timeout(facts: &Facts, out: &mut Vec<Finding>) {
    const NAME: &str = "idle_in_transaction_session_timeout";
    for role in user_roles(facts) {
        if !effective(facts, &role.name, NAME).is_none_or(is_off) {
            continue;
        }
        // A superuser is who a DBA investigates with (psql, a transaction
        // left open while looking): a minute would cut them off. A long
        // backstop there; applications get their own role and the minute.
        let (timeout, who) = if role.superuser {
            (
                "10min",
                " It is a superuser, which is what administrators work as: a long backstop there, \
                 and a role of its own with '60s' for the application.",
            )
        } else {
            ("60s", "")
        };
        out.push(Finding {
            id: NAME,
            severity: Severity::Warning,
            message: format!(
                "role {} has no idle_in_transaction_session_timeout: its sessions may stay idle in transaction forever",
                role.name
            ),
            why: format!(
                "A session left idle in transaction (an unremoved SQLAlchemy scoped_session) keeps its locks; \
                 the next ALTER TABLE queues behind it and every query on the table queues behind the ALTER.{who} \
                 ALTER ROLE … SET applies to new sessions only: sessions open now keep running without it \
                 until they reconnect."
            ),
            fix: format!(
                "ALTER ROLE {} SET idle_in_transaction_session_timeout = '{timeout}';",
                quote_ident(&role.name)
            ),
        });
    }
}

fn migration_timeouts(facts: &Facts, out: &mut Vec<Finding>) {
    for role in user_roles(facts).filter(|r| r.owns_tables) {
        let ident = quote_ident(&role.name);
        if effective(facts, &role.name, "lock_timeout").is_none_or(is_off) {
            out.push(Finding {
                id: "lock_timeout",
                severity: Severity::Warning,
                message: format!(
                    "role {} owns tables in {} (so it runs migrations) and has no lock_timeout",
                    role.name, facts.database
                ),
                why: "Without lock_timeout a migration's ALTER waits for its lock forever, and every query on the \
                      table waits behind it; with one, it gives up after the budget and traffic resumes."
                    .into(),
                fix: format!("ALTER ROLE {ident} SET lock_timeout = '2s';  -- or run migrations under `locksmith apply` / `locksmith run`"),
            });
        }
        if effective(facts, &role.name, "statement_timeout").is_none_or(is_off) {
            out.push(Finding {
                id: "statement_timeout",
                severity: Severity::Info,
                message: format!(
                    "role {} owns tables in {} and has no statement_timeout",
                    role.name, facts.database
                ),
                why: "A migration statement that scans or rewrites a large table holds its lock for as long as it runs."
                    .into(),
                fix: format!("ALTER ROLE {ident} SET statement_timeout = '15min';  -- long enough for your largest index build"),
            });
        }
    }
}

fn log_lock_waits(facts: &Facts, out: &mut Vec<Finding>) {
    if facts.server.get("log_lock_waits").map(String::as_str) == Some("off") {
        out.push(Finding {
            id: "log_lock_waits",
            severity: Severity::Warning,
            message: "log_lock_waits is off: the server log never says who waited for whom".into(),
            why: "With it on, a wait longer than deadlock_timeout is logged with the lock holders and the wait queue: \
                  the evidence the story's engineer had to reconstruct by hand."
                .into(),
            fix: "ALTER SYSTEM SET log_lock_waits = on; SELECT pg_reload_conf();".into(),
        });
    }
}

fn transaction_timeout(facts: &Facts, out: &mut Vec<Finding>) {
    if facts.server_version_num < 170000 {
        return;
    }
    if facts
        .server
        .get("transaction_timeout")
        .is_some_and(|v| is_off(v))
    {
        out.push(Finding {
            id: "transaction_timeout",
            severity: Severity::Info,
            message: "transaction_timeout (PostgreSQL 17+) is not set server-wide".into(),
            why: "It ends any transaction older than the limit, idle or not: a backstop for leaked transactions."
                .into(),
            fix: "ALTER ROLE <application role> SET transaction_timeout = '5min';".into(),
        });
    }
}

fn connection_headroom(facts: &Facts, out: &mut Vec<Finding>) {
    let snap = &facts.snapshot;
    let usable = (snap.max_connections - snap.reserved_connections).max(1) as usize;
    let used = snap.connections_used();
    if used * 100 >= usable * HEADROOM_WARN_PERCENT {
        out.push(Finding {
            id: "connection_headroom",
            severity: if used >= usable { Severity::Error } else { Severity::Warning },
            message: format!(
                "{used} of {usable} usable connections in use (max_connections {}, {} reserved)",
                snap.max_connections, snap.reserved_connections
            ),
            why: "When requests queue behind a lock, each holds its connection; the pool grows until \
                  \"remaining connection slots are reserved for non-replication superuser connections\"."
                .into(),
            fix: "Find what holds the connections (`locksmith blockers`); cap the application's pool below max_connections."
                .into(),
        });
    }
    if snap.max_connections > 0 && snap.reserved_connections == 0 {
        out.push(Finding {
            id: "reserved_connections",
            severity: Severity::Info,
            message: "no connection slots are reserved for superusers".into(),
            why: "When the application fills every slot, an administrator cannot connect to find and end the blocker."
                .into(),
            fix: "ALTER SYSTEM SET superuser_reserved_connections = 3;  -- takes effect after a restart".into(),
        });
    }
}

fn idle_sessions(facts: &Facts, out: &mut Vec<Finding>) {
    // Grouped by application and client: one leak in one application shows as one finding.
    let mut groups: BTreeMap<(String, String), Vec<(i32, i64)>> = BTreeMap::new();
    for s in &facts.snapshot.sessions {
        let idle = s.state_age_ms.unwrap_or(0);
        if s.is_idle_in_transaction() && idle >= IDLE_IN_TRANSACTION_MS {
            let client = s.client_addr.clone().unwrap_or_else(|| "local".into());
            groups
                .entry((s.application_name.clone(), client))
                .or_default()
                .push((s.pid, idle));
        }
    }
    for ((app, client), sessions) in groups {
        let longest = sessions.iter().map(|(_, ms)| *ms).max().unwrap_or(0);
        let pids: Vec<String> = sessions.iter().map(|(p, _)| p.to_string()).collect();
        out.push(Finding {
            id: "idle_in_transaction_sessions",
            severity: Severity::Warning,
            message: format!(
                "{} session(s) of {} from {client} idle in transaction, the longest for {} (pid {})",
                sessions.len(),
                if app.is_empty() { "(no application_name)".to_string() } else { format!("\"{app}\"") },
                human_ms(longest),
                pids.join(", ")
            ),
            why: "Each holds every lock its transaction took: the next migration on those tables queues behind them. \
                  End the transactions in the application where it leaks them (SQLAlchemy: scoped_session.remove() \
                  after each request); the fix ends these sessions now, rolling their transactions back."
                .into(),
            fix: format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid IN ({}) AND state LIKE 'idle in transaction%';",
                pids.join(", ")
            ),
        });
    }
}

fn long_transactions(facts: &Facts, out: &mut Vec<Finding>) {
    for s in &facts.snapshot.sessions {
        let age = s.xact_age_ms.unwrap_or(0);
        // Idle-in-transaction sessions are reported (grouped) above.
        if age < LONG_TRANSACTION_MS || s.is_idle_in_transaction() {
            continue;
        }
        out.push(Finding {
            id: "long_transaction",
            severity: Severity::Warning,
            message: format!(
                "pid {} ({}) has had a transaction open for {} ({})",
                s.pid,
                s.label(),
                human_ms(age),
                s.state.as_deref().unwrap_or("?")
            ),
            why: "A long transaction holds its locks throughout; a migration that needs one of them waits, and traffic waits behind it. \
                  Check what it does first (the fix's first query); cancel it only if it is stuck."
                .into(),
            fix: format!(
                "SELECT query FROM pg_stat_activity WHERE pid = {};\nSELECT pg_cancel_backend({});",
                s.pid, s.pid
            ),
        });
    }
}

fn prepared_transactions(facts: &Facts, out: &mut Vec<Finding>) {
    for p in &facts.prepared {
        out.push(Finding {
            id: "prepared_transaction",
            severity: Severity::Warning,
            message: format!(
                "prepared transaction {} (owner {}, database {}) open for {}",
                quote::literal(&p.gid),
                p.owner,
                p.database,
                human_ms(p.age_ms)
            ),
            why: "It holds its locks until someone finishes it, and no session in pg_stat_activity shows it."
                .into(),
            fix: format!("{}; or {};  -- in database {}", p.commit, p.rollback, p.database),
        });
    }
}

/// The finding for a connection pooler between locksmith and the server:
/// what works through it, and what needs a direct route (`direct`: one was
/// given with `--direct-url` / `LOCKSMITH_DIRECT_URL`).
pub fn pooler(pooler: &crate::Pooler, direct: bool) -> Finding {
    Finding {
        id: "connection_pooler",
        severity: Severity::Info,
        message: format!(
            "connected through a connection pooler: announced as process {}, answered by backend {}",
            pooler.key_pid, pooler.backend_pid
        ),
        why: "Through a pooler in transaction mode, each transaction may run on another server \
              connection, shared with other clients: session settings and session-level \
              advisory locks would stay behind for them, and a backend pid read once may serve \
              someone else later. locksmith sends every statement unnamed, sets nothing \
              session-level and keeps each step in one transaction, so blockers, top, doctor, \
              lint and trace work through it, and apply/run take transaction-level locks. \
              Client addresses of the pooler's server connections are the pooler's: they are \
              labelled `via pooler`. Statements that cannot run in a transaction block \
              (CREATE INDEX CONCURRENTLY, VACUUM, …) need a route straight to the server."
            .into(),
        fix: if direct {
            "Nothing to do: --direct-url / LOCKSMITH_DIRECT_URL gives locksmith's own \
             connections a route straight to the server."
                .into()
        } else {
            "For migrations with statements that cannot run in a transaction block, give \
             --direct-url postgres://…@<server host>:5432/<db> (or LOCKSMITH_DIRECT_URL): a URL \
             to the same server and database that bypasses the pooler."
                .into()
        },
    }
}

fn human_ms(ms: i64) -> String {
    locksmith_core::duration::human(std::time::Duration::from_millis(ms.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::super::{PreparedXact, RoleSetting};
    use super::*;
    use crate::snapshot::{Session, Snapshot};

    fn role(name: &str, owns_tables: bool) -> LoginRole {
        LoginRole {
            name: name.into(),
            superuser: false,
            owns_tables,
        }
    }

    fn setting(role: Option<&str>, db: Option<&str>, name: &str, value: &str) -> RoleSetting {
        RoleSetting {
            role: role.map(Into::into),
            database: db.map(Into::into),
            settings: [(name.to_string(), value.to_string())].into(),
        }
    }

    fn facts() -> Facts {
        Facts {
            server_version_num: 150000,
            database: "app".into(),
            server: [
                ("idle_in_transaction_session_timeout", "0"),
                ("lock_timeout", "0"),
                ("statement_timeout", "0"),
                ("log_lock_waits", "on"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            role_settings: vec![],
            roles: vec![role("web", false)],
            snapshot: Snapshot {
                max_connections: 100,
                reserved_connections: 3,
                ..Snapshot::default()
            },
            prepared: vec![],
        }
    }

    fn ids(f: &Facts) -> Vec<&'static str> {
        audit(f).iter().map(|f| f.id).collect()
    }

    #[test]
    fn role_names_are_quoted_only_when_needed() {
        assert_eq!(quote_ident("app_rw"), "app_rw");
        assert_eq!(quote_ident("App"), "\"App\"");
        assert_eq!(quote_ident("user"), "\"user\"");
    }

    #[test]
    fn zero_timeouts_are_off() {
        for off in ["0", "0ms", "0s", "'0'", " 0 "] {
            assert!(is_off(off), "{off}");
        }
        for on in ["60s", "1min", "100", "on"] {
            assert!(!is_off(on), "{on}");
        }
    }

    #[test]
    fn missing_idle_timeout_names_the_role_and_the_fix() {
        let found = audit(&facts());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, "idle_in_transaction_session_timeout");
        assert_eq!(found[0].severity, Severity::Warning);
        assert_eq!(
            found[0].fix,
            "ALTER ROLE web SET idle_in_transaction_session_timeout = '60s';"
        );
    }

    #[test]
    fn a_superuser_gets_a_backstop_not_the_minute() {
        let mut facts = facts();
        for r in &mut facts.roles {
            r.superuser = true;
        }
        let found = audit(&facts);
        assert_eq!(
            found[0].fix,
            "ALTER ROLE web SET idle_in_transaction_session_timeout = '10min';"
        );
        assert!(found[0].why.contains("superuser"), "{}", found[0].why);
        assert!(
            found[0].why.contains("new sessions only"),
            "{}",
            found[0].why
        );
    }

    #[test]
    fn fixes_are_sql_only() {
        let mut facts = facts();
        facts.role_settings.push(setting(
            None,
            None,
            "idle_in_transaction_session_timeout",
            "60s",
        ));
        facts.snapshot.sessions = vec![
            session(10, "idle in transaction", 120_000, 130_000),
            session(11, "active", 1_000, 7_200_000),
        ];
        let found = audit(&facts);
        let checked: Vec<&str> = found
            .iter()
            .filter(|f| f.id == "idle_in_transaction_sessions" || f.id == "long_transaction")
            .map(|f| {
                assert!(f.fix.starts_with("SELECT "), "{}: {}", f.id, f.fix);
                assert!(!f.fix.contains("SQLAlchemy"), "{}: {}", f.id, f.fix);
                f.id
            })
            .collect();
        assert_eq!(checked.len(), 2, "{found:?}");
    }

    #[test]
    fn role_database_and_server_settings_take_precedence_in_order() {
        let name = "idle_in_transaction_session_timeout";
        let mut f = facts();
        f.role_settings = vec![setting(Some("web"), None, name, "60s")];
        assert!(ids(&f).is_empty());
        // ALTER ROLE … IN DATABASE beats ALTER ROLE.
        f.role_settings
            .push(setting(Some("web"), Some("app"), name, "0"));
        assert_eq!(ids(&f), vec![name]);
        // A database default applies when the role has none.
        f.role_settings = vec![setting(None, Some("app"), name, "30s")];
        assert!(ids(&f).is_empty());
        // Another database's default does not.
        f.role_settings = vec![setting(None, Some("other"), name, "30s")];
        assert_eq!(ids(&f), vec![name]);
        // Server-wide.
        f.role_settings.clear();
        f.server.insert(name.into(), "60000".into());
        assert!(ids(&f).is_empty());
    }

    #[test]
    fn table_owners_need_lock_timeout() {
        let mut f = facts();
        f.server
            .insert("idle_in_transaction_session_timeout".into(), "60000".into());
        f.roles = vec![role("migrator", true), role("web", false)];
        let found = audit(&f);
        let ids: Vec<_> = found.iter().map(|x| x.id).collect();
        assert_eq!(ids, vec!["lock_timeout", "statement_timeout"]);
        assert!(found[0].message.contains("migrator"));
        assert!(found[0]
            .fix
            .starts_with("ALTER ROLE migrator SET lock_timeout"));
        f.role_settings = vec![setting(Some("migrator"), None, "lock_timeout", "2s")];
        assert_eq!(
            super::audit(&f).iter().map(|x| x.id).collect::<Vec<_>>(),
            vec!["statement_timeout"]
        );
    }

    #[test]
    fn log_lock_waits_off_and_transaction_timeout_on_17() {
        let mut f = facts();
        f.roles.clear();
        f.server.insert("log_lock_waits".into(), "off".into());
        assert_eq!(ids(&f), vec!["log_lock_waits"]);
        f.server_version_num = 170002;
        f.server.insert("transaction_timeout".into(), "0".into());
        assert_eq!(ids(&f), vec!["log_lock_waits", "transaction_timeout"]);
    }

    fn session(pid: i32, state: &str, idle_ms: i64, xact_ms: i64) -> Session {
        Session {
            pid,
            datname: Some("app".into()),
            usename: Some("web".into()),
            application_name: "web-app".into(),
            client_addr: Some("10.0.0.5".into()),
            backend_type: "client backend".into(),
            state: Some(state.into()),
            xact_age_ms: Some(xact_ms),
            state_age_ms: Some(idle_ms),
            query_age_ms: Some(idle_ms),
            query: "SELECT 1".into(),
            wait_event_type: None,
            wait_event: None,
            blocked_by: vec![],
            via_pooler: false,
            incarnation: Default::default(),
        }
    }

    #[test]
    fn live_state_idle_long_and_prepared() {
        let mut f = facts();
        f.roles.clear();
        f.snapshot.sessions = vec![
            session(10, "idle in transaction", 90_000, 95_000),
            session(11, "idle in transaction", 120_000, 125_000),
            session(12, "idle in transaction", 5_000, 5_000),
            session(13, "active", 1_000, 2 * LONG_TRANSACTION_MS),
        ];
        f.prepared = vec![PreparedXact::new(
            "tx-1".into(),
            "web".into(),
            "app".into(),
            "2026-01-01T00:00:00.000000Z".into(),
            7_000,
        )];
        let found = audit(&f);
        let ids: Vec<_> = found.iter().map(|x| x.id).collect();
        assert_eq!(
            ids,
            vec![
                "idle_in_transaction_sessions",
                "long_transaction",
                "prepared_transaction"
            ]
        );
        assert!(
            found[0]
                .message
                .starts_with("2 session(s) of \"web-app\" from 10.0.0.5"),
            "{}",
            found[0].message
        );
        assert!(found[0].message.contains("2m00s"), "{}", found[0].message);
        assert!(found[0].fix.contains("IN (10, 11)"));
        assert!(found[2].fix.contains("ROLLBACK PREPARED 'tx-1'"));
    }

    #[test]
    fn connection_headroom_warns_then_errors() {
        let mut f = facts();
        f.roles.clear();
        f.snapshot.max_connections = 13;
        f.snapshot.reserved_connections = 3;
        f.snapshot.sessions = (0..6).map(|p| session(p, "idle", 0, 0)).collect();
        assert!(ids(&f).is_empty(), "7 of 10");
        f.snapshot.sessions.push(session(8, "idle", 0, 0));
        let found = audit(&f);
        assert_eq!(found[0].id, "connection_headroom");
        assert_eq!(found[0].severity, Severity::Warning);
        f.snapshot.sessions.push(session(9, "idle", 0, 0));
        assert_eq!(audit(&f)[0].severity, Severity::Warning, "9 of 10");
        f.snapshot.sessions.push(session(10, "idle", 0, 0));
        assert_eq!(audit(&f)[0].severity, Severity::Error);
        f.snapshot.reserved_connections = 0;
        assert!(ids(&f).contains(&"reserved_connections"));
    }

    #[test]
    fn a_pooler_is_a_finding_that_says_whether_a_direct_route_was_given() {
        let pooler = crate::Pooler {
            key_pid: 77,
            backend_pid: 4242,
            pooling: crate::connection::Pooling::Transaction,
        };
        let without = super::pooler(&pooler, false);
        assert_eq!(without.id, "connection_pooler");
        assert_eq!(without.severity, Severity::Info);
        assert!(without.message.contains("4242"), "{}", without.message);
        assert!(without.fix.contains("--direct-url"), "{}", without.fix);
        let with = super::pooler(&pooler, true);
        assert!(with.fix.starts_with("Nothing to do"), "{}", with.fix);
    }
}
