//! Reading a migrations folder from disk for `locksmith_core::source`: the
//! only file I/O of a run. Which files are migrations, and what of them runs,
//! is the core's to say.

use std::path::{Path, PathBuf};

use locksmith_core::source::{self, Migration, Problem, SourceError, SourceFile, LOOKED_FOR};

/// Why a folder could not be read as migrations.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    /// The folder or a file in it could not be read.
    #[error("{}: {what}: {source}", path.display())]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// What we were reading.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not a migration the layout allows, at a line.
    #[error("{}:{line}: {problem}", path.display())]
    File {
        /// The file, joined to the folder.
        path: PathBuf,
        /// 1-based line (1 for problems with its name).
        line: u32,
        /// What is wrong.
        problem: Problem,
    },
    /// A migration `lint --fix` rewrites does not parse.
    #[error("{}:{}:{}: {}", path.display(), error.line, error.column, error.message)]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Where and what.
        error: locksmith_core::analysis::SyntaxError,
    },
    /// `lint --fix FILE` on a file its folder's layout does not read.
    #[error("{}: not a PostgreSQL up migration of its folder (a down file, another database's file, or one its .postgres. file replaces); give the folder, or one of its migrations", path.display())]
    NotAMigration {
        /// The file.
        path: PathBuf,
    },
    /// Nothing in the folder looks like a migration.
    #[error("no migrations found in {} (looked for: {LOOKED_FOR})", dir.display())]
    Empty {
        /// The folder.
        dir: PathBuf,
    },
}

/// The migrations of `dir`, in order, up sections only.
pub fn read_folder(dir: impl AsRef<Path>) -> Result<Vec<Migration>, FolderError> {
    let dir = dir.as_ref();
    let mut files = Vec::new();
    list(dir, "", 0, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    source::read_folder(&files).map_err(|e| match e {
        SourceError::File {
            path,
            line,
            problem,
        } => FolderError::File {
            path: dir.join(path),
            line,
            problem,
        },
        SourceError::NoMigrations => FolderError::Empty {
            dir: dir.to_path_buf(),
        },
    })
}

/// The `.sql` files (any case) of `dir` and of its sub-folders (Prisma's
/// `<V>_<name>/migration.sql`, diesel's `<V>_<name>/up.sql`), with diesel's
/// `metadata.toml` and Flyway's `<file>.sql.conf`, paths relative and `/`-separated.
fn list(
    dir: &Path,
    prefix: &str,
    depth: u32,
    out: &mut Vec<SourceFile>,
) -> Result<(), FolderError> {
    let read_err = |source| FolderError::Io {
        path: dir.to_path_buf(),
        what: "cannot read the migrations folder",
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let path = entry.path();
        let relative = format!("{prefix}{name}");
        if path.is_dir() {
            if depth == 0 && !name.starts_with('.') {
                list(&path, &format!("{relative}/"), depth + 1, out)?;
            }
        } else if name.to_ascii_lowercase().ends_with(".sql")
            // The side files that hold a tool's no-transaction setting.
            || name == "metadata.toml"
            || name.ends_with(".sql.conf")
        {
            let content = std::fs::read_to_string(&path).map_err(|source| FolderError::Io {
                path: path.clone(),
                what: "cannot read the migration",
                source,
            })?;
            out.push(SourceFile {
                path: relative,
                content,
            });
        }
    }
    Ok(())
}
