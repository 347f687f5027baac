//! Reads a migrations folder from disk for `locksmith_core::source`, and turns
//! its errors into `FILE:LINE: …` failures (exit 2). The only I/O of migration
//! sources; which files are migrations and what runs of them is the core's.

use std::path::Path;

use locksmith_core::source::{self, Migration, SourceError, SourceFile, LOOKED_FOR};
use miette::miette;

use crate::exit::Failure;

/// The migrations of `dir`, in order, up sections only.
pub fn read_migrations(dir: &Path) -> Result<Vec<Migration>, Failure> {
    let mut files = Vec::new();
    list(dir, "", 0, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    source::read_folder(&files).map_err(|e| match e {
        SourceError::File {
            path,
            line,
            problem,
        } => Failure::input(miette!("{}:{line}: {problem}", dir.join(path).display())),
        SourceError::NoMigrations => Failure::input(miette!(
            "no migrations found in {} (looked for: {LOOKED_FOR})",
            dir.display()
        )),
    })
}

/// One SQL file given on its own (`lint FILE`, `trace FILE`): its text with
/// everything but the up section blanked out, positions unchanged.
pub fn up_text(path: &str, text: String) -> Result<String, Failure> {
    match source::read_file(&text) {
        Ok(sections) if sections.markers == source::Markers::None => Ok(text),
        Ok(sections) => Ok(sections.blanked(&text)),
        Err((line, problem)) => Err(Failure::input(miette!("{path}:{line}: {problem}"))),
    }
}

/// The `.sql` files (any case) of `dir` and of its sub-folders (Prisma's
/// `<V>_<name>/migration.sql`), paths relative and `/`-separated.
fn list(dir: &Path, prefix: &str, depth: u32, out: &mut Vec<SourceFile>) -> Result<(), Failure> {
    let read_err = |e: std::io::Error| {
        Failure::input(miette!(
            "{}: cannot read the migrations folder: {e}",
            dir.display()
        ))
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
        } else if name.to_ascii_lowercase().ends_with(".sql") {
            let content = std::fs::read_to_string(&path)
                .map_err(|e| Failure::input(miette!("{}: {e}", path.display())))?;
            out.push(SourceFile {
                path: relative,
                content,
            });
        }
    }
    Ok(())
}
