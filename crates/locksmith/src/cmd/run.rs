//! `locksmith run [GUARD] -- CMD ARGS…`: runs any migration tool, unchanged,
//! under the guard.
//!
//! The tool keeps its own connections; locksmith only shapes its environment
//! (`lock_timeout` through `PGOPTIONS`, an `application_name` through
//! `PGAPPNAME` so its sessions can be found, `DATABASE_URL` from
//! `--database-url` when the tool has none) and watches its sessions from a
//! second connection ([`SessionWatchdog`]). Behind a connection pooler
//! ([`route`]) `PGOPTIONS` is left alone — the pooler would refuse it or
//! silently drop it — and the watch alone bounds the tool's lock waits: it
//! cancels, by name, any that outlives the budget. The deadline is enforced
//! on the tool too: at it, its statements are cancelled on the server and
//! it is stopped. When an attempt lost a lock race,
//! the tool is rerun with backoff — but not while long-lived sessions still
//! hold the lock it waited for: queueing behind them is the outage. Each try
//! waits for its locks a little longer (75 ms — three polls of the watch, so
//! it learns whom it waited for — doubling up to the budget): the first
//! knows nothing of who holds what.
//!
//! It must not: change where the tool connects beyond the above; buffer the
//! tool's output (it passes through live, scanned on the way for lock-timeout
//! errors); rerun a tool that failed for any other reason, or that committed
//! part of its work before it lost (its exit code is passed through; see
//! [`locksmith_pg::guard::commits`]); start a new attempt after the deadline; leave one of
//! the tool's lock requests queued on the server, whichever way it ends; or
//! report as applied a run in which a statement failed on a lock timeout or
//! was cancelled by the watch, even when the tool exits 0 (psql without
//! `ON_ERROR_STOP` does; a wrapped psql is told to stop: see [`psql`]).
//!
//! With `--replica URL`, the look before a retry covers each hot standby's
//! sessions in the way of an `ACCESS EXCLUSIVE` lock the tool waited for
//! (the standby replays that lock and stalls behind them). The first try
//! cannot look there: the tool's tables are known only once it waited.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use locksmith_pg::guard::backoff::growing_lock_wait;
use locksmith_pg::guard::retry::{Next, Retry};
use locksmith_pg::guard::sessions::{
    CancelledWait, Scope, SessionWatch, SessionWatchdog, WantedLock, SHORTEST_SEEN_WAIT,
};
use locksmith_pg::guard::{next_interrupt, ConnectError, GuardReport, Holder, Interrupt};
use serde::Serialize;
use tokio::sync::watch;

mod child;
pub(super) mod warden;

use child::{attempt, exit_code, SIDECAR_BOUND};
use locksmith_pg::wrap::env::{child_env, shown_command};
use locksmith_pg::wrap::{psql, route};

use super::signals;
use crate::cli::{Format, RunArgs};
use crate::exit::{CmdResult, Failure, Outcome};
use crate::render;
use crate::render::guard::{RunReport, Status};
use crate::render::style::Style;

