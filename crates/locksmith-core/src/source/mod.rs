//! Migration sources: a folder listing and its files' contents in, the
//! ordered list of migrations out, each with its up SQL only. Pure: the
//! caller lists and reads the folder (one level, plus Prisma's
//! `<V>_<name>/migration.sql`).
//!
//! Layouts, detected per folder (one per folder; a mix is an error):
//!
//! | layout | example | up SQL |
//! |---|---|---|
//! | sqlx, golang-migrate, popx | `3_add_email.sql`, `3_add_email.up.sql`, `3_x.postgres.up.sql` | the file (`.down.sql` and other dialects skipped) |
//! | Flyway | `V1_1__add_email.sql`, `R__views.sql` | the file (`U1_1__…` undo files skipped) |
//! | dbmate | `20240101120000_add_email.sql` | `-- migrate:up` … `-- migrate:down` |
//! | goose | `20240101120000_add_email.sql` | `-- +goose Up` … `-- +goose Down` |
//! | Prisma | `20240101120000_add_email/migration.sql` | the file |
//! | diesel | `2024-01-01-120000_add_email/up.sql` | the file (`down.sql` skipped) |
//!
//! How each tool runs a file (one transaction, one query, its no-transaction
//! marker) is in `docs/tools.md`; [`tool`] writes new files the way it reads them.
//!
//! Why the design is so: `apply`, `lint`, `trace` and `--dry-run` all read
//! migrations here, so none of them can see a down section. Positions stay
//! the original file's: [`Migration::sql`] is the file with everything but
//! the up section blanked out (same length, same lines), so an analysis of
//! it reports `FILE:LINE:COL` of the file itself.
//!
//! ```
//! use locksmith_core::source::{read_folder, SourceFile};
//! let files = [SourceFile {
//!     path: "20240101_users.sql".into(),
//!     content: "-- migrate:up\nCREATE TABLE users (id int);\n-- migrate:down\nDROP TABLE users;\n".into(),
//! }];
//! let migrations = read_folder(&files).unwrap();
//! assert_eq!(migrations[0].up_sql(), "CREATE TABLE users (id int);\n");
//! assert!(!migrations[0].sql.contains("DROP"));
//! ```

mod blocks;
mod name;
pub mod pending;
pub mod sections;
pub mod tool;
mod version;

use std::collections::BTreeMap;
use std::ops::Range;

use sha2::{Digest, Sha256};

pub use crate::lint::fix::Change;
pub use blocks::group_blocks;
pub use name::{is_down_or_undo, never_read, LOOKED_FOR};
pub use sections::{Markers, Sections};
pub use version::Version;

use name::NameClass;

/// One file of the folder, as the caller read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the folder, `/`-separated (`1_a.sql`, `20240101_a/migration.sql`).
    pub path: String,
    /// The file's text.
    pub content: String,
}

/// The migration tool whose layout a folder follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layout {
    /// `<V>_<name>.sql` or `<V>_<name>.up.sql` (sqlx, golang-migrate).
    Numbered,
    /// `V<V>__<name>.sql`, `R__<name>.sql`.
    Flyway,
    /// `<V>_<name>.sql` with `-- migrate:up`.
    Dbmate,
    /// `<V>_<name>.sql` with `-- +goose Up`.
    Goose,
    /// `<V>_<name>/migration.sql`.
    Prisma,
    /// `<V>_<name>/up.sql` (`metadata.toml` beside it).
    Diesel,
}

impl Layout {
    /// The name users know it by.
    pub fn label(self) -> &'static str {
        match self {
            Layout::Numbered => "sqlx/golang-migrate (<V>_<name>.sql)",
            Layout::Flyway => "Flyway (V<V>__<name>.sql)",
            Layout::Dbmate => "dbmate (-- migrate:up)",
            Layout::Goose => "goose (-- +goose Up)",
            Layout::Prisma => "Prisma (<V>_<name>/migration.sql)",
            Layout::Diesel => "diesel (<V>_<name>/up.sql)",
        }
    }
}

/// Versioned migrations run once, in version order; repeatable ones
/// (Flyway `R__`) run after them whenever their checksum changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Runs once.
    Versioned(Version),
    /// Runs again when it changes.
    Repeatable,
}

/// One migration, ready to analyse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Path relative to the folder, as listed.
    pub path: String,
    /// Versioned or repeatable.
    pub kind: Kind,
    /// The description part of the name.
    pub name: String,
    /// The folder's layout.
    pub layout: Layout,
    /// The file with everything but the up section replaced by spaces: the
    /// same length and lines as the file, so positions in it are the file's.
    pub sql: String,
    /// The up section, a byte range of the file (and of `sql`).
    pub up: Range<usize>,
    /// goose `StatementBegin`/`End` blocks: byte ranges that run as one statement.
    pub blocks: Vec<Range<usize>>,
    /// Statement by statement, outside a transaction: dbmate
    /// `transaction:false`, goose `NO TRANSACTION`, sqlx `-- no-transaction`
    /// (first line), diesel `run_in_transaction = false`, Flyway
    /// `executeInTransaction=false`, popx `.autocommit.`, or
    /// `-- locksmith: no-transaction`.
    pub no_transaction: bool,
    /// SHA-256 of the up section (for a file without sections, of the file).
    pub checksum: String,
}

