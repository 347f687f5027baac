//! Prepared transactions (`PREPARE TRANSACTION`, two-phase commit): they
//! hold their locks until someone runs `COMMIT PREPARED` or `ROLLBACK
//! PREPARED`, and no session shows them. In `pg_locks` their rows have no
//! pid (the `virtualtransaction` of the transaction that prepared them,
//! which also holds its own `transactionid` lock, joins them to
//! `pg_prepared_xacts`); `pg_blocking_pids` reports them as pid 0.
//!
//! Reports keep that convention: a holder or root blocker that is a prepared
//! transaction has [`NO_BACKEND`] as its pid (`"pid": null` in JSON) and a
//! `prepared` object naming it ([`PreparedXact`]). It cannot be cancelled or
//! terminated; the guard never races it, never queues behind it, and the
//! advice is to finish it ([`PreparedXact::finish_advice`]).

use serde::{Serialize, Serializer};

use crate::snapshot::{LockRow, SessionSummary};
use crate::{Connection, Error};
use locksmith_core::quote::literal;

/// The pid that stands for "no backend": a prepared transaction, as
/// `pg_blocking_pids` reports it. Serialised as `null`.
pub const NO_BACKEND: i32 = 0;

/// A transaction prepared for two-phase commit and not yet finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreparedXact {
    /// The global transaction id given to `PREPARE TRANSACTION`.
    pub gid: String,
    /// The role that prepared it.
    pub owner: String,
    /// Its database.
    pub database: String,
    /// When it was prepared (UTC, RFC 3339).
    pub prepared_at: String,
    /// Time since it was prepared.
    pub age_ms: i64,
    /// The statement that commits it (run in its database).
    pub commit: String,
    /// The statement that rolls it back (run in its database).
    pub rollback: String,
}

impl PreparedXact {
    /// A prepared transaction, with the statements that finish it quoted.
    pub fn new(
        gid: String,
        owner: String,
        database: String,
        prepared_at: String,
        age_ms: i64,
    ) -> Self {
        PreparedXact {
            commit: format!("COMMIT PREPARED {}", literal(&gid)),
            rollback: format!("ROLLBACK PREPARED {}", literal(&gid)),
            gid,
            owner,
            database,
            prepared_at,
            age_ms,
        }
    }

    /// It as reports summarise a session: no pid ([`NO_BACKEND`]), state
    /// `prepared`, its owner as the role, its age as the transaction's and
    /// as the time in that state, `PREPARE TRANSACTION 'gid'` as its last query.
    pub fn summary(&self) -> SessionSummary {
        SessionSummary {
            pid: NO_BACKEND,
            state: Some("prepared".into()),
            application_name: String::new(),
            client_addr: None,
            usename: Some(self.owner.clone()),
            xact_age_ms: Some(self.age_ms),
            state_age_ms: Some(self.age_ms),
            query: format!("PREPARE TRANSACTION {}", literal(&self.gid)),
            via_pooler: false,
        }
    }

    /// `prepared transaction 'gid' (owner app, database shop, prepared 41.0s ago)`.
    pub fn label(&self) -> String {
        format!(
            "prepared transaction {} (owner {}, database {}, prepared {} ago)",
            literal(&self.gid),
            self.owner,
            self.database,
            locksmith_core::duration::human(std::time::Duration::from_millis(
                self.age_ms.max(0) as u64
            ))
        )
    }

    /// What to do about it: it has no session to cancel or terminate.
    pub fn finish_advice(&self) -> String {
        format!(
            "{} holds its locks until it is finished (it has no session: it cannot be cancelled or terminated). \
             Ask the transaction manager that prepared it to finish it, or, as a superuser or {} in database {}: {}; to keep its changes, or {}; to discard them",
            self.label(),
            self.owner,
            self.database,
            self.commit,
            self.rollback
        )
    }
}

/// `pid` as JSON: `null` for [`NO_BACKEND`] (a prepared transaction).
pub fn serialize_pid<S: Serializer>(pid: &i32, s: S) -> Result<S::Ok, S::Error> {
    match *pid {
        NO_BACKEND => s.serialize_none(),
        pid => s.serialize_i32(pid),
    }
}

