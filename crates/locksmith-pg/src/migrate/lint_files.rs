//! The files of `lint` and `lint --fix` on disk: a folder read by its
//! layout (each file with the options its tool's transaction mode gives),
//! the migration `--fix` rewrites, and the files it writes. Which statements
//! and files change is the core's (`locksmith_core::lint::fix`); this module
//! only reads and writes.

use std::path::{Path, PathBuf};

use locksmith_core::lint::fix::{self, Change, Where};
use locksmith_core::lint::Options;
use locksmith_core::source;

use super::folder::{read_folder, FolderError};

/// A file `lint` reads from a folder.
#[derive(Debug, Clone)]
pub struct LintFile {
    /// The file, joined to the folder.
    pub path: PathBuf,
    /// Its text, everything but the up section blanked (positions kept).
    pub text: String,
    /// `base` for this file: its tool and transaction mode when the folder
    /// follows a tool's layout ([`fix::file_options`]).
    pub options: Options,
}

/// The files `lint DIR` reads: the folder's migrations when it follows one
/// tool's layout (down, undo and other dialects' files never read), else
/// every `*.sql` file under it, recursively, in path order, without those.
pub fn lint_folder(dir: &Path, base: &Options) -> Result<Vec<LintFile>, FolderError> {
    if let Ok(migrations) = read_folder(dir) {
        return Ok(migrations
            .into_iter()
            .map(|m| {
                let place = Where {
                    layout: Some(m.layout),
                    path: Some(m.path.clone()),
                    alembic: false,
                };
                LintFile {
                    path: dir.join(&m.path),
                    options: fix::file_options(base, place, m.no_transaction, &m.sql),
                    text: m.sql,
                }
            })
            .collect());
    }
    let mut paths = Vec::new();
    sql_tree(dir, &mut paths)?;
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = read(&path)?;
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
                options: base.clone(),
            })
        })
        .collect()
}

fn read(path: &Path) -> Result<String, FolderError> {
    std::fs::read_to_string(path).map_err(|source| FolderError::Io {
        path: path.to_path_buf(),
        what: "cannot read the file",
        source,
    })
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

/// What `lint --fix` changes, under `dir`.
#[derive(Debug, Clone)]
pub struct Fix {
    /// The migrations folder (the changes' paths are relative to it).
    pub dir: PathBuf,
    /// The files to rewrite and write, in order; empty when nothing needs a fix.
    pub changes: Vec<Change>,
}

/// `lint --fix DIR|FILE`: the newest migration of DIR, or FILE (one of its
/// folder's migrations, or a plain SQL file, fixed in place as a `psql -f`
/// script), rewritten by [`fix::rewrite`].
pub fn fix_changes(path: &Path, options: &Options) -> Result<Fix, FolderError> {
    let (dir, file) = if path.is_dir() {
        (path.to_path_buf(), None)
    } else {
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
        (dir.unwrap_or(Path::new(".")).to_path_buf(), Some(path))
    };
    let syntax = |path: &Path| {
        let path = path.to_path_buf();
        move |error| FolderError::Syntax { path, error }
    };
    let migrations = match (read_folder(&dir), file) {
        (Ok(ms), _) => ms,
        (Err(e), None) => return Err(e),
        (Err(_), Some(file)) => {
            let text = read(file)?;
            let after = fix::rewrite_plain(&text, options).map_err(syntax(file))?;
            let changes = after
                .map(|after| Change {
                    path: file.display().to_string(),
                    before: Some(text),
                    after,
                })
                .into_iter()
                .collect();
            return Ok(Fix {
                dir: PathBuf::new(),
                changes,
            });
        }
    };
    let chosen = match file {
        Some(file) => migrations.iter().position(|m| dir.join(&m.path) == file),
        None => migrations.iter().rposition(|m| m.version().is_some()),
    };
    let Some(i) = chosen else {
        return Err(FolderError::NotAMigration {
            path: path.to_path_buf(),
        });
    };
    let (earlier, m) = (&migrations[..i], &migrations[i]);
    let shown = dir.join(&m.path);
    let content = read(&shown)?;
    let changes = fix::rewrite(m, &content, earlier, options).map_err(syntax(&shown))?;
    Ok(Fix { dir, changes })
}

/// Writes `lint --fix`'s files under `dir` (creating Prisma's and diesel's
/// migration folders). A new file never overwrites one that exists.
pub fn write_changes(dir: &Path, changes: &[Change]) -> Result<(), FolderError> {
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
