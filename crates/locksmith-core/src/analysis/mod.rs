//! Statement analysis: SQL text in, a small per-statement summary out.
//!
//! This is the only module that knows `pg_query`. The parser's tree is
//! converted once, here, into [`Statement`]: the relations it locks and in
//! which [`LockMode`], whether it rewrites or scans a table, whether it may
//! run inside a transaction block, and a [`StatementKind`] that lint rules
//! match on. Rules, the guard and the tracer never see a parse node.
//!
//! - [`source`]: splitting, positions (line/column of the first token) and
//!   locating syntax errors, which `pg_query`'s Rust API reports without one.
//! - `convert` / `alter_table`: parse node → summary, one place per statement
//!   family, with the lock each takes taken from PostgreSQL's
//!   `AlterTableGetLockLevel` and the documentation.
//! - [`index_copy`]: a `CREATE INDEX` retargeted at another table, so the
//!   server can tell whether an existing index is the one a statement builds.
//! - [`Schema`]: the model the statements so far built (column types,
//!   proven `NOT NULL`s, indexes, foreign keys, domains), carried from file
//!   to file so each is judged against the schema it will meet.
//! - [`transaction`]: the per-file transaction state (explicit `BEGIN`?
//!   `lock_timeout` set? `AccessExclusiveLock` already held?) that rules read.
//!
//! What it must not do: I/O, or guess silently. Where the lock or the rewrite
//! depends on something only the server knows (a column's current type), the
//! summary says "unknown" and rules word their finding accordingly.
//!
//! ```
//! use locksmith_core::analysis::analyze;
//! use locksmith_core::lock::LockMode;
//! let stmts = analyze("-- the incident\nALTER TABLE academic_partners ADD CONSTRAINT u UNIQUE (name);", 18).unwrap();
//! assert_eq!((stmts[0].line, stmts[0].column), (2, 1));
//! assert_eq!(stmts[0].locks[0].relation, "academic_partners");
//! assert_eq!(stmts[0].locks[0].mode, LockMode::AccessExclusive);
//! ```

mod alter_table;
mod convert;
mod expr;
pub mod index_copy;
mod kind;
pub mod plpgsql;
mod schema;
pub mod source;
pub mod split;
pub mod transaction;

use serde::Serialize;

use crate::lock::LockMode;

pub use kind::{
    AlterAction, Coercion, ColumnDefault, ConstraintKind, ConstraintSummary, RenameTarget,
    StatementKind, TransactionControl,
};
pub use schema::Schema;
pub use source::SyntaxError;
pub use transaction::TransactionState;

/// The oldest PostgreSQL major version whose lock behaviour is modelled.
pub const MIN_PG_VERSION: u32 = 13;
/// The newest modelled major version, and the default.
pub const MAX_PG_VERSION: u32 = 18;

/// One analysed SQL statement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statement {
    /// The statement's text from its first token to its last, without the
    /// trailing `;` and without leading comments.
    pub sql: String,
    /// Byte offset of the first token in the analysed input.
    pub offset: usize,
    /// 1-based line of the first token.
    pub line: u32,
    /// 1-based column (in characters) of the first token.
    pub column: u32,
    /// Every relation the statement locks, with the strongest mode it takes
    /// on each, in the order they appear in the statement.
    pub locks: Vec<RelationLock>,
    /// Tables whose data files are rewritten (new `relfilenode`).
    pub rewrites: Vec<String>,
    /// Tables read in full while the lock is held (validation, index build).
    pub scans: Vec<String>,
    /// False when PostgreSQL refuses to run it inside a transaction block
    /// (`CREATE INDEX CONCURRENTLY`, `VACUUM`, …).
    pub transactional: bool,
    /// Features this statement uses that need a newer server than the one
    /// analysed for.
    pub requires: Vec<Requirement>,
    /// What the statement is, summarised for rules.
    #[serde(skip)]
    pub kind: StatementKind,
}

/// A lock on one relation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RelationLock {
    /// The relation as written in the statement (schema-qualified if it was).
    pub relation: String,
    /// The table lock mode, serialized with its `pg_locks` spelling.
    pub mode: LockMode,
}

