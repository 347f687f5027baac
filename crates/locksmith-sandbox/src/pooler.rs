//! A throwaway PgBouncer in front of a sandbox [`Cluster`], so tests can run
//! locksmith through a connection pooler in session, transaction or
//! statement pooling.
//!
//! Why it is built this way:
//! - It is Debian's `pgbouncer` (installed by `scripts/setup.sh --tests`),
//!   found in `LOCKSMITH_PGBOUNCER`, `PATH` or `/usr/sbin`. A missing binary is
//!   an error, never a skipped test.
//! - It forwards every database (`* = host=127.0.0.1 port=…`) and
//!   authenticates clients, and itself to the server, with `scram-sha-256`
//!   from an auth file holding the sandbox superuser's password.
//! - The pool is small (3 server connections per database and user by
//!   default), so several clients really share backends.
//! - `ignore_startup_parameters` is empty by default, as in PgBouncer: a
//!   client sending `options` is refused with "unsupported startup parameter".
//! - No admin or stats users by default: the `pgbouncer` console is closed
//!   unless a test asks for it.
//! - Like the cluster's server, it runs as the `postgres` OS user when we are
//!   root (PgBouncer refuses to run as root), in its own process group, with
//!   a guardian (`guardian.rs`) that stops it and deletes its folder when
//!   this process dies.
//!
//! ```no_run
//! # async fn f() -> Result<(), locksmith_sandbox::Error> {
//! use locksmith_sandbox::pooler::{PoolMode, Pooler};
//! let cluster = locksmith_sandbox::Cluster::start()?;
//! let pooler = Pooler::start(&cluster, PoolMode::Transaction)?;
//! let url = pooler.url("postgres"); // hand it to the program under test
//! # Ok(()) }
//! ```

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use locksmith_pg::ConnectionSettings;

use crate::cluster::{
    chown, free_port, superuser_settings, superuser_url, tail, unique_dir, Owner, SUPERUSER,
    SUPERUSER_PASSWORD,
};
use crate::guardian::{self, Guardian};
use crate::{Cluster, Error};

/// How PgBouncer hands server connections to clients (`pool_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A client keeps its server connection until it disconnects.
    Session,
    /// A client holds a server connection only for one transaction.
    Transaction,
    /// A client holds a server connection only for one statement; PgBouncer
    /// closes the link of a client that opens a transaction block.
    Statement,
}

impl PoolMode {
    /// The `pool_mode` value.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// Options for [`Pooler::start_with`].
#[derive(Debug, Clone)]
pub struct PoolerOptions {
    /// `pool_mode`.
    pub mode: PoolMode,
    /// `default_pool_size`: server connections per database and user.
    pub pool_size: u32,
    /// `ignore_startup_parameters`, e.g. `extra_float_digits,options`; empty
    /// (PgBouncer's default) refuses any startup parameter it does not track.
    pub ignore_startup_parameters: String,
    /// `admin_users`: who may run commands on the `pgbouncer` console. Only
    /// the sandbox superuser can log in.
    pub admin_users: Vec<String>,
    /// `stats_users`: who may run `SHOW` commands on the console.
    pub stats_users: Vec<String>,
}

impl PoolerOptions {
    /// The defaults for `mode`: a pool of 3, nothing ignored, no console users.
    pub fn new(mode: PoolMode) -> PoolerOptions {
        PoolerOptions {
            mode,
            pool_size: 3,
            ignore_startup_parameters: String::new(),
            admin_users: Vec::new(),
            stats_users: Vec::new(),
        }
    }
}

/// A running PgBouncer. Stopped and its folder deleted on drop.
#[derive(Debug)]
pub struct Pooler {
    root: PathBuf,
    port: u16,
    mode: PoolMode,
    console: bool,
    process: Child,
    guardian: Option<Guardian>,
}

impl Pooler {
    /// Starts a pooler for `cluster` in `mode` with the default options.
    pub fn start(cluster: &Cluster, mode: PoolMode) -> Result<Pooler, Error> {
        Pooler::start_with(cluster, PoolerOptions::new(mode))
    }

