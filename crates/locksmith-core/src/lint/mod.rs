//! Lint rules over analysed statements: what is unsafe to run against live
//! traffic, why, and what to write instead.
//!
//! One file per rule under `rules/` (ruff style): a unit struct whose doc
//! comment *is* the user documentation (What it does / Why is this bad? /
//! Example / Use instead), its check, and its tests. [`RULES`] is the one
//! registry table (id, name, default severity, check); `docs/rules.md` is
//! generated from it ([`docs::markdown`]) and a test fails when it is stale.
//!
//! Rules see only [`Statement`] summaries and the [`TransactionState`] before
//! the statement — never parse nodes. Suppression: `-- locksmith: ignore
//! LS101 reason` in the comments right before a statement; an ignore that
//! matches no finding is itself reported ([`UNMATCHED_IGNORE`]).
//!
//! ```
//! use locksmith_core::lint::{lint, Options, Severity};
//! let report = lint("ALTER TABLE users ADD CONSTRAINT u UNIQUE (email);", &Options::default()).unwrap();
//! let finding = &report.statements[0].findings[0];
//! assert_eq!((finding.rule, finding.severity), ("LS101", Severity::Error));
//! // The fix is the online plan, as a script that never queues for long itself.
//! assert!(finding.fix.as_deref().unwrap().starts_with("SET lock_timeout = '2s';\nCREATE UNIQUE INDEX CONCURRENTLY"));
//! ```

pub mod config;
pub mod docs;
pub mod fix;
pub mod live;
mod registry;
pub mod rules;
mod suppress;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::BTreeSet;

use serde::Serialize;

use crate::analysis::{
    analyze_in, Schema, Statement, SyntaxError, TransactionState, MAX_PG_VERSION,
};

pub use crate::severity::Severity;
pub use config::{Config, ConfigError};
pub use registry::{rule_by_id, RULES};

/// The id of the finding for a statement that cannot run in the
/// transaction block it is in: its fix moves it out ([`fix::steps`]).
const NOT_IN_TRANSACTION: &str = "LS105";

/// The id of the finding for an ignore comment that matched nothing.
pub const UNMATCHED_IGNORE: &str = "LS900";

/// A rule's entry in the registry.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Stable id, e.g. `LS101`.
    pub id: &'static str,
    /// Kebab-case name of the bad pattern, e.g. `adding-unique-constraint`.
    pub name: &'static str,
    /// Default severity.
    pub severity: Severity,
    /// The rule's documentation in Markdown (its doc comment).
    pub doc: &'static str,
    /// Where its findings come from.
    pub check: Check,
}

/// Where a rule's findings come from. Every finding id is a [`Rule`] in
/// [`RULES`], so each can be documented, disabled and suppressed the same
/// way, whichever part of locksmith reports it.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// Judged by [`lint`] from the statement and the transaction state.
    Statement(fn(&Context<'_>) -> Vec<Violation>),
    /// Reported by `lint --database-url` from live facts ([`live::grade`]).
    LiveServer,
    /// Reported by `locksmith trace` from what the server did.
    Trace,
}

impl Rule {
    /// The first paragraph of "What it does", for summaries.
    pub fn summary(&self) -> String {
        docs::summary(self.doc)
    }
}

/// What a rule sees: one statement and the file's state before it.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The statement checked.
    pub statement: &'a Statement,
    /// The transaction state before it.
    pub state: &'a TransactionState,
    /// The server major version analysed for.
    pub pg_version: u32,
}

impl Context<'_> {
    /// Whether `relation` is new: created earlier in this file or by this
    /// very statement. No running code uses it yet, so locking it blocks nobody.
    pub fn is_new(&self, relation: &str) -> bool {
        self.state.is_new(relation) || self.statement.kind.creates() == Some(relation)
    }
}

/// What a rule reports; the registry adds its id and severity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The problem, naming the lock and what it blocks.
    pub message: String,
    /// Runnable SQL that does the same safely, where one exists.
    pub fix: Option<String>,
    /// A lower severity than the rule's, when the rule is not sure (e.g. the
    /// rewrite depends on a column type only the server knows).
    pub severity: Option<Severity>,
}

