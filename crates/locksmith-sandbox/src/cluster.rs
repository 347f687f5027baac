//! A throwaway PostgreSQL cluster: started from the installed binaries in a
//! temporary folder, listening on a free loopback port, gone when dropped.
//!
//! Why it is built this way:
//! - `initdb` runs once per server version and user; every later cluster
//!   copies that template folder, which is several times faster.
//! - As root, `initdb` and `postgres` refuse to run, so both run as the
//!   `postgres` OS user (`Command::uid`), like `runuser -u postgres`.
//! - Rust does not run destructors on `kill -9`, `abort` or a static at exit,
//!   so each cluster has a *guardian* (`guardian.rs`) that stops the server
//!   and deletes the folder when this process dies for any reason. Tests that
//!   panic or are killed leave nothing behind.
//! - The server runs in its own process group, so Ctrl-C at the terminal
//!   reaches locksmith (which cleans up in order) and not the server.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use locksmith_pg::ConnectionSettings;

use crate::bin_dir::BinDir;
use crate::guardian::{self, Guardian};
use crate::Error;

/// The superuser's password on every sandbox cluster. TCP connections use
/// `scram-sha-256`, so tests can exercise real password authentication; the
/// server only listens on loopback and lives as long as the process.
pub const SUPERUSER_PASSWORD: &str = "locksmith-sandbox";
/// The superuser's name on every sandbox cluster.
pub const SUPERUSER: &str = "postgres";

/// Options for [`Cluster::start_with`].
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Server binaries; found with [`BinDir::find`] when `None`.
    pub bin: Option<BinDir>,
    /// Extra server settings (`-c name=value`), e.g. `max_connections`.
    pub settings: Vec<(String, String)>,
}

/// A running throwaway cluster. Stopped and deleted on drop.
#[derive(Debug)]
pub struct Cluster {
    root: PathBuf,
    port: u16,
    bin: BinDir,
    server: Child,
    guardian: Option<Guardian>,
    ready_in: Duration,
    settings: Vec<(String, String)>,
}

/// Whose account the server runs under: ours, or `postgres` when we are root.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner {
    uid: u32,
    gid: u32,
    switch: bool,
}

impl Cluster {
    /// Starts a cluster with the default options.
    pub fn start() -> Result<Cluster, Error> {
        Cluster::start_with(ClusterOptions::default())
    }

    /// [`start_with`](Self::start_with) on a blocking thread, for async
    /// callers (`demo`, `rehearse`): the runtime's workers keep running.
    pub async fn start_async(options: ClusterOptions) -> Result<Cluster, Error> {
        tokio::task::spawn_blocking(move || Cluster::start_with(options))
            .await
            .map_err(|e| Error::Command {
                what: "starting the cluster".into(),
                output: e.to_string(),
            })?
    }

    /// Starts a cluster: copy the template (made on first use), pick a free
    /// port, start `postgres`, wait until it accepts connections.
    pub fn start_with(options: ClusterOptions) -> Result<Cluster, Error> {
        let started = Instant::now();
        let bin = match options.bin {
            Some(bin) => bin,
            None => BinDir::find(None)?,
        };
        let owner = Owner::current()?;
        let template = template_for(&bin, owner)?;
        let root = unique_dir("locksmith-cluster")?;
        let guardian = Guardian::spawn(&root, "QUIT")?;
        chown(&root, owner)?;
        run(
            Command::new("cp")
                .arg("-a")
                .arg(&template)
                .arg(root.join("data")),
            "copying the template cluster",
        )?;
        std::fs::create_dir(root.join("socket"))
            .map_err(|e| Error::io("creating the socket folder", e))?;
        chown(&root.join("socket"), owner)?;

        let mut last_log = String::new();
        for _ in 0..8 {
            let port = free_port()?;
            let mut server = spawn_server(&bin, &root, port, owner, &options.settings)?;
            match wait_ready(&root, &mut server) {
                Ok(()) => {
                    guardian.arm(server.id());
                    return Ok(Cluster {
                        root,
                        port,
                        bin,
                        server,
                        guardian: Some(guardian),
                        ready_in: started.elapsed(),
                        settings: options.settings,
                    });
                }
                Err(log) => {
                    let _ = server.kill();
                    let _ = server.wait();
                    // Another process took the port between our probe and the
                    // server's bind: try another one.
                    let port_taken =
                        log.contains("could not bind") || log.contains("already in use");
                    last_log = log;
                    if !port_taken {
                        break;
                    }
                }
            }
        }
        let _ = std::fs::remove_dir_all(&root);
        Err(Error::StartFailed {
            log_tail: tail(&last_log, 20),
        })
    }

