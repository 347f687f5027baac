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

use locksmith_pg::diagnosis::{self, Diagnosis};
use locksmith_pg::ConnectionSettings;

use crate::cli::{BlockersArgs, Format};
use crate::exit::{CmdResult, Failure, Outcome};
use crate::render;

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
        Format::Human => out.write_all(
            render::blockers::diagnosis(&report, render::style::Style::detect()).as_bytes(),
        )?,
    }
    Ok(if blocked {
        Outcome::Blocked
    } else {
        Outcome::Done
    })
}

/// One snapshot of the server `settings` leads to (and of each standby in
/// `replicas`), diagnosed (`locksmith_pg::diagnosis`): the whole server's,
/// or with `own_database` only what concerns the database connected to (a
/// fleet's target); `human`: say on stderr when a pooler is in between.
pub(super) async fn diagnose(
    settings: &ConnectionSettings,
    replicas: &[ConnectionSettings],
    own_database: bool,
    human: bool,
) -> Result<Diagnosis, Failure> {
    let settings = settings.with_application_name("locksmith blockers");
    let client = super::connect(&settings).await?;
    super::note_pooler("blockers", &client, &settings, human);
    Ok(diagnosis::diagnose(&client, &settings, replicas, own_database).await?)
}