impl Violation {
    /// A violation without a fix.
    pub fn new(message: impl Into<String>) -> Self {
        Violation {
            message: message.into(),
            fix: None,
            severity: None,
        }
    }
    /// Adds a runnable fix when there is one.
    pub fn with_fix_opt(mut self, fix: Option<String>) -> Self {
        self.fix = fix;
        self
    }
    /// Reports it at `severity` instead of the rule's default.
    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = Some(severity);
        self
    }
    /// Adds a runnable fix.
    pub fn with_fix(mut self, fix: impl Into<String>) -> Self {
        self.fix = Some(fix.into());
        self
    }
}

/// A finding as reported (the JSON contract's `findings[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Rule id, e.g. `LS101`.
    pub rule: &'static str,
    /// Severity.
    pub severity: Severity,
    /// The problem.
    pub message: String,
    /// Runnable SQL that does it safely, if any.
    pub fix: Option<String>,
    /// With a live server, on a statement that rewrites, reads or indexes a
    /// table: the table's size and the estimated hold (`rows`, `bytes`,
    /// `estimated_hold_ms` in JSON; see [`live::grade`]).
    #[serde(flatten)]
    pub size: Option<live::Size>,
}

/// A statement with its findings.
#[derive(Debug, Clone, PartialEq)]
pub struct LintedStatement {
    /// The analysed statement.
    pub statement: Statement,
    /// Its findings, in registry order.
    pub findings: Vec<Finding>,
    /// Rules reported outside [`lint`] (a live server's, the tracer's) that
    /// an ignore comment before this statement names.
    pub ignored: Vec<&'static str>,
    /// The statements its fix runs instead, analysed (empty without a fix):
    /// what `lint --fix` writes ([`fix::rewrite`]).
    pub fix_steps: Vec<Statement>,
}

impl LintedStatement {
    /// Adds findings reported outside [`lint`] (a live server's, the
    /// tracer's), dropping those of a rule `options` turns off or an ignore
    /// comment before the statement names.
    pub fn add_findings(&mut self, options: &Options, findings: impl IntoIterator<Item = Finding>) {
        for f in findings {
            let enabled = rule_by_id(f.rule).is_none_or(|r| options.enabled(r));
            if enabled && !self.ignored.contains(&f.rule) {
                self.findings.push(f);
            }
        }
    }
}

/// A finding not attached to a statement (an ignore comment after the last one).
#[derive(Debug, Clone, PartialEq)]
pub struct FileFinding {
    /// 1-based line.
    pub line: u32,
    /// 1-based column.
    pub column: u32,
    /// The finding.
    pub finding: Finding,
}

/// The result of linting one input.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report {
    /// Every statement, in order, with its findings.
    pub statements: Vec<LintedStatement>,
    /// Findings with no statement to attach to.
    pub file_findings: Vec<FileFinding>,
}

impl Report {
    /// Every finding, statement-level and file-level.
    pub fn findings(&self) -> impl Iterator<Item = &Finding> {
        self.statements
            .iter()
            .flat_map(|s| &s.findings)
            .chain(self.file_findings.iter().map(|f| &f.finding))
    }

    /// The most serious finding's severity.
    pub fn max_severity(&self) -> Option<Severity> {
        self.findings().map(|f| f.severity).max()
    }
}

/// How to lint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Server major version (13..=18).
    pub pg_version: u32,
    /// Rule ids or names turned off.
    pub disabled: BTreeSet<String>,
    /// The migration tool runs each file inside one transaction.
    pub assume_in_transaction: bool,
    /// Which tool runs the file, and its path: fixes are laid out for it.
    pub place: fix::Where,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pg_version: MAX_PG_VERSION,
            disabled: BTreeSet::new(),
            assume_in_transaction: false,
            place: fix::Where::default(),
        }
    }
}

impl Options {
    /// Whether `rule` is on.
    pub fn enabled(&self, rule: &Rule) -> bool {
        !self.disabled.contains(rule.id) && !self.disabled.contains(rule.name)
    }
}

/// Analyses and lints `sql`.
pub fn lint(sql: &str, options: &Options) -> Result<Report, SyntaxError> {
    lint_in(&mut Schema::default(), sql, options)
}

