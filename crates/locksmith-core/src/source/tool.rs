//! What each layout's tool does with a file (`docs/tools.md` has the
//! sources): whether it opens a transaction around the file, whether it sends
//! the file as one multi-statement query (one implicit transaction block in
//! PostgreSQL) or statement by statement, how a file says "no transaction",
//! and how a new migration file is named and written so the tool runs it.
//!
//! Pure: names and texts in, names and texts out. Must not read the disk.

use super::{Layout, SourceFile};

/// How the tool hands a file's up section to PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sends {
    /// One query with every statement: several statements share one
    /// implicit transaction block even without the tool's own.
    WholeFile,
    /// One query per statement (goose, Flyway, `psql -f`).
    EachStatement,
}

impl Layout {
    /// How the tool sends a file.
    pub fn sends(self) -> Sends {
        match self {
            Layout::Goose | Layout::Flyway => Sends::EachStatement,
            _ => Sends::WholeFile,
        }
    }

    /// The tool's name, for messages.
    pub fn tool(self) -> &'static str {
        match self {
            Layout::Numbered => "sqlx/golang-migrate",
            Layout::Flyway => "Flyway",
            Layout::Dbmate => "dbmate",
            Layout::Goose => "goose",
            Layout::Prisma => "Prisma",
            Layout::Diesel => "diesel",
        }
    }
}

/// Whether the tool opens a transaction around the file at `path` unless
/// its marker says not to. Prisma never does, nor golang-migrate, whose
/// `<V>_<name>.up.sql` files cannot be told from sqlx's reversible ones:
/// there a lone statement is taken to run outside a block (a sqlx user
/// whose lone `CONCURRENTLY` fails sees it fail at once; no outage).
pub fn wraps_file(layout: Layout, path: &str) -> bool {
    match layout {
        Layout::Prisma => false,
        Layout::Numbered => !path.ends_with(".up.sql") || path.contains(".postgres."),
        _ => true,
    }
}

/// Whether a file's statements run inside a transaction block under its
/// tool: the tool's own transaction, or the implicit block of a query with
/// several statements. `transactional` holds, per statement, whether it may
/// run in a block (Flyway runs a file of only non-transactional statements
/// outside one by itself).
pub fn runs_in_transaction(
    layout: Layout,
    path: &str,
    no_transaction: bool,
    transactional: &[bool],
) -> bool {
    if layout == Layout::Flyway && !transactional.is_empty() && transactional.iter().all(|t| !t) {
        return false;
    }
    if !no_transaction && wraps_file(layout, path) {
        return true;
    }
    layout.sends() == Sends::WholeFile && transactional.len() > 1
}

/// The no-transaction marker of a file that lives beside it or at its very
/// start: sqlx's `-- no-transaction` first line, diesel's `metadata.toml`
/// (`run_in_transaction = false`), Flyway's `<file>.conf`
/// (`executeInTransaction=false`). The in-file markers of dbmate and goose
/// are read with the sections.
pub fn marks_no_transaction(layout: Layout, file: &SourceFile, files: &[SourceFile]) -> bool {
    let sibling = |path: &str| files.iter().find(|f| f.path == path);
    match layout {
        Layout::Numbered => file.content.starts_with("-- no-transaction"),
        Layout::Diesel => {
            let folder = file.path.rsplit_once('/').map_or("", |(f, _)| f);
            sibling(&format!("{folder}/metadata.toml"))
                .is_some_and(|m| setting(&m.content, "run_in_transaction") == Some("false"))
        }
        Layout::Flyway => sibling(&format!("{}.conf", file.path))
            .is_some_and(|c| setting(&c.content, "executeInTransaction") == Some("false")),
        _ => false,
    }
}

/// `key = value` (or `key=value`) in a TOML or properties file, unquoted.
fn setting<'a>(content: &'a str, key: &str) -> Option<&'a str> {
    content.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"'))
    })
}

/// One migration of a fix: statements that run together, in a transaction
/// or (when not `transactional`) alone outside one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The statements, each without its `;`.
    pub statements: Vec<String>,
    /// Whether they run in the tool's transaction.
    pub transactional: bool,
}

/// A file to write: path relative to the migrations folder, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFile {
    /// Relative, `/`-separated.
    pub path: String,
    /// The whole text.
    pub content: String,
}

