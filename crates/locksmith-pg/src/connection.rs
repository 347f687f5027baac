//! One open connection, and the only way locksmith sends SQL.
//!
//! Every statement travels unnamed: extended protocol with the parameter
//! types given up front ([`Param`]), or the simple protocol. A named prepared
//! statement lives in one backend, and a connection pooler in transaction
//! mode (PgBouncer, RDS Proxy) hands a different backend to each transaction:
//! `prepared statement "s0" does not exist`, or worse, another client's
//! statement under the same name. Unnamed statements are parsed, bound and
//! run in one round trip, so they are safe through any pooler.
//!
//! The connection also says whether a pooler is in between ([`Pooler`]):
//! the backend key it was given names a process that is not the backend
//! answering its queries. Behind a pooler, nothing session-level is set at
//! connect (it would stay on a pooled backend for other clients), and the
//! backend pid must be read inside the transaction that uses it
//! ([`Connection::backend_pid`]), never once at connect.
//!
//! A pooler in *statement* pooling mode ([`Pooling::Statement`]) hands each
//! statement to any backend and cuts the link of a client that opens a
//! transaction block (PgBouncer: "transaction blocks not allowed in
//! statement pooling mode"), after whatever came before in the session ran.
//! It is found at connect, by a `BEGIN` that touches nothing, and what needs
//! transactions refuses it up front ([`Connection::require_transactions`],
//! [`StatementPooling`]) rather than fail halfway.

use std::fmt;
use std::future::Future;

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{CancelToken, Client, Row, SimpleQueryMessage};

/// A query parameter with the PostgreSQL type it is sent as.
pub trait Param: ToSql + Sync {
    /// The type the server is told the parameter has.
    fn pg_type(&self) -> Type;
    /// The value, for the driver.
    fn value(&self) -> &(dyn ToSql + Sync);
    /// The type every value of `Self` has.
    fn of_type() -> Type
    where
        Self: Sized;
}

macro_rules! typed {
    ($($rust:ty => $pg:ident),* $(,)?) => {
        $(impl Param for $rust {
            fn pg_type(&self) -> Type {
                Type::$pg
            }
            fn value(&self) -> &(dyn ToSql + Sync) {
                self
            }
            fn of_type() -> Type {
                Type::$pg
            }
        })*
    };
}

typed! {
    bool => BOOL,
    i16 => INT2,
    i32 => INT4,
    i64 => INT8,
    u32 => OID,
    f64 => FLOAT8,
    String => TEXT,
    &str => TEXT,
    Vec<i32> => INT4_ARRAY,
    &[i32] => INT4_ARRAY,
    Vec<i64> => INT8_ARRAY,
    &[i64] => INT8_ARRAY,
    Vec<f64> => FLOAT8_ARRAY,
    Vec<u32> => OID_ARRAY,
    Vec<String> => TEXT_ARRAY,
    &[String] => TEXT_ARRAY,
    Vec<&str> => TEXT_ARRAY,
    &[&str] => TEXT_ARRAY,
    std::time::SystemTime => TIMESTAMPTZ,
}

impl<T: Param> Param for Option<T> {
    fn pg_type(&self) -> Type {
        T::of_type()
    }
    fn value(&self) -> &(dyn ToSql + Sync) {
        self
    }
    fn of_type() -> Type {
        T::of_type()
    }
}

/// A connection pooler between us and the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooler {
    /// The process id the connection was announced under (the pooler's own).
    pub key_pid: i32,
    /// The backend that answered the first query.
    pub backend_pid: i32,
    /// What it lets through whole: a transaction, or only a statement.
    pub pooling: Pooling,
}

/// How much of a client's work a pooler keeps on one server backend, as far
/// as a client can tell (session and transaction pooling look alike from
/// one connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// At least each transaction keeps its backend (PgBouncer's `session`
    /// or `transaction` pool mode, RDS Proxy): transaction blocks work.
    Transaction,
    /// Each statement may go to another backend and transaction blocks are
    /// refused (PgBouncer's `statement` pool mode).
    Statement,
}

/// A statement pooler is in between, and what was asked needs transaction
/// blocks: refused before anything ran.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "nothing was done: the connection goes through a pooler in statement pooling mode \
     (PgBouncer's pool_mode = statement), which closes the connection of a client that opens a \
     transaction (\"transaction blocks not allowed in statement pooling mode\"), and {needs}. \
     {remedy}",
    remedy = if *.direct_url_helps {
        "Give --direct-url (or LOCKSMITH_DIRECT_URL) with a URL straight to the server, and \
         locksmith runs there; or connect through a pool in transaction or session mode"
    } else {
        "Point the command and --database-url straight at the server, or at a pool in transaction \
         or session mode (--direct-url moves only locksmith's own connections, not the command's)"
    }
)]
pub struct StatementPooling {
    /// The pooler.
    pub pooler: Pooler,
    /// What needs transaction blocks, e.g. "apply runs each migration in a transaction".
    pub needs: String,
    /// Whether a direct route (`--direct-url`) lets the command run.
    pub direct_url_helps: bool,
}

