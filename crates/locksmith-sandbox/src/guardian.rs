//! The cleanup guardian of a throwaway server (a PostgreSQL cluster or a
//! PgBouncer): Rust does not run destructors on `kill -9`, `abort` or a static
//! at exit, so each server gets a tiny shell that blocks reading a pipe whose
//! only writer is this process. When the process dies for any reason the pipe
//! closes, and the guardian signals the server and deletes its folder.
//!
//! The guardian runs in its own process group, so Ctrl-C at the terminal does
//! not reach it before the owner has cleaned up in order.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::Error;

/// A running guardian for one folder. Dropping an armed guardian disarms it
/// (the owner stops its server and deletes the folder itself), so it can never
/// signal a recycled pid later; dropping one that was never armed (a start
/// that failed half-way) lets it delete the folder.
#[derive(Debug)]
pub(crate) struct Guardian {
    shell: Child,
    armed: AtomicBool,
}

impl Guardian {
    /// Starts a guardian that, once this process is gone, sends `signal`
    /// (e.g. `QUIT`, `TERM`) to the last pid given to [`Guardian::arm`] and
    /// deletes `root`.
    pub(crate) fn spawn(root: &Path, signal: &str) -> Result<Guardian, Error> {
        // Each line is the server's current pid (a restart sends a new one); EOF means we died.
        let script = r#"pid=; while read line; do pid=$line; done; [ -n "$pid" ] && kill -"$2" "$pid" 2>/dev/null; sleep 0.2; rm -rf "$1""#;
        let shell = Command::new("sh")
            .args(["-c", script, "locksmith-guardian"])
            .arg(root)
            .arg(signal)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| Error::io("starting the cleanup guardian", e))?;
        Ok(Guardian {
            shell,
            armed: AtomicBool::new(false),
        })
    }

    /// Tells the guardian which pid to signal (again after a restart).
    pub(crate) fn arm(&self, server_pid: u32) {
        if let Some(mut stdin) = self.shell.stdin.as_ref() {
            let _ = writeln!(stdin, "{server_pid}");
            self.armed.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for Guardian {
    fn drop(&mut self) {
        if self.armed.load(Ordering::Relaxed) {
            let _ = self.shell.kill();
            let _ = self.shell.wait();
        }
        // Unarmed: dropping the `Child` closes the pipe; the guardian deletes
        // the folder on its own and init reaps it.
    }
}

/// Stops `server` now and deletes `root`: what the owner's `Drop` does
/// while it is alive. The guardian (`guardian`) is disarmed first, so it
/// cannot signal a recycled pid later; `signal` asks for an immediate
/// shutdown (SIGQUIT for postgres, SIGTERM for PgBouncer), then, after 5 s,
/// the server is killed.
pub(crate) fn stop_now(
    guardian: Option<Guardian>,
    server: &mut std::process::Child,
    signal: i32,
    root: &Path,
) {
    drop(guardian);
    // SAFETY: kill(2) on our own child's pid has no memory effects.
    unsafe {
        libc::kill(server.id() as i32, signal);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = server.try_wait() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(root);
}