/// The files of one new migration of `layout` at `path` (as
/// [`migration_path`] names it) running `unit`: the SQL file with the
/// tool's sections and markers, and the tool's side files (diesel's
/// `metadata.toml` and `down.sql`, Flyway's `.conf`).
pub fn write_unit(layout: Layout, path: &str, unit: &Unit) -> Vec<NewFile> {
    let mut body = String::new();
    for s in &unit.statements {
        // goose cuts statements at lines ending in `;`: a body with its own
        // semicolons (a DO block) is one statement only between these.
        let block = layout == Layout::Goose && s.contains(';');
        if block {
            body.push_str("-- +goose StatementBegin\n");
        }
        body.push_str(s.trim_end());
        body.push_str(";\n");
        if block {
            body.push_str("-- +goose StatementEnd\n");
        }
    }
    let no_tx = !unit.transactional;
    let file = |path: &str, content: String| NewFile {
        path: path.to_string(),
        content,
    };
    match layout {
        Layout::Numbered if no_tx => vec![file(path, format!("-- no-transaction\n{body}"))],
        Layout::Numbered | Layout::Prisma => vec![file(path, body)],
        Layout::Flyway => {
            let mut out = vec![file(path, body)];
            if no_tx {
                out.push(file(
                    &format!("{path}.conf"),
                    "executeInTransaction=false\n".into(),
                ));
            }
            out
        }
        Layout::Dbmate => {
            let up = if no_tx {
                "-- migrate:up transaction:false"
            } else {
                "-- migrate:up"
            };
            vec![file(path, format!("{up}\n{body}\n-- migrate:down\n"))]
        }
        Layout::Goose => {
            let marker = if no_tx {
                "-- +goose NO TRANSACTION\n"
            } else {
                ""
            };
            vec![file(
                path,
                format!("{marker}-- +goose Up\n{body}\n-- +goose Down\n"),
            )]
        }
        Layout::Diesel => {
            let folder = path.rsplit_once('/').map_or("", |(f, _)| f);
            let mut out = vec![
                file(path, body),
                file(
                    &format!("{folder}/down.sql"),
                    "-- written by locksmith lint --fix: nothing to undo automatically\nSELECT 1;\n"
                        .into(),
                ),
            ];
            if no_tx {
                out.push(file(
                    &format!("{folder}/metadata.toml"),
                    "run_in_transaction = false\n".into(),
                ));
            }
            out
        }
    }
}

/// The path of the `n`-th new migration after the one at `path` (n ≥ 1):
/// the same naming with the version moved on by `n` (Flyway: a sub-version
/// `.n`), the name suffixed `_n+1`, the same endings (`.up.sql`,
/// `.postgres.up.sql`). `transactional` false marks a popx file `.autocommit.`.
pub fn migration_path(layout: Layout, path: &str, n: u32, transactional: bool) -> Option<String> {
    let (folder, file) = match path.rsplit_once('/') {
        Some((dir, file)) => (format!("{dir}/"), file),
        None => (String::new(), path),
    };
    match layout {
        Layout::Prisma | Layout::Diesel => {
            // `<dir>/<V>_<name>/migration.sql`: the version is the folder's.
            let (parent, leaf) = match folder.trim_end_matches('/').rsplit_once('/') {
                Some((p, l)) => (format!("{p}/"), l.to_string()),
                None => (String::new(), folder.trim_end_matches('/').to_string()),
            };
            let (version, name) = leaf.split_once('_')?;
            Some(format!(
                "{parent}{}_{name}_{}/{file}",
                bump(version, n)?,
                n + 1
            ))
        }
        Layout::Flyway => {
            let rest = file.strip_prefix('V')?;
            let (version, tail) = rest.split_once("__")?;
            let (name, ending) = tail.split_once('.')?;
            let sep = if version.contains('.') { '.' } else { '_' };
            Some(format!(
                "{folder}V{version}{sep}{n}__{name}_{}.{ending}",
                n + 1
            ))
        }
        Layout::Numbered | Layout::Dbmate | Layout::Goose => {
            let (version, tail) = file.split_once('_')?;
            let (name, ending) = tail.split_once('.')?;
            let mut ending = ending.to_string();
            let popx = ending.starts_with("postgres.");
            if popx && !transactional && !ending.contains("autocommit.") {
                ending = ending.replacen("postgres.", "postgres.autocommit.", 1);
            }
            if popx && transactional {
                ending = ending.replacen("autocommit.", "", 1);
            }
            Some(format!(
                "{folder}{}_{name}_{}.{ending}",
                bump(version, n)?,
                n + 1
            ))
        }
    }
}

/// `version` + `n`, keeping its width and any dashes (diesel's
/// `2024-01-01-120000`).
fn bump(version: &str, n: u32) -> Option<String> {
    let digits: String = version.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() || digits.len() > 38 {
        return None;
    }
    let value: u128 = digits.parse().ok()?;
    let next = format!("{:0width$}", value + u128::from(n), width = digits.len());
    if next.len() != digits.len() {
        return None;
    }
    let mut chars = next.chars();
    Some(
        version
            .chars()
            .map(|c| {
                if c.is_ascii_digit() {
                    chars.next().unwrap_or(c)
                } else {
                    c
                }
            })
            .collect(),
    )
}

