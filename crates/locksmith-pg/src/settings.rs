//! Connection settings with libpq's conventions: the one way locksmith finds
//! out where and how to connect.
//!
//! Precedence: `--database-url`, else `DATABASE_URL`; whatever that string
//! leaves unset comes from libpq's variables (`PGHOST`, `PGPORT`, `PGUSER`,
//! `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, `PGSSLROOTCERT`, `PGAPPNAME`,
//! `PGOPTIONS`), then `~/.pgpass` (or `PGPASSFILE`) for the password, then
//! libpq's defaults. Both URL and `key=value` forms are parsed by
//! `tokio_postgres::Config`; only the TLS keys it does not know
//! (`verify-ca`, `verify-full`, `sslrootcert`, …) are taken out first.
//!
//! Passwords never leave this type: [`ConnectionSettings::describe`] and
//! [`redact`](crate::redact) are what reports print, and `Debug` hides the password.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode as WireSslMode};
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::Config;

use crate::cancel;
use crate::connection::{Connection, Pooler, Pooling};
use crate::conninfo::{is_url, redact, sets_port, split_tls_keys, with_url_port};
use crate::pgpass::pgpass_lookup;
use crate::tls::{self, SslMode};
use crate::Error;

/// Where and how to connect to one server and database.
#[derive(Clone)]
pub struct ConnectionSettings {
    config: Config,
    ssl_mode: SslMode,
    ssl_root_cert: Option<PathBuf>,
    ssl_cert: Option<(PathBuf, PathBuf)>,
    /// Straight to the server when the target is a pooler (`--direct-url`).
    direct: Option<Box<ConnectionSettings>>,
}

impl std::fmt::Debug for ConnectionSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSettings")
            .field("target", &self.describe())
            .field("ssl_mode", &self.ssl_mode)
            .finish()
    }
}

