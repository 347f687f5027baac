//! Embedding a fleet in a Rust program: applies a folder of migrations to
//! every database of a targets list (one connection string per line), at
//! most 8 at a time, the first one as a canary, printing a line per target
//! on stderr and the report as JSON on stdout.
//!
//! ```sh
//! cargo run -p locksmith-pg --example fleet -- migrations/ tenants.txt
//! ```
//!
//! Exit: 0 every database applied or up to date, 3 some gave up and none
//! failed, 1 any failed or unreachable, 2 bad input (nothing ran).

use std::process::ExitCode;

use locksmith_core::plan::Plan;
use locksmith_pg::migrate::fleet::{self, Fleet, FleetEvent};
use locksmith_pg::migrate::{self, Policy};

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(dir), Some(list)) = (args.next(), args.next()) else {
        eprintln!("usage: fleet DIR TARGETS_FILE");
        return ExitCode::from(2);
    };
    // The migrations and the whole list are read before anything connects.
    let plan = match migrate::read_folder(&dir)
        .map_err(migrate::Error::from)
        .and_then(|files| Ok(Plan::new(&dir, files, None)?))
    {
        Ok(plan) => plan,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let text = match std::fs::read_to_string(&list) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: {list}: {e}");
            return ExitCode::from(2);
        }
    };
    let targets = match fleet::parse_targets(&list, &text) {
        Ok(targets) => targets,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let report = Fleet::new(targets, Policy::default())
        .parallel(8)
        .canary(1)
        .on_event(|e| {
            if let FleetEvent::Finished { report, .. } = e {
                eprintln!("{}: {}", report.target, report.status.as_str());
            }
        })
        .run(plan)
        .await;
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("a report is JSON")
    );
    let s = report.summary;
    ExitCode::from(if s.failed + s.unreachable + s.skipped > 0 {
        1
    } else if s.gave_up > 0 {
        3
    } else {
        0
    })
}