impl From<NewFile> for SourceFile {
    fn from(f: NewFile) -> Self {
        SourceFile {
            path: f.path,
            content: f.content,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_each_layout() {
        let cases = [
            (
                Layout::Numbered,
                "20240101120000_add_idx.up.sql",
                true,
                "20240101120001_add_idx_2.up.sql",
            ),
            (
                Layout::Numbered,
                "0003_add_idx.sql",
                true,
                "0004_add_idx_2.sql",
            ),
            (
                Layout::Numbered,
                "20210101000000000000_x.postgres.up.sql",
                false,
                "20210101000000000001_x_2.postgres.autocommit.up.sql",
            ),
            (
                Layout::Goose,
                "migrations/00042_add_idx.sql",
                true,
                "migrations/00043_add_idx_2.sql",
            ),
            (
                Layout::Flyway,
                "V3__add_idx.sql",
                true,
                "V3_1__add_idx_2.sql",
            ),
            (
                Layout::Flyway,
                "V1.2__add_idx.sql",
                true,
                "V1.2.1__add_idx_2.sql",
            ),
            (
                Layout::Prisma,
                "20240101120000_add_idx/migration.sql",
                true,
                "20240101120001_add_idx_2/migration.sql",
            ),
            (
                Layout::Diesel,
                "2024-01-01-120000_add_idx/up.sql",
                true,
                "2024-01-01-120001_add_idx_2/up.sql",
            ),
        ];
        for (layout, path, tx, want) in cases {
            assert_eq!(
                migration_path(layout, path, 1, tx).as_deref(),
                Some(want),
                "{path}"
            );
        }
    }

    #[test]
    fn markers_are_the_tools_own() {
        let unit = Unit {
            statements: vec!["CREATE INDEX CONCURRENTLY i ON t (a)".into()],
            transactional: false,
        };
        let goose = &write_unit(Layout::Goose, "2_x.sql", &unit)[0].content;
        assert!(
            goose.starts_with("-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY"),
            "{goose}"
        );
        let sqlx = &write_unit(Layout::Numbered, "2_x.sql", &unit)[0].content;
        assert!(sqlx.starts_with("-- no-transaction\n"));
        let dbmate = &write_unit(Layout::Dbmate, "2_x.sql", &unit)[0].content;
        assert!(
            dbmate.starts_with("-- migrate:up transaction:false\n")
                && dbmate.ends_with("-- migrate:down\n")
        );
        let diesel = write_unit(Layout::Diesel, "2_x/up.sql", &unit);
        assert_eq!(diesel[2].path, "2_x/metadata.toml");
        let flyway = write_unit(Layout::Flyway, "V2__x.sql", &unit);
        assert_eq!(flyway[1].path, "V2__x.sql.conf");
        let files = [
            SourceFile {
                path: "2_x/up.sql".into(),
                content: String::new(),
            },
            diesel[2].clone().into(),
        ];
        assert!(marks_no_transaction(Layout::Diesel, &files[0], &files));
    }

    #[test]
    fn whole_file_tools_share_one_block() {
        let p = "1_a/migration.sql";
        assert!(runs_in_transaction(
            Layout::Prisma,
            p,
            false,
            &[true, false]
        ));
        assert!(!runs_in_transaction(Layout::Prisma, p, false, &[false]));
        assert!(runs_in_transaction(
            Layout::Numbered,
            "1_a.sql",
            false,
            &[false]
        ));
        assert!(!runs_in_transaction(
            Layout::Numbered,
            "1_a.up.sql",
            false,
            &[false]
        ));
        assert!(runs_in_transaction(
            Layout::Numbered,
            "1_a.up.sql",
            false,
            &[false, true]
        ));
        assert!(runs_in_transaction(
            Layout::Numbered,
            "1_a.postgres.up.sql",
            false,
            &[false]
        ));
        assert!(!runs_in_transaction(
            Layout::Numbered,
            "1_a.sql",
            true,
            &[false]
        ));
        assert!(runs_in_transaction(
            Layout::Numbered,
            "1_a.sql",
            true,
            &[true, false]
        ));
        assert!(!runs_in_transaction(
            Layout::Goose,
            "1_a.sql",
            true,
            &[true, false]
        ));
        assert!(!runs_in_transaction(
            Layout::Flyway,
            "V1__a.sql",
            false,
            &[false]
        ));
    }
}
