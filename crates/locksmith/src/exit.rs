//! Exit codes, decided in one place: 0 done; 1 anything else; 2 bad usage or
//! input; 3 gave up because the migration stayed blocked. Commands return a
//! [`Outcome`] or an error; this module prints the error and picks the code.

use std::process::ExitCode;

/// How a command ended when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // Findings/Blocked/Code: lint, apply and run
pub enum Outcome {
    /// Everything done (exit 0).
    Done,
    /// The command worked and found problems the user must act on (exit 1),
    /// e.g. lint errors or doctor warnings.
    Findings,
    /// Gave up because still blocked (exit 3).
    Blocked,
    /// A code decided elsewhere, e.g. the wrapped command's own exit code
    /// for `run`, or 130/143 after a signal.
    Code(u8),
}

/// An error at the edge: what to print, and whether it was the user's input.
#[derive(Debug)]
pub struct Failure {
    /// Exit code: 2 for bad usage or input, 1 otherwise.
    pub code: u8,
    /// The diagnostic to print.
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
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::other(miette::Report::msg(ErrorChain(&e).to_string()))
    }
}

/// Renders an error with its causes on one line: "connecting to …: password authentication failed".
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

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
            // A closed pipe (`locksmith blockers | head`) is not an error.
            if is_broken_pipe(&failure.report) {
                return ExitCode::SUCCESS;
            }
            eprintln!("{:?}", failure.report);
            ExitCode::from(failure.code)
        }
    }
}

fn is_broken_pipe(report: &miette::Report) -> bool {
    report
        .chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