/// The columns that name a prepared transaction, from a query whose FROM
/// clause has [`PREPARED_LOCKS`] as `pr`: read with [`PreparedXact::from_row`].
pub(crate) const PREPARED_COLUMNS: &str = "pr.gid, pr.owner::text, pr.database::text,
     to_char(pr.prepared AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
     (extract(epoch FROM now() - pr.prepared) * 1000)::bigint";

/// Each prepared transaction with every lock it holds (`l`), as a subquery:
/// its `transactionid` lock joins `pg_prepared_xacts` to the virtual
/// transaction its other locks carry. The `EXISTS` is a one-time filter:
/// with no prepared transaction (the usual case, and every server with
/// `max_prepared_transactions = 0`) `pg_locks` is not read at all
/// (measured with EXPLAIN ANALYZE on 15: "never executed"), so the guard's
/// look pays next to nothing for it.
pub(crate) const PREPARED_LOCKS: &str = "(
    SELECT p.gid, p.owner, p.database, p.prepared, l.locktype, l.database AS lock_database,
           l.relation, l.mode, l.granted
    FROM pg_prepared_xacts p
    JOIN pg_locks x ON x.locktype = 'transactionid' AND x.pid IS NULL
                   AND x.transactionid = p.transaction
    JOIN pg_locks l ON l.pid IS NULL AND l.virtualtransaction = x.virtualtransaction
    WHERE EXISTS (SELECT FROM pg_prepared_xacts)
)";

impl PreparedXact {
    /// Reads [`PREPARED_COLUMNS`] from `row`, starting at column `at`.
    pub(crate) fn from_row(row: &tokio_postgres::Row, at: usize) -> PreparedXact {
        PreparedXact::new(
            row.get(at),
            row.get(at + 1),
            row.get(at + 2),
            row.get(at + 3),
            row.get(at + 4),
        )
    }
}

/// A prepared transaction and the locks it holds, for `blockers`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreparedLocks {
    /// Which transaction.
    #[serde(flatten)]
    pub xact: PreparedXact,
    /// Its relation locks (named as in [`LockRow`]; `pid` is [`NO_BACKEND`]).
    #[serde(skip)]
    pub locks: Vec<LockRow>,
}

/// Every prepared transaction of the server, oldest first, with its
/// relation locks (named when in this database).
pub async fn with_locks(client: &Connection) -> Result<Vec<PreparedLocks>, Error> {
    // Each prepared transaction, and each relation lock it holds (none: one row with NULL lock columns).
    let rows = client
        .query(
            &format!(
                "SELECT {PREPARED_COLUMNS},
                    CASE WHEN pr.relation IS NULL THEN NULL
                         WHEN pr.lock_database = (SELECT oid FROM pg_database WHERE datname = current_database())
                           OR pr.lock_database = 0
                         THEN pr.relation::regclass::text
                         ELSE 'relation ' || pr.relation::text || ' in database '
                              || coalesce((SELECT quote_ident(datname) FROM pg_database WHERE oid = pr.lock_database),
                                          pr.lock_database::text) END,
                    pr.mode
             FROM {PREPARED_LOCKS} pr
             WHERE pr.locktype IN ('relation', 'transactionid')
             ORDER BY pr.prepared, pr.gid, pr.locktype"
            ),
            &[],
        )
        .await
        .map_err(|e| Error::query("reading prepared transactions and their locks", e))?;
    let mut out: Vec<PreparedLocks> = Vec::new();
    for row in &rows {
        let xact = PreparedXact::from_row(row, 0);
        if out.last().is_none_or(|p| p.xact.gid != xact.gid) {
            out.push(PreparedLocks {
                xact,
                locks: Vec::new(),
            });
        }
        let relation: Option<String> = row.get(5);
        if relation.is_some() {
            let last = out.last_mut().expect("pushed above");
            last.locks.push(LockRow {
                pid: NO_BACKEND,
                locktype: "relation".into(),
                relation,
                mode: row.get(6),
                granted: true,
                waiting_ms: None,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finishing_statements_quote_the_gid() {
        let p = PreparedXact::new(
            "it's 2pc".into(),
            "app".into(),
            "shop".into(),
            "2026-01-01T00:00:00.000000Z".into(),
            41_000,
        );
        assert_eq!(p.commit, "COMMIT PREPARED 'it''s 2pc'");
        assert_eq!(p.rollback, "ROLLBACK PREPARED 'it''s 2pc'");
        assert!(
            p.label().starts_with(
                "prepared transaction 'it''s 2pc' (owner app, database shop, prepared 41.0s ago"
            ),
            "{}",
            p.label()
        );
        let advice = p.finish_advice();
        assert!(
            advice.contains("cannot be cancelled or terminated"),
            "{advice}"
        );
        assert!(advice.contains("COMMIT PREPARED 'it''s 2pc';"), "{advice}");
    }
}