/// Lints `sql` against the schema earlier files left, and adds what it does
/// to `schema`: lint a folder of migrations in order through one [`Schema`]
/// and each file is judged against the schema it will meet. Objects created
/// by an earlier file are not new: they are in use by then.
pub fn lint_in(schema: &mut Schema, sql: &str, options: &Options) -> Result<Report, SyntaxError> {
    let statements = analyze_in(schema, sql, options.pg_version)?;
    let mut judge = Judge::new(sql, options);
    let mut report = Report::default();
    for statement in statements {
        report.statements.push(judge.statement(statement));
    }
    report.file_findings = judge.finish();
    Ok(report)
}

/// Like [`lint_in`], handing each linted statement to `each` as soon as it
/// is judged, so memory stays bounded by the largest statement, not the
/// file; returns the findings that belong to no statement. A file with a
/// syntax error hands nothing on and leaves `schema` as it was (its syntax
/// is checked first, statement by statement).
pub fn lint_each(
    schema: &mut Schema,
    sql: &str,
    options: &Options,
    mut each: impl FnMut(LintedStatement),
) -> Result<Vec<FileFinding>, SyntaxError> {
    crate::analysis::check_syntax(sql)?;
    let mut judge = Judge::new(sql, options);
    crate::analysis::analyze_each(schema, sql, options.pg_version, |statement| {
        each(judge.statement(statement))
    })?;
    Ok(judge.finish())
}

/// Judges one file's statements in order: the rules, the transaction state
/// they see, and the ignore comments (an ignore that matched nothing is
/// reported on its statement as soon as that statement is judged).
struct Judge<'a> {
    options: &'a Options,
    ignores: Vec<suppress::Ignore>,
    /// How many of `ignores` have their statement.
    assigned: usize,
    state: TransactionState,
    /// Index of the next statement.
    next: usize,
    unmatched: Option<&'static Rule>,
}

impl<'a> Judge<'a> {
    fn new(sql: &str, options: &'a Options) -> Self {
        Judge {
            options,
            ignores: suppress::collect(sql),
            assigned: 0,
            state: if options.assume_in_transaction {
                TransactionState::wrapped()
            } else {
                TransactionState::default()
            },
            next: 0,
            unmatched: rule_by_id(UNMATCHED_IGNORE).filter(|r| options.enabled(r)),
        }
    }

    fn statement(&mut self, statement: Statement) -> LintedStatement {
        let i = self.next;
        self.next += 1;
        let end = statement.offset + statement.sql.len();
        self.assigned = suppress::assign(&mut self.ignores, self.assigned, i, end);
        let options = self.options;
        let ignores = &mut self.ignores;
        let ctx = Context {
            statement: &statement,
            state: &self.state,
            pg_version: options.pg_version,
        };
        let mut findings = Vec::new();
        let mut ignored = Vec::new();
        let mut rule_fixes = Vec::new();
        for rule in RULES.iter().filter(|r| options.enabled(r)) {
            let Check::Statement(check) = rule.check else {
                // Reported later, by whoever has the facts: keep the ignore for them.
                if suppress::consume(ignores, i, rule) {
                    ignored.push(rule.id);
                }
                continue;
            };
            for v in check(&ctx) {
                if suppress::consume(ignores, i, rule) {
                    continue;
                }
                let severity = v.severity.unwrap_or(rule.severity);
                if let Some(fix) = &v.fix {
                    rule_fixes.push((rule.id, fix.clone()));
                }
                findings.push(Finding {
                    rule: rule.id,
                    severity,
                    message: v.message,
                    fix: v.fix,
                    size: None,
                });
            }
        }
        for f in do_block(&statement, &self.state, options) {
            let rule = rule_by_id(f.rule).expect("a registered rule");
            if !suppress::consume(ignores, i, rule) {
                findings.push(f);
            }
        }
        // One fix per statement: every finding that has one gets the fix
        // that does all the statement needs, laid out for where it runs.
        let (fix, fix_steps) = fix::combine(&ctx, &rule_fixes, &options.place).unzip();
        for f in findings
            .iter_mut()
            .filter(|f| f.fix.is_some() || f.rule == NOT_IN_TRANSACTION)
        {
            f.fix = fix.clone();
        }
        // This statement's ignores are final now.
        if let Some(rule) = self.unmatched {
            for ignore in ignores
                .iter()
                .filter(|ig| ig.statement == Some(i) && !ig.used)
            {
                findings.push(unmatched_finding(rule, ignore));
            }
        }
        self.state.apply(&statement);
        LintedStatement {
            statement,
            findings,
            ignored,
            fix_steps: fix_steps.unwrap_or_default(),
        }
    }

