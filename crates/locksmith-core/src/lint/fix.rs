//! One fix per statement, as the file's tool runs it.
//!
//! Every finding on a statement that has a fix gets the same one: the steps
//! that do all the statement does, safely — the online plan of the whole
//! statement; for an `ALTER TABLE` of several subcommands, each subcommand
//! planned in turn (nothing of the statement dropped: a column keeps its
//! `NOT NULL` and default, a constraint keeps its name); else the first
//! rule's own fix. `missing-lock-timeout`'s "the same statement under
//! `SET lock_timeout`" is the fix only when nothing else is wrong.
//!
//! Then the steps are laid out for where they run ([`Where`]): as a script
//! for `psql -f` (plain files), or, for a migration tool, as migration files:
//! steps that must not share a transaction (a `CONCURRENTLY` build, a
//! `VALIDATE` after its `NOT VALID`, a backfill that commits) each go to a
//! migration of their own, named and marked as the tool expects
//! ([`crate::source::tool`]). `lint --fix` writes the same units ([`units`]).
//!
//! Pure; must not print or read files.

use std::collections::BTreeSet;

use crate::analysis::{
    analyze_after, quote_ident, AlterAction, ConstraintKind, Statement, StatementKind,
};
use crate::online::{self, Online, OnlineStep, SCRIPT_LOCK_TIMEOUT};
use crate::source::tool::{self, Sends, Unit};
use crate::source::Layout;

use super::Context;

/// Where a file's statements run: which tool, which file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Where {
    /// The folder's layout; `None` for plain SQL run by `psql -f`.
    pub layout: Option<Layout>,
    /// The file's path relative to its migrations folder, for naming new files.
    pub path: Option<String>,
    /// The SQL is alembic's offline output (`alembic upgrade head --sql`):
    /// fixes also say how to write them in the migration's Python.
    pub alembic: bool,
}

impl Where {
    /// Where SQL read from a pipe or a lone file runs: alembic's offline
    /// output (it records `alembic_version`), else `psql -f`.
    pub fn of_text(sql: &str) -> Where {
        Where {
            alembic: sql.contains("alembic_version"),
            ..Where::default()
        }
    }
}

/// `base` for one file at `place`: its fixes laid out for the tool, and
/// judged as one transaction when the tool runs it in one (its own, or the
/// implicit block of a multi-statement query), unless its marker says not.
/// `--assume-in-transaction` (`base`) holds for every file.
pub fn file_options(
    base: &super::Options,
    place: Where,
    no_transaction: bool,
    sql: &str,
) -> super::Options {
    let mut options = base.clone();
    if let Some(layout) = place.layout {
        // Statement by statement, keeping one flag each: a big file is not held twice.
        let mut transactional = Vec::new();
        let _ = crate::analysis::analyze_each(
            &mut crate::analysis::Schema::default(),
            sql,
            base.pg_version,
            |s| transactional.push(s.transactional),
        );
        let path = place.path.as_deref().unwrap_or_default();
        options.assume_in_transaction |=
            tool::runs_in_transaction(layout, path, no_transaction, &transactional);
    }
    options.place = place;
    options
}

/// `base` for SQL given as a file or on stdin, outside a migrations folder:
/// its fixes for `psql -f`, or for alembic when it is alembic's output.
pub fn text_options(base: &super::Options, sql: &str) -> super::Options {
    let mut options = base.clone();
    options.place = Where::of_text(sql);
    options
}

/// The statements that do what `ctx.statement` does without holding a
/// traffic-blocking lock for long, when the statement needs any: the online
/// plan, or each subcommand of a multi-part `ALTER TABLE` planned in turn.
pub fn steps(ctx: &Context<'_>) -> Option<Vec<Statement>> {
    // Already its online form, but where it cannot run: out of the block.
    if !ctx.statement.transactional && ctx.state.in_transaction() {
        return Some(vec![ctx.statement.clone()]);
    }
    match online::plan(ctx.statement, &ctx.state.created, ctx.pg_version) {
        Online::Steps(steps) => Some(steps.into_iter().map(|s| s.statement).collect()),
        Online::AsIs => None,
        Online::Refused(_) => split_alter(ctx),
    }
}

