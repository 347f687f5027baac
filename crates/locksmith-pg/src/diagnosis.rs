//! `blockers`' whole reading of a server: one snapshot of it (and of each
//! hot standby given), each diagnosed with the blocker graph
//! ([`crate::blockers`], pure), into the `blockers --format json` contract
//! ([`Diagnosis`]). Reads only; signals nobody.

use serde::Serialize;

use crate::blockers::{BlockerReport, StandbyReport};
use crate::guard::replica;
use crate::migrate::PoolerJson;
use crate::snapshot::Snapshotter;
use crate::{Connection, ConnectionSettings, Error};

/// `blockers --format json`: the primary's report, plus `standbys` when given.
#[derive(Debug, Serialize)]
pub struct Diagnosis {
    /// The server's (or, for a fleet's target, its database's) report.
    #[serde(flatten)]
    pub primary: BlockerReport,
    /// Each hot standby's, named by its server.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub standbys: Vec<StandbyReport>,
    /// Present when the connection leads through a connection pooler.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pooler: Option<PoolerJson>,
}

impl Diagnosis {
    /// Whether sessions wait behind a root blocker, here or on a standby.
    pub fn blocked(&self) -> bool {
        !self.primary.blockers.is_empty()
            || self.standbys.iter().any(|s| !s.report.blockers.is_empty())
    }

    /// Whether there is anything to read: waits, sessions idle in
    /// transaction, prepared transactions, sessions hidden from our role.
    pub fn worth_a_look(&self) -> bool {
        let p = &self.primary;
        self.blocked()
            || !p.waiting.is_empty()
            || !p.idle_in_transaction.is_empty()
            || !p.prepared_transactions.is_empty()
            || p.hidden.is_some()
    }
}

/// One snapshot of the server behind `client` (reached with `settings`) and
/// of each standby in `replicas`, diagnosed: the whole server's, or with
/// `own_database` only what concerns the database connected to.
pub async fn diagnose(
    client: &Connection,
    settings: &ConnectionSettings,
    replicas: &[ConnectionSettings],
    own_database: bool,
) -> Result<Diagnosis, Error> {
    let pooler = PoolerJson::of(client, settings.has_direct());
    let snapshot = Snapshotter::new(client).await?.take(client).await?;
    let primary = match own_database {
        // Through a pooler the name in the URL may be an alias: the
        // server's own name for it.
        true => BlockerReport::for_database(&snapshot, &client.current_database().await?),
        false => BlockerReport::from_snapshot(&snapshot),
    };
    let mut standbys = Vec::with_capacity(replicas.len());
    for settings in replicas {
        let (server, client) =
            replica::connect_standby(&settings.with_application_name("locksmith blockers")).await?;
        let snapshot = Snapshotter::new(&client).await?.take(&client).await?;
        standbys.push(StandbyReport {
            server,
            report: BlockerReport::from_snapshot(&snapshot),
        });
    }
    Ok(Diagnosis {
        primary,
        standbys,
        pooler,
    })
}