/// The environment as libpq reads it; a function so tests need not mutate
/// the process environment.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl ConnectionSettings {
    /// Resolves settings the way every command does: `url` (the flag), else
    /// `DATABASE_URL`, then libpq's environment and `~/.pgpass`.
    pub fn resolve(url: Option<&str>) -> Result<ConnectionSettings, Error> {
        Self::resolve_with(url, &process_env)
    }

    /// [`ConnectionSettings::resolve`] with an explicit environment.
    pub fn resolve_with(url: Option<&str>, env: Env<'_>) -> Result<ConnectionSettings, Error> {
        let given = url.map(str::to_string).or_else(|| env("DATABASE_URL"));
        let (mut config_text, tls) = match &given {
            Some(text) => split_tls_keys(text),
            None => (String::new(), Vec::new()),
        };
        // tokio-postgres fills in 5432 for a URL without a port; libpq would use PGPORT.
        let port_given = given.as_deref().is_some_and(sets_port);
        if let (false, Some(port), true) = (port_given, env("PGPORT"), is_url(&config_text)) {
            config_text = with_url_port(&config_text, &port);
        }
        let mut config: Config = if config_text.trim().is_empty() {
            Config::new()
        } else {
            config_text
                .parse()
                .map_err(|e: tokio_postgres::Error| Error::BadUrl {
                    url: redact(given.as_deref().unwrap_or_default()),
                    reason: e.to_string(),
                })?
        };
        let tls_value = |key: &str, var: &str| {
            tls.iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .or_else(|| env(var))
        };

        if config.get_hosts().is_empty() {
            match env("PGHOST") {
                Some(hosts) => hosts.split(',').for_each(|h| {
                    config.host(h);
                }),
                None if Path::new("/var/run/postgresql/.s.PGSQL.5432").exists() => {
                    config.host_path("/var/run/postgresql");
                }
                None => {
                    config.host("localhost");
                }
            }
        }
        if config.get_ports().is_empty() {
            let port = match env("PGPORT") {
                Some(p) => p.parse().map_err(|_| Error::BadUrl {
                    url: format!("PGPORT={p}"),
                    reason: "not a port number".into(),
                })?,
                None => 5432,
            };
            config.port(port);
        }
        if config.get_user().is_none() {
            let user = env("PGUSER")
                .or_else(|| env("USER"))
                .unwrap_or_else(|| "postgres".into());
            config.user(&user);
        }
        if config.get_dbname().is_none() {
            let db = env("PGDATABASE")
                .unwrap_or_else(|| config.get_user().unwrap_or("postgres").to_string());
            config.dbname(&db);
        }
        if config.get_application_name().is_none() {
            config.application_name(env("PGAPPNAME").unwrap_or_else(|| "locksmith".into()));
        }
        if config.get_options().is_none() {
            if let Some(options) = env("PGOPTIONS") {
                config.options(&options);
            }
        }
        if config.get_connect_timeout().is_none() {
            // libpq: unset means wait forever; locksmith waits 10 s. 0 means forever,
            // and libpq never waits less than 2 s.
            let secs: u64 = env("PGCONNECT_TIMEOUT")
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(10);
            if secs > 0 {
                config.connect_timeout(Duration::from_secs(secs.max(2)));
            }
        }
        with_keepalives(&mut config);
        if config.get_password().is_none() {
            if let Some(pw) = env("PGPASSWORD").or_else(|| pgpass_lookup(&config, env)) {
                config.password(pw);
            }
        }

        let ssl_mode: SslMode = match tls_value("sslmode", "PGSSLMODE") {
            Some(m) => m.parse()?,
            None => SslMode::Prefer,
        };
        config.ssl_mode(match ssl_mode {
            SslMode::Disable => WireSslMode::Disable,
            SslMode::Allow | SslMode::Prefer => WireSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireSslMode::Require,
        });
        let ssl_root_cert = tls_value("sslrootcert", "PGSSLROOTCERT")
            .map(PathBuf::from)
            .or_else(|| {
                let default = home(env)?.join(".postgresql/root.crt");
                default.exists().then_some(default)
            });
        let ssl_cert = match (
            tls_value("sslcert", "PGSSLCERT"),
            tls_value("sslkey", "PGSSLKEY"),
        ) {
            (Some(c), Some(k)) => Some((PathBuf::from(c), PathBuf::from(k))),
            _ => None,
        };
        Ok(ConnectionSettings {
            config,
            ssl_mode,
            ssl_root_cert,
            ssl_cert,
            direct: None,
        })
    }

    /// Settings for a loopback server with a known superuser, as the sandbox starts.
    pub fn loopback(
        port: u16,
        user: &str,
        password: &str,
        dbname: &str,
        application_name: &str,
    ) -> Self {
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(port)
            .user(user)
            .password(password)
            .dbname(dbname)
            .application_name(application_name)
            .connect_timeout(Duration::from_secs(10))
            .ssl_mode(WireSslMode::Disable);
        with_keepalives(&mut config);
        ConnectionSettings {
            config,
            ssl_mode: SslMode::Disable,
            ssl_root_cert: None,
            ssl_cert: None,
            direct: None,
        }
    }

    /// The same target under another `application_name`, so locksmith's own
    /// sessions are recognisable (and excluded) in `pg_stat_activity`.
    pub fn with_application_name(&self, name: &str) -> Self {
        let mut copy = self.clone();
        copy.config.application_name(name);
        copy.direct = self
            .direct
            .as_ref()
            .map(|d| Box::new(d.with_application_name(name)));
        copy
    }

    /// The same target, with `direct` as the way straight to the server
    /// (`--direct-url`) for locksmith's own connections when the target is a
    /// connection pooler: watching, cancelling, the runner lock, statements
    /// that cannot run in a transaction.
    pub fn with_direct(&self, direct: ConnectionSettings) -> Self {
        let mut copy = self.clone();
        copy.direct = Some(Box::new(direct));
        copy
    }

    /// Where locksmith's own connections go: the direct route when one was
    /// given, else the target itself.
    pub fn direct(&self) -> &ConnectionSettings {
        self.direct.as_deref().unwrap_or(self)
    }

    /// Whether a direct route was given.
    pub fn has_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// The same target in another database.
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut copy = self.clone();
        copy.config.dbname(dbname);
        copy.direct = self
            .direct
            .as_ref()
            .map(|d| Box::new(d.with_dbname(dbname)));
        copy
    }

    /// The same target with another password (tests of authentication failures).
    pub fn with_password(&self, password: &str) -> Self {
        let mut copy = self.clone();
        copy.config.password(password);
        copy
    }

    /// Server-side settings sent at connection start (`-c name=value …`).
    pub fn with_options(&self, options: &str) -> Self {
        let mut copy = self.clone();
        copy.config.options(options);
        copy
    }

    /// The user name.
    pub fn user(&self) -> &str {
        self.config.get_user().unwrap_or("postgres")
    }

    /// The database name.
    pub fn dbname(&self) -> &str {
        self.config.get_dbname().unwrap_or("postgres")
    }

    /// The application name sessions will carry.
    pub fn application_name(&self) -> &str {
        self.config.get_application_name().unwrap_or("locksmith")
    }

    /// The TLS mode, as libpq spells it.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// `user@host:port/db`, safe to print: no password.
    pub fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{}@{host}:{port}/{}", self.user(), self.dbname())
    }

    /// A libpq URL for these settings with the password left out: what a child
    /// process may be handed when it reads the password from `PGPASSWORD`.
    pub fn password(&self) -> Option<String> {
        self.config
            .get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    /// libpq environment variables describing this target (for a wrapped
    /// migration tool that reads `PG*`), password included.
    pub fn libpq_env(&self) -> Vec<(&'static str, String)> {
        let mut vars = Vec::new();
        match self.config.get_hosts().first() {
            Some(Host::Tcp(h)) => vars.push(("PGHOST", h.clone())),
            Some(Host::Unix(p)) => vars.push(("PGHOST", p.display().to_string())),
            None => {}
        }
        if let Some(port) = self.config.get_ports().first() {
            vars.push(("PGPORT", port.to_string()));
        }
        vars.push(("PGUSER", self.user().to_string()));
        vars.push(("PGDATABASE", self.dbname().to_string()));
        if let Some(pw) = self.password() {
            vars.push(("PGPASSWORD", pw));
        }
        vars.push(("PGSSLMODE", self.ssl_mode.to_string()));
        if let Some(root) = &self.ssl_root_cert {
            vars.push(("PGSSLROOTCERT", root.display().to_string()));
        }
        vars
    }

    /// Opens a connection; its driver task runs on the current tokio runtime.
    ///
    /// `connect_timeout` bounds the whole startup, as in libpq: TCP connect,
    /// TLS, authentication and the first query, per host tried. A server that
    /// accepts TCP and never answers fails here instead of hanging.
    pub async fn connect(&self) -> Result<Connection, Error> {
        let Some(per_host) = self.config.get_connect_timeout().copied() else {
            return self.start_session().await;
        };
        let limit = per_host * self.config.get_hosts().len().max(1) as u32;
        match tokio::time::timeout(limit, self.start_session()).await {
            Ok(result) => result,
            Err(_) => Err(Error::Connect {
                target: self.describe(),
                reason: format!(
                    "no answer within connect_timeout ({}s): the TCP connection opened but the \
                     server never completed startup (TLS, authentication); check that host and \
                     port lead to PostgreSQL, or raise connect_timeout / PGCONNECT_TIMEOUT",
                    limit.as_secs()
                ),
            }),
        }
    }

    /// Opens one of locksmith's own connections: over the direct route when
    /// one was given (checked to lead to the same server as `target`, with no
    /// pooler in between), else like [`connect`](Self::connect).
    pub async fn connect_direct(&self, target: &Connection) -> Result<Connection, Error> {
        let Some(direct) = &self.direct else {
            return self.connect().await;
        };
        let connection = direct.connect().await?;
        let wrong = |reason: String| Error::Connect {
            target: direct.describe(),
            reason: format!("--direct-url: {reason}"),
        };
        if let Some(pooler) = connection.pooler() {
            return Err(wrong(format!(
                "this route leads through {pooler} too; give a URL straight to the server"
            )));
        }
        let (ours, theirs) = (
            connection.server_identity().await,
            target.server_identity().await,
        );
        match (ours, theirs) {
            (Ok(a), Ok(b)) if a == b => Ok(connection),
            (Ok(a), Ok(b)) => Err(wrong(format!(
                "it leads to another server or database than --database-url (server started {a}, \
                 not {b})"
            ))),
            (Err(e), _) | (_, Err(e)) => Err(Error::query("comparing the two routes", e)),
        }
    }

    /// Connects, finds out whether a pooler is in between (and whether it
    /// pools statements), and prepares the session
    /// ([`watch_for_vanished_client`]) when there is none.
    async fn start_session(&self) -> Result<Connection, Error> {
        let (connection, pooler) = self.open_link().await?;
        let Some(pooler) = pooler else {
            watch_for_vanished_client(&connection).await?;
            return Ok(connection);
        };
        // Session settings would stay on a pooled backend for other clients.
        if passes_transactions(&connection).await? {
            return Ok(connection.with_pooler(Some(pooler)));
        }
        // The probe cost that link; the next one is kept, known for what it is.
        let (connection, pooler) = self.open_link().await?;
        let pooler = pooler.map(|p| Pooler {
            pooling: Pooling::Statement,
            ..p
        });
        Ok(connection.with_pooler(pooler))
    }

    /// Opens a connection and compares the process it was announced under
    /// with the backend answering it: a pooler in between when they differ.
    async fn open_link(&self) -> Result<(Connection, Option<Pooler>), Error> {
        let fail = |e: tokio_postgres::Error| Error::Connect {
            target: self.describe(),
            reason: connect_reason(&e),
        };
        let client = if self.ssl_mode == SslMode::Disable {
            let (client, connection) = self
                .config
                .connect(tokio_postgres::NoTls)
                .await
                .map_err(fail)?;
            tokio::spawn(connection);
            client
        } else {
            let tls = tls::connector(
                self.ssl_mode,
                self.ssl_root_cert.as_deref(),
                self.ssl_cert.as_ref(),
            )?;
            let (client, connection) = self.config.connect(tls).await.map_err(fail)?;
            tokio::spawn(connection);
            client
        };
        let key_pid = cancel::key_pid(&client.cancel_token()).await;
        let connection = Connection::new(client, key_pid);
        let backend_pid = connection
            .backend_pid()
            .await
            .map_err(|e| Error::query("reading pg_backend_pid()", e))?;
        let pooler = key_pid
            .filter(|&key| key != backend_pid)
            .map(|key_pid| Pooler {
                key_pid,
                backend_pid,
                pooling: Pooling::Transaction,
            });
        Ok((connection, pooler))
    }

    /// Sends a cancel request for the connection behind `token`, bounded by
    /// `connect_timeout` like [`connect`](Self::connect), and waits for the
    /// server (or pooler) to close the cancel connection, as libpq does.
    pub async fn cancel(&self, token: &tokio_postgres::CancelToken) -> Result<(), Error> {
        let limit = self
            .config
            .get_connect_timeout()
            .copied()
            .unwrap_or(std::time::Duration::from_secs(10));
        tokio::time::timeout(limit, self.send_cancel(token))
            .await
            .unwrap_or_else(|_| {
                Err(Error::Connect {
                    target: self.describe(),
                    reason: "no answer to the cancel request within connect_timeout".into(),
                })
            })
    }

    async fn send_cancel(&self, token: &tokio_postgres::CancelToken) -> Result<(), Error> {
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        let opened = |e: std::io::Error| self.cancel_failed(format!("cancel request: {e}"));
        match self.config.get_hosts().first() {
            Some(Host::Unix(dir)) => {
                let path = dir.join(format!(".s.PGSQL.{port}"));
                let stream = tokio::net::UnixStream::connect(&path)
                    .await
                    .map_err(opened)?;
                self.cancel_on(token, stream, String::new()).await
            }
            host => {
                let host = match host {
                    Some(Host::Tcp(h)) => h.clone(),
                    _ => "localhost".to_string(),
                };
                let stream = tokio::net::TcpStream::connect((host.as_str(), port))
                    .await
                    .map_err(opened)?;
                self.cancel_on(token, stream, host).await
            }
        }
    }

    async fn cancel_on<S>(
        &self,
        token: &tokio_postgres::CancelToken,
        stream: S,
        domain: String,
    ) -> Result<(), Error>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let stream = cancel::Lingering(stream);
        let result = if self.ssl_mode == SslMode::Disable {
            token.cancel_query_raw(stream, tokio_postgres::NoTls).await
        } else {
            let mut tls = tls::connector(
                self.ssl_mode,
                self.ssl_root_cert.as_deref(),
                self.ssl_cert.as_ref(),
            )?;
            let connect =
                MakeTlsConnect::<cancel::Lingering<S>>::make_tls_connect(&mut tls, &domain)
                    .map_err(|e| self.cancel_failed(format!("cancel request: {e}")))?;
            token.cancel_query_raw(stream, connect).await
        };
        result.map_err(|e| self.cancel_failed(connect_reason(&e)))
    }

    fn cancel_failed(&self, reason: String) -> Error {
        Error::Connect {
            target: self.describe(),
            reason,
        }
    }
}

