//! `lint --fix`: one migration rewritten into the migrations its tool runs
//! safely. Each statement with a fix is replaced by its steps; the file is
//! cut after the statements that may share its transaction, and each step
//! that must not (a `CONCURRENTLY` build, a `VALIDATE`, a committing
//! backfill) starts a migration of its own, named and marked as the tool
//! expects; the statements after it follow in a later migration, in order.
//!
//! Pure: a migration and its file's text in, the files to write out.

use crate::analysis::{analyze_in, Schema, Statement, SyntaxError};
use crate::online::SCRIPT_LOCK_TIMEOUT;
use crate::source::tool::{self, Unit};
use crate::source::{Layout, Migration};

use super::super::{lint, lint_in, Options};
use super::{file_options, with_timeout, Where};

/// A file `lint --fix` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Path relative to the migrations folder.
    pub path: String,
    /// Its text before, `None` for a new file.
    pub before: Option<String>,
    /// Its text after.
    pub after: String,
}

/// One statement of the rewritten migration.
struct Item {
    sql: String,
    transactional: bool,
    /// Scans, rewrites or commits: runs in a migration of its own.
    heavy: bool,
    /// A step of a fix (not a statement kept as written).
    fixed: bool,
}

/// The files that run `m` safely under its tool, given its file's whole
/// text (`content`: the down section is kept where it was) and the
/// migrations that run before it (what they create is known, e.g. a column
/// already `NOT NULL`). Empty when no statement has a fix.
pub fn rewrite(
    m: &Migration,
    content: &str,
    earlier: &[Migration],
    options: &Options,
) -> Result<Vec<Change>, SyntaxError> {
    let place = Where {
        layout: Some(m.layout),
        path: Some(m.path.clone()),
        alembic: false,
    };
    let options = file_options(options, place, m.no_transaction, &m.sql);
    let mut schema = Schema::default();
    for e in earlier {
        // An earlier file that does not parse teaches nothing; lint reports it.
        let _ = analyze_in(&mut schema, &e.sql, options.pg_version);
    }
    let report = lint_in(&mut schema, &m.sql, &options)?;
    if report.statements.iter().all(|s| s.fix_steps.is_empty()) {
        return Ok(Vec::new());
    }
    let (Some(first), Some(last)) = (report.statements.first(), report.statements.last()) else {
        return Ok(Vec::new());
    };
    let start = first.statement.offset;
    let end = statement_end(content, &last.statement);
    let mut items = Vec::new();
    for s in &report.statements {
        if s.fix_steps.is_empty() {
            items.push(Item {
                sql: s.statement.sql.clone(),
                transactional: s.statement.transactional,
                heavy: false,
                fixed: false,
            });
        } else {
            items.extend(s.fix_steps.iter().map(|step| Item {
                sql: step.sql.clone(),
                transactional: step.transactional,
                heavy: !step.transactional || !step.scans.is_empty() || !step.rewrites.is_empty(),
                fixed: true,
            }));
        }
    }
    let mut files = partition(items);
    // popx: a file without a dialect also runs on the other databases; the
    // fix is PostgreSQL's own file for the version, the shared one untouched.
    let popx = earlier
        .iter()
        .chain([m])
        .any(|e| e.path.contains(".postgres."));
    let mut m = m.clone();
    let shared = popx && !m.path.contains(".postgres.");
    if shared {
        let stem = m.path.strip_suffix(".up.sql").unwrap_or(&m.path);
        m.path = format!("{stem}.postgres.up.sql");
    }
    let m = &m;
    // popx says "no transaction" in the name only: the file keeps its name
    // (emptied) and the statement moves to a new `.autocommit.` one.
    if popx && files[0].len() == 1 && !files[0][0].transactional && !m.no_transaction {
        files.insert(0, Vec::new());
    }
    let mut changes = Vec::new();
    for (n, file) in files.iter().enumerate() {
        if n == 0 {
            let mut first = first_file(m, content, start, end, file);
            if shared {
                first[0].before = None;
            }
            changes.extend(first);
            continue;
        }
        let unit = Unit {
            statements: file.iter().map(|i| i.sql.clone()).collect(),
            transactional: file.iter().all(|i| i.transactional),
        };
        let Some(path) = tool::migration_path(m.layout, &m.path, n as u32, unit.transactional)
        else {
            continue;
        };
        for f in tool::write_unit(m.layout, &path, &with_timeout(&unit)) {
            changes.push(Change {
                path: f.path,
                before: None,
                after: f.content,
            });
        }
    }
    Ok(changes)
}

