//! Rendering for people and machines: one renderer per format and report.
//! Renderers only format; they never query a server or decide exit codes.

pub mod blockers;
pub mod demo;
pub mod doctor;
pub mod fleet;
pub mod guard;
pub mod lint;
pub mod plan;
pub mod progress;
pub mod rehearse;
pub mod run;
pub mod style;

use std::io::Write;

use serde::Serialize;

/// Writes the lint report (of `lint` or `trace`) in the chosen format: the one dispatch.
pub fn lint_report(
    out: &mut dyn Write,
    format: crate::cli::LintFormat,
    files: &[lint::LintedFile],
) -> std::io::Result<()> {
    lint::write_all(&mut *lint_sink(out, format), files)
}

/// The report writer of `format`, buffered, for `lint` to feed as it goes.
pub fn lint_sink<'a>(
    out: &'a mut dyn Write,
    format: crate::cli::LintFormat,
) -> Box<dyn lint::Sink + 'a> {
    use crate::cli::LintFormat;
    let out = std::io::BufWriter::new(out);
    match format {
        LintFormat::Human => Box::new(lint::Human::new(out, style::Style::detect())),
        LintFormat::Json => Box::new(lint::Json::new(out)),
        LintFormat::Sarif => Box::new(lint::Sarif::new(out)),
        LintFormat::Github => Box::new(lint::Github::new(out)),
        LintFormat::Gitlab => Box::new(lint::Gitlab::new(out)),
    }
}

/// Writes `value` as pretty JSON followed by a newline.
pub fn json<T: Serialize>(out: &mut dyn Write, value: &T) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// Milliseconds as a short age: `850ms`, `41s`, `3m05s`.
pub fn age(ms: Option<i64>) -> String {
    match ms {
        Some(ms) => {
            locksmith_core::duration::human(std::time::Duration::from_millis(ms.max(0) as u64))
        }
        None => "-".into(),
    }
}

pub use locksmith_core::analysis::source::one_line;

pub use locksmith_pg::migrate::PoolerJson;

/// The one wording of "a pooler is in between", for every command that
/// connects (`locksmith COMMAND: …`, on stderr in human format).
pub fn pooler_notice(command: &str, pooler: &locksmith_pg::Pooler, direct_url: bool) -> String {
    let route = if direct_url {
        "locksmith's own connections take --direct-url straight to the server"
    } else {
        "nothing session-level is set, every statement is unnamed, and what needs one backend \
         for longer than a transaction is refused unless --direct-url (LOCKSMITH_DIRECT_URL) \
         gives a route straight to the server"
    };
    format!(
        "locksmith {command}: connected through {pooler}; client addresses the pooler's \
         connections show are the pooler's, labelled `via pooler`; {route}"
    )
}