/// Whether a pooler in between lets a transaction block through: a bare
/// `BEGIN` (nothing read or locked) and `ROLLBACK`. A statement pooler
/// (PgBouncer's `pool_mode = statement`) answers the `BEGIN` by closing the
/// link with "transaction blocks not allowed in statement pooling mode";
/// `BEGIN; …; COMMIT` in one message would pass, so only a lone `BEGIN` tells.
async fn passes_transactions(connection: &Connection) -> Result<bool, Error> {
    let context = "checking that the pooler passes a transaction through (BEGIN; ROLLBACK)";
    match connection.batch_execute("BEGIN").await {
        Ok(()) => connection
            .batch_execute("ROLLBACK")
            .await
            .map(|()| true)
            .map_err(|e| Error::query(context, e)),
        Err(e)
            if e.as_db_error()
                .is_some_and(|db| db.message().contains("statement pool")) =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::query(context, e)),
    }
}

/// The transaction-local form of [`watch_for_vanished_client`]'s check, for
/// a pooled backend: a session setting would stay behind for the pool's
/// other clients, so each attempt's transaction sets it for itself. When we
/// are killed mid-statement PgBouncer closes the server connection, and the
/// backend notices within a second instead of holding its locks to the end.
pub(crate) const CHECK_VANISHED_CLIENT_LOCALLY: &str =
    "SELECT CASE WHEN current_setting('client_connection_check_interval', true) = '0'
            THEN set_config('client_connection_check_interval', '1s', true) END";