/// Where a statement ends in the file: after its `;`, when it has one.
fn statement_end(content: &str, s: &Statement) -> usize {
    let end = s.offset + s.sql.len();
    match content[end..].find(|c: char| !c.is_whitespace()) {
        Some(i) if content[end + i..].starts_with(';') => end + i + 1,
        _ => end,
    }
}

/// The items cut into migrations: a heavy item (or one outside a
/// transaction) starts a migration of its own, and nothing joins it.
fn partition(items: Vec<Item>) -> Vec<Vec<Item>> {
    let mut files: Vec<Vec<Item>> = vec![Vec::new()];
    let mut closed = false;
    for item in items {
        let alone = item.heavy || !item.transactional;
        let current = files.last().expect("one file at least");
        if (alone || closed) && !current.is_empty() {
            files.push(Vec::new());
        }
        closed = alone;
        files.last_mut().expect("one file at least").push(item);
    }
    files
}

/// The migration itself: its header and down section as they were, its up
/// statements replaced by the first migration's items (with `SET [LOCAL]
/// lock_timeout` before the first fixed step in a transaction), and the
/// tool's no-transaction marker when that is a step outside one.
fn first_file(
    m: &Migration,
    content: &str,
    start: usize,
    end: usize,
    items: &[Item],
) -> Vec<Change> {
    let mut body = String::new();
    let mut timeout_set = false;
    for (i, item) in items.iter().enumerate() {
        if item.fixed && item.transactional && !timeout_set {
            // In the tool's transaction, scoped to it (see `local_lock_timeout`).
            body += &match m.no_transaction {
                false => format!("{};\n", super::local_lock_timeout()),
                true => format!("SET lock_timeout = '{SCRIPT_LOCK_TIMEOUT}';\n"),
            };
            timeout_set = true;
        }
        let block = m.layout == Layout::Goose && item.sql.contains(';');
        if block {
            body += "-- +goose StatementBegin\n";
        }
        body += &item.sql;
        body += ";";
        if block {
            body += "\n-- +goose StatementEnd";
        }
        if i + 1 < items.len() {
            body += "\n";
        }
    }
    let mut after = format!("{}{body}{}", &content[..start], &content[end..]);
    let mut extra = Vec::new();
    let outside = items.len() == 1 && !items[0].transactional;
    if outside && !m.no_transaction {
        let (text, side) = mark_no_transaction(m.layout, &m.path, &after);
        after = text;
        extra = side;
    }
    let mut out = vec![Change {
        path: m.path.clone(),
        before: Some(content.to_string()),
        after,
    }];
    out.extend(extra);
    out
}

/// The file's text with its tool's no-transaction marker, and the side files
/// that carry it for diesel and Flyway.
fn mark_no_transaction(layout: Layout, path: &str, text: &str) -> (String, Vec<Change>) {
    let side = |path: String, after: &str| Change {
        path,
        before: None,
        after: after.to_string(),
    };
    match layout {
        Layout::Numbered => (format!("-- no-transaction\n{text}"), Vec::new()),
        Layout::Goose => (format!("-- +goose NO TRANSACTION\n{text}"), Vec::new()),
        Layout::Dbmate => (
            text.replacen("-- migrate:up", "-- migrate:up transaction:false", 1),
            Vec::new(),
        ),
        Layout::Diesel => {
            let folder = path.rsplit_once('/').map_or("", |(f, _)| f);
            (
                text.to_string(),
                vec![side(
                    format!("{folder}/metadata.toml"),
                    "run_in_transaction = false\n",
                )],
            )
        }
        Layout::Flyway => (
            text.to_string(),
            vec![side(format!("{path}.conf"), "executeInTransaction=false\n")],
        ),
        Layout::Prisma => (text.to_string(), Vec::new()),
    }
}

/// A plain SQL file (run by `psql -f`, statement by statement) with each
/// statement that has a fix replaced by it; `None` when none has one.
pub fn rewrite_plain(content: &str, options: &Options) -> Result<Option<String>, SyntaxError> {
    let report = lint(content, options)?;
    let mut out = content.to_string();
    let mut changed = false;
    // From the end, so earlier offsets stay right.
    for s in report.statements.iter().rev() {
        let Some(fix) = s.findings.iter().find_map(|f| f.fix.as_deref()) else {
            continue;
        };
        let end = statement_end(content, &s.statement);
        out.replace_range(s.statement.offset..end, fix);
        changed = true;
    }
    Ok(changed.then_some(out))
}