/// A feature that is a syntax or runtime error before some server version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    /// The first major version that supports it.
    pub min_version: u32,
    /// What it is, e.g. `DETACH PARTITION … CONCURRENTLY`.
    pub feature: &'static str,
}

impl Statement {
    /// The strongest lock the statement takes, if any.
    pub fn strongest_lock(&self) -> Option<&RelationLock> {
        self.locks.iter().max_by_key(|l| l.mode)
    }

    /// The mode taken on `relation`, if the statement locks it.
    pub fn lock_on(&self, relation: &str) -> Option<LockMode> {
        self.locks
            .iter()
            .find(|l| l.relation == relation)
            .map(|l| l.mode)
    }
}

/// Parses `sql` (one or many statements) and analyses each statement for a
/// server of major version `pg_version` (clamped to 13..=18).
///
/// A syntax error anywhere stops the analysis: nothing of a file with a
/// syntax error should be run, so nothing is returned for it.
pub fn analyze(sql: &str, pg_version: u32) -> Result<Vec<Statement>, SyntaxError> {
    analyze_after("", sql, pg_version)
}

/// Like [`analyze`], after learning what `context` (SQL that already ran,
/// e.g. `trace --setup`) says about its objects: column types, indexes,
/// foreign keys. Only `sql`'s statements are returned; a syntax error in
/// `context` is returned as is (its positions are `context`'s).
pub fn analyze_after(
    context: &str,
    sql: &str,
    pg_version: u32,
) -> Result<Vec<Statement>, SyntaxError> {
    let mut schema = Schema::default();
    if !context.trim().is_empty() {
        analyze_in(&mut schema, context, pg_version)?;
    }
    analyze_in(&mut schema, sql, pg_version)
}

/// Like [`analyze`], reading and extending `schema`. A file with a syntax
/// error leaves `schema` as it was.
pub fn analyze_in(
    schema: &mut Schema,
    sql: &str,
    pg_version: u32,
) -> Result<Vec<Statement>, SyntaxError> {
    // Nothing of a file with a syntax error is kept, in the schema either.
    let before = schema.clone();
    let mut out = Vec::new();
    match analyze_each(schema, sql, pg_version, |s| out.push(s)) {
        Ok(()) => Ok(out),
        Err(e) => {
            *schema = before;
            Err(e)
        }
    }
}

/// Whether `sql` parses, statement by statement, keeping nothing: what to
/// ask before [`analyze_each`] hands statements on that cannot be taken back.
pub fn check_syntax(sql: &str) -> Result<(), SyntaxError> {
    source::check(sql)
}

/// Like [`analyze_in`], handing each statement to `each` as soon as it is
/// analysed, so nothing of the file is held. On a syntax error the
/// statements before it have been handed on and `schema` has learnt from
/// them: call [`check_syntax`] first when that matters.
pub fn analyze_each(
    schema: &mut Schema,
    sql: &str,
    pg_version: u32,
    mut each: impl FnMut(Statement),
) -> Result<(), SyntaxError> {
    let version = pg_version.clamp(MIN_PG_VERSION, MAX_PG_VERSION);
    source::parse_each(sql, |raw| {
        let summary = convert::summarize(raw.node, version, schema);
        each(Statement {
            sql: sql[raw.start..raw.end].to_string(),
            offset: raw.start,
            line: raw.line,
            column: raw.column,
            locks: summary.locks.into_vec(),
            rewrites: summary.rewrites,
            scans: summary.scans,
            transactional: summary.transactional,
            requires: summary.requires,
            kind: summary.kind,
        });
    })
}

/// Quotes an identifier for generated SQL when PostgreSQL needs it to be:
/// anything but a lower-case plain name that is not a reserved word.
pub fn quote_ident(name: &str) -> String {
    let plain = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain && !source::is_keyword(name) {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Quotes a possibly schema-qualified relation name (`app.users`) part by part.
pub fn quote_qualified(name: &str) -> String {
    name.split('.')
        .map(quote_ident)
        .collect::<Vec<_>>()
        .join(".")
}