    /// Starts a pooler: write its configuration, pick a free port, start
    /// `pgbouncer`, wait until it accepts connections.
    pub fn start_with(cluster: &Cluster, options: PoolerOptions) -> Result<Pooler, Error> {
        let binary = find_binary(std::env::var_os("LOCKSMITH_PGBOUNCER").map(PathBuf::from))?;
        let owner = Owner::current()?;
        let root = unique_dir("locksmith-pooler")?;
        let guardian = Guardian::spawn(&root, "TERM")?;
        chown(&root, owner)?;
        // PgBouncer 1.18 accepts a plain password here for scram-sha-256, and
        // then also uses it to log in to the server.
        write_owned(
            &root.join("userlist.txt"),
            &format!("\"{SUPERUSER}\" \"{SUPERUSER_PASSWORD}\"\n"),
            owner,
        )?;
        let mut last_log = String::new();
        for _ in 0..8 {
            let port = free_port()?;
            write_owned(
                &root.join("pgbouncer.ini"),
                &config(&root, port, cluster.port(), &options),
                owner,
            )?;
            let mut process = spawn(&binary, &root, owner)?;
            match wait_ready(&root, port, &mut process) {
                Ok(()) => {
                    guardian.arm(process.id());
                    let console = options
                        .admin_users
                        .iter()
                        .chain(&options.stats_users)
                        .any(|u| u == SUPERUSER);
                    return Ok(Pooler {
                        root,
                        port,
                        mode: options.mode,
                        console,
                        process,
                        guardian: Some(guardian),
                    });
                }
                Err(log) => {
                    let _ = process.kill();
                    let _ = process.wait();
                    // Another process took the port between our probe and the bind.
                    let port_taken = log.contains("Address already in use");
                    last_log = log;
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        drop(guardian);
        let _ = std::fs::remove_dir_all(&root);
        Err(Error::PoolerStartFailed {
            log_tail: tail(&last_log, 20),
        })
    }

    /// The loopback TCP port the pooler listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The folder holding its configuration, auth file and log (deleted on drop).
    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// The pooling mode it was started with.
    pub fn mode(&self) -> PoolMode {
        self.mode
    }

    /// Connection settings for `dbname` through the pooler as the superuser,
    /// with an `application_name` (PgBouncer passes it on to the server).
    pub fn settings(&self, dbname: &str, application_name: &str) -> ConnectionSettings {
        superuser_settings(self.port, dbname, application_name)
    }

    /// A URL for `dbname` through the pooler (with the password: hand it to
    /// programs, never print it).
    pub fn url(&self, dbname: &str) -> String {
        superuser_url(self.port, dbname)
    }

    /// A URL for the `pgbouncer` console, when the superuser was made an
    /// admin or stats user ([`PoolerOptions::admin_users`]).
    pub fn admin_url(&self) -> Option<String> {
        self.console.then(|| self.url("pgbouncer"))
    }

    /// PgBouncer's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("pgbouncer.log")).unwrap_or_default()
    }

    /// Stops the pooler and deletes its folder now (drop does the same).
    pub fn stop(self) {}
}

impl Drop for Pooler {
    fn drop(&mut self) {
        // SIGTERM: PgBouncer's immediate shutdown.
        guardian::stop_now(
            self.guardian.take(),
            &mut self.process,
            libc::SIGTERM,
            &self.root,
        );
    }
}

/// `pgbouncer`: `given` (`LOCKSMITH_PGBOUNCER`), else `PATH`, else Debian's `/usr/sbin`.
fn find_binary(given: Option<PathBuf>) -> Result<PathBuf, Error> {
    if let Some(given) = given {
        return if given.is_file() {
            Ok(given)
        } else {
            Err(Error::NoPooler {
                looked: format!("{} (LOCKSMITH_PGBOUNCER)", given.display()),
            })
        };
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push(PathBuf::from("/usr/sbin"));
    dirs.iter()
        .map(|d| d.join("pgbouncer"))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::NoPooler {
            looked: "PATH, /usr/sbin".into(),
        })
}

/// The `pgbouncer.ini` text.
fn config(root: &Path, port: u16, server_port: u16, options: &PoolerOptions) -> String {
    format!(
        "[databases]\n\
         * = host=127.0.0.1 port={server_port}\n\
         \n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = scram-sha-256\n\
         auth_file = {auth_file}\n\
         pool_mode = {mode}\n\
         default_pool_size = {pool_size}\n\
         max_client_conn = 1000\n\
         ignore_startup_parameters = {ignore}\n\
         admin_users = {admin}\n\
         stats_users = {stats}\n",
        auth_file = root.join("userlist.txt").display(),
        mode = options.mode.as_str(),
        pool_size = options.pool_size,
        ignore = options.ignore_startup_parameters,
        admin = options.admin_users.join(","),
        stats = options.stats_users.join(","),
    )
}

fn write_owned(path: &Path, text: &str, owner: Owner) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::io(&format!("writing {}", path.display()), e))?;
    chown(path, owner)
}

fn spawn(binary: &Path, root: &Path, owner: Owner) -> Result<Child, Error> {
    // In the foreground PgBouncer logs to stderr.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("pgbouncer.log"))
        .map_err(|e| Error::io("creating the pooler log", e))?;
    let mut cmd = Command::new(binary);
    cmd.arg(root.join("pgbouncer.ini"));
    owner
        .apply(&mut cmd)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(|e| Error::io("opening the pooler log", e))?,
        )
        .stderr(log)
        .process_group(0);
    cmd.spawn().map_err(|e| Error::io("starting pgbouncer", e))
}

/// Waits until PgBouncer says it is up and its port accepts TCP connections
/// (the log line alone: not a process that took the port after our probe);
/// on failure returns the log.
fn wait_ready(root: &Path, port: u16, process: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let read_log = || std::fs::read_to_string(root.join("pgbouncer.log")).unwrap_or_default();
    let listening = format!("listening on 127.0.0.1:{port}");
    let address = ([127, 0, 0, 1], port).into();
    while Instant::now() < deadline {
        if let Ok(Some(status)) = process.try_wait() {
            return Err(format!("{}\n(pgbouncer exited: {status})", read_log()));
        }
        let log = read_log();
        if log.contains(&listening)
            && log.contains("process up")
            && TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    Err(format!(
        "{}\n(not accepting connections after 30 s)",
        read_log()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_pgbouncer_names_the_setup_script() {
        let err = find_binary(Some(PathBuf::from("/nonexistent/pgbouncer")))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent/pgbouncer (LOCKSMITH_PGBOUNCER)"),
            "{err}"
        );
        assert!(err.contains("scripts/setup.sh --tests"), "{err}");
    }

    #[test]
    fn config_forwards_every_database_with_the_options_given() {
        let options = PoolerOptions {
            pool_size: 1,
            ignore_startup_parameters: "extra_float_digits,options".into(),
            ..PoolerOptions::new(PoolMode::Transaction)
        };
        let text = config(Path::new("/x"), 6432, 5432, &options);
        for line in [
            "* = host=127.0.0.1 port=5432",
            "listen_port = 6432",
            "pool_mode = transaction",
            "default_pool_size = 1",
            "ignore_startup_parameters = extra_float_digits,options",
            "admin_users = \n",
            "auth_file = /x/userlist.txt",
        ] {
            assert!(text.contains(line), "{line:?} missing in:\n{text}");
        }
    }
}
