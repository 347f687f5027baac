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

/// A file `lint` reads from a folder.
#[derive(Debug, Clone)]
pub struct LintFile {
    /// The file, joined to the folder.
    pub path: PathBuf,
    /// Its text, everything but the up section blanked (positions kept).
    pub text: String,
    /// The migration it is, when the folder follows a tool's layout: its
    /// tool and markers decide how its statements run.
    pub migration: Option<Migration>,
}

/// The files `lint DIR` reads: the folder's migrations when it follows one
/// tool's layout (down, undo and other dialects' files never read), else
/// every `*.sql` file under it, recursively, in path order, without those.
pub fn lint_folder(dir: &Path) -> Result<Vec<LintFile>, FolderError> {
    if let Ok(migrations) = read_folder(dir) {
        return Ok(migrations
            .into_iter()
            .map(|m| LintFile {
                path: dir.join(&m.path),
                text: m.sql.clone(),
                migration: Some(m),
            })
            .collect());
    }
    let mut paths = Vec::new();
    sql_tree(dir, &mut paths)?;
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|source| FolderError::Io {
                path: path.clone(),
                what: "cannot read the file",
                source,
            })?;
            let text = match source::read_file(&text) {
                Ok(s) if s.markers != source::Markers::None => s.blanked(&text),
                Ok(_) => text,
                Err((line, problem)) => {
                    return Err(FolderError::File {
                        path,
                        line,
                        problem,
                    })
                }
            };
            Ok(LintFile {
                path,
                text,
                migration: None,
            })
        })
        .collect()
}

fn sql_tree(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), FolderError> {
    let read_err = |source| FolderError::Io {
        path: dir.to_path_buf(),
        what: "cannot read the folder",
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        let never = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(source::never_read);
        if path.is_dir() {
            sql_tree(&path, out)?;
        } else if !never
            && path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("sql"))
        {
            out.push(path);
        }
    }
    Ok(())
}

/// Writes `lint --fix`'s files under `dir` (creating Prisma's and diesel's
/// migration folders). A file that exists and is not one it changes is
/// never overwritten.
pub fn write_changes(dir: &Path, changes: &[source::Change]) -> Result<(), FolderError> {
    for c in changes {
        let path = dir.join(&c.path);
        let io = |what, source| FolderError::Io {
            path: path.clone(),
            what,
            source,
        };
        if c.before.is_none() && path.exists() {
            return Err(io(
                "exists already; lint --fix writes new migrations only under free names",
                std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            ));
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("cannot create the folder", e))?;
        }
        std::fs::write(&path, &c.after).map_err(|e| io("cannot write the file", e))?;
    }
    Ok(())
}