/// Runs the command until it succeeds, fails for a reason other than a lost
/// lock race, or attempts or the deadline run out.
pub async fn run(args: RunArgs) -> CmdResult {
    let settings = super::settings(&args.guard.connection)?;
    let replicas = super::replica_settings(&args.guard.replicas)?;
    let policy = args.guard.policy();
    let mut interrupt = signals::interrupts();
    let cannot_watch = |e: locksmith_pg::Error| {
        Failure::other(miette::miette!(
            "cannot watch the migration's sessions, so it was not run: {e}"
        ))
    };
    let route = match signals::unless_interrupted(&interrupt, route::Route::open(&settings)).await {
        Ok(Ok(route)) => route,
        Ok(Err(ConnectError::Failed(e))) => return Err(cannot_watch(e)),
        // A statement pooler: refused (exit 2), nothing run.
        Ok(Err(refused)) => return Err(Failure::from(refused)),
        Err(signal) => return Ok(Outcome::Code(signals::exit_code(signal))),
    };
    let pooled = route.pooler.is_some();
    let process_env = |name: &str| std::env::var(name).ok();
    let given_url = args.guard.connection.database_url.as_deref();
    let env = child_env(given_url, policy.lock_timeout, pooled, 1, &process_env);
    if let Some(pooler) = &route.pooler {
        if let Some(why) = route::own_application_name(&args.cmd, env.database_url()) {
            return Err(Failure::input(miette::miette!(
                "{}",
                route::refusal(pooler, &why)
            )));
        }
    }
    if let Some(line) = route.announce(&env.app_name) {
        progress(&line);
    }
    if pooled && process_env("PGOPTIONS").is_some_and(|o| !o.trim().is_empty()) {
        progress(
            "warning: the command inherits PGOPTIONS from this environment, but a pooler refuses \
             the options startup parameter or drops it silently: do not count on those settings",
        );
    }
    if let Some(replaced) = &env.replaced_app_name {
        progress(&format!(
            "PGAPPNAME={replaced} is replaced by {} for the command: behind a pooler its sessions are found by that name",
            env.app_name
        ));
    }
    // Behind a pooler only the watch bounds the command's waits: should this
    // process die, the warden stops the command and cancels them instead.
    let mut warden = match pooled {
        true => warden::Warden::start(&args.guard.connection),
        false => None,
    };
    let pooler_report = route.report(&env.app_name);
    let route_direct = route.direct;
    let route_pooler_addr = route.pooler_addr.clone();
    let scope = if pooled {
        Scope::Pooled
    } else {
        Scope::OpenedSinceStart
    };
    let starting = SessionWatchdog::start(
        route.sidecar,
        &env.app_name,
        scope,
        policy.lock_timeout,
        policy.terminate_idle_after,
        Some(policy.max_hold),
    );
    let started = match signals::unless_interrupted(&interrupt, starting).await {
        Ok(started) => started,
        Err(signal) => return Ok(Outcome::Code(signals::exit_code(signal))),
    };
    let mut dog = started.map_err(cannot_watch)?;
    // psql runs on past a failed statement and exits 0 unless told to stop.
    let cmd = psql::stop_on_error(&args.cmd).unwrap_or_else(|| args.cmd.clone());
    if cmd != args.cmd {
        progress(
            "psql is run with -v ON_ERROR_STOP=1, so it stops at the first statement that fails \
             (e.g. on lock_timeout) instead of running on past it",
        );
    }
    if let Some(rc) = psql::psqlrc_setting_it(&cmd, &process_env) {
        progress(&format!(
            "warning: {rc} sets ON_ERROR_STOP and psql reads it after its -v options, so its value \
             wins; a statement that fails is still never reported as applied"
        ));
    }
    // No query of the watch may be in flight when this process exits:
    // through a pooler, a client gone mid-query leaves its answer on the
    // pooled backend, and PgBouncer 1.18 may hand it to the next client.
    let outcome: CmdResult = async {
        dog.watch_replicas(&replicas).await?;
        let command = shown_command(&args.cmd);
        let shown = render::one_line(&command, 100);
        let mut run = Run {
            args: &args,
            command: &command,
            started: Instant::now(),
            report: GuardReport {
                pooler_addr: route_pooler_addr,
                ..GuardReport::default()
            },
            wanted: Vec::new(),
            errors: Vec::new(),
            pooler: pooler_report,
            cancels: Vec::new(),
            command_exit_code: None,
            committed: None,
        };
        let mut retry = Retry::new(&policy, run.started);
        let mut waiting_lines = super::progress::WaitingLines::default();
        loop {
            // Look before queueing: while long-lived sessions hold what an earlier
            // attempt waited for, an attempt would only queue behind them. (Before
            // the first attempt nothing is known yet: it learns the tables.)
            let holders = if run.wanted.is_empty() {
                Vec::new()
            } else {
                let holders = dog
                    .blocking_retry(&run.wanted, policy.lock_timeout)
                    .await
                    .unwrap_or_default();
                run.absorb(&dog.take());
                holders
            };
            let number = match retry.next(&holders) {
                Next::Attempt(number) => number,
                Next::GiveUp(reason) => return run.blocked(reason),
                Next::Wait(wait) => {
                    if waiting_lines.due() {
                        progress(&format!(
                        "waiting for {} session{} holding what the migration needs: {} (next look in {})",
                        holders.len(),
                        if holders.len() == 1 { "" } else { "s" },
                        holders
                            .iter()
                            .map(|h| h.session.label())
                            .collect::<Vec<_>>()
                            .join(", "),
                        locksmith_core::duration::human(wait)
                    ));
                    }
                    run.report.blockers = holders;
                    if let Some(signal) = sleep(wait, &mut interrupt).await {
                        return run.interrupted(signal);
                    }
                    continue;
                }
            };
            run.report.attempts = number;
            // Short waits first, growing to the budget: the first attempt knows
            // nothing about who holds what, so it may make traffic wait very little
            // (but long enough for the watch to see whom it waited for).
            // Behind a pooler the watch alone bounds the waits, at the budget.
            let lock_wait = growing_lock_wait(SHORTEST_SEEN_WAIT, number - 1, policy.lock_timeout);
            let env = child_env(given_url, lock_wait, pooled, number, &process_env);
            if pooled {
                dog.rename(&env.app_name);
            }
            progress(&format!(
                "attempt {number}: {shown} ({}, application_name {})",
                if pooled {
                    format!(
                        "lock waits cancelled by locksmith after {}",
                        locksmith_core::duration::human(policy.lock_timeout)
                    )
                } else {
                    format!(
                        "lock_timeout {}",
                        locksmith_core::duration::human(lock_wait)
                    )
                },
                env.app_name
            ));
            let mark = dog
                .mark()
                .await
                .map_err(|e| Failure::other(miette::miette!("the command was not run: {e}")))?;
            // The deadline holds for the command too (a first attempt always gets the budget).
            let stop_at = (run.started + policy.deadline).max(Instant::now() + policy.lock_timeout);
            let end = attempt(
                &cmd,
                &env,
                args.guard.format,
                &dog,
                stop_at,
                &mut interrupt,
                warden.as_mut(),
            )
            .await?;
            // Whatever happened, no lock request of the command's may stay queued.
            let cleared = tokio::time::timeout(SIDECAR_BOUND, dog.cancel_lock_waits()).await;
            if let Some(warden) = warden.as_mut() {
                warden.idle();
            }
            let mut watch = dog.take();
            let cleared_ok = matches!(cleared, Ok(Ok(_)));
            if !cleared_ok {
                // Say so rather than claim a clean end (e.g. every pooled backend busy).
                watch.errors.push(format!(
                    "could not check that no lock request of the command's stayed queued on the server \
                     ({}); look for application_name {} in pg_stat_activity{}",
                    match cleared {
                        Ok(Err(e)) => e.to_string(),
                        _ => "the watch got no answer in time".to_string(),
                    },
                    env.app_name,
                    if pooled && !route_direct {
                        ", and give --direct-url so the watch never waits for a pooled connection"
                    } else {
                        ""
                    }
                ));
            }
            run.absorb_cancels(number, &watch);
            run.absorb(&watch);
            if let Some(signal) = end.interrupted {
                return run.interrupted(signal);
            }
            if end.deadline_hit {
                let committed = dog
                    .committed_since(mark, &watch.xids)
                    .await
                    .unwrap_or_else(|e| Some(format!("cannot tell ({e})")));
                run.committed.clone_from(&committed);
                let cancelled = if cleared_ok {
                    " and cancelled its statements on the server"
                } else {
                    ""
                };
                let committed = match committed {
                    Some(what) => format!(
                        "; part of its work was already committed ({what}): check the database before rerunning it"
                    ),
                    None => String::new(),
                };
                let unblocked = if run.report.blockers.is_empty() {
                    "; nothing was seen blocking it: if it just needs longer, raise --deadline"
                } else {
                    ""
                };
                return run.blocked(format!(
                    "the deadline (--deadline {}) passed while `{shown}` ran (attempt {number}): \
                     locksmith stopped it{cancelled}{committed}{unblocked}",
                    locksmith_core::duration::human(policy.deadline),
                ));
            }
            if !watch.held_too_long.is_empty() {
                run.finish(
                    Status::HoldExceeded,
                    Some(format!(
                        "`{shown}` held {} for longer than --max-hold {} while other sessions waited for it; \
                         its statement was stopped on the server and the command was not rerun. \
                         Run the slow statement online (`locksmith lint` prints how), or raise --max-hold",
                        watch.held_too_long.join("; "),
                        locksmith_core::duration::human(policy.max_hold)
                    )),
                )?;
                return Ok(Outcome::Blocked);
            }
            // A statement that failed on a lock timeout, or that locksmith
            // cancelled, did not run, whatever the command's exit code says
            // (psql without ON_ERROR_STOP exits 0 after one).
            let lost_race = !watch.cancelled.is_empty() || end.lock_race_in_output;
            let code = exit_code(end.status);
            run.command_exit_code = Some(code);
            if end.status.success() && !lost_race {
                run.finish(Status::Applied, None)?;
                return Ok(Outcome::Done);
            }
            if !lost_race {
                run.finish(
                    Status::Failed,
                    Some(format!(
                        "`{shown}` failed (not a lost lock race): {}",
                        psql::exit_code_meaning(&cmd, code)
                    )),
                )?;
                return Ok(Outcome::Code(code));
            }
            // A rerun repeats whatever the attempt committed before it lost.
            let committed = dog
                .committed_since(mark, &watch.xids)
                .await
                .unwrap_or_else(|e| Some(format!("cannot tell ({e})")));
            if let Some(what) = committed {
                run.committed = Some(what.clone());
                if end.status.success() {
                    // Nothing of the command's own says it failed: exit 1, never 0.
                    run.finish(
                        Status::Failed,
                        Some(format!(
                            "`{shown}` exited 0, but {} and did not run: NOT applied. Part of its \
                             work was committed: {what}. Not rerunning it, since a rerun would \
                             repeat that work; check the database, then run what is missing{}",
                            lost_statement(&watch),
                            if psql::is_psql(&cmd) {
                                " (and let psql stop at a failed statement: do not set ON_ERROR_STOP off)"
                            } else {
                                ""
                            }
                        )),
                    )?;
                    return Ok(Outcome::Code(1));
                }
                run.finish(
                    Status::Failed,
                    Some(format!(
                        "`{shown}` lost a lock race after part of its work was committed: {what}. \
                         Not rerunning it, since a rerun would repeat that work; check the database, \
                         then rerun it ({})",
                        psql::exit_code_meaning(&cmd, code)
                    )),
                )?;
                return Ok(Outcome::Code(code));
            }
            let why = if end.status.success() {
                format!("{}; the command exited 0 regardless", lost_statement(&watch))
            } else if watch.cancelled.is_empty() {
                "its lock wait hit lock_timeout".to_string()
            } else {
                "a lock wait over the budget was cancelled on the server by locksmith".to_string()
            };
            let waited_for: Vec<String> = watch.blockers.iter().map(|h| h.session.label()).collect();
            progress(&format!(
                "attempt {number} lost a lock race ({why}){}",
                if waited_for.is_empty() {
                    String::new()
                } else {
                    format!("; it waited for {}", waited_for.join(", "))
                }
            ));
            if let Some(signal) = sleep(retry.lost(false), &mut interrupt).await {
                return run.interrupted(signal);
            }
        }
    }
    .await;
    let _ = tokio::time::timeout(SIDECAR_BOUND, dog.stop()).await;
    outcome
}