/// Asks the server to notice quickly when this client vanishes (`kill -9`, a
/// dead host): on PostgreSQL 14+ `client_connection_check_interval` makes a
/// running statement check the socket every second, so a killed `apply`'s
/// ACCESS EXCLUSIVE lock goes within about a second instead of when the
/// statement ends; server-side TCP keepalives cover a peer that disappears
/// without closing the socket. Settings the user chose (non-zero) are kept.
async fn watch_for_vanished_client(client: &Connection) -> Result<(), Error> {
    // current_setting(…, true) is NULL where the setting does not exist (before 14).
    client
        .batch_execute(
            "SELECT CASE WHEN current_setting('client_connection_check_interval', true) = '0'
                    THEN set_config('client_connection_check_interval', '1s', false) END,
                    CASE WHEN current_setting('tcp_keepalives_idle') = '0'
                    THEN set_config('tcp_keepalives_idle', '10', false) END,
                    CASE WHEN current_setting('tcp_keepalives_interval') = '0'
                    THEN set_config('tcp_keepalives_interval', '5', false) END",
        )
        .await
        .map_err(|e| Error::query("setting client_connection_check_interval", e))
}

/// TCP keepalives on our side, so a vanished server is noticed in seconds
/// rather than the system's two hours; unless the connection string turned
/// them off or chose its own timing.
fn with_keepalives(config: &mut Config) {
    let untouched = config.get_keepalives()
        && config.get_keepalives_idle() == Duration::from_secs(2 * 60 * 60)
        && config.get_keepalives_interval().is_none()
        && config.get_keepalives_retries().is_none();
    if untouched {
        config
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3);
    }
}

