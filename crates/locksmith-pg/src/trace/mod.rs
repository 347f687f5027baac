//! The tracer: runs a migration on a real server, statement by statement,
//! and records what each statement actually did — the new relation locks
//! its backend holds (`pg_locks`, strongest per relation), the tables it
//! rewrote (`pg_class.relfilenode` changed) and the constraints it added or
//! validated — then compares that with lint's model.
//!
//! Two ways to observe a statement:
//! - **In a transaction** (most statements): each runs under a savepoint in
//!   one open transaction; after it, the backend's locks are read from
//!   `pg_locks`. A failing statement is rolled back to its savepoint and
//!   reported; the next statements still run.
//! - **From second sessions** (statements that refuse a transaction block:
//!   `CONCURRENTLY`, `VACUUM`, …; see `waits`): other sessions hold each
//!   named table in `ACCESS EXCLUSIVE` mode, the statement queues, and the
//!   lock it waits for is read from `pg_locks` before that table is let go.
//!
//! On a user's database (`live`) everything runs inside one transaction that
//! is always rolled back; statements that cannot run in a transaction are
//! then reported as not traced, with the reason — never skipped silently.
//! There the guard's budget applies ([`LiveLimits`]): before each statement
//! the tracer looks for sessions holding conflicting locks
//! ([`look::holders`]) and gives up, naming them, rather than queue behind a
//! long-lived one; each lock is asked for under a short `lock_timeout`, and
//! each statement runs under a `statement_timeout` (`--max-hold`). A
//! statement that would give up ends that run of the trace, which rolls
//! back; the whole trace is then one unit of the guard's retry loop
//! ([`crate::guard::retry::drive`]): it waits out (without queueing) the
//! long-lived sessions in that statement's way and runs again from the
//! start, until `--deadline` (zero by default: give up at once). The
//! caller refuses big rewrites and scans before starting.
//! What this module must not do: commit on a live database, or judge the
//! migration (lint does that; [`compare`] only states differences, and
//! [`findings`] puts them, failures and statements not traced in lint's
//! shape). Before a live trace, [`live`] picks the route and refuses
//! statements whose hold would block the server's traffic.
//!
//! Through a connection pooler in transaction mode a live trace works as
//! directly: all it does is inside its one transaction (so on one backend),
//! with `SET LOCAL` limits, and the backend pid whose locks it reads is
//! read after each `BEGIN`, never once at connect.

pub mod catalog;
pub mod compare;
mod findings;
pub mod live;
mod waits;

pub use findings::findings;

use std::collections::HashMap;
use std::ops::ControlFlow::{self, Break, Continue};

use crate::Connection;
use locksmith_core::analysis::{RelationLock, Statement, StatementKind, TransactionControl};
use locksmith_core::lint::rules;
use locksmith_core::lock::LockMode;
use serde::Serialize;
use tokio_postgres::error::SqlState;

use crate::guard::look::{self, Holder};
use crate::guard::retry::{self, Retry};
use crate::settings::CHECK_VANISHED_CLIENT_LOCALLY;
use crate::{ConnectionSettings, Error};
use catalog::{Constraint, Relation};
use compare::Observed;

/// Finding id: the server took other locks (or rewrote other tables) than lint's model says.
pub const MODEL_MISMATCH: &str = rules::lock_model_mismatch::LockModelMismatch::RULE.id;
/// Finding id: a statement was not traced, with the reason.
pub const NOT_TRACED: &str = rules::statement_not_traced::StatementNotTraced::RULE.id;
/// Finding id: a statement failed on the server.
pub const STATEMENT_FAILED: &str = rules::statement_failed::StatementFailed::RULE.id;

/// How a statement was observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Run inside the open transaction; locks read afterwards.
    Transaction,
    /// Run outside a transaction while other sessions held its tables.
    SecondSession,
    /// Not observed (see the note).
    NotTraced,
    /// Not run: sessions held conflicting locks and the budget ran out
    /// (live only; the trace stops there).
    Blocked,
}