impl Migration {
    /// The up section's text.
    pub fn up_sql(&self) -> &str {
        &self.sql[self.up.clone()]
    }

    /// The key recorded in the history: the canonical version (`1.1`), or
    /// `R__<name>` for a repeatable migration.
    pub fn id(&self) -> String {
        match &self.kind {
            Kind::Versioned(v) => v.to_string(),
            Kind::Repeatable => format!("R__{}", self.name),
        }
    }

    /// The version, for a versioned migration.
    pub fn version(&self) -> Option<&Version> {
        match &self.kind {
            Kind::Versioned(v) => Some(v),
            Kind::Repeatable => None,
        }
    }
}

/// Why a folder cannot be read as migrations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// A problem in one file, at a line (1 for problems with its name).
    #[error("{path}:{line}: {problem}")]
    File {
        /// Path relative to the folder.
        path: String,
        /// 1-based line.
        line: u32,
        /// What is wrong.
        #[source]
        problem: Problem,
    },
    /// No file in the folder is a migration.
    #[error("no migrations found (looked for: {LOOKED_FOR})")]
    NoMigrations,
}

/// What is wrong with a file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A `.sql` file whose name fits no layout.
    #[error("looks like a migration but is not read as one: {0}")]
    Unrecognised(String),
    /// The folder follows two layouts.
    #[error("the folder mixes layouts: this file is {this}, {other} is {that}; keep one layout per folder")]
    MixedLayouts {
        /// This file's layout.
        this: &'static str,
        /// Another file of the folder.
        other: String,
        /// Its layout.
        that: &'static str,
    },
    /// Two migrations with one version (or two repeatables with one name).
    #[error("{other} has the same version {version}")]
    Duplicate {
        /// The version or repeatable id.
        version: String,
        /// The other file.
        other: String,
    },
    /// dbmate/goose markers without an up marker (or a plain file in a dbmate/goose folder).
    #[error("{}", no_up_message(.0))]
    NoUpMarker(Markers),
    /// A second up or down marker.
    #[error("a second `{}` marker; a file has one up and at most one down section", marker_text(.0, .1))]
    SecondMarker(Markers, &'static str),
    /// SQL before the first marker, which the tool itself would not run.
    #[error("SQL before the first `{}` marker belongs to no section; move it into the up section", marker_text(.0, "up"))]
    SqlOutsideSections(Markers),
    /// dbmate and goose markers in one file.
    #[error("dbmate and goose markers in one file; use one tool's markers")]
    BothMarkers,
    /// `-- +goose StatementBegin` without its `StatementEnd`.
    #[error("`-- +goose StatementBegin` without `-- +goose StatementEnd` before the end of the up section")]
    UnclosedBlock,
    /// `-- +goose StatementEnd` without a `StatementBegin`.
    #[error("`-- +goose StatementEnd` without `-- +goose StatementBegin`")]
    EndWithoutBegin,
    /// An unknown `-- +goose` annotation.
    #[error("unknown goose annotation `-- +goose {0}`; expected Up, Down, StatementBegin, StatementEnd or NO TRANSACTION")]
    UnknownAnnotation(String),
}

fn marker_text(markers: &Markers, which: &str) -> &'static str {
    match (*markers, which) {
        (Markers::Goose, "up") => "-- +goose Up",
        (Markers::Goose, _) => "-- +goose Down",
        (_, "up") => "-- migrate:up",
        _ => "-- migrate:down",
    }
}

fn no_up_message(markers: &Markers) -> String {
    let tool = if *markers == Markers::Goose {
        "goose"
    } else {
        "dbmate"
    };
    format!(
        "no `{}` marker: a {tool} migration's up section starts there (and nothing else is run)",
        marker_text(markers, "up")
    )
}