/// `ALTER TABLE t a, b, c` as `ALTER TABLE t a; ALTER TABLE t b; …`, each
/// planned; an added column's inline constraints become constraints of
/// their own, added after it, so each gets its online form.
fn split_alter(ctx: &Context<'_>) -> Option<Vec<Statement>> {
    let StatementKind::AlterTable { table, actions } = &ctx.statement.kind else {
        return None;
    };
    let (prefix, parts) = split_subcommands(&ctx.statement.sql)?;
    if parts.len() != actions.len() {
        return None;
    }
    let mut sqls = Vec::new();
    for (part, action) in parts.iter().zip(actions) {
        match action {
            AlterAction::AddColumn {
                column,
                constraints,
                ..
            } if constraints.iter().any(|c| inline_split(c.kind)) => {
                sqls.push(format!("{prefix} {}", strip_inline_constraints(part)));
                for c in constraints.iter().filter(|c| inline_split(c.kind)) {
                    if c.definition.is_empty() {
                        return None;
                    }
                    let (columns, suffix): (&[String], _) = match c.kind {
                        ConstraintKind::PrimaryKey => (&[], "pkey"),
                        ConstraintKind::Unique => (std::slice::from_ref(column), "key"),
                        ConstraintKind::ForeignKey => (std::slice::from_ref(column), "fkey"),
                        _ => (std::slice::from_ref(column), "check"),
                    };
                    let name = c
                        .name
                        .clone()
                        .unwrap_or_else(|| online::default_name(table, columns, suffix));
                    // An inline UNIQUE / PRIMARY KEY names no columns: its column's.
                    let definition = match c.kind {
                        ConstraintKind::Unique | ConstraintKind::PrimaryKey
                            if !c.definition.contains('(') =>
                        {
                            format!("{} ({})", c.definition, quote_ident(column))
                        }
                        _ => c.definition.clone(),
                    };
                    sqls.push(format!(
                        "{prefix} ADD CONSTRAINT {} {definition}",
                        quote_ident(&name)
                    ));
                }
            }
            _ => sqls.push(format!("{prefix} {part}")),
        }
    }
    if sqls.len() < 2 {
        return None;
    }
    let mut created: BTreeSet<String> = ctx.state.created.clone();
    let mut before = String::new();
    let mut out = Vec::new();
    for sql in sqls {
        let mut analysed = analyze_after(&before, &sql, ctx.pg_version).ok()?;
        if analysed.len() != 1 {
            return None;
        }
        let s = analysed.remove(0);
        match online::plan(&s, &created, ctx.pg_version) {
            Online::Steps(steps) => out.extend(steps.into_iter().map(|s| s.statement)),
            Online::AsIs => out.push(s),
            Online::Refused(_) => return None,
        }
        if let Some(c) = out.last().and_then(|s| s.kind.creates()) {
            created.insert(c.to_string());
        }
        before.push_str(&sql);
        before.push_str(";\n");
    }
    Some(out)
}

/// Inline column constraints that are added on their own after the column.
fn inline_split(kind: ConstraintKind) -> bool {
    matches!(
        kind,
        ConstraintKind::Unique
            | ConstraintKind::PrimaryKey
            | ConstraintKind::ForeignKey
            | ConstraintKind::Check
    )
}

/// Words that start a column constraint or option in a column definition.
const COLUMN_WORDS: &[&str] = &[
    "CONSTRAINT",
    "UNIQUE",
    "PRIMARY",
    "REFERENCES",
    "CHECK",
    "NOT",
    "NULL",
    "DEFAULT",
    "COLLATE",
    "GENERATED",
];