/// How a statement of the command failed on a lock, as the watch or the
/// command's output showed it.
fn lost_statement(watch: &SessionWatch) -> &'static str {
    if watch.cancelled.is_empty() {
        "one of its statements failed on lock_timeout (its output says so)"
    } else {
        "one of its statements waited for a lock past the budget and was cancelled by locksmith"
    }
}

/// Sleeps, unless a signal arrives first (returned).
async fn sleep(
    d: Duration,
    interrupt: &mut watch::Receiver<Option<Interrupt>>,
) -> Option<Interrupt> {
    if let Some(signal) = *interrupt.borrow() {
        return Some(signal);
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => None,
        signal = next_interrupt(interrupt) => Some(signal),
    }
}

/// A live line on stderr, between the command's own output.
fn progress(line: &str) {
    eprintln!("locksmith run: {line}");
}

/// The run so far, across attempts.
struct Run<'a> {
    args: &'a RunArgs,
    command: &'a str,
    started: Instant,
    report: GuardReport,
    /// Locks the command waited for, in any attempt: what a retry looks at first.
    wanted: Vec<WantedLock>,
    /// Failed actions of the watchdog (e.g. termination not permitted), each once.
    errors: Vec<String>,
    /// The route, for the report's `pooler` key.
    pooler: Option<route::PoolerReport>,
    /// The command's statements locksmith cancelled, in all attempts.
    cancels: Vec<CancelRecord>,
    /// The wrapped command's own exit code in the last attempt, once one ended.
    command_exit_code: Option<u8>,
    /// What the last attempt committed before a statement of it failed on a lock.
    committed: Option<String>,
}

