//! Standard output for reports. Every write returns an error instead of
//! panicking as `print!` does, and a write that finds the reader gone
//! (`locksmith lint big.sql | head -1`) is marked as a [`StdoutWriteError`], so
//! [`crate::exit`] can end quietly with 0 without mistaking a broken server
//! connection for it.

use std::error::Error;
use std::io::{self, Write};

/// Locked stdout whose write errors say they came from stdout.
pub struct Stdout(io::StdoutLock<'static>);

/// Locked standard output; write to it with `write!` and `?`.
pub fn stdout() -> Stdout {
    Stdout(io::stdout().lock())
}

impl Stdout {
    /// Marks an error from writing to stdout, keeping its kind.
    pub fn wrap(e: io::Error) -> io::Error {
        io::Error::new(e.kind(), StdoutWriteError(e))
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(Stdout::wrap)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf).map_err(Stdout::wrap)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(Stdout::wrap)
    }
}

/// A write to stdout failed (most often: the reader went away).
#[derive(Debug)]
pub struct StdoutWriteError(io::Error);

impl StdoutWriteError {
    /// Whether `e` is a write to stdout that found the pipe closed.
    pub fn is_closed_pipe(e: &(dyn Error + 'static)) -> bool {
        e.downcast_ref::<io::Error>().is_some_and(|io| {
            io.kind() == io::ErrorKind::BrokenPipe
                && io
                    .get_ref()
                    .is_some_and(|inner| inner.is::<StdoutWriteError>())
        })
    }
}

impl std::fmt::Display for StdoutWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "writing to stdout: {}", self.0)
    }
}

impl Error for StdoutWriteError {}
