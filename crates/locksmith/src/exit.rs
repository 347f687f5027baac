//! Exit codes, decided in one place: 0 done; 1 anything else; 2 bad usage or
//! input; 3 gave up because the migration stayed blocked. Commands return an
//! [`Outcome`] or a [`Failure`]; this module prints the failure and picks the
//! code.
//!
//! A failure keeps its error and the error's causes: [`exit_code`] reads the
//! error's kind (never its text), and a report cut short because stdout was
//! closed (`locksmith lint big.sql | head -1`) is recognised through the
//! cause chain and ends quietly with 0, as ripgrep does.

use std::error::Error;
use std::process::ExitCode;

use crate::output::StdoutWriteError;

/// How a command ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything done (exit 0).
    Done,
    /// The command worked and found problems the user must act on (exit 1),
    /// e.g. lint errors or doctor warnings.
    Findings,
    /// Gave up because still blocked, or found an ongoing block (exit 3).
    Blocked,
    /// A code decided elsewhere, e.g. the wrapped command's own exit code
    /// for `run`, or 130/143 after a signal.
    Code(u8),
}

/// An error at the edge: what to print, and the exit code it earns.
#[derive(Debug)]
pub struct Failure {
    /// Exit code: 2 for bad usage or input, 1 otherwise (or a shell's 126/127 for `run`).
    pub code: u8,
    /// The diagnostic to print. Errors converted with `?` keep their causes
    /// inside it (see [`Chained`]).
    pub report: miette::Report,
}

impl Failure {
    /// Bad usage or input (exit 2).
    pub fn input(report: impl Into<miette::Report>) -> Self {
        Failure {
            code: 2,
            report: report.into(),
        }
    }
    /// Anything else (exit 1).
    pub fn other(report: impl Into<miette::Report>) -> Self {
        Failure {
            code: 1,
            report: report.into(),
        }
    }
    /// An error, with its causes kept, as bad input (exit 2).
    pub fn bad_input(error: impl Error + Send + Sync + 'static) -> Self {
        Failure {
            code: 2,
            report: miette::Report::new(Chained(Box::new(error))),
        }
    }
}

impl<E: Error + Send + Sync + 'static> From<E> for Failure {
    fn from(e: E) -> Self {
        let code = exit_code(&e);
        Failure {
            code,
            report: miette::Report::new(Chained(Box::new(e))),
        }
    }
}

/// The exit code an error earns, from its kind (never its text): bad input
/// is 2, still blocked at the deadline 3, a signal 128 + its number,
/// everything else 1.
fn exit_code(e: &(dyn Error + 'static)) -> u8 {
    use locksmith_pg::{migrate, ErrorKind};
    let kind = if let Some(e) = e.downcast_ref::<locksmith_pg::Error>() {
        e.kind()
    } else if let Some(e) = e.downcast_ref::<migrate::Error>() {
        e.kind()
    } else if let Some(e) = e.downcast_ref::<locksmith_pg::wrap::Error>() {
        e.kind()
    } else if let Some(e) = e.downcast_ref::<locksmith_pg::guard::ConnectError>() {
        e.kind()
    } else if e.is::<locksmith_pg::connection::StatementPooling>() {
        // A route the command cannot run over, refused before anything ran.
        ErrorKind::BadInput
    } else if let Some(e) = e.downcast_ref::<locksmith_sandbox::Error>() {
        // The user's files, setup SQL or route are bad input.
        e.kind()
    } else if e.is::<migrate::FolderError>() || e.is::<locksmith_core::plan::PlanError>() {
        ErrorKind::BadInput
    } else {
        ErrorKind::Failed
    };
    match kind {
        ErrorKind::BadInput => 2,
        ErrorKind::Blocked => 3,
        ErrorKind::Interrupted(signal) => crate::cmd::signal_exit_code(signal),
        ErrorKind::Unreachable | ErrorKind::Permission | ErrorKind::Failed => 1,
    }
}

/// An error kept whole, printed with its causes on one line:
/// "connecting to …: password authentication failed". Its causes stay
/// reachable through [`Chained::causes`] (miette would print them a second
/// time if they were its `source`).
#[derive(Debug)]
pub struct Chained(pub Box<dyn Error + Send + Sync>);

impl Chained {
    /// The error, then each of its causes.
    pub fn causes(&self) -> impl Iterator<Item = &(dyn Error + 'static)> {
        let first: &(dyn Error + 'static) = &*self.0;
        std::iter::successors(Some(first), |&e| e.source())
    }
}

impl std::fmt::Display for Chained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        ErrorChain(&*self.0).fmt(f)
    }
}

impl Error for Chained {}

impl miette::Diagnostic for Chained {}

/// Renders an error with its causes on one line: "connecting to …: password authentication failed".
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !self.0.to_string().contains(&text) {
                write!(f, ": {text}")?;
            }
            source = s.source();
        }
        Ok(())
    }
}

/// The result every command returns.
pub type CmdResult = Result<Outcome, Failure>;

/// Prints a failure and maps the outcome to the process exit code.
pub fn finish(result: CmdResult) -> ExitCode {
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::from(1),
        Ok(Outcome::Blocked) => ExitCode::from(3),
        Ok(Outcome::Code(c)) => ExitCode::from(c),
        Err(failure) => {
            // Whoever read our report stopped reading (`| head`): not an error.
            if stdout_was_closed(&failure.report) {
                return ExitCode::SUCCESS;
            }
            eprintln!("{:?}", failure.report);
            ExitCode::from(failure.code)
        }
    }
}

/// Whether the failure is a write to stdout that found the reader gone. Only
/// writes through [`crate::output`] count: a server connection that breaks
/// with EPIPE is a real failure.
fn stdout_was_closed(report: &miette::Report) -> bool {
    let mut chain: Vec<&(dyn Error + 'static)> = report.chain().collect();
    if let Some(chained) = report.downcast_ref::<Chained>() {
        chain.extend(chained.causes());
    }
    chain.into_iter().any(StdoutWriteError::is_closed_pipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_stdout_is_recognised_through_the_cause_chain() {
        let closed = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let wrapped = crate::output::Stdout::wrap(closed);
        let failure = Failure::from(wrapped);
        assert!(stdout_was_closed(&failure.report));
        assert_eq!(failure.code, 1);
    }

    #[test]
    fn a_broken_server_connection_is_not_a_closed_stdout() {
        let server = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert!(!stdout_was_closed(&Failure::from(server).report));
    }

    #[test]
    fn a_statement_pooler_is_bad_input_by_kind() {
        let refused = locksmith_pg::connection::StatementPooling {
            pooler: locksmith_pg::Pooler {
                key_pid: 1,
                backend_pid: 2,
                pooling: locksmith_pg::connection::Pooling::Statement,
            },
            needs: "it runs transactions".into(),
            direct_url_helps: true,
        };
        assert_eq!(Failure::from(refused.clone()).code, 2);
        let at_connect = locksmith_pg::guard::ConnectError::from(refused);
        assert!(
            at_connect.to_string().contains("--direct-url"),
            "{at_connect}"
        );
        assert_eq!(Failure::from(at_connect).code, 2);
    }

    #[test]
    fn bad_urls_are_bad_input_by_kind() {
        let e = locksmith_pg::Error::BadUrl {
            url: "x".into(),
            reason: "y".into(),
        };
        assert_eq!(Failure::from(e).code, 2);
    }
}