    /// The ignores after the last statement that matched nothing.
    fn finish(self) -> Vec<FileFinding> {
        let Some(rule) = self.unmatched else {
            return Vec::new();
        };
        self.ignores[self.assigned..]
            .iter()
            .filter(|ig| !ig.used)
            .map(|ig| FileFinding {
                line: ig.line,
                column: ig.column,
                finding: unmatched_finding(rule, ig),
            })
            .collect()
    }
}

/// What a `DO` block runs, judged statement by statement as one
/// transaction (the block's own), each finding naming its line in the file.
/// No fix: lint cannot rewrite the block's body.
fn do_block(statement: &Statement, state: &TransactionState, options: &Options) -> Vec<Finding> {
    let inner = crate::analysis::plpgsql::do_block_statements(&statement.sql);
    let mut state = state.clone();
    state.wrapped = true;
    let mut out = Vec::new();
    for i in inner {
        let Ok(statements) = crate::analysis::analyze(&i.sql, options.pg_version) else {
            continue;
        };
        for s in statements {
            let ctx = Context {
                statement: &s,
                state: &state,
                pg_version: options.pg_version,
            };
            for rule in RULES.iter().filter(|r| options.enabled(r)) {
                let Check::Statement(check) = rule.check else {
                    continue;
                };
                out.extend(check(&ctx).into_iter().map(|v| Finding {
                    rule: rule.id,
                    severity: v.severity.unwrap_or(rule.severity),
                    message: format!(
                        "in the DO block, line {}: {}",
                        statement.line + i.line - 1,
                        v.message
                    ),
                    fix: None,
                    size: None,
                }));
            }
            state.apply(&s);
        }
    }
    out
}

fn unmatched_finding(rule: &Rule, ignore: &suppress::Ignore) -> Finding {
    Finding {
        rule: rule.id,
        severity: rule.severity,
        message: ignore.unmatched_message(),
        fix: None,
        size: None,
    }
}

/// Declares a rule: its doc comment becomes [`Rule::doc`], so the
/// documentation lives once, on the rule.
macro_rules! declare_rule {
    (
        $(#[doc = $doc:literal])+
        pub struct $ty:ident {
            id: $id:literal,
            name: $name:literal,
            severity: $sev:ident,
            check: $check:path $(,)?
        }
    ) => {
        $(#[doc = $doc])+
        pub struct $ty;

        impl $ty {
            /// This rule's registry entry.
            pub const RULE: $crate::lint::Rule = $crate::lint::Rule {
                id: $id,
                name: $name,
                severity: $crate::lint::Severity::$sev,
                doc: concat!($($doc, "\n"),+),
                check: $crate::lint::Check::Statement($check),
            };
        }
    };
    (
        $(#[doc = $doc:literal])+
        pub struct $ty:ident {
            id: $id:literal,
            name: $name:literal,
            severity: $sev:ident,
            reported_by: $by:ident $(,)?
        }
    ) => {
        $(#[doc = $doc])+
        pub struct $ty;

        impl $ty {
            /// This rule's registry entry.
            pub const RULE: $crate::lint::Rule = $crate::lint::Rule {
                id: $id,
                name: $name,
                severity: $crate::lint::Severity::$sev,
                doc: concat!($($doc, "\n"),+),
                check: $crate::lint::Check::$by,
            };
        }
    };
}
pub(crate) use declare_rule;

/// The first runnable fix lint's rules give for the first statement of `sql`:
/// what to run instead, for messages that must say it (e.g. when
/// `--max-hold` stops a statement). `None` when no rule has one.
pub fn safe_rewrite(sql: &str, pg_version: u32) -> Option<String> {
    let options = Options {
        pg_version,
        ..Options::default()
    };
    let report = lint(sql, &options).ok()?;
    let statement = report.statements.into_iter().next()?;
    statement.findings.into_iter().find_map(|f| f.fix)
}

#[cfg(test)]
mod tests;
