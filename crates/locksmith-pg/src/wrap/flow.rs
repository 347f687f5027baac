//! The attempt loop of [`Wrapped::run`]: route, plan, watch, then look →
//! attempt → retry or give up, on the guard's retry decisions ([`Retry`]);
//! what each attempt saw is folded into the run's account
//! ([`super::account`]), which makes the report.
//!
//! It must not decide anything [`Retry`] decides (when to attempt, wait or
//! give up), nor phrase progress: it emits [`Event`]s.

use std::ops::ControlFlow::{self, Break, Continue};
use std::time::Instant;

use locksmith_core::analysis::source::one_line;
use locksmith_core::duration::human;

use super::account::Run;
use super::child::{attempt, exit_code, SIDECAR_BOUND};
use super::env::{child_env, shown_command};
use super::preflight::over_max_hold;
use super::route::{self, Route};
use super::warden::Warden;
use super::{psql, Error, Event, Lost, Report, Wrapped};
use crate::guard::backoff::{lock_wait, FIRST_LOCK_WAIT};
use crate::guard::look::Holder;
use crate::guard::retry::{self, Retry};
use crate::guard::watcher::{Limits, Scope, Watched, Watcher, SHORTEST_SEEN_WAIT};
use crate::guard::{unless_interrupted, ConnectError, GuardReport, Interrupt};
use crate::migrate::{RunReport, Status};

impl Wrapped {
    /// Opens the route (a statement pooler refused), unless interrupted
    /// first; a server that cannot be reached is `failed`.
    pub(super) async fn open_route(
        &self,
        failed: fn(crate::Error) -> Error,
    ) -> Result<Route, Error> {
        match unless_interrupted(&self.interrupts, Route::open(&self.settings)).await {
            Ok(Ok(route)) => Ok(route),
            Ok(Err(ConnectError::Failed(e))) => Err(failed(e)),
            Ok(Err(ConnectError::StatementPooling(refused))) => Err(refused.into()),
            Err(signal) => Err(Error::Interrupted(signal)),
        }
    }

