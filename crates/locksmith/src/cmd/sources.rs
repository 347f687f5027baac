//! Migration files at the edge: a single file's up section; its errors
//! become `FILE:LINE: …` failures (exit 2).

use locksmith_core::source;
use miette::miette;

use crate::exit::Failure;

/// One SQL file given on its own (`lint FILE`, `trace FILE`): its text with
/// everything but the up section blanked out, positions unchanged.
pub fn up_text(path: &str, text: String) -> Result<String, Failure> {
    match source::read_file(&text) {
        Ok(sections) if sections.markers == source::Markers::None => Ok(text),
        Ok(sections) => Ok(sections.blanked(&text)),
        Err((line, problem)) => Err(Failure::input(miette!("{path}:{line}: {problem}"))),
    }
}