impl fmt::Display for Pooler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a connection pooler (PgBouncer or similar): the connection was announced as \
             process {} but queries are answered by backend {}",
            self.key_pid, self.backend_pid
        )
    }
}

/// An open connection to a server, perhaps through a pooler.
pub struct Connection {
    client: Client,
    key_pid: Option<i32>,
    pooler: Option<Pooler>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("key_pid", &self.key_pid)
            .field("pooler", &self.pooler)
            .finish()
    }
}

fn typed<'a>(params: &'a [&'a dyn Param]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params.iter().map(|p| (p.value(), p.pg_type())).collect()
}

impl Connection {
    pub(crate) fn new(client: Client, key_pid: Option<i32>) -> Self {
        Connection {
            client,
            key_pid,
            pooler: None,
        }
    }

    pub(crate) fn with_pooler(mut self, pooler: Option<Pooler>) -> Self {
        self.pooler = pooler;
        self
    }

    /// The process id the server (or a pooler) announced for this
    /// connection in its backend key; `None` only if it could not be read back.
    pub fn announced_pid(&self) -> Option<i32> {
        self.key_pid
    }

    /// The pooler in between, if any.
    pub fn pooler(&self) -> Option<Pooler> {
        self.pooler
    }

    /// Refuses a statement pooler in between: what runs transaction blocks
    /// (`needs` says which) asks first, before it touches anything.
    pub fn require_transactions(
        &self,
        needs: &str,
        direct_url_helps: bool,
    ) -> Result<(), StatementPooling> {
        match self.pooler {
            Some(pooler) if pooler.pooling == Pooling::Statement => Err(StatementPooling {
                pooler,
                needs: needs.to_string(),
                direct_url_helps,
            }),
            _ => Ok(()),
        }
    }

    /// Runs a statement and returns its rows.
    pub fn query<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a dyn Param],
    ) -> impl Future<Output = Result<Vec<Row>, tokio_postgres::Error>> + Send + 'a {
        // Typed before the future, so the future is plainly Send.
        let params = typed(params);
        async move { self.client.query_typed(sql, &params).await }
    }

    /// Runs a statement that returns exactly one row.
    pub fn query_one<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a dyn Param],
    ) -> impl Future<Output = Result<Row, tokio_postgres::Error>> + Send + 'a {
        // Typed before the future, so the future is plainly Send.
        let params = typed(params);
        async move { self.client.query_typed_one(sql, &params).await }
    }

    /// Runs a statement that returns at most one row.
    pub fn query_opt<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a dyn Param],
    ) -> impl Future<Output = Result<Option<Row>, tokio_postgres::Error>> + Send + 'a {
        // Typed before the future, so the future is plainly Send.
        let params = typed(params);
        async move { self.client.query_typed_opt(sql, &params).await }
    }

    /// Runs a statement and returns how many rows it touched.
    pub fn execute<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [&'a dyn Param],
    ) -> impl Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a {
        // Typed before the future, so the future is plainly Send.
        let params = typed(params);
        async move { self.client.execute_typed(sql, &params).await }
    }

    /// Runs one or more statements with the simple protocol, in one round
    /// trip (an implicit transaction when there are several and no BEGIN).
    pub async fn batch_execute(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.client.batch_execute(sql).await
    }

    /// Runs statements with the simple protocol and returns their text rows.
    pub async fn simple_query(
        &self,
        sql: &str,
    ) -> Result<Vec<SimpleQueryMessage>, tokio_postgres::Error> {
        self.client.simple_query(sql).await
    }

    /// The backend answering right now. Behind a pooler in transaction mode
    /// that is only stable inside a transaction: call it after `BEGIN`.
    pub async fn backend_pid(&self) -> Result<i32, tokio_postgres::Error> {
        let row = self.query_one("SELECT pg_backend_pid()", &[]).await?;
        Ok(row.get(0))
    }

    /// The database this connection reads, as the server names it (through a
    /// pooler the name in the URL may be an alias).
    pub async fn current_database(&self) -> Result<String, crate::Error> {
        let row = self
            .query_one("SELECT current_database()::text", &[])
            .await
            .map_err(|e| crate::Error::query("reading current_database()", e))?;
        Ok(row.get(0))
    }

    /// What tells one server (and database) from another: when the
    /// postmaster started, and the database. A direct route given with
    /// `--direct-url` must lead where the pooler does.
    pub async fn server_identity(&self) -> Result<String, tokio_postgres::Error> {
        let row = self
            .query_one(
                "SELECT pg_postmaster_start_time()::text || ' ' || current_database()",
                &[],
            )
            .await?;
        Ok(row.get(0))
    }

    /// What cancels this connection's running statement (through the pooler,
    /// which forwards it to whichever backend serves us at that moment).
    pub fn cancel_token(&self) -> CancelToken {
        self.client.cancel_token()
    }

    /// Whether the connection has closed.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