/// One statement of the command cancelled by locksmith, in the report
/// (`cancelled_by_locksmith`): never the command's own failure.
#[derive(Debug, Clone, Serialize)]
struct CancelRecord {
    /// The attempt it happened in.
    attempt: u32,
    /// The statement, backend, wait and blockers.
    #[serde(flatten)]
    wait: CancelledWait,
}

/// `run`'s JSON report: the shared guard report, plus what only `run` has.
#[derive(Serialize)]
struct RunJson<'a> {
    #[serde(flatten)]
    report: &'a RunReport,
    /// Absent without a pooler, as in every command's report (`RunReport`'s own stays empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pooler: Option<&'a route::PoolerReport>,
    cancelled_by_locksmith: &'a [CancelRecord],
    /// The wrapped command's own exit code (last attempt), apart from
    /// locksmith's: e.g. psql's 3 is not "gave up blocked" (status `blocked`).
    #[serde(skip_serializing_if = "Option::is_none")]
    command_exit_code: Option<u8>,
    /// What was committed by an attempt a statement of which failed on a lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    committed: Option<&'a str>,
}

impl Run<'_> {
    /// Records and announces the statements the watch cancelled in `attempt`.
    fn absorb_cancels(&mut self, attempt: u32, watch: &SessionWatch) {
        for wait in &watch.cancels {
            let blockers: Vec<String> = wait.blockers.iter().map(|h| h.session.label()).collect();
            progress(&format!(
                "locksmith cancelled `{}` on backend {} after it waited {} for a lock{}",
                render::one_line(&wait.query, 100),
                wait.pid,
                locksmith_core::duration::human(Duration::from_millis(wait.waited_ms)),
                if blockers.is_empty() {
                    String::new()
                } else {
                    format!(" behind {}", blockers.join(", "))
                }
            ));
            self.cancels.push(CancelRecord {
                attempt,
                wait: wait.clone(),
            });
        }
    }

    /// Folds what the watchdog saw into the run's account, announcing terminations.
    fn absorb(&mut self, watch: &SessionWatch) {
        for h in &watch.terminated {
            progress(&format!("terminated {}", render::guard::holder_line(h)));
            self.report.terminated.push(h.clone());
        }
        for e in &watch.errors {
            if !self.errors.contains(e) {
                progress(&format!("warning: {e}"));
                self.errors.push(e.clone());
            }
        }
        for w in &watch.wanted {
            if !self.wanted.contains(w) {
                self.wanted.push(w.clone());
            }
        }
        // Who the command waited for, minus those since terminated.
        let live: Vec<Holder> = watch
            .blockers
            .iter()
            .filter(|b| {
                !self
                    .report
                    .terminated
                    .iter()
                    .any(|t| t.session.pid == b.session.pid)
            })
            .cloned()
            .collect();
        if !live.is_empty() {
            self.report.blockers = live;
        }
        self.report.max_queued_behind = self.report.max_queued_behind.max(watch.max_queued_behind);
        self.report.longest_wait_ms = self
            .report
            .longest_wait_ms
            .max(watch.longest_wait.as_millis() as u64);
    }

    /// Gives up: the report names the blockers (exit 3).
    fn blocked(&mut self, reason: String) -> CmdResult {
        self.finish(Status::Blocked, Some(reason))?;
        Ok(Outcome::Blocked)
    }

    /// Prints the final report: JSON on stdout, or human text on stderr.
    fn finish(&mut self, status: Status, error: Option<String>) -> Result<(), Failure> {
        let error = match (error, self.errors.is_empty()) {
            (Some(e), false) => Some(format!("{e}; {}", self.errors.join("; "))),
            (None, false) => Some(self.errors.join("; ")),
            (e, true) => e,
        };
        let migrations = if status == Status::Applied {
            vec![render::guard::MigrationRecord {
                version: 0,
                version_text: None,
                name: self.command.to_string(),
                attempts: self.report.attempts,
                duration_ms: self.started.elapsed().as_millis() as u64,
            }]
        } else {
            Vec::new()
        };
        let report = RunReport::new(status, &self.report, migrations, error);
        match self.args.guard.format {
            Format::Json => {
                let mut out = crate::output::stdout();
                let json = RunJson {
                    report: &report,
                    pooler: self.pooler.as_ref(),
                    cancelled_by_locksmith: &self.cancels,
                    command_exit_code: self.command_exit_code,
                    committed: self.committed.as_deref(),
                };
                render::json(&mut out, &json)?;
            }
            Format::Human => {
                let style = if std::io::stderr().is_terminal() {
                    Style::detect()
                } else {
                    Style::plain()
                };
                eprint!("{}", render::run::human(&report, self.command, style));
            }
        }
        Ok(())
    }

    fn interrupted(&mut self, signal: Interrupt) -> CmdResult {
        let name = if signal == Interrupt::Interrupt {
            "Ctrl-C"
        } else {
            "SIGTERM"
        };
        let _ = self.finish(
            Status::Failed,
            Some(format!(
                "interrupted ({name}); the command's statements were cancelled on the server"
            )),
        );
        Ok(Outcome::Code(signals::exit_code(signal)))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[test]
    fn the_command_is_required() {
        assert!(crate::cli::Cli::try_parse_from(["locksmith", "run"]).is_err());
        assert!(crate::cli::Cli::try_parse_from(["locksmith", "run", "--"]).is_err());
    }
}
