//! What happens before a wrapped command's first attempt: its [`plan`]
//! read (the tool's own SQL, sized on the live server), announced, and a
//! statement estimated to hold a traffic-blocking lock past `max_hold`
//! refused before anything ran; or the plan alone (`--plan-only`).
//!
//! It must not run the wrapped command, nor anything but the command that
//! prints its SQL.

use std::time::Duration;

use locksmith_core::analysis::source::one_line;
use locksmith_core::duration::human;

use super::env::{child_env, shown_command, ChildEnv};
use super::plan::{self, NoSql, OnlineAlternative, RunPlan, SqlSource};
use super::{Error, Event, Wrapped};
use crate::guard::{unless_interrupted, Interrupt};
use crate::Connection;

impl Wrapped {
    /// The plan of `command` alone, nothing run: for `--plan-only`. An
    /// error when the command has no source of SQL or it cannot be read.
    pub async fn plan(&self, command: &[String]) -> Result<RunPlan, Error> {
        if SqlSource::for_command(command, self.sql_from.as_deref()).is_none() {
            return Err(Error::NoSqlSource(one_line(&shown_command(command), 100)));
        }
        let interrupt = self.interrupts.clone();
        let route = self.open_route(Error::PlanRead).await?;
        let process_env = |name: &str| std::env::var(name).ok();
        let env = child_env(
            self.database_url.as_deref(),
            self.policy.lock_timeout,
            route.pooler.is_some(),
            0,
            &process_env,
        );
        match self
            .read_sql_plan(&route.sidecar, command, &env, &interrupt)
            .await?
        {
            Ok(plan) => Ok(plan),
            Err(no) => Err(Error::NoPlan(no.why)),
        }
    }

    /// The plan before a run: `None`, said in an event, when the SQL cannot
    /// be had from alembic (the command then runs as it would without one);
    /// an error when the command named by `sql_from` fails.
    pub(super) async fn read_plan(
        &self,
        client: &Connection,
        command: &[String],
        env: &ChildEnv,
        interrupt: &tokio::sync::watch::Receiver<Option<Interrupt>>,
    ) -> Result<Option<RunPlan>, Error> {
        if SqlSource::for_command(command, self.sql_from.as_deref()).is_none() {
            return Ok(None);
        }
        match self.read_sql_plan(client, command, env, interrupt).await? {
            Ok(plan) => {
                self.emit(Event::Plan(&plan));
                Ok(Some(plan))
            }
            Err(no) if self.sql_from.is_some() => Err(Error::SqlFrom(no.why)),
            Err(no) => {
                self.emit(Event::NoPlan(&no.why));
                Ok(None)
            }
        }
    }

    /// Asks the tool (or the `sql_from` command) for its SQL and plans it.
    async fn read_sql_plan(
        &self,
        client: &Connection,
        command: &[String],
        env: &ChildEnv,
        interrupt: &tokio::sync::watch::Receiver<Option<Interrupt>>,
    ) -> Result<Result<RunPlan, NoSql>, Error> {
        let Some(source) = SqlSource::for_command(command, self.sql_from.as_deref()) else {
            return Ok(Err(NoSql {
                why: "no source of SQL".to_string(),
            }));
        };
        let work = async {
            let (shown, sql) = match source.read(client, command, env).await? {
                Ok(read) => read,
                Err(no) => return Ok(Err(no)),
            };
            let major = crate::trace::catalog::server_major(client).await?;
            plan::plan(client, shown, &sql, major).await
        };
        match unless_interrupted(interrupt, work).await {
            Ok(planned) => planned.map_err(Error::PlanRead),
            Err(signal) => Err(Error::Interrupted(signal)),
        }
    }
}

/// Why the plan says the command must not run under `max_hold`: its first
/// statement expected to hold a traffic-blocking lock longer, named with
/// the estimate and the online way. `None` when none is.
pub(super) fn over_max_hold(plan: &RunPlan, max_hold: Duration) -> Option<String> {
    let (s, hold) = plan.statements.iter().find_map(|s| {
        let hold = s.estimated_hold.as_ref()?;
        (hold.estimated_hold_ms > max_hold.as_millis() as u64).then_some((s, hold))
    })?;
    let size = s
        .tables
        .iter()
        .find(|t| t.relation == hold.relation)
        .map(|t| {
            format!(
                "about {} rows{}",
                t.rows,
                t.bytes
                    .map(|b| format!(", {}", locksmith_core::lint::live::bytes(b)))
                    .unwrap_or_default()
            )
        })
        .unwrap_or_default();
    let instead = match &s.online {
        Some(OnlineAlternative::Steps(_)) => {
            "Run it online instead: `locksmith apply --online` runs it as steps that hold only \
             brief locks (`locksmith lint` prints them); or raise --max-hold if traffic may wait that long"
                .to_string()
        }
        Some(OnlineAlternative::None(why)) => {
            format!("It has no online form ({why}); raise --max-hold if traffic may wait that long")
        }
        None => "Raise --max-hold if traffic may wait that long".to_string(),
    };
    Some(format!(
        "refused before running anything: its statement `{}` (line {} of its SQL) would hold {} on \
         {} for roughly {} ({} it; estimate from its size: {size}), over --max-hold {}. {instead}",
        one_line(&s.sql, 120),
        s.line,
        hold.mode.sql_name(),
        hold.relation,
        human(Duration::from_millis(hold.estimated_hold_ms)),
        if hold.rewrite { "rewriting" } else { "reading" },
        human(max_hold),
    ))
}