/// A constraint a statement added or validated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConstraintChange {
    /// Its table.
    pub relation: String,
    /// Its name.
    pub name: String,
    /// `primary key`, `unique`, `foreign key`, `check`, `exclusion`, `not null`, `trigger`.
    pub kind: &'static str,
    /// `added` or `validated`.
    pub change: &'static str,
    /// Whether existing rows were checked (`false` for `NOT VALID`).
    pub validated: bool,
}

/// What one statement did on the server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatementTrace {
    /// How it was observed.
    pub method: Method,
    /// New relation locks, strongest mode per relation (user schemas only).
    #[serde(skip)]
    pub locks: Vec<RelationLock>,
    /// Tables and materialized views whose data file was replaced.
    #[serde(skip)]
    pub rewrites: Vec<String>,
    /// Constraints added or validated.
    pub constraints: Vec<ConstraintChange>,
    /// Why it was not traced, or what a second-session trace could not see.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The server's error, when the statement failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where the observation differs from lint's model; empty when they agree.
    pub differences: Vec<String>,
    /// The observed locks with the relations' kinds.
    #[serde(skip)]
    pub observed: Vec<Observed>,
    /// The sessions in the way when the trace gave up (method `blocked`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked_by: Vec<Holder>,
}

impl StatementTrace {
    fn not_traced(note: impl Into<String>) -> Self {
        StatementTrace {
            method: Method::NotTraced,
            locks: Vec::new(),
            rewrites: Vec::new(),
            constraints: Vec::new(),
            note: Some(note.into()),
            error: None,
            differences: Vec::new(),
            observed: Vec::new(),
            blocked_by: Vec::new(),
        }
    }

    fn blocked(note: impl Into<String>, holders: Vec<Holder>) -> Self {
        StatementTrace {
            method: Method::Blocked,
            blocked_by: holders,
            ..StatementTrace::not_traced(note)
        }
    }
}

/// The guard's budget for tracing on a live server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveLimits {
    /// The most one lock request may make traffic wait (`lock_timeout`).
    pub lock_timeout: std::time::Duration,
    /// The most one statement may run, and so hold what it locked (`statement_timeout`).
    pub max_hold: std::time::Duration,
    /// How long a blocked trace may wait out the sessions in its way and
    /// start again (zero: give up at once).
    pub deadline: std::time::Duration,
}

/// Where the migration runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A throwaway database: transactions may commit, and statements that
    /// refuse a transaction block run for real.
    Sandbox,
    /// A user's database: one transaction, always rolled back, under these limits.
    Live(LiveLimits),
}

/// Traces the migration `files` in order (each analysed by lint's model,
/// which it is compared with) after running `setup`. On a sandbox the setup
/// and each file are committed, as a migration tool would; on a live
/// database everything runs in one transaction that is rolled back, as a
/// unit of the guard's retry loop ([`LiveTrace`]).
pub async fn trace(
    settings: &ConnectionSettings,
    target: Target,
    setup: &str,
    files: &[Vec<Statement>],
) -> Result<Vec<Vec<StatementTrace>>, Error> {
    trace_with(settings, target, setup, files, &|_, _| {}).await
}

