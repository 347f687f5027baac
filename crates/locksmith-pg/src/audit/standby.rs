//! `doctor`'s replication rules: how each hot standby given with `--replica`
//! treats a replayed `ACCESS EXCLUSIVE` lock, and what the primary streams
//! to that nobody watches.
//!
//! A standby replays the primary's `ACCESS EXCLUSIVE` locks and, while one of
//! its own sessions reads the table, replay waits, all of it, and every new
//! read of the table queues behind it (see docs/locks.md). How long is
//! `max_standby_streaming_delay` (`max_standby_archive_delay` for WAL read
//! from an archive). [`gather_standby`] and [`gather_primary`] read the facts;
//! [`audit`] is pure.

use std::collections::BTreeMap;

use crate::Connection;
use serde::Serialize;

use super::findings::{Finding, Severity};
use crate::Error;

/// A delay above this lets one standby reader stall replay long enough to
/// be an outage of the standby's reads of the table.
pub const LONG_DELAY_MS: i64 = 300_000;
/// A slot holding back more WAL than this is reported.
pub const SLOT_RETAINED_BYTES: i64 = 1 << 30;

/// Settings read on one standby.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StandbyFacts {
    /// `host:port`.
    pub server: String,
    /// `hot_standby_feedback`, `max_standby_streaming_delay`,
    /// `max_standby_archive_delay` (`pg_settings.setting`: ms, or -1).
    pub settings: BTreeMap<String, String>,
}

/// A walsender on the primary: a standby (or a tool) streaming from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Streaming {
    /// `application_name` (the standby's `cluster_name` or `walreceiver` by default).
    pub application_name: String,
    /// Its address (`None` over a Unix socket).
    pub client_addr: Option<String>,
}

/// A replication slot on the primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slot {
    /// `slot_name`.
    pub name: String,
    /// `physical` or `logical`.
    pub slot_type: String,
    /// A consumer is connected.
    pub active: bool,
    /// WAL kept for it: bytes from its `restart_lsn` to the current position.
    pub retained_bytes: Option<i64>,
}

/// Replication as the primary sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PrimaryFacts {
    /// Walsenders in state `streaming`.
    pub streaming: Vec<Streaming>,
    /// Replication slots.
    pub slots: Vec<Slot>,
}

/// Reads the standby settings on a standby (`server` is its `host:port`).
pub async fn gather_standby(client: &Connection, server: &str) -> Result<StandbyFacts, Error> {
    let rows = client
        .query(
            "SELECT name, setting FROM pg_settings
             WHERE name IN ('hot_standby_feedback', 'max_standby_streaming_delay',
                            'max_standby_archive_delay')",
            &[],
        )
        .await
        .map_err(|e| Error::query(format!("reading standby settings on {server}"), e))?;
    Ok(StandbyFacts {
        server: server.to_string(),
        settings: rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
    })
}

/// Reads `pg_stat_replication` and `pg_replication_slots` on the primary
/// (on a standby, slots' retained WAL is not measured).
pub async fn gather_primary(client: &Connection) -> Result<PrimaryFacts, Error> {
    let streaming = client
        .query(
            "SELECT coalesce(application_name, ''), host(client_addr)
             FROM pg_stat_replication WHERE state = 'streaming' ORDER BY pid",
            &[],
        )
        .await
        .map_err(|e| Error::query("reading pg_stat_replication", e))?
        .iter()
        .map(|r| Streaming {
            application_name: r.get(0),
            client_addr: r.get(1),
        })
        .collect();
    let slots = client
        .query(
            "SELECT slot_name::text, slot_type, active,
                    CASE WHEN pg_is_in_recovery() OR restart_lsn IS NULL THEN NULL
                         ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint END
             FROM pg_replication_slots ORDER BY slot_name",
            &[],
        )
        .await
        .map_err(|e| Error::query("reading pg_replication_slots", e))?
        .iter()
        .map(|r| Slot {
            name: r.get(0),
            slot_type: r.get(1),
            active: r.get(2),
            retained_bytes: r.get(3),
        })
        .collect();
    Ok(PrimaryFacts { streaming, slots })
}