/// `ADD COLUMN c int NOT NULL DEFAULT 0 UNIQUE REFERENCES o (id)` without
/// its `UNIQUE`, `PRIMARY KEY`, `REFERENCES …`, `CHECK (…)` and their
/// `CONSTRAINT name`: what is left adds the column as written otherwise.
fn strip_inline_constraints(part: &str) -> String {
    let words = top_level_words(part);
    let mut keep = String::new();
    let mut last = 0;
    let mut skipping = false;
    for (i, &(start, ref word)) in words.iter().enumerate() {
        let upper = word.to_ascii_uppercase();
        if !COLUMN_WORDS.contains(&upper.as_str()) {
            continue;
        }
        // `NOT NULL` / `NULL` after `REFERENCES … ON DELETE SET NULL` belong to it.
        let prev = i
            .checked_sub(1)
            .map(|p| words[p].1.to_ascii_uppercase())
            .unwrap_or_default();
        if upper == "NULL" && (prev == "SET" || prev == "NOT") {
            continue;
        }
        if upper == "DEFAULT" && prev == "SET" {
            continue;
        }
        let starts_constraint = matches!(
            upper.as_str(),
            "CONSTRAINT" | "UNIQUE" | "PRIMARY" | "REFERENCES" | "CHECK"
        );
        // A `CONSTRAINT name` prefix belongs to the constraint after it.
        let named =
            prev == "CONSTRAINT" || (i >= 2 && words[i - 2].1.eq_ignore_ascii_case("CONSTRAINT"));
        if skipping && named && starts_constraint {
            continue;
        }
        if !skipping {
            keep.push_str(&part[last..start]);
        }
        skipping = starts_constraint;
        last = start;
    }
    if !skipping {
        keep.push_str(&part[last..]);
    }
    keep.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The words of `sql` outside parentheses, quotes and comments, with their
/// byte offsets.
fn top_level_words(sql: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    scan(sql, |i, depth, c| {
        if depth == 0 && (c.is_alphanumeric() || c == '_') {
            match out.last_mut() {
                Some((start, w)) if *start + w.len() == i => w.push(c),
                _ => out.push((i, c.to_string())),
            }
        }
    });
    out
}

/// Calls `each(offset, depth, char)` for every character of `sql` outside
/// quotes, dollar quotes and comments, with the parenthesis depth.
fn scan(sql: &str, mut each: impl FnMut(usize, u32, char)) {
    let mut depth = 0u32;
    let mut i = 0;
    while i < sql.len() {
        let rest = &sql[i..];
        let c = rest.chars().next().unwrap_or(' ');
        let skip_to = |end: Option<usize>, from: usize| end.map_or(sql.len(), |e| i + from + e);
        if c == '\'' || c == '"' {
            let close = rest[1..].find(c).map(|e| e + 1);
            i = skip_to(close, 1) + 1;
            continue;
        }
        if rest.starts_with("--") {
            i = skip_to(rest.find('\n'), 0);
            continue;
        }
        if rest.starts_with("/*") {
            i = skip_to(rest.find("*/"), 2) + 2;
            continue;
        }
        if c == '$' {
            if let Some(end) = rest[1..].find('$') {
                let tag = &rest[..end + 2];
                if tag[1..tag.len() - 1]
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_')
                {
                    let close = rest[tag.len()..].find(tag).map(|e| e + tag.len());
                    i = skip_to(close, 0) + tag.len();
                    continue;
                }
            }
        }
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        each(i, depth, c);
        i += c.len_utf8();
    }
}

/// `ALTER TABLE [IF EXISTS] [ONLY] name [*] sub, sub, …` as the prefix up
/// to the name and each subcommand's text.
fn split_subcommands(sql: &str) -> Option<(String, Vec<String>)> {
    let mut commas = Vec::new();
    scan(sql, |i, depth, c| {
        if depth == 0 && c == ',' {
            commas.push(i);
        }
    });
    let words = top_level_words(sql);
    // ALTER TABLE [IF EXISTS] [ONLY] then the name: the first subcommand
    // starts at the first word after the name's end.
    let mut w = words.iter().peekable();
    let mut expect = |word: &str| w.next_if(|(_, x)| x.eq_ignore_ascii_case(word)).is_some();
    if !(expect("ALTER") && expect("TABLE")) {
        return None;
    }
    if expect("IF") && !expect("EXISTS") {
        return None;
    }
    expect("ONLY");
    let (name_start, _) = w.next()?;
    // The name runs over identifiers, quotes and dots to the next whitespace.
    let after_name = sql[*name_start..]
        .char_indices()
        .scan(false, |quoted, (i, c)| {
            if c == '"' {
                *quoted = !*quoted;
            }
            Some((i, c, *quoted))
        })
        .find(|(_, c, quoted)| !quoted && c.is_whitespace())
        .map(|(i, _, _)| name_start + i)?;
    let mut first = after_name;
    let rest = sql[after_name..].trim_start();
    first += sql[after_name..].len() - rest.len();
    if rest.starts_with('*') {
        first += 1;
    }
    let prefix = sql[..first].trim_end().to_string();
    let mut parts = Vec::new();
    let mut start = first;
    for &c in commas.iter().filter(|&&c| c > first) {
        parts.push(sql[start..c].trim().to_string());
        start = c + 1;
    }
    parts.push(sql[start..].trim().to_string());
    Some((prefix, parts))
}

/// The steps in units: a step that scans, rewrites or cannot run in a
/// transaction runs in a unit of its own, so no lock is held across it;
/// brief steps next to each other share one.
pub fn units(steps: &[Statement]) -> Vec<Unit> {
    let heavy = |s: &Statement| !s.transactional || !s.scans.is_empty() || !s.rewrites.is_empty();
    let mut out: Vec<(Unit, bool)> = Vec::new();
    for s in steps {
        let h = heavy(s);
        match out.last_mut() {
            Some((u, false)) if !h && u.transactional && s.transactional => {
                u.statements.push(s.sql.clone())
            }
            _ => out.push((
                Unit {
                    statements: vec![s.sql.clone()],
                    transactional: s.transactional,
                },
                h,
            )),
        }
    }
    out.into_iter().map(|(u, _)| u).collect()
}

/// The fix for the statement of `ctx`, given its findings' own fixes (rule
/// id, fix as the rule wrote it, in registry order), laid out for `place`,
/// with the steps it runs (what `lint --fix` writes).
pub(crate) fn combine(
    ctx: &Context<'_>,
    rule_fixes: &[(&str, String)],
    place: &Where,
) -> Option<(String, Vec<Statement>)> {
    let misplaced = !ctx.statement.transactional && ctx.state.in_transaction();
    if rule_fixes.is_empty() && !misplaced {
        return None;
    }
    let in_tx = ctx.state.in_transaction();
    if let Some(steps) = steps(ctx) {
        return Some((lay_out(&steps, in_tx, place), steps));
    }
    let (_, text) = rule_fixes
        .iter()
        .find(|(id, _)| *id != "LS401")
        .or(rule_fixes.first())?;
    let text = online::bounded(text.clone());
    let steps: Vec<Statement> = crate::analysis::analyze(&text, ctx.pg_version)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| !matches!(&s.kind, StatementKind::Set { name, .. } if name == "lock_timeout"))
        .collect();
    if place.layout.is_none() || steps.is_empty() {
        return Some((text, steps));
    }
    Some((lay_out(&steps, in_tx, place), steps))
}

