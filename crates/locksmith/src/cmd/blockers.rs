//! `locksmith blockers`: one snapshot of who waits for whom. Exit 3 while
//! sessions wait behind a root blocker (an outage in progress, the roots
//! named), 0 when nobody waits: usable from a monitoring script.

use std::io::Write;

use locksmith_pg::blockers::BlockerReport;
use locksmith_pg::snapshot::Snapshotter;

use crate::cli::{BlockersArgs, Format};
use crate::exit::{CmdResult, Outcome};
use crate::render;

pub async fn run(args: BlockersArgs) -> CmdResult {
    let settings = super::settings(&args.connection)?.with_application_name("locksmith blockers");
    let client = super::connect(&settings).await?;
    let snapshot = Snapshotter::new(&client).await?.take(&client).await?;
    let report = BlockerReport::from_snapshot(&snapshot);
    let mut out = crate::output::stdout();
    match args.format {
        Format::Json => render::json(&mut out, &report)?,
        Format::Human => out.write_all(
            render::blockers::human(&report, render::style::Style::detect()).as_bytes(),
        )?,
    }
    Ok(if report.blockers.is_empty() {
        Outcome::Done
    } else {
        Outcome::Blocked
    })
}