/// Why a connection attempt failed, in one line without the password.
fn connect_reason(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let message = db.message();
        // PgBouncer's refusal of a startup parameter it does not pass on.
        if message.contains("unsupported startup parameter") {
            return format!(
                "{message}: a connection pooler (PgBouncer) is in between and refuses \
                 server settings sent at connection start (PGOPTIONS, options= in the URL); \
                 unset them, or connect to the server directly"
            );
        }
        // A refused login: PostgreSQL says "password authentication failed"
        // (28P01), PgBouncer only "SASL authentication failed" (08P01), which
        // does not say which password or where to look.
        if db.code().code().starts_with("28") || message.contains("authentication failed") {
            return format!(
                "{message}: the login was refused; check the user and password (in the URL, \
                 PGPASSWORD or ~/.pgpass), and behind PgBouncer that its auth_file or \
                 auth_query knows them too"
            );
        }
        return message.to_string();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    if text.contains("Connection refused") {
        text.push_str(" (is the server running and accepting connections on that host and port?)");
    }
    // Something answered, but not in PostgreSQL's protocol (an HTTP or SSH
    // service, another database): the driver can only say it could not parse
    // the answer, which reads as a bug rather than a wrong port.
    if is_foreign_protocol(&text) {
        return "something answers on that host and port, but this port does not speak the \
                PostgreSQL protocol; check the port (and that host and port lead to PostgreSQL \
                or a pooler in front of it)"
            .into();
    }
    text
}