    /// The loopback TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's major version.
    pub fn major(&self) -> u32 {
        self.bin.major
    }

    /// The cluster's data folder (inside a temporary folder removed on drop).
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The binaries this cluster runs.
    pub fn bin(&self) -> &BinDir {
        &self.bin
    }

    /// How long it took from `start` until the server accepted connections.
    pub fn ready_in(&self) -> Duration {
        self.ready_in
    }

    /// Connection settings for `dbname` as the superuser over TCP, with an
    /// `application_name` so the sessions are recognisable in `pg_stat_activity`.
    pub fn settings(&self, dbname: &str, application_name: &str) -> ConnectionSettings {
        superuser_settings(self.port, dbname, application_name)
    }

    /// A URL for `dbname` (with the password: hand it to programs, never print it).
    pub fn url(&self, dbname: &str) -> String {
        superuser_url(self.port, dbname)
    }

    /// Creates a database and returns settings to reach it.
    pub async fn create_database(&self, name: &str) -> Result<ConnectionSettings, Error> {
        let admin = self.settings("postgres", "locksmith-sandbox");
        let client = admin.connect().await?;
        let ident = locksmith_core::quote::ident(name);
        client
            .batch_execute(&format!("CREATE DATABASE {ident}"))
            .await
            .map_err(|e| Error::Sql {
                context: format!("creating database {name}"),
                source: e,
            })?;
        Ok(self.settings(name, "locksmith-sandbox"))
    }

    /// Starts a hot standby of this cluster on this machine: `pg_basebackup -R`
    /// from it, then a second server streaming from it, with `settings` on
    /// top of the sandbox defaults (e.g. `max_standby_streaming_delay`).
    /// Relation oids are the primary's, as on any physical standby.
    pub fn start_standby(&self, settings: &[(&str, &str)]) -> Result<Cluster, Error> {
        let started = Instant::now();
        let owner = Owner::current()?;
        let root = unique_dir("locksmith-standby")?;
        let guardian = Guardian::spawn(&root, "QUIT")?;
        chown(&root, owner)?;
        let mut backup = Command::new(self.bin.tool("pg_basebackup"));
        backup
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
            ])
            .arg("-D")
            .arg(root.join("data"))
            .args(["-R", "-X", "stream", "--no-sync", "-c", "fast"])
            .env("PGPASSWORD", SUPERUSER_PASSWORD);
        run(owner.apply(&mut backup), "pg_basebackup from the primary")?;
        std::fs::create_dir(root.join("socket"))
            .map_err(|e| Error::io("creating the socket folder", e))?;
        chown(&root.join("socket"), owner)?;
        let mut extra: Vec<(String, String)> = vec![(
            "primary_conninfo".into(),
            format!(
                "host=127.0.0.1 port={} user={SUPERUSER} password={SUPERUSER_PASSWORD} application_name=locksmith-standby",
                self.port
            ),
        )];
        extra.extend(settings.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        let port = free_port()?;
        let mut server = spawn_server(&self.bin, &root, port, owner, &extra)?;
        if let Err(log) = wait_ready(&root, &mut server) {
            let _ = server.kill();
            let _ = server.wait();
            let _ = std::fs::remove_dir_all(&root);
            return Err(Error::StartFailed {
                log_tail: tail(&log, 20),
            });
        }
        guardian.arm(server.id());
        Ok(Cluster {
            root,
            port,
            bin: self.bin.clone(),
            server,
            guardian: Some(guardian),
            ready_in: started.elapsed(),
            settings: extra,
        })
    }

    /// Restarts the server on the same port (fast shutdown, then start), as an
    /// operator's restart or a failover would: every connection is dropped.
    pub fn restart(&mut self) -> Result<(), Error> {
        unsafe {
            libc::kill(self.server.id() as i32, libc::SIGINT);
        }
        let _ = self.server.wait();
        let owner = Owner::current()?;
        let mut server = spawn_server(&self.bin, &self.root, self.port, owner, &self.settings)?;
        wait_ready(&self.root, &mut server).map_err(|log| Error::StartFailed {
            log_tail: tail(&log, 20),
        })?;
        self.server = server;
        if let Some(g) = &self.guardian {
            g.arm(self.server.id());
        }
        Ok(())
    }

    /// The server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("server.log")).unwrap_or_default()
    }

    /// Stops the server and deletes the folder now (drop does the same).
    pub fn stop(self) {}
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGQUIT: immediate shutdown. Nothing here is worth a checkpoint.
        guardian::stop_now(
            self.guardian.take(),
            &mut self.server,
            libc::SIGQUIT,
            &self.root,
        );
    }
}