/// Reads the migrations of one folder, in the order they run: versioned by
/// version, then repeatable by name. Down and undo files are skipped.
pub fn read_folder(files: &[SourceFile]) -> Result<Vec<Migration>, SourceError> {
    let mut found = Vec::new();
    for file in files {
        let at = |line: u32, problem: Problem| SourceError::File {
            path: file.path.clone(),
            line,
            problem,
        };
        let mut autocommit = false;
        let (kind, name, layout) = match name::classify(&file.path)
            .map_err(|e| at(1, Problem::Unrecognised(e)))?
        {
            NameClass::Skipped => continue,
            NameClass::Numbered {
                version,
                name,
                autocommit: a,
            } => {
                autocommit = a;
                (Kind::Versioned(version), name, Layout::Numbered)
            }
            NameClass::Diesel { version, name } => (Kind::Versioned(version), name, Layout::Diesel),
            NameClass::FlywayVersioned { version, name } => {
                (Kind::Versioned(version), name, Layout::Flyway)
            }
            NameClass::FlywayRepeatable { name } => (Kind::Repeatable, name, Layout::Flyway),
            NameClass::Prisma { version, name } => (Kind::Versioned(version), name, Layout::Prisma),
        };
        let sections = sections::read(&file.content).map_err(|(line, p)| at(line, p))?;
        let layout = match sections.markers {
            Markers::None => layout,
            Markers::Dbmate => Layout::Dbmate,
            Markers::Goose => Layout::Goose,
        };
        let mut m = migration(file, kind, name, layout, sections);
        m.no_transaction |= autocommit || tool::marks_no_transaction(layout, file, files);
        found.push(m);
    }
    check_one_layout(&found)?;
    drop_generic_for_postgres(&mut found);
    found.sort_by(|a, b| match (&a.kind, &b.kind) {
        (Kind::Versioned(x), Kind::Versioned(y)) => x.cmp(y),
        (Kind::Versioned(_), Kind::Repeatable) => std::cmp::Ordering::Less,
        (Kind::Repeatable, Kind::Versioned(_)) => std::cmp::Ordering::Greater,
        (Kind::Repeatable, Kind::Repeatable) => a.name.cmp(&b.name),
    });
    for pair in found.windows(2) {
        if pair[0].id() == pair[1].id() {
            return Err(SourceError::File {
                path: pair[1].path.clone(),
                line: 1,
                problem: Problem::Duplicate {
                    version: pair[0].id(),
                    other: pair[0].path.clone(),
                },
            });
        }
    }
    if found.is_empty() {
        return Err(SourceError::NoMigrations);
    }
    Ok(found)
}

/// Reads one file on its own (`lint FILE`): its up section, by its markers.
/// The name is not checked. `Err` holds the 1-based line and the problem.
pub fn read_file(content: &str) -> Result<Sections, (u32, Problem)> {
    sections::read(content)
}

fn migration(
    file: &SourceFile,
    kind: Kind,
    name: String,
    layout: Layout,
    s: Sections,
) -> Migration {
    let sql = s.blanked(&file.content);
    let up_text = &file.content[s.up.clone()];
    Migration {
        path: file.path.clone(),
        kind,
        name,
        layout,
        no_transaction: s.no_transaction || wants_no_transaction(up_text),
        checksum: checksum(up_text),
        sql,
        up: s.up,
        blocks: s.blocks,
    }
}

/// popx: a version with a `.postgres.` file runs that one on PostgreSQL, and
/// its file without a dialect (written for the others) not at all.
fn drop_generic_for_postgres(found: &mut Vec<Migration>) {
    let postgres = |m: &Migration| m.path.contains(".postgres.") || m.path.contains(".postgresql.");
    let specific: Vec<Kind> = found
        .iter()
        .filter(|m| postgres(m))
        .map(|m| m.kind.clone())
        .collect();
    found.retain(|m| postgres(m) || !specific.contains(&m.kind));
}

/// One layout per folder. A plain file in a dbmate or goose folder is a file
/// missing its up marker; any other mix names two files.
fn check_one_layout(found: &[Migration]) -> Result<(), SourceError> {
    let mut first: BTreeMap<Layout, &Migration> = BTreeMap::new();
    for m in found {
        first.entry(m.layout).or_insert(m);
    }
    let layouts: Vec<Layout> = first.keys().copied().collect();
    let (this, that) = match layouts.as_slice() {
        [] | [_] => return Ok(()),
        [Layout::Numbered, tool @ (Layout::Dbmate | Layout::Goose)] => {
            let markers = if *tool == Layout::Goose {
                Markers::Goose
            } else {
                Markers::Dbmate
            };
            return Err(SourceError::File {
                path: first[&Layout::Numbered].path.clone(),
                line: 1,
                problem: Problem::NoUpMarker(markers),
            });
        }
        [a, b, ..] => (first[b], first[a]),
    };
    Err(SourceError::File {
        path: this.path.clone(),
        line: 1,
        problem: Problem::MixedLayouts {
            this: this.layout.label(),
            other: that.path.clone(),
            that: that.layout.label(),
        },
    })
}

/// The checksum recorded in the history table: SHA-256, hex.
pub fn checksum(content: &str) -> String {
    Sha256::digest(content.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether the text asks to run statement by statement, outside a
/// transaction (`-- locksmith: no-transaction` on a line of its own).
pub fn wants_no_transaction(content: &str) -> bool {
    content.lines().any(|l| {
        l.trim().strip_prefix("--").is_some_and(|rest| {
            rest.trim()
                .replace(' ', "")
                .eq_ignore_ascii_case("locksmith:no-transaction")
        })
    })
}

#[cfg(test)]
mod tests;
