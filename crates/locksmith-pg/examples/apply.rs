//! Embedding the whole migration flow in a Rust program: applies a folder of
//! migrations to the database named by `DATABASE_URL` (else libpq's `PG*`
//! variables) under the default guard, printing progress on stderr and the
//! report as JSON on stdout.
//!
//! ```sh
//! DATABASE_URL=postgresql://app@db/app cargo run -p pg-locksmith-pg --example apply -- migrations/
//! ```
//!
//! Exit: 0 applied (or nothing pending), 3 gave up blocked, 2 bad input, 1 anything else.

use std::process::ExitCode;

use locksmith_core::plan::Plan;
use locksmith_pg::migrate::{self, Event, Policy, Runner, Status};
use locksmith_pg::{ConnectionSettings, ErrorKind};

#[tokio::main]
async fn main() -> ExitCode {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "migrations".into());
    match apply(&dir).await {
        Ok(Status::Applied) => ExitCode::SUCCESS,
        Ok(Status::Blocked | Status::HoldExceeded) => ExitCode::from(3),
        Ok(Status::Failed) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(match e.kind() {
                ErrorKind::BadInput => 2,
                _ => 1,
            })
        }
    }
}

/// Applies `dir` to the database the environment names; the report's status, or why nothing ran.
pub async fn apply(dir: &str) -> Result<Status, migrate::Error> {
    // Every file parsed before anything connects: a syntax error stops here.
    let plan = Plan::new(dir, migrate::read_folder(dir)?, None)?;
    let settings = ConnectionSettings::resolve(None)?;
    let runner = Runner::new(settings, Policy::default()).on_event(|e| match e {
        Event::Applying { migration, .. } => eprintln!("applying {migration}"),
        Event::Guard(locksmith_pg::guard::Event::Waiting { holders, .. }) => {
            eprintln!("waiting for {} blocking session(s)", holders.len())
        }
        _ => {}
    });
    let report = runner.run(plan).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("a report is JSON")
    );
    Ok(report.status)
}