/// [`trace`], calling `on_waiting` each time a blocked live trace waits
/// out the long-lived sessions in its way (them, and how long until it
/// looks again): for progress lines.
pub async fn trace_with(
    settings: &ConnectionSettings,
    target: Target,
    setup: &str,
    files: &[Vec<Statement>],
    on_waiting: &(dyn Fn(&[Holder], std::time::Duration) + Sync),
) -> Result<Vec<Vec<StatementTrace>>, Error> {
    let client = settings
        .with_application_name("locksmith trace")
        .connect()
        .await?;
    let mut tracer = Tracer {
        settings,
        pid: catalog::backend_pid(&client).await?,
        client,
        target,
        in_transaction: false,
        held: HashMap::new(),
    };
    let Target::Live(limits) = target else {
        return tracer.run(setup, files).await;
    };
    let policy = crate::guard::GuardPolicy {
        lock_timeout: limits.lock_timeout,
        deadline: limits.deadline,
        max_attempts: u32::MAX,
        ..Default::default()
    };
    let mut retry = Retry::new(&policy, std::time::Instant::now());
    let mut unit = LiveTrace {
        limits,
        tracer,
        setup,
        files,
        last: Vec::new(),
        wanted: Vec::new(),
        on_waiting,
    };
    retry::drive(&mut retry, &mut unit).await
}

/// A live trace as a unit of the guard's retry loop ([`retry::drive`]):
/// an attempt is the whole trace, in its one transaction, rolled back; one
/// that stopped at a blocked statement (a lost lock race, or a long-lived
/// session in the way) holds nothing more once rolled back, so it is
/// retried from the start after the look at that statement's locks finds
/// nobody long-lived in the way, until `--deadline`. A retry never holds
/// earlier statements' locks while it waits.
struct LiveTrace<'a> {
    limits: LiveLimits,
    tracer: Tracer<'a>,
    setup: &'a str,
    files: &'a [Vec<Statement>],
    /// The last attempt's traces (the report when the trace gives up).
    last: Vec<Vec<StatementTrace>>,
    /// The locks of the statement the last attempt was blocked at.
    wanted: Vec<RelationLock>,
    on_waiting: &'a (dyn Fn(&[Holder], std::time::Duration) + Sync),
}

impl retry::Unit for LiveTrace<'_> {
    type End = Result<Vec<Vec<StatementTrace>>, Error>;

    async fn look(&mut self) -> ControlFlow<Self::End, Vec<Holder>> {
        // The first attempt looks statement by statement, as it goes.
        if self.wanted.is_empty() {
            return Continue(Vec::new());
        }
        let after = look::long_lived_after(self.limits.lock_timeout);
        match look::holders(&self.tracer.client, &self.wanted).await {
            Ok(holders) => Continue(
                holders
                    .into_iter()
                    .filter(|h| h.is_long_lived(after))
                    .collect(),
            ),
            Err(e) => Break(Err(e)),
        }
    }

    fn waiting(&mut self, holders: Vec<Holder>, wait: std::time::Duration) {
        (self.on_waiting)(&holders, wait);
        // The report names who was in the way when it gave up.
        if let Some(blocked) = self
            .last
            .iter_mut()
            .flatten()
            .find(|t| t.method == Method::Blocked)
        {
            blocked.blocked_by = holders;
        }
    }

    async fn attempt(
        &mut self,
        _number: u32,
        _remaining: std::time::Duration,
    ) -> ControlFlow<Self::End, retry::Lost> {
        let out = match self.tracer.run(self.setup, self.files).await {
            Ok(out) => out,
            Err(e) => return Break(Err(e)),
        };
        let blocked = self
            .files
            .iter()
            .flatten()
            .zip(out.iter().flatten())
            .find(|(_, t)| t.method == Method::Blocked);
        match blocked {
            Some((s, _)) => {
                self.wanted = s.locks.clone();
                self.last = out;
                Continue(retry::Lost::default())
            }
            None => Break(Ok(out)),
        }
    }

    fn give_up(&mut self, _reason: String) -> Self::End {
        Ok(std::mem::take(&mut self.last))
    }

    async fn pause(&mut self, d: std::time::Duration) -> ControlFlow<Self::End> {
        tokio::time::sleep(d).await;
        Continue(())
    }
}

struct Tracer<'a> {
    settings: &'a ConnectionSettings,
    client: Connection,
    pid: i32,
    target: Target,
    in_transaction: bool,
    /// Relation → strongest mode held by the open transaction.
    held: HashMap<i64, LockMode>,
}

