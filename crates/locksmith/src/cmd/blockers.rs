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
use serde::Serialize;

use crate::cli::{BlockersArgs, Format};
use crate::exit::{CmdResult, Outcome};
use crate::render;

/// `blockers --format json`: the primary's report, plus `standbys` when given.
#[derive(Serialize)]
struct Report {
    #[serde(flatten)]
    primary: BlockerReport,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    standbys: Vec<StandbyReport>,
    /// Present when `--database-url` leads through a connection pooler.
    #[serde(skip_serializing_if = "Option::is_none")]
    pooler: Option<render::PoolerJson>,
}

pub async fn run(args: BlockersArgs) -> CmdResult {
    let settings =
        super::settings(&(&args.connection).into())?.with_application_name("locksmith blockers");
    let replicas = super::replica_settings(&args.replicas)?;
    let client = super::connect(&settings).await?;
    super::note_pooler("blockers", &client, &settings, args.format == Format::Human);
    let pooler = render::PoolerJson::of(&client, settings.has_direct());
    let snapshot = Snapshotter::new(&client).await?.take(&client).await?;
    let primary = BlockerReport::from_snapshot(&snapshot);
    let mut standbys = Vec::with_capacity(replicas.len());
    for settings in &replicas {
        let (server, client) =
            replica::connect_standby(&settings.with_application_name("locksmith blockers")).await?;
        let snapshot = Snapshotter::new(&client).await?.take(&client).await?;
        standbys.push(StandbyReport {
            server,
            report: BlockerReport::from_snapshot(&snapshot),
        });
    }
    let blocked =
        !primary.blockers.is_empty() || standbys.iter().any(|s| !s.report.blockers.is_empty());
    let report = Report {
        primary,
        standbys,
        pooler,
    };
    let mut out = crate::output::stdout();
    match args.format {
        Format::Json => render::json(&mut out, &report)?,
        Format::Human => {
            let style = render::style::Style::detect();
            let mut text = render::blockers::human(&report.primary, style);
            for standby in &report.standbys {
                text.push_str(&render::blockers::standby(standby, style));
            }
            out.write_all(text.as_bytes())?
        }
    }
    Ok(if blocked {
        Outcome::Blocked
    } else {
        Outcome::Done
    })
}