    /// Runs `command` (argv) until it succeeds, fails for a reason other
    /// than a lost lock race, or attempts or the deadline run out; the
    /// report says which. An [`Error`] means it was not run (or could not
    /// be started or waited for).
    pub async fn run(&self, command: &[String]) -> Result<Report, Error> {
        let policy = &self.policy;
        let mut interrupt = self.interrupts.clone();
        let route = self.open_route(Error::Watch).await?;
        let pooled = route.pooler.is_some();
        let process_env = |name: &str| std::env::var(name).ok();
        let given_url = self.database_url.as_deref();
        let env = child_env(given_url, policy.lock_timeout, pooled, 1, &process_env);
        if let Some(pooler) = &route.pooler {
            if let Some(why) = route::own_application_name(command, env.database_url()) {
                return Err(Error::OwnApplicationName(route::refusal(pooler, &why)));
            }
            self.emit(Event::Pooler {
                pooler: *pooler,
                direct: route.direct,
                application_name: &env.app_name,
            });
        }
        if pooled && process_env("PGOPTIONS").is_some_and(|o| !o.trim().is_empty()) {
            self.emit(Event::InheritedOptions);
        }
        if let Some(replaced) = &env.replaced_app_name {
            self.emit(Event::ReplacedApplicationName {
                replaced,
                application_name: &env.app_name,
            });
        }
        // Before anything runs: what the command will do, from its own SQL.
        let plan_env = child_env(given_url, policy.lock_timeout, pooled, 0, &process_env);
        let plan = self
            .read_plan(&route.sidecar, command, &plan_env, &interrupt)
            .await?;
        if let Some(refusal) = plan
            .as_ref()
            .and_then(|p| over_max_hold(p, policy.max_hold))
        {
            return Ok(Report {
                run: RunReport::new(
                    Status::HoldExceeded,
                    &GuardReport::default(),
                    Vec::new(),
                    Some(format!(
                        "`{}` was not run: {refusal}",
                        one_line(&shown_command(command), 100)
                    )),
                ),
                pooler: route.report(&env.app_name),
                cancelled_by_locksmith: Vec::new(),
                command_exit_code: None,
                committed: None,
                plan,
                command: shown_command(command),
            });
        }
        // Behind a pooler only the watch bounds the command's waits: should this
        // process die, the warden stops the command and cancels them instead.
        let mut warden = match (&self.warden, pooled) {
            (Some(how), true) => match Warden::start(how) {
                Ok(warden) => Some(warden),
                Err(e) => {
                    self.emit(Event::NoWarden(&e));
                    None
                }
            },
            _ => None,
        };
        // What the plan says the command will lock, so the first attempt is
        // looked for like every later one: never raced into long-lived holders.
        let wanted = match &plan {
            Some(plan) => plan.wanted(&route.sidecar).await.map_err(Error::PlanRead)?,
            None => Vec::new(),
        };
        let scope = if pooled {
            Scope::Pooled
        } else {
            Scope::OpenedSinceStart
        };
        let pooler = route.report(&env.app_name);
        let (direct, pooler_addr) = (route.direct, route.pooler_addr.clone());
        let starting = Watcher::start(
            route.sidecar,
            Watched::Program {
                application_name: env.app_name.clone(),
                scope,
            },
            Limits {
                budget: policy.lock_timeout,
                terminate_idle_after: policy.terminate_idle_after,
                max_hold: Some(policy.max_hold),
            },
        );
        let mut dog = match unless_interrupted(&interrupt, starting).await {
            Ok(started) => started.map_err(Error::Watch)?,
            Err(signal) => return Err(Error::Interrupted(signal)),
        };
        // psql runs on past a failed statement and exits 0 unless told to stop.
        let cmd = psql::stop_on_error(command).unwrap_or_else(|| command.to_vec());
        if cmd != command {
            self.emit(Event::PsqlStopsOnError);
        }
        if let Some(rc) = psql::psqlrc_setting_it(&cmd, &process_env) {
            self.emit(Event::PsqlrcSetsIt(&rc));
        }
        let shown_full = shown_command(command);
        let mut run = Run {
            wrapped: self,
            shown: one_line(&shown_full, 100),
            started: Instant::now(),
            report: GuardReport {
                pooler_addr,
                ..GuardReport::default()
            },
            wanted,
            errors: Vec::new(),
            cancels: Vec::new(),
            command_exit_code: None,
            committed: None,
            pooler,
            command: shown_full,
            cmd,
            pooled,
            direct,
            plan,
        };
        // No query of the watch may be in flight when this returns: through
        // a pooler, a client gone mid-query leaves its answer on the pooled
        // backend, and PgBouncer 1.18 may hand it to the next client.
        let outcome = run
            .attempts(&mut dog, &mut interrupt, warden.as_mut())
            .await;
        let _ = tokio::time::timeout(SIDECAR_BOUND, dog.stop()).await;
        outcome
    }
}

impl Run<'_> {
    pub(super) async fn attempts(
        &mut self,
        dog: &mut Watcher,
        interrupt: &mut tokio::sync::watch::Receiver<Option<Interrupt>>,
        warden: Option<&mut Warden>,
    ) -> Result<Report, Error> {
        dog.watch_replicas(&self.wrapped.replicas)
            .await
            .map_err(Error::Replica)?;
        let mut retry = Retry::new(&self.wrapped.policy, self.started);
        let mut unit = Attempts {
            run: self,
            dog,
            interrupt,
            warden,
            in_the_way: Vec::new(),
        };
        retry::drive(&mut retry, &mut unit).await
    }
}