/// The steps as the place runs them: a `psql -f` script, or migration files.
fn lay_out(steps: &[Statement], in_tx: bool, place: &Where) -> String {
    let script = || {
        let online: Vec<OnlineStep> = steps
            .iter()
            .map(|s| OnlineStep {
                statement: s.clone(),
                done_when: None,
                batch: None,
            })
            .collect();
        online::script(&online, in_tx)
    };
    let Some(layout) = place.layout else {
        return match place.alembic {
            true => alembic(steps) + &script(),
            false => script(),
        };
    };
    let units = units(steps);
    if !in_tx && layout.sends() == Sends::EachStatement {
        // goose NO TRANSACTION, Flyway outside a transaction: statement by statement already.
        return script();
    }
    let mut out = String::new();
    let mut rest = units.as_slice();
    if let [first, ..] = rest {
        if first.transactional && (rest.len() == 1 || brief(first, steps)) {
            out += &format!("{};\n", local_lock_timeout());
            for s in &first.statements {
                out += &format!("{s};\n");
            }
            rest = &rest[1..];
        }
    }
    if !rest.is_empty() {
        out += &format!(
            "-- locksmith: {} after this one ({} runs a file's statements in one transaction); the statements after this one move after them:\n",
            match (out.is_empty(), rest.len()) {
                (true, 1) => "the statement runs in a migration of its own",
                (true, _) => "the steps run in migrations of their own",
                (false, _) => "the rest runs in migrations of their own",
            },
            layout.tool()
        );
    }
    for (n, unit) in rest.iter().enumerate() {
        let n = n as u32 + 1;
        let path = place
            .path
            .as_deref()
            .and_then(|p| tool::migration_path(layout, p, n, unit.transactional))
            .unwrap_or_else(|| format!("<next migration {n}>"));
        for file in tool::write_unit(layout, &path, &with_timeout(unit)) {
            out += &format!("-- file {}:\n{}", file.path, file.content);
        }
    }
    out.truncate(out.trim_end().len());
    out
}