/// Whether a failed startup's text is the driver failing to parse the peer's
/// answer as PostgreSQL messages.
fn is_foreign_protocol(text: &str) -> bool {
    [
        "bytes remaining on stream",
        "unexpected message from server",
        "invalid message length",
        "invalid response to SSL negotiation",
        // TLS asked for, and the first byte of another protocol's greeting
        // (SSH's "S…") read as the server's yes: what follows is no TLS.
        "received corrupt message",
    ]
    .iter()
    .any(|sign| text.contains(sign))
}

pub(crate) fn home(env: Env<'_>) -> Option<PathBuf> {
    env("HOME").map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn resolve(url: Option<&str>, env: &[(&str, &str)]) -> ConnectionSettings {
        let env = env_of(env);
        ConnectionSettings::resolve_with(url, &env).unwrap()
    }

    #[test]
    fn url_forms_and_env_precedence() {
        struct Case {
            url: Option<&'static str>,
            env: &'static [(&'static str, &'static str)],
            describe: &'static str,
            ssl: SslMode,
        }
        let cases = [
            Case {
                url: Some("postgres://app:pw@db.example:6543/shop"),
                env: &[],
                describe: "app@db.example:6543/shop",
                ssl: SslMode::Prefer,
            },
            Case {
                url: Some("postgresql://app@db/shop?sslmode=verify-full"),
                env: &[],
                describe: "app@db:5432/shop",
                ssl: SslMode::VerifyFull,
            },
            Case {
                url: Some("host=db port=7000 user=ops dbname=x sslmode=require"),
                env: &[],
                describe: "ops@db:7000/x",
                ssl: SslMode::Require,
            },
            // The flag wins over DATABASE_URL.
            Case {
                url: Some("postgres://a@h1/d1"),
                env: &[("DATABASE_URL", "postgres://b@h2/d2")],
                describe: "a@h1:5432/d1",
                ssl: SslMode::Prefer,
            },
            // DATABASE_URL wins over PG* for what it sets; PG* fills the rest.
            Case {
                url: None,
                env: &[
                    ("DATABASE_URL", "postgres://b@h2/d2"),
                    ("PGPORT", "6000"),
                    ("PGHOST", "ignored"),
                ],
                describe: "b@h2:6000/d2",
                ssl: SslMode::Prefer,
            },
            // Only libpq variables.
            Case {
                url: None,
                env: &[
                    ("PGHOST", "pg.internal"),
                    ("PGUSER", "u"),
                    ("PGDATABASE", "d"),
                    ("PGSSLMODE", "disable"),
                ],
                describe: "u@pg.internal:5432/d",
                ssl: SslMode::Disable,
            },
            // Database defaults to the user name, as in libpq.
            Case {
                url: None,
                env: &[("PGHOST", "h"), ("PGUSER", "alice")],
                describe: "alice@h:5432/alice",
                ssl: SslMode::Prefer,
            },
        ];
        for case in cases {
            let s = resolve(case.url, case.env);
            assert_eq!(s.describe(), case.describe, "{:?}", case.url);
            assert_eq!(s.ssl_mode(), case.ssl, "{:?}", case.url);
        }
    }

    #[test]
    fn connect_timeout_defaults_to_10s_and_follows_libpq() {
        let timeout = |url: Option<&str>, env: &[(&str, &str)]| {
            resolve(url, env).config.get_connect_timeout().copied()
        };
        assert_eq!(timeout(None, &[]), Some(Duration::from_secs(10)));
        assert_eq!(
            timeout(None, &[("PGCONNECT_TIMEOUT", "4")]),
            Some(Duration::from_secs(4))
        );
        // libpq waits at least 2 s, and 0 means forever.
        assert_eq!(
            timeout(None, &[("PGCONNECT_TIMEOUT", "1")]),
            Some(Duration::from_secs(2))
        );
        assert_eq!(timeout(None, &[("PGCONNECT_TIMEOUT", "0")]), None);
        assert_eq!(
            timeout(
                Some("postgres://h/db?connect_timeout=3"),
                &[("PGCONNECT_TIMEOUT", "7")]
            ),
            Some(Duration::from_secs(3))
        );
    }

    #[test]
    fn keepalives_are_on_unless_the_url_says_otherwise() {
        let s = resolve(Some("postgres://h/db"), &[]);
        assert!(s.config.get_keepalives());
        assert_eq!(s.config.get_keepalives_idle(), Duration::from_secs(10));
        let s = resolve(Some("postgres://h/db?keepalives=0"), &[]);
        assert!(!s.config.get_keepalives());
        let s = resolve(Some("postgres://h/db?keepalives_idle=60"), &[]);
        assert_eq!(s.config.get_keepalives_idle(), Duration::from_secs(60));
    }

    #[test]
    fn settings_never_show_the_password() {
        let s = resolve(Some("postgres://u:secret@h/db"), &[]);
        assert!(!format!("{s:?}").contains("secret"));
        assert!(!s.describe().contains("secret"));
    }

    #[test]
    fn bad_urls_are_clear_and_redacted() {
        let env = env_of(&[]);
        let err = ConnectionSettings::resolve_with(Some("postgres://u:secret@h:notaport/db"), &env)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
        assert!(err.contains("u:***@h"), "{err}");
        let err = ConnectionSettings::resolve_with(Some("postgres://h/db?sslmode=sometimes"), &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sslmode"), "{err}");
    }

    #[test]
    fn pgpass_is_read_with_wildcards_and_escapes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:5432:*:u:nope\ndb.example:*:*:u:pa\\:ss\n*:*:*:*:fallback\n",
        )
        .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = file.display().to_string();
        let s = resolve(
            Some("postgres://u@db.example/app"),
            &[("PGPASSFILE", path.as_str())],
        );
        assert_eq!(s.password().as_deref(), Some("pa:ss"));
        let s = resolve(
            Some("postgres://v@elsewhere/app"),
            &[("PGPASSFILE", path.as_str())],
        );
        assert_eq!(s.password().as_deref(), Some("fallback"));
        // PGPASSWORD wins over the file, the URL over both.
        let s = resolve(
            Some("postgres://u@db.example/app"),
            &[("PGPASSFILE", path.as_str()), ("PGPASSWORD", "env")],
        );
        assert_eq!(s.password().as_deref(), Some("env"));
        let s = resolve(
            Some("postgres://u:url@db.example/app"),
            &[("PGPASSWORD", "env")],
        );
        assert_eq!(s.password().as_deref(), Some("url"));
        // A world-readable file is ignored, as libpq ignores it.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = resolve(
            Some("postgres://u@db.example/app"),
            &[("PGPASSFILE", path.as_str())],
        );
        assert_eq!(s.password(), None);
    }
}
