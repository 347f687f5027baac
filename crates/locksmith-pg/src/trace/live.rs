//! Before a trace on a user's database (`trace --database-url`): the route
//! its one long transaction takes ([`direct_route`]), and the statements
//! refused before anything runs because running them for real would block
//! the server's traffic ([`long_holds`]).
//!
//! Must not run the migration, nor write anything: sizes and the catalog are
//! read in read-only transactions, as for `lint --database-url`.

use locksmith_core::analysis::{analyze_after, analyze_in, Schema, Statement};
use locksmith_core::duration::human;
use locksmith_core::lint::live::{self, bytes, traffic_hold};

use super::LiveLimits;
use crate::{Connection, ConnectionSettings, Error};

/// The route a live trace takes: `settings` itself, or when a direct route
/// is given (`--direct-url`) that one, checked to lead to the same server as
/// `target` (connected over `settings`) with no pooler in between; then the
/// trace's one long transaction takes no slot of the pool. Through a pooler
/// without it the trace works too: everything it does is inside that one
/// transaction, so it stays on one backend, whose pid is read after `BEGIN`.
pub async fn direct_route(
    settings: &ConnectionSettings,
    target: &Connection,
) -> Result<ConnectionSettings, Error> {
    if !settings.has_direct() {
        return Ok(settings.clone());
    }
    settings.connect_direct(target).await?;
    Ok(settings.direct().clone())
}

/// A statement refused before a live trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The file it is in.
    pub file: String,
    /// Its line there.
    pub line: u32,
    /// Why: the hold and the limit, or a size that cannot be read now.
    pub why: String,
}

/// Statements refused on `--database-url` (bad input: exit 2), each at
/// `FILE:LINE`, with the way out.
#[derive(Debug, thiserror::Error)]
#[error(
    "not traced on --database-url: running these statements for real would block the server's \
     traffic\n  {}\ntrace them on a throwaway cluster instead: `locksmith trace` without \
     --database-url, with the tables they need created by --setup FILE",
    .0.iter().map(|r| format!("{}:{}: {}", r.file, r.line, r.why)).collect::<Vec<_>>().join("\n  ")
)]
pub struct LongHolds(pub Vec<Refusal>);

/// The statements of `files` (`(path, text)`, each run after `setup`) that
/// would hold a traffic-blocking lock while they rewrite or scan a table for
/// longer than `limits.lock_timeout`, or on a table whose size cannot be
/// read now, by the same size estimate as `lint --database-url`'s LS601.
/// They are analysed against the live catalog (so a change that rewrites
/// nothing is not refused); sizes come from `client`, read-only.
pub async fn long_holds(
    client: &Connection,
    setup: &str,
    files: &[(&str, &str)],
    version: u32,
    limits: LiveLimits,
) -> Result<Vec<Refusal>, Error> {
    let by_file: Vec<Vec<Statement>> = files
        .iter()
        .map(|(_, text)| analyze_after(setup, text, version).unwrap_or_default())
        .collect();
    let names = live::relations(by_file.iter().flatten());
    let mut schema = Schema::default();
    crate::tables::learn_schema(client, &names, &mut schema).await?;
    let _ = analyze_in(&mut schema, setup, version);
    let facts = crate::tables::facts(client, &names).await?;
    // No probe: trace only refuses here, and conservative rates refuse sooner.
    let throughput = locksmith_core::hold::Throughput::default_because("trace does not probe");
    let mut refused = Vec::new();
    for (path, text) in files {
        for s in analyze_in(&mut schema, text, version).unwrap_or_default() {
            let unknown = s.rewrites.iter().chain(&s.scans).find(|r| {
                s.lock_on(r).is_some_and(|m| m.blocks_traffic())
                    && facts.get(*r).is_some_and(|f| f.bytes.is_none())
            });
            let why =
                match (traffic_hold(&s, &facts, &throughput), unknown) {
                    (Some(e), _) if e.hold >= limits.lock_timeout => format!(
                    "{} `{}` (about {} rows, {}) under {} for roughly {} (estimate), longer than \
                     --lock-timeout {} lets traffic wait",
                    if e.rewrite { "rewrites" } else { "reads all of" },
                    e.relation,
                    e.facts.rows.max(0),
                    bytes(e.facts.bytes.unwrap_or(0)),
                    e.mode,
                    human(e.hold),
                    human(limits.lock_timeout),
                ),
                    (_, Some(r)) => format!(
                        "rewrites or reads all of `{r}`, whose size cannot be read now (a session \
                     holds or awaits a strong lock on it)"
                    ),
                    _ => continue,
                };
            refused.push(Refusal {
                file: path.to_string(),
                line: s.line,
                why,
            });
        }
    }
    Ok(refused)
}