impl Owner {
    pub(crate) fn current() -> Result<Owner, Error> {
        // SAFETY: geteuid/getegid cannot fail.
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        if uid != 0 {
            return Ok(Owner {
                uid,
                gid,
                switch: false,
            });
        }
        let (uid, gid) = lookup_user("postgres").ok_or(Error::NoPostgresUser)?;
        Ok(Owner {
            uid,
            gid,
            switch: true,
        })
    }

    pub(crate) fn apply(self, cmd: &mut Command) -> &mut Command {
        if self.switch {
            cmd.uid(self.uid).gid(self.gid);
        }
        cmd
    }
}

fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() > 3 && f[0] == name).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// The initialized template for this server version and owner, made once.
/// Several processes may race here; each initdb's into its own folder and
/// the first rename wins.
fn template_for(bin: &BinDir, owner: Owner) -> Result<PathBuf, Error> {
    let base = scratch_root().join(format!(
        "locksmith-template-v2-pg{}-uid{}",
        bin.major, owner.uid
    ));
    let ready = base.join("data");
    if ready.join("PG_VERSION").is_file() && ready.join("postgresql.conf").is_file() {
        return Ok(ready);
    }
    std::fs::create_dir_all(&base).map_err(|e| Error::io("creating the template folder", e))?;
    chown(&base, owner)?;
    let staging = base.join(format!("staging-{}-{}", std::process::id(), unique()));
    let pwfile = base.join(format!("pw-{}-{}", std::process::id(), unique()));
    std::fs::write(&pwfile, SUPERUSER_PASSWORD)
        .map_err(|e| Error::io("writing the password file", e))?;
    chown(&pwfile, owner)?;
    let mut cmd = Command::new(bin.tool("initdb"));
    cmd.arg("-D")
        .arg(&staging)
        .args([
            "-U",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
            // 1 MB WAL segments: the template is copied for every cluster, and a 16 MB segment is most of it.
            "--wal-segsize=1",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .current_dir(&base);
    let result = run(owner.apply(&mut cmd), "initdb");
    let _ = std::fs::remove_file(&pwfile);
    result?;
    if std::fs::rename(&staging, &ready).is_err() {
        // Someone else finished first; theirs is as good as ours.
        let _ = std::fs::remove_dir_all(&staging);
    }
    Ok(ready)
}

fn spawn_server(
    bin: &BinDir,
    root: &Path,
    port: u16,
    owner: Owner,
    extra: &[(String, String)],
) -> Result<Child, Error> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("server.log"))
        .map_err(|e| Error::io("creating the server log", e))?;
    chown(&root.join("server.log"), owner)?;
    let mut cmd = Command::new(bin.tool("postgres"));
    cmd.arg("-D")
        .arg(root.join("data"))
        .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
        .arg(root.join("socket"));
    let defaults = [
        ("fsync", "off"),
        ("synchronous_commit", "off"),
        ("full_page_writes", "off"),
        ("shared_buffers", "32MB"),
        ("log_lock_waits", "on"),
        ("deadlock_timeout", "1s"),
        ("log_min_messages", "warning"),
    ];
    for (name, value) in defaults
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .chain(extra.iter().cloned())
    {
        cmd.arg("-c").arg(format!("{name}={value}"));
    }
    owner
        .apply(&mut cmd)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(|e| Error::io("opening the server log", e))?,
        )
        .stderr(log)
        .process_group(0);
    cmd.spawn().map_err(|e| Error::io("starting postgres", e))
}

