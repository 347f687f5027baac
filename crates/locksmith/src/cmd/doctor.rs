//! `locksmith doctor`: audits settings and live state, scans server logs.
//! The rules live in `locksmith_pg::audit` and `locksmith_core::server_log`;
//! this file reads the inputs, renders, and picks the outcome. Replication
//! (`locksmith_pg::audit::standby`) is audited on the primary every time and
//! on each hot standby given with `--replica`.

use std::io::Write;

use locksmith_core::server_log::{self, LogSummary};
use locksmith_pg::audit::{self, Finding, Severity};
use locksmith_pg::guard::ConnectError;
use serde::Serialize;

use crate::cli::{DoctorArgs, Format};
use crate::exit::{CmdResult, Failure, Outcome};
use crate::render;

/// The `doctor --format json` contract.
#[derive(Debug, Serialize)]
pub struct DoctorReport {
    /// Settings and live-state findings, worst first.
    pub findings: Vec<Finding>,
    /// Telltale log lines, counted by kind.
    pub log: Vec<LogSummary>,
    /// Present when `--database-url` leads through a connection pooler.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pooler: Option<render::PoolerJson>,
}

pub async fn run(args: DoctorArgs) -> CmdResult {
    if let Some(list) = &args.fleet.targets {
        return super::fleet::doctor(&args, list).await;
    }
    let mut texts = Vec::new();
    for path in &args.logs {
        let text = std::fs::read(path)
            .map_err(|e| Failure::input(miette::miette!("reading log {}: {e}", path.display())))?;
        texts.push(String::from_utf8_lossy(&text).into_owned());
    }
    let log = server_log::scan_all(texts.iter().map(String::as_str));

    let settings =
        super::settings(&(&args.connection).into())?.with_application_name("locksmith doctor");
    let replicas = super::replica_settings(&args.replicas)?;
    let mut pooler = None;
    // Its audit reads in transactions: behind a statement pooler, over --direct-url or refused.
    let connected =
        locksmith_pg::guard::connect_for_transactions(&settings, super::READS_IN_TRANSACTIONS);
    let mut findings = match connected.await {
        Ok(client) => {
            let (findings, via) =
                audit_server(&client, &settings, &replicas, args.format == Format::Human).await?;
            pooler = via;
            findings
        }
        // With a log to read, an unreachable server is one finding, not the end.
        Err(ConnectError::Failed(e)) if !args.logs.is_empty() => vec![Finding {
            id: "server_unreachable",
            severity: Severity::Error,
            message: format!("settings not audited: {e}"),
            why: "Only the log was scanned.".into(),
            fix:
                "Pass --database-url (or set DATABASE_URL / PG* variables) to audit the server too."
                    .into(),
        }],
        Err(e) => return Err(Failure::from(e)),
    };
    findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let report = DoctorReport {
        findings,
        log,
        pooler,
    };
    let mut out = crate::output::stdout();
    match args.format {
        Format::Json => render::json(&mut out, &report)?,
        Format::Human => out.write_all(
            render::doctor::human(
                &report.findings,
                &report.log,
                render::style::Style::detect(),
            )
            .as_bytes(),
        )?,
    }
    let worst = report.findings.iter().map(|f| f.severity).max();
    Ok(if worst >= Some(Severity::Warning) {
        Outcome::Findings
    } else {
        Outcome::Done
    })
}

/// Audits the server behind `client` (and each standby in `replicas`,
/// `locksmith_pg::audit::server`): its findings, and the `pooler` key;
/// `human`: say on stderr when a pooler is in between.
pub(super) async fn audit_server(
    client: &locksmith_pg::Connection,
    settings: &locksmith_pg::ConnectionSettings,
    replicas: &[locksmith_pg::ConnectionSettings],
    human: bool,
) -> Result<(Vec<Finding>, Option<render::PoolerJson>), Failure> {
    super::note_pooler("doctor", client, settings, human);
    let pooler = render::PoolerJson::of(client, settings.has_direct());
    Ok((audit::server(client, settings, replicas).await?, pooler))
}