/// The catalog before a statement ran.
struct Before {
    relations: HashMap<i64, Relation>,
    constraints: Vec<Constraint>,
}

impl Tracer<'_> {
    /// One run of the whole migration: on a live target in one transaction,
    /// rolled back; a statement blocked there ends the run (the rest are
    /// reported as not run).
    async fn run(
        &mut self,
        setup: &str,
        files: &[Vec<Statement>],
    ) -> Result<Vec<Vec<StatementTrace>>, Error> {
        let target = self.target;
        if let Target::Live(limits) = target {
            self.begin().await?;
            // Never make the user's traffic wait long for a rehearsal.
            self.exec(&limits_sql(limits)).await?;
        }
        if !setup.trim().is_empty() {
            self.client
                .batch_execute(setup)
                .await
                .map_err(|e| Error::query("running the setup SQL", e))?;
            if matches!(target, Target::Live(_)) {
                self.held = self.held_locks().await?;
            }
        }
        let mut out = Vec::with_capacity(files.len());
        let mut gave_up = false;
        for statements in files {
            let mut traces = Vec::with_capacity(statements.len());
            for s in statements {
                if gave_up {
                    traces.push(StatementTrace::not_traced(
                        "not run: the trace gave up on an earlier statement that was blocked",
                    ));
                    continue;
                }
                let t = self.statement(s).await?;
                gave_up = t.method == Method::Blocked;
                traces.push(t);
            }
            if self.in_transaction && target == Target::Sandbox {
                self.exec("COMMIT").await?;
                self.in_transaction = false;
            }
            out.push(traces);
        }
        if self.in_transaction {
            self.exec("ROLLBACK").await?;
            self.in_transaction = false;
        }
        Ok(out)
    }

    async fn exec(&self, sql: &str) -> Result<(), Error> {
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| Error::query(format!("running `{sql}`"), e))
    }

    async fn begin(&mut self) -> Result<(), Error> {
        self.exec("BEGIN").await?;
        self.in_transaction = true;
        self.held.clear();
        // Through a transaction pooler the backend is ours only from BEGIN to its end.
        self.pid = catalog::backend_pid(&self.client).await?;
        Ok(())
    }

    async fn held_locks(&self) -> Result<HashMap<i64, LockMode>, Error> {
        let mut held = HashMap::new();
        for l in catalog::locks(&self.client, self.pid).await? {
            if l.granted {
                let m = held.entry(l.oid).or_insert(l.mode);
                *m = (*m).max(l.mode);
            }
        }
        Ok(held)
    }

    async fn before(&self) -> Result<Before, Error> {
        Ok(Before {
            relations: catalog::relations(&self.client).await?,
            constraints: catalog::constraints(&self.client).await?,
        })
    }

    async fn statement(&mut self, s: &Statement) -> Result<StatementTrace, Error> {
        if let StatementKind::Transaction(control) = &s.kind {
            return self.transaction_control(*control).await;
        }
        if !s.transactional {
            return match self.target {
                Target::Live(_) => Ok(StatementTrace::not_traced(
                    "cannot run inside a transaction block, and trace never commits on a \
                     database given with --database-url; trace it on the embedded cluster",
                )),
                Target::Sandbox => {
                    if self.in_transaction {
                        self.exec("COMMIT").await?;
                        self.in_transaction = false;
                        self.held.clear();
                    }
                    let before = self.before().await?;
                    let run =
                        waits::trace(self.settings, &self.client, self.pid, s, &before.relations)
                            .await?;
                    let mut t = self
                        .after(s, &before, run.observed, &HashMap::new())
                        .await?;
                    t.method = run.method;
                    t.note = run.note;
                    t.error = run.error;
                    t.differences = match run.compared {
                        Some(held) => compare::lock_differences(
                            &s.locks,
                            &t.observed,
                            &HashMap::new(),
                            Some(&held),
                        ),
                        None => Vec::new(),
                    };
                    if t.error.is_none() && t.method != Method::NotTraced {
                        t.differences
                            .extend(compare::rewrite_differences(&s.rewrites, &t.rewrites));
                    }
                    Ok(t)
                }
            };
        }
        if !self.in_transaction {
            self.begin().await?;
        }
        if let Target::Live(limits) = self.target {
            // Look before queueing: never wait behind a session that stays.
            let after = look::long_lived_after(limits.lock_timeout);
            let holders = look::holders(&self.client, &s.locks).await?;
            if holders.iter().any(|h| h.is_long_lived(after)) {
                let holders = holders.into_iter().filter(|h| h.is_long_lived(after));
                return Ok(StatementTrace::blocked(
                    "not run: sessions in a transaction hold conflicting locks, and trace does \
                     not queue behind them on a live server",
                    holders.collect(),
                ));
            }
        }
        if let Target::Live(limits) = self.target {
            // Again before each statement: the migration may set its own.
            self.exec(&limits_sql(limits)).await?;
        }
        let before = self.before().await?;
        let held_before = self.held.clone();
        self.exec("SAVEPOINT locksmith_trace").await?;
        let error = match self.client.batch_execute(&s.sql).await {
            Ok(()) => {
                self.exec("RELEASE SAVEPOINT locksmith_trace").await?;
                None
            }
            Err(e) => {
                self.exec("ROLLBACK TO SAVEPOINT locksmith_trace").await?;
                if let (Target::Live(limits), Some(&SqlState::LOCK_NOT_AVAILABLE)) =
                    (self.target, e.code())
                {
                    let holders = look::holders(&self.client, &s.locks).await?;
                    return Ok(StatementTrace::blocked(
                        format!(
                            "gave up after waiting {} (--lock-timeout) for a lock: {}",
                            locksmith_core::duration::human(limits.lock_timeout),
                            crate::describe_sql_error(&e)
                        ),
                        holders,
                    ));
                }
                match (self.target, e.code()) {
                    (Target::Live(limits), Some(&SqlState::QUERY_CANCELED)) => Some(format!(
                        "stopped after {} (--max-hold), so it held its locks no longer: {}",
                        locksmith_core::duration::human(limits.max_hold),
                        crate::describe_sql_error(&e)
                    )),
                    _ => Some(crate::describe_sql_error(&e)),
                }
            }
        };
        let now = self.held_locks().await?;
        let mut new = Vec::new();
        for (oid, mode) in &now {
            if held_before.get(oid).is_none_or(|h| mode > h) {
                new.push((*oid, *mode));
            }
        }
        self.held = now;
        let names = |held: &HashMap<i64, LockMode>, rels: &HashMap<i64, Relation>| {
            held.iter()
                .filter_map(|(oid, m)| Some((rels.get(oid)?.name.clone(), *m)))
                .collect::<HashMap<_, _>>()
        };
        let held_names = names(&held_before, &before.relations);
        let mut t = self.after(s, &before, new, &held_names).await?;
        t.error = error;
        if t.error.is_some() {
            t.differences.clear();
        }
        Ok(t)
    }

    /// Observations after a statement: names for the new locks, rewrites,
    /// constraints, and the comparison with the model.
    async fn after(
        &self,
        s: &Statement,
        before: &Before,
        new: Vec<(i64, LockMode)>,
        held_before: &HashMap<String, LockMode>,
    ) -> Result<StatementTrace, Error> {
        let relations = catalog::relations(&self.client).await?;
        let constraints = catalog::constraints(&self.client).await?;
        let name_of = |oid: i64| before.relations.get(&oid).or_else(|| relations.get(&oid));
        let mut observed: Vec<Observed> = new
            .iter()
            .filter_map(|(oid, mode)| {
                let r = name_of(*oid)?;
                Some(Observed {
                    relation: r.name.clone(),
                    kind: r.kind,
                    mode: *mode,
                })
            })
            .collect();
        // The model's order first (the statement's subject leads), then by name.
        let rank = |o: &Observed| {
            s.locks
                .iter()
                .position(|l| compare::normalize(&l.relation) == o.relation)
                .unwrap_or(usize::MAX)
        };
        observed.sort_by(|a, b| rank(a).cmp(&rank(b)).then(a.relation.cmp(&b.relation)));
        let mut rewrites: Vec<String> = before
            .relations
            .iter()
            .filter(|(oid, r)| {
                matches!(r.kind, 'r' | 'm')
                    && relations
                        .get(oid)
                        .is_some_and(|now| now.filenode != r.filenode)
            })
            .map(|(_, r)| r.name.clone())
            .collect();
        rewrites.sort();
        let mut changes = Vec::new();
        for c in &constraints {
            let old = before
                .constraints
                .iter()
                .find(|o| o.table == c.table && o.name == c.name);
            let change = match old {
                None => "added",
                Some(o) if !o.validated && c.validated => "validated",
                Some(_) => continue,
            };
            changes.push(ConstraintChange {
                relation: name_of(c.table).map(|r| r.name.clone()).unwrap_or_default(),
                name: c.name.clone(),
                kind: constraint_kind(c.kind),
                change,
                validated: c.validated,
            });
        }
        changes.sort_by(|a, b| (&a.relation, &a.name).cmp(&(&b.relation, &b.name)));
        let mut differences = compare::lock_differences(&s.locks, &observed, held_before, None);
        differences.extend(compare::rewrite_differences(&s.rewrites, &rewrites));
        Ok(StatementTrace {
            method: Method::Transaction,
            locks: observed
                .iter()
                .map(|o| RelationLock {
                    relation: o.relation.clone(),
                    mode: o.mode,
                })
                .collect(),
            rewrites,
            constraints: changes,
            note: None,
            error: None,
            differences,
            observed,
            blocked_by: Vec::new(),
        })
    }

    async fn transaction_control(
        &mut self,
        control: TransactionControl,
    ) -> Result<StatementTrace, Error> {
        let note = match (control, self.target) {
            (TransactionControl::Begin, _) => {
                "trace runs the statements in a transaction of its own; this BEGIN was not sent"
            }
            (TransactionControl::Savepoint, _) => {
                "trace puts each statement under a savepoint of its own; this one was not sent"
            }
            (_, Target::Live(_)) => {
                "not sent: on --database-url trace never commits, and rolls back once at the end"
            }
            (TransactionControl::Commit | TransactionControl::Rollback, Target::Sandbox) => {
                if self.in_transaction {
                    let sql = if control == TransactionControl::Commit {
                        "COMMIT"
                    } else {
                        "ROLLBACK"
                    };
                    self.exec(sql).await?;
                    self.in_transaction = false;
                    self.held.clear();
                }
                return Ok(StatementTrace {
                    note: Some(
                        "ends trace's transaction: the locks held so far are released".into(),
                    ),
                    method: Method::Transaction,
                    ..StatementTrace::not_traced("")
                });
            }
        };
        Ok(StatementTrace::not_traced(note))
    }
}

/// The settings that enforce `limits` in the open transaction; and, should
/// trace be killed mid-statement, make a pooled backend let go at once.
fn limits_sql(limits: LiveLimits) -> String {
    format!(
        "SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'; {CHECK_VANISHED_CLIENT_LOCALLY}",
        limits.lock_timeout.as_millis().max(1),
        limits.max_hold.as_millis().max(1)
    )
}

fn constraint_kind(contype: char) -> &'static str {
    match contype {
        'p' => "primary key",
        'u' => "unique",
        'f' => "foreign key",
        'c' => "check",
        'x' => "exclusion",
        'n' => "not null",
        't' => "trigger",
        _ => "other",
    }
}
