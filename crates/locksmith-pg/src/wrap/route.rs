//! How a wrapped command's run reaches the server, decided before the command runs:
//! whether a connection pooler (PgBouncer) is in between, which route the
//! watch takes (`--direct-url`, else the target itself), and whether the
//! command's sessions can be found behind the pooler at all.
//!
//! Behind a pooler, `PGOPTIONS` is never relied on (PgBouncer refuses the
//! `options` startup parameter, or drops it silently under
//! `ignore_startup_parameters`), so the command's lock waits are bounded by
//! the watch alone, which finds its sessions by the `application_name` it
//! is given through `PGAPPNAME`. A command whose connection string sets its
//! own `application_name` could not be found: it is refused up front.
//!
//! A pooler in statement pooling mode is refused too, even with
//! `--direct-url`: the command itself still connects through it, and it
//! cuts the link at the command's first `BEGIN` (migration tools run each
//! migration in a transaction; `psql -1` does too), after whatever ran before.

use serde::Serialize;

use crate::guard::ConnectError;
use crate::migrate::PoolerJson;
use crate::{Connection, ConnectionSettings, Pooler};

/// The route, as detected at the start.
pub struct Route {
    /// The pooler in between, if any.
    pub pooler: Option<Pooler>,
    /// Whether the watch goes straight to the server (`--direct-url`).
    pub direct: bool,
    /// The watch's connection (as `locksmith-watchdog`).
    pub sidecar: Connection,
    /// The pooler's address as the server sees it, to label its sessions.
    pub pooler_addr: Option<String>,
}

impl Route {
    /// Connects to the target to find out whether a pooler is in between
    /// (a statement pooler is refused), then opens the watch's connection:
    /// over the direct route when one was given (checked to reach the same
    /// server, through no pooler), else that first connection itself.
    pub async fn open(settings: &ConnectionSettings) -> Result<Route, ConnectError> {
        let watchdog = settings.with_application_name("locksmith-watchdog");
        let target = watchdog.connect().await?;
        target.require_transactions(
            "the command would be cut off at its first BEGIN (migration tools run each \
             migration in a transaction; so does psql -1), after whatever it ran before",
            false,
        )?;
        let pooler = target.pooler();
        let pooler_addr = crate::guard::pooler_addr(&target).await?;
        let direct = settings.has_direct();
        let sidecar = if direct {
            watchdog.connect_direct(&target).await?
        } else {
            target
        };
        Ok(Route {
            pooler,
            direct,
            sidecar,
            pooler_addr,
        })
    }

    /// What the report says about it (the JSON `pooler` key).
    pub fn report(&self, application_name: &str) -> Option<PoolerReport> {
        let pooler = self.pooler?;
        Some(PoolerReport {
            pooler: PoolerJson::new(pooler, self.direct),
            sessions_found_by: format!(
                "application_name (PGAPPNAME), one per attempt: {}",
                application_name
                    .rsplit_once('-')
                    .map_or(application_name.to_string(), |(stem, _)| format!(
                        "{stem}-N"
                    ))
            ),
            limitation: LIMITATION,
        })
    }
}

/// What a pooler leaves out of the watch, in the report.
const LIMITATION: &str = "the command's sessions are found by application_name only: a \
     driver that ignores PGAPPNAME (e.g. JDBC) or sets its own is not watched; and PgBouncer \
     leaves a backend's application_name to a client that sends none, so while the command \
     runs, such a client's lock wait over the budget on a backend the command used could be \
     taken for the command's (a wait queued only behind the command is never cancelled). \
     Safest: give every application client an application_name, or run the migration \
     straight to the server";

/// The JSON `pooler` key of `run`'s report: every command's
/// [`PoolerJson`], and how the command's sessions were found.
#[derive(Debug, Clone, Serialize)]
pub struct PoolerReport {
    /// What every command reports.
    #[serde(flatten)]
    pub pooler: PoolerJson,
    /// How the command's sessions were told apart.
    pub sessions_found_by: String,
    /// What that cannot cover.
    pub limitation: &'static str,
}

/// Where the command sets its own `application_name` (an argument, or the
/// `DATABASE_URL` it will see): behind a pooler its sessions would then be
/// invisible to the watch. `None` when nowhere we can see.
pub fn own_application_name(cmd: &[String], database_url: Option<&str>) -> Option<String> {
    let sets = |s: &str| {
        let s = s.to_ascii_lowercase();
        s.contains("application_name=") || s.contains("applicationname=")
    };
    if let Some(arg) = cmd.iter().find(|a| sets(a)) {
        return Some(format!(
            "its arguments set application_name ({})",
            crate::redact(arg)
        ));
    }
    database_url
        .filter(|u| sets(u))
        .map(|_| "its DATABASE_URL sets application_name".to_string())
}

/// The refusal when the command cannot be watched behind `pooler`.
pub fn refusal(pooler: &Pooler, why: &str) -> String {
    format!(
        "not run: locksmith is behind {pooler}, where the command's lock waits are bounded only by \
         locksmith's watch, which finds its sessions by the application_name it gives them \
         (PGAPPNAME) — but {why}. Remove application_name from the command's connection string, \
         or point the command and --database-url straight at the server instead of the pooler"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_an_own_application_name() {
        let cmd = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(
            own_application_name(&cmd(&["psql", "postgres://h/db", "-c", "SELECT 1"]), None),
            None
        );
        let found = own_application_name(
            &cmd(&["psql", "postgres://u:secret@h/db?application_name=mine"]),
            None,
        )
        .unwrap();
        assert!(found.contains("arguments"), "{found}");
        assert!(!found.contains("secret"), "{found}");
        assert!(own_application_name(
            &cmd(&["flyway", "migrate"]),
            Some("jdbc:postgresql://h/db?ApplicationName=flyway")
        )
        .is_some());
    }
}