/// How an alembic migration runs the steps: the brief first unit in the
/// migration's transaction, the rest in `autocommit_block()` (which commits
/// that transaction first, then runs each statement on its own), as
/// comments above the SQL script.
fn alembic(steps: &[Statement]) -> String {
    let units = units(steps);
    let stay = match units.first() {
        Some(u) if u.transactional && (units.len() == 1 || brief(u, steps)) => u.statements.len(),
        _ => 0,
    };
    if stay == steps.len() {
        return String::new();
    }
    let call = |sql: &str| format!("op.execute({:?})", sql.replace('\n', " "));
    let mut out =
        String::from("-- alembic: in the migration's upgrade(), instead of the statement:\n");
    out += &format!(
        "--   {}\n",
        call(&format!("SET lock_timeout = '{SCRIPT_LOCK_TIMEOUT}'"))
    );
    for s in &steps[..stay] {
        out += &format!("--   {}\n", call(&s.sql));
    }
    out += "--   with op.get_context().autocommit_block():\n";
    for s in &steps[stay..] {
        out += &format!("--       {}\n", call(&s.sql));
    }
    out
}

/// Whether a unit takes its locks briefly (it may stay in the file's transaction).
fn brief(unit: &Unit, steps: &[Statement]) -> bool {
    unit.statements.iter().all(|sql| {
        steps
            .iter()
            .find(|s| &s.sql == sql)
            .is_some_and(|s| s.transactional && s.scans.is_empty() && s.rewrites.is_empty())
    })
}

/// `SET LOCAL lock_timeout`, for a migration file its tool runs in one
/// transaction: a plain `SET` would outlive the file on the tool's
/// connection and bound a later file's `CREATE INDEX CONCURRENTLY` too,
/// which then fails on a busy server and leaves an invalid index behind.
pub(super) fn local_lock_timeout() -> String {
    format!("SET LOCAL lock_timeout = '{SCRIPT_LOCK_TIMEOUT}'")
}

/// A transactional unit with `SET LOCAL lock_timeout` first: its brief
/// locks never queue for long. A unit outside a transaction stays one
/// statement (the tools that send a file as one query would otherwise run
/// it in a block).
pub fn with_timeout(unit: &Unit) -> Unit {
    if !unit.transactional {
        return unit.clone();
    }
    let mut statements = vec![local_lock_timeout()];
    statements.extend(unit.statements.iter().cloned());
    Unit {
        statements,
        transactional: true,
    }
}

mod rewrite;
pub use rewrite::{rewrite, rewrite_plain, Change};

#[cfg(test)]
mod tests;