/// The replication findings: each standby's delays and feedback, standbys
/// streaming beyond the `standbys` given, slots holding back WAL.
pub fn audit(primary: &PrimaryFacts, standbys: &[StandbyFacts]) -> Vec<Finding> {
    let mut out = Vec::new();
    for s in standbys {
        for (name, source) in [
            ("max_standby_streaming_delay", "streamed"),
            ("max_standby_archive_delay", "read from the archive"),
        ] {
            delay(s, name, source, &mut out);
        }
        if s.settings.get("hot_standby_feedback").map(String::as_str) == Some("on") {
            out.push(Finding {
                id: "hot_standby_feedback",
                severity: Severity::Info,
                message: format!(
                    "standby {}: hot_standby_feedback is on, so its long queries are not cancelled for vacuum",
                    s.server
                ),
                why: "Feedback keeps the primary from removing rows the standby's queries still read (vacuum is \
                      held back meanwhile). It does nothing for locks: a replayed ACCESS EXCLUSIVE still waits \
                      for every standby query on the table, and the queries that feedback lets run long are the \
                      ones that stall replay. Watch the standby during migrations: \
                      `locksmith apply --replica URL`."
                    .into(),
                fix: String::new(),
            });
        }
    }
    let unwatched = primary.streaming.len().saturating_sub(standbys.len());
    if unwatched > 0 {
        let names: Vec<String> = primary
            .streaming
            .iter()
            .map(|s| {
                format!(
                    "{}@{}",
                    s.application_name,
                    s.client_addr.as_deref().unwrap_or("local")
                )
            })
            .collect();
        out.push(Finding {
            id: "unwatched_standby",
            severity: Severity::Warning,
            message: format!(
                "{} standby server(s) stream from this primary, {} given with --replica ({})",
                primary.streaming.len(),
                standbys.len(),
                names.join(", ")
            ),
            why: "A hot standby replays the migration's ACCESS EXCLUSIVE lock: one of its sessions reading the \
                  table stops all replay and queues every read of the table on the standby behind it, and \
                  rolling back on the primary does not free it. Only standbys given with --replica are looked at \
                  before locking."
                .into(),
            fix: "Pass --replica URL for each hot standby (or LOCKSMITH_REPLICA_URLS=url1,url2) to \
                  locksmith apply, run, blockers and doctor."
                .into(),
        });
    }
    for slot in &primary.slots {
        let retained = slot.retained_bytes.unwrap_or(0);
        if slot.active && retained <= SLOT_RETAINED_BYTES {
            continue;
        }
        let held = match slot.retained_bytes {
            Some(b) => format!("{} MB of WAL", b / (1 << 20)),
            None => "WAL".into(),
        };
        let (message, fix) = if slot.active {
            (
                format!(
                    "{} replication slot {} holds back {held}: its consumer lags",
                    slot.slot_type, slot.name
                ),
                String::new(),
            )
        } else {
            (
                format!(
                    "{} replication slot {} is inactive and holds back {held}",
                    slot.slot_type, slot.name
                ),
                format!(
                    "SELECT pg_drop_replication_slot({});  -- only if nothing will consume it again",
                    locksmith_core::quote::literal(&slot.name)
                ),
            )
        };
        out.push(Finding {
            id: "replication_slot",
            severity: Severity::Warning,
            message,
            why: "A slot keeps every WAL segment its consumer has not confirmed: the primary's disk fills while it \
                  lags, and a standby far behind replays a migration's lock long after it was taken on the \
                  primary."
                .into(),
            fix,
        });
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

/// `max_standby_streaming_delay` or `max_standby_archive_delay` on one standby.
fn delay(s: &StandbyFacts, name: &'static str, source: &str, out: &mut Vec<Finding>) {
    let Some(ms) = s.settings.get(name).and_then(|v| v.parse::<i64>().ok()) else {
        return;
    };
    let (message, why) = if ms < 0 {
        (
            format!("standby {}: {name} is -1, replay of WAL {source} waits forever for the standby's queries", s.server),
            "A migration's ACCESS EXCLUSIVE lock is replayed on the standby: while one standby session reads the \
             table (an idle-in-transaction report is enough), all replay stops and every read of the table on \
             the standby queues behind it, with no end until that session ends."
                .to_string(),
        )
    } else if ms > LONG_DELAY_MS {
        (
            format!(
                "standby {}: {name} is {}, replay of WAL {source} waits that long for the standby's queries",
                s.server,
                locksmith_core::duration::human(std::time::Duration::from_millis(ms as u64))
            ),
            "A migration's ACCESS EXCLUSIVE lock is replayed on the standby: a standby session reading the table \
             stops all replay, and every read of the table on the standby queues behind it, for up to this \
             long before the server cancels that session."
                .to_string(),
        )
    } else {
        return;
    };
    out.push(Finding {
        id: name,
        severity: Severity::Warning,
        message,
        why: why + " Rolling back on the primary does not free it: replay is stuck at the lock record.",
        fix: format!(
            "ALTER SYSTEM SET {name} = '30s'; SELECT pg_reload_conf();  -- on the standby; or keep it and run migrations with --replica"
        ),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standby(delay: &str, feedback: &str) -> StandbyFacts {
        StandbyFacts {
            server: "10.0.0.7:5432".into(),
            settings: [
                ("max_standby_streaming_delay", delay),
                ("max_standby_archive_delay", "30000"),
                ("hot_standby_feedback", feedback),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        }
    }

    #[test]
    fn delays_and_feedback() {
        let ids = |f: Vec<Finding>| f.iter().map(|f| f.id).collect::<Vec<_>>();
        let none = PrimaryFacts::default();
        assert!(audit(&none, &[standby("30000", "off")]).is_empty());
        assert_eq!(
            ids(audit(&none, &[standby("-1", "on")])),
            vec!["max_standby_streaming_delay", "hot_standby_feedback"]
        );
        let long = audit(&none, &[standby("900000", "off")]);
        assert!(long[0].message.contains("15m"), "{}", long[0].message);
    }

    #[test]
    fn unwatched_standbys_and_slots() {
        let primary = PrimaryFacts {
            streaming: vec![
                Streaming {
                    application_name: "walreceiver".into(),
                    client_addr: Some("10.0.0.7".into()),
                },
                Streaming {
                    application_name: "replica2".into(),
                    client_addr: Some("10.0.0.8".into()),
                },
            ],
            slots: vec![
                Slot {
                    name: "old".into(),
                    slot_type: "physical".into(),
                    active: false,
                    retained_bytes: Some(5 << 20),
                },
                Slot {
                    name: "live".into(),
                    slot_type: "physical".into(),
                    active: true,
                    retained_bytes: Some(1 << 20),
                },
            ],
        };
        let found = audit(&primary, &[standby("30000", "off")]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].message.contains("2 standby server(s)"));
        assert_eq!(
            found[1].fix,
            "SELECT pg_drop_replication_slot('old');  -- only if nothing will consume it again"
        );
    }
}