/// Waits until `postmaster.pid` says "ready"; on failure returns the log.
fn wait_ready(root: &Path, server: &mut Child) -> Result<(), String> {
    let pidfile = root.join("data").join("postmaster.pid");
    let deadline = Instant::now() + Duration::from_secs(30);
    let read_log = || std::fs::read_to_string(root.join("server.log")).unwrap_or_default();
    while Instant::now() < deadline {
        if let Ok(text) = std::fs::read_to_string(&pidfile) {
            // A hot standby says "standby" once it accepts read-only connections.
            if matches!(
                text.lines().nth(7).map(str::trim),
                Some("ready" | "standby")
            ) {
                return Ok(());
            }
        }
        if let Ok(Some(status)) = server.try_wait() {
            return Err(format!("{}\n(postgres exited: {status})", read_log()));
        }
        std::thread::sleep(Duration::from_millis(3));
    }
    Err(format!("{}\n(not ready after 30 s)", read_log()))
}

pub(crate) fn chown(path: &Path, owner: Owner) -> Result<(), Error> {
    if owner.switch {
        std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid)).map_err(|e| {
            Error::io(
                &format!("giving {} to the postgres user", path.display()),
                e,
            )
        })?;
    }
    Ok(())
}

fn run(cmd: &mut Command, what: &str) -> Result<(), Error> {
    let out = cmd.output().map_err(|e| Error::io(what, e))?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Err(Error::Command {
        what: what.to_string(),
        output: tail(&text, 20),
    })
}

pub(crate) fn free_port() -> Result<u16, Error> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("finding a free port", e))?;
    Ok(listener
        .local_addr()
        .map_err(|e| Error::io("finding a free port", e))?
        .port())
}

fn unique() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

pub(crate) fn unique_dir(prefix: &str) -> Result<PathBuf, Error> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = scratch_root().join(format!(
        "{prefix}-{}-{}-{nanos:x}",
        std::process::id(),
        unique()
    ));
    std::fs::create_dir(&dir).map_err(|e| Error::io("creating the cluster folder", e))?;
    Ok(dir)
}

/// Where clusters live: `LOCKSMITH_SANDBOX_DIR`, else `/dev/shm` (memory: copying
/// the template and running the server there is several times faster than on
/// disk, and nothing in a throwaway cluster needs to survive), else the temp folder.
fn scratch_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("LOCKSMITH_SANDBOX_DIR") {
        return PathBuf::from(dir);
    }
    let shm = Path::new("/dev/shm");
    let writable = std::fs::metadata(shm)
        .map(|m| m.is_dir() && !m.permissions().readonly())
        .unwrap_or(false);
    if writable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The sandbox superuser's settings for `dbname` on a loopback `port`
/// (the server's, or a pooler's in front of it).
pub(crate) fn superuser_settings(
    port: u16,
    dbname: &str,
    application_name: &str,
) -> ConnectionSettings {
    ConnectionSettings::loopback(
        port,
        SUPERUSER,
        SUPERUSER_PASSWORD,
        dbname,
        application_name,
    )
}

/// The same as a URL, with the password: hand it to programs, never print it.
pub(crate) fn superuser_url(port: u16, dbname: &str) -> String {
    format!("postgresql://{SUPERUSER}:{SUPERUSER_PASSWORD}@127.0.0.1:{port}/{dbname}")
}
