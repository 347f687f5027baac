//! Migration files at the edge: a folder read by `locksmith_pg::migrate`, a
//! single file's up section; their errors become `FILE:LINE: …` failures (exit 2).

use std::path::Path;

use locksmith_core::source::{self, Migration};
use miette::miette;

use crate::exit::Failure;

/// The migrations of `dir`, in order, up sections only.
pub fn read_migrations(dir: &Path) -> Result<Vec<Migration>, Failure> {
    Ok(locksmith_pg::migrate::read_folder(dir)?)
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