/// The wrapped command's attempts as a [`retry::Unit`]: looking is the
/// watch's look at what an earlier attempt waited for, an attempt is one
/// run of the command.
struct Attempts<'r, 'a, 'w> {
    run: &'r mut Run<'a>,
    dog: &'r mut Watcher,
    interrupt: &'r mut tokio::sync::watch::Receiver<Option<Interrupt>>,
    warden: Option<&'w mut Warden>,
    /// Who the last look found in the way on the primary: while only
    /// sessions idle in transaction are, the next attempt's wait does not
    /// grow ([`lock_wait`]).
    in_the_way: Vec<Holder>,
}

impl retry::Unit for Attempts<'_, '_, '_> {
    type End = Result<Report, Error>;

    async fn look(&mut self) -> ControlFlow<Self::End, Vec<Holder>> {
        // Look before queueing: while long-lived sessions hold what the plan
        // or an earlier attempt says the command wants, an attempt would only
        // queue behind them. (Without a plan the first attempt learns the tables.)
        if self.run.wanted.is_empty() {
            return Continue(Vec::new());
        }
        let lock_timeout = self.run.wrapped.policy.lock_timeout;
        let in_the_way = self
            .dog
            .blocking_retry(&self.run.wanted, lock_timeout)
            .await
            .unwrap_or_default();
        self.run.absorb(&self.dog.take());
        self.in_the_way = in_the_way.now;
        Continue(in_the_way.long_lived)
    }

    fn waiting(&mut self, holders: Vec<Holder>, wait: std::time::Duration) {
        self.run.wrapped.emit(Event::Waiting {
            holders: &holders,
            next_look: wait,
        });
        self.run.report.blockers = holders;
    }

    async fn attempt(
        &mut self,
        number: u32,
        _remaining: std::time::Duration,
    ) -> ControlFlow<Self::End, retry::Lost> {
        let wrapped = self.run.wrapped;
        let policy = &wrapped.policy;
        let emit = |e: Event<'_>| wrapped.emit(e);
        let process_env = |name: &str| std::env::var(name).ok();
        let given_url = wrapped.database_url.as_deref();
        let (dog, interrupt) = (&mut *self.dog, &mut *self.interrupt);
        let warden = &mut self.warden;
        let this = &mut *self.run;
        this.report.attempts = number;
        // Short waits first, growing to the budget. Once the tables are known
        // (from the plan, or what an earlier attempt waited for) the look names
        // who is in the way, and attempts start at the guard's first wait;
        // before that an attempt waits long enough for the watch to see whom
        // it waited for. Behind a pooler the watch alone bounds the waits, at
        // the budget.
        let first = match this.wanted.is_empty() {
            true => SHORTEST_SEEN_WAIT,
            false => FIRST_LOCK_WAIT,
        };
        let lock_wait = lock_wait(first, number - 1, &self.in_the_way, policy.lock_timeout);
        let env = child_env(given_url, lock_wait, this.pooled, number, &process_env);
        if this.pooled {
            dog.rename(&env.app_name);
        }
        emit(Event::Attempt {
            number,
            command: &this.shown,
            pooled: this.pooled,
            lock_wait: if this.pooled {
                policy.lock_timeout
            } else {
                lock_wait
            },
            application_name: &env.app_name,
        });
        let mark = match dog.mark().await {
            Ok(mark) => mark,
            Err(e) => return Break(Err(Error::Mark(e))),
        };
        // The deadline holds for the command too (a first attempt always gets the budget).
        let stop_at = (this.started + policy.deadline).max(Instant::now() + policy.lock_timeout);
        let end = match attempt(
            &this.cmd,
            &env,
            wrapped.stdout_to_stderr,
            dog,
            stop_at,
            interrupt,
            warden.as_deref_mut(),
            &emit,
        )
        .await
        {
            Ok(end) => end,
            Err(e) => return Break(Err(e)),
        };
        // Whatever happened, no lock request of the command's may stay queued.
        let cleared = tokio::time::timeout(SIDECAR_BOUND, dog.cancel_lock_waits()).await;
        if let Some(warden) = warden.as_deref_mut() {
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
                if this.pooled && !this.direct {
                    ", and give --direct-url so the watch never waits for a pooled connection"
                } else {
                    ""
                }
            ));
        }
        this.absorb_cancels(number, &watch);
        this.absorb(&watch);
        if let Some(signal) = end.interrupted {
            return Break(Ok(this.interrupted(signal)));
        }
        let shown = this.shown.clone();
        if end.deadline_hit {
            let committed = this.committed_since(dog, mark, &watch).await;
            this.committed.clone_from(&committed);
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
            let unblocked = if this.report.blockers.is_empty() {
                "; nothing was seen blocking it: if it just needs longer, raise --deadline"
            } else {
                ""
            };
            return Break(Ok(this.finish(
                Status::Blocked,
                Some(format!(
                    "the deadline (--deadline {}) passed while `{shown}` ran (attempt {number}): \
                     locksmith stopped it{cancelled}{committed}{unblocked}",
                    human(policy.deadline),
                )),
            )));
        }
        if !watch.held_too_long.is_empty() {
            return Break(Ok(this.finish(
                Status::HoldExceeded,
                Some(format!(
                    "`{shown}` held {} for longer than --max-hold {} while other sessions waited for it; \
                     its statement was stopped on the server and the command was not rerun. \
                     Run the slow statement online (`locksmith lint` prints how), or raise --max-hold",
                    watch.held_too_long.join("; "),
                    human(policy.max_hold)
                )),
            )));
        }
        // A statement that failed on a lock timeout, or that locksmith
        // cancelled, did not run, whatever the command's exit code says
        // (psql without ON_ERROR_STOP exits 0 after one).
        let cancelled = !watch.cancelled.is_empty();
        let lost_race = cancelled || end.lock_race_in_output;
        let code = exit_code(end.status);
        this.command_exit_code = Some(code);
        if end.status.success() && !lost_race {
            return Break(Ok(this.finish(Status::Applied, None)));
        }
        if !lost_race {
            let meaning = psql::exit_code_meaning(&this.cmd, code);
            return Break(Ok(this.finish(
                Status::Failed,
                Some(format!(
                    "`{shown}` failed (not a lost lock race): {meaning}"
                )),
            )));
        }
        // A rerun repeats whatever the attempt committed before it lost.
        if let Some(what) = this.committed_since(dog, mark, &watch).await {
            this.committed = Some(what.clone());
            let error = if end.status.success() {
                // Nothing of the command's own says it failed: exit 1, never 0.
                format!(
                    "`{shown}` exited 0, but {} and did not run: NOT applied. Part of its \
                     work was committed: {what}. Not rerunning it, since a rerun would \
                     repeat that work; check the database, then run what is missing{}",
                    Lost::statement(cancelled),
                    if psql::is_psql(&this.cmd) {
                        " (and let psql stop at a failed statement: do not set ON_ERROR_STOP off)"
                    } else {
                        ""
                    }
                )
            } else {
                format!(
                    "`{shown}` lost a lock race after part of its work was committed: {what}. \
                     Not rerunning it, since a rerun would repeat that work; check the database, \
                     then rerun it ({})",
                    psql::exit_code_meaning(&this.cmd, code)
                )
            };
            return Break(Ok(this.finish(Status::Failed, Some(error))));
        }
        let how = match (end.status.success(), cancelled) {
            (true, cancelled) => Lost::Exited0 { cancelled },
            (false, false) => Lost::LockTimeout,
            (false, true) => Lost::Cancelled,
        };
        emit(Event::LostRace {
            number,
            how,
            waited_for: &watch.blockers,
        });
        Continue(retry::Lost::default())
    }

    fn give_up(&mut self, reason: String) -> Self::End {
        Ok(self.run.finish(Status::Blocked, Some(reason)))
    }

    async fn pause(&mut self, d: std::time::Duration) -> ControlFlow<Self::End> {
        match unless_interrupted(self.interrupt, tokio::time::sleep(d)).await {
            Ok(()) => Continue(()),
            Err(signal) => Break(Ok(self.run.interrupted(signal))),
        }
    }
}
