//! `locksmith blockers`: one snapshot of who waits for whom. Exit 3 while
//! sessions wait behind a root blocker (an outage in progress, the roots
//! named), 0 when nobody waits: usable from a monitoring script.
//!
//! With `--replica URL` each hot standby is snapshotted too and diagnosed
//! with the same graph: its startup process waiting to replay a lock the
//! primary took is the queued DDL there, its readers the roots. A wait on a
//! standby counts for the exit code like one on the primary.
//!
//! Through a pooler (even in transaction mode) the snapshot is one read-only
//! transaction; sessions whose client address is the pooler's are labelled
//! `via pooler` (`via_pooler` in JSON), and the report carries `pooler`.

use std::io::Write;

use locksmith_pg::blockers::{BlockerReport, StandbyReport};
use locksmith_pg::guard::replica;
use locksmith_pg::snapshot::Snapshotter;
use locksmith_pg::ConnectionSettings;
use serde::Serialize;

use crate::cli::{BlockersArgs, Format};
use crate::exit::{CmdResult, Failure, Outcome};
use crate::render;

/// `blockers --format json`: the primary's report, plus `standbys` when given.
#[derive(Serialize)]
pub(super) struct Report {
    #[serde(flatten)]
    pub primary: BlockerReport,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub standbys: Vec<StandbyReport>,
    /// Present when `--database-url` leads through a connection pooler.
    #[serde(skip_serializing_if = "Option::is_none")]
    pooler: Option<render::PoolerJson>,
}

impl Report {
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

    /// Renders it for people.
    pub fn human(&self, style: render::style::Style) -> String {
        let mut text = render::blockers::human(&self.primary, style);
        for standby in &self.standbys {
            text.push_str(&render::blockers::standby(standby, style));
        }
        text
    }
}

pub async fn run(args: BlockersArgs) -> CmdResult {
    if let Some(list) = &args.fleet.targets {
        return super::fleet::blockers(&args, list).await;
    }
    let settings =
        super::settings(&(&args.connection).into())?.with_application_name("locksmith blockers");
    let replicas = super::replica_settings(&args.replicas)?;
    let report = diagnose(&settings, &replicas, false, args.format == Format::Human).await?;
    let blocked = report.blocked();
    let mut out = crate::output::stdout();
    match args.format {
        Format::Json => render::json(&mut out, &report)?,
        Format::Human => out.write_all(report.human(render::style::Style::detect()).as_bytes())?,
    }
    Ok(if blocked {
        Outcome::Blocked
    } else {
        Outcome::Done
    })
}

/// One snapshot of the server `settings` leads to (and of each standby in
/// `replicas`), diagnosed: the whole server's, or with `own_database` only
/// what concerns the database connected to (a fleet's target); `human`: say
/// on stderr when a pooler is in between.
pub(super) async fn diagnose(
    settings: &ConnectionSettings,
    replicas: &[ConnectionSettings],
    own_database: bool,
    human: bool,
) -> Result<Report, Failure> {
    let settings = settings.with_application_name("locksmith blockers");
    let client = super::connect(&settings).await?;
    super::note_pooler("blockers", &client, &settings, human);
    let pooler = render::PoolerJson::of(&client, settings.has_direct());
    let snapshot = Snapshotter::new(&client).await?.take(&client).await?;
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
    Ok(Report {
        primary,
        standbys,
        pooler,
    })
}
