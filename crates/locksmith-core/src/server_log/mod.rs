//! Reading a PostgreSQL server log for the story's telltale lines: clients
//! that vanished mid-transaction, connection slots running out, lock waits
//! with who held the lock and who queued, lock and idle timeouts.
//!
//! Both of the server's text formats are read: plain `stderr` (any
//! `log_line_prefix` that keeps the default's timestamp and `[pid]`) and
//! `csvlog`; the format is detected from the first line. Two steps:
//! [`parse`] turns either format into [`Message`]s; this module classifies
//! each message by a typed table of [`LogKind`]s and counts them. Pure: the
//! caller reads the file; nothing here touches a server or the file system.
//!
//! ```
//! use locksmith_core::server_log::scan;
//! let log = "2022-05-11 09:13:05.509 PDT [7891] LOG:  unexpected EOF on client connection with an open transaction\n";
//! let found = scan(log);
//! assert_eq!(found[0].kind.id(), "client_eof_in_transaction");
//! assert_eq!(found[0].pids, vec![7891]);
//! ```

use std::collections::BTreeSet;

use serde::Serialize;

mod parse;

pub use parse::{parse, Message};

/// The kinds of line the scan counts, in the story's order (the order
/// [`scan`] reports them in). Serialises as its id, e.g. `lock_wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogKind {
    /// `unexpected EOF on client connection with an open transaction`.
    ClientEofInTransaction,
    /// `remaining connection slots are reserved …`.
    ConnectionSlotsExhausted,
    /// `sorry, too many clients already`.
    TooManyClients,
    /// `process N still waiting for <mode> on …` (`log_lock_waits`).
    LockWait,
    /// `process N acquired <mode> on … after …` (`log_lock_waits`).
    LockAcquired,
    /// `canceling statement due to lock timeout`.
    LockTimeout,
    /// `terminating connection due to idle-in-transaction timeout`.
    IdleInTransactionTimeout,
    /// `canceling statement due to statement timeout`.
    StatementTimeout,
    /// `deadlock detected`.
    Deadlock,
}

/// What each kind looks like in a message, and what it means.
struct KindInfo {
    kind: LogKind,
    id: &'static str,
    /// Every one of these must appear in the message.
    needles: &'static [&'static str],
    /// At least one of these must appear too (none: no further condition).
    any_of: &'static [&'static str],
    meaning: &'static str,
}

/// The classification table, in [`LogKind`] order.
const KINDS: [KindInfo; 9] = [
    KindInfo {
        kind: LogKind::ClientEofInTransaction,
        id: "client_eof_in_transaction",
        needles: &["unexpected EOF on client connection with an open transaction"],
        any_of: &[],
        meaning: "A client vanished with its transaction open: until the server noticed, that session held its locks (the story's leaked sessions).",
    },
    KindInfo {
        kind: LogKind::ConnectionSlotsExhausted,
        id: "connection_slots_exhausted",
        needles: &["remaining connection slots are reserved"],
        any_of: &[],
        meaning: "Every ordinary connection slot was taken: requests queued behind a lock keep their connections, and new ones are refused.",
    },
    KindInfo {
        kind: LogKind::TooManyClients,
        id: "too_many_clients",
        needles: &["sorry, too many clients already"],
        any_of: &[],
        meaning: "max_connections was reached: requests queued behind a lock keep their connections, and new ones are refused.",
    },
    KindInfo {
        kind: LogKind::LockWait,
        id: "lock_wait",
        needles: &["still waiting for"],
        any_of: &["Lock on", "lock on"],
        meaning: "A session waited longer than deadlock_timeout for a lock; `holding` is who had it, `queue` who waited with it (the ALTER, and the requests behind it).",
    },
    KindInfo {
        kind: LogKind::LockAcquired,
        id: "lock_acquired",
        needles: &[" acquired ", " after "],
        any_of: &[],
        meaning: "A session got its lock after waiting longer than deadlock_timeout: traffic stalled for that long.",
    },
    KindInfo {
        kind: LogKind::LockTimeout,
        id: "lock_timeout",
        needles: &["canceling statement due to lock timeout"],
        any_of: &[],
        meaning: "A statement gave up waiting for a lock after lock_timeout: the safe outcome, and what a migration should do instead of queueing forever.",
    },
    KindInfo {
        kind: LogKind::IdleInTransactionTimeout,
        id: "idle_in_transaction_timeout",
        needles: &["terminating connection due to idle-in-transaction timeout"],
        any_of: &[],
        meaning: "The server ended a session left idle in transaction: idle_in_transaction_session_timeout at work against leaked sessions.",
    },
    KindInfo {
        kind: LogKind::StatementTimeout,
        id: "statement_timeout",
        needles: &["canceling statement due to statement timeout"],
        any_of: &[],
        meaning: "A statement ran longer than statement_timeout and was cancelled.",
    },
    KindInfo {
        kind: LogKind::Deadlock,
        id: "deadlock",
        needles: &["deadlock detected"],
        any_of: &[],
        meaning: "Two transactions waited for each other; the server cancelled one.",
    },
];

impl LogKind {
    fn info(self) -> &'static KindInfo {
        KINDS
            .iter()
            .find(|k| k.kind == self)
            .expect("every kind is in the table")
    }

    /// The id the JSON contract uses, e.g. `lock_wait`.
    pub fn id(self) -> &'static str {
        self.info().id
    }

    /// What a line of this kind means, in the story's terms.
    pub fn meaning(self) -> &'static str {
        self.info().meaning
    }

    /// Classifies one message: its kind, or `None` when it is not a telltale line.
    pub fn classify(message: &str) -> Option<LogKind> {
        KINDS
            .iter()
            .find(|k| {
                k.needles.iter().all(|n| message.contains(n))
                    && (k.any_of.is_empty() || k.any_of.iter().any(|n| message.contains(n)))
            })
            .map(|k| k.kind)
    }
}

/// One kind of telltale line, counted. Serialises as the `doctor` JSON
/// contract (`kind`, `count`, `first`, `last`, `pids`), plus, for lock waits,
/// the lock holders, the wait queue and the locks waited for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogSummary {
    /// e.g. `lock_wait`.
    pub kind: LogKind,
    /// What lines of this kind mean, in the story's terms (the same text the human report shows).
    pub meaning: &'static str,
    /// How many lines of this kind.
    pub count: usize,
    /// Timestamp of the first.
    pub first: Option<String>,
    /// Timestamp of the last.
    pub last: Option<String>,
    /// The backends that logged them.
    pub pids: Vec<i32>,
    /// Lock waits: the processes holding the lock.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub holding: Vec<i32>,
    /// Lock waits: the processes in the wait queue.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub queue: Vec<i32>,
    /// Lock waits: what was waited for, e.g. `AccessExclusiveLock on relation 16384 of database 5`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locks: Vec<String>,
}

/// Scans a log (either format) and counts each kind, in [`KINDS`] order.
pub fn scan(text: &str) -> Vec<LogSummary> {
    let mut found: Vec<LogSummary> = Vec::new();
    for m in parse(text) {
        let Some(kind) = LogKind::classify(&m.message) else {
            continue;
        };
        let summary = match found.iter_mut().find(|s| s.kind == kind) {
            Some(s) => s,
            None => {
                found.push(LogSummary {
                    kind,
                    meaning: kind.meaning(),
                    count: 0,
                    first: m.time.clone(),
                    last: None,
                    pids: Vec::new(),
                    holding: Vec::new(),
                    queue: Vec::new(),
                    locks: Vec::new(),
                });
                found.last_mut().expect("just pushed")
            }
        };
        summary.count += 1;
        if m.time.is_some() {
            summary.first = summary.first.take().or(m.time.clone());
            summary.last = m.time.clone();
        }
        if let Some(pid) = m.pid {
            summary.pids.push(pid);
        }
        if kind == LogKind::LockWait {
            if let Some(detail) = &m.detail {
                let (holding, queue) = lock_wait_detail(detail);
                summary.holding.extend(holding);
                summary.queue.extend(queue);
            }
            if let Some(lock) = wanted_lock(&m.message) {
                summary.locks.push(lock);
            }
        }
    }
    for s in &mut found {
        for list in [&mut s.pids, &mut s.holding, &mut s.queue] {
            let set: BTreeSet<i32> = list.drain(..).collect();
            list.extend(set);
        }
        let locks: BTreeSet<String> = s.locks.drain(..).collect();
        s.locks.extend(locks);
    }
    found.sort_by_key(|s| s.kind);
    found
}

/// Scans several logs (each in its own format) and adds their counts up.
pub fn scan_all<'a>(texts: impl IntoIterator<Item = &'a str>) -> Vec<LogSummary> {
    let mut all: Vec<LogSummary> = Vec::new();
    for found in texts.into_iter().map(scan) {
        for s in found {
            match all.iter_mut().find(|a| a.kind == s.kind) {
                None => all.push(s),
                Some(a) => {
                    a.count += s.count;
                    a.first = [a.first.take(), s.first].into_iter().flatten().min();
                    a.last = [a.last.take(), s.last].into_iter().flatten().max();
                    for (to, from) in [
                        (&mut a.pids, s.pids),
                        (&mut a.holding, s.holding),
                        (&mut a.queue, s.queue),
                    ] {
                        to.extend(from);
                        to.sort_unstable();
                        to.dedup();
                    }
                    a.locks.extend(s.locks);
                    a.locks.sort();
                    a.locks.dedup();
                }
            }
        }
    }
    all.sort_by_key(|s| s.kind);
    all
}

/// `Process holding the lock: 7890. Wait queue: 7891, 7892.` → holders, queue.
pub fn lock_wait_detail(detail: &str) -> (Vec<i32>, Vec<i32>) {
    let list_after = |marker: &str| -> Vec<i32> {
        detail
            .find(marker)
            .map(|at| {
                let rest = &detail[at + marker.len()..];
                let end = rest.find('.').unwrap_or(rest.len());
                rest[..end]
                    .split(',')
                    .filter_map(|p| p.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let holders = if detail.contains("Processes holding the lock:") {
        list_after("Processes holding the lock:")
    } else {
        list_after("Process holding the lock:")
    };
    (holders, list_after("Wait queue:"))
}

/// `process 7891 still waiting for AccessExclusiveLock on relation 16384 of database 5 after 1000.1 ms`
/// → `AccessExclusiveLock on relation 16384 of database 5`.
fn wanted_lock(message: &str) -> Option<String> {
    let start = message.find("waiting for ")? + "waiting for ".len();
    let rest = &message[start..];
    let end = rest.find(" after ").unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STDERR: &str = "\
2024-05-11 09:13:00.100 UTC [7890] LOG:  database system is ready to accept connections
2024-05-11 09:13:05.509 UTC [7891] LOG:  process 7891 still waiting for AccessExclusiveLock on relation 16384 of database 5 after 1000.062 ms
2024-05-11 09:13:05.509 UTC [7891] DETAIL:  Processes holding the lock: 7880, 7881. Wait queue: 7891, 7893.
2024-05-11 09:13:05.509 UTC [7891] STATEMENT:  ALTER TABLE academic_partners
\t  ADD CONSTRAINT u UNIQUE (informal_name)
2024-05-11 09:13:06.600 UTC [7893] LOG:  process 7893 still waiting for AccessShareLock on relation 16384 of database 5 after 1000.1 ms
2024-05-11 09:13:06.600 UTC [7893] DETAIL:  Process holding the lock: 7880. Wait queue: 7891, 7893.
2024-05-11 09:13:07.000 UTC [7891] ERROR:  canceling statement due to lock timeout
2024-05-11 09:13:08.000 UTC [7880] FATAL:  terminating connection due to idle-in-transaction timeout
2024-05-11 09:13:09.000 UTC [7881] LOG:  unexpected EOF on client connection with an open transaction
2024-05-11 09:13:10.000 UTC [7899] FATAL:  remaining connection slots are reserved for non-replication superuser connections
2024-05-11 09:13:11.000 UTC [7893] LOG:  process 7893 acquired AccessShareLock on relation 16384 of database 5 after 5010.3 ms
";

    #[test]
    fn stderr_kinds_counts_times_and_pids() {
        let found = scan(STDERR);
        let kinds: Vec<_> = found.iter().map(|s| (s.kind.id(), s.count)).collect();
        assert_eq!(
            kinds,
            vec![
                ("client_eof_in_transaction", 1),
                ("connection_slots_exhausted", 1),
                ("lock_wait", 2),
                ("lock_acquired", 1),
                ("lock_timeout", 1),
                ("idle_in_transaction_timeout", 1),
            ]
        );
        let wait = &found[2];
        assert_eq!(wait.first.as_deref(), Some("2024-05-11 09:13:05.509 UTC"));
        assert_eq!(wait.last.as_deref(), Some("2024-05-11 09:13:06.600 UTC"));
        assert_eq!(wait.pids, vec![7891, 7893]);
        assert_eq!(wait.holding, vec![7880, 7881]);
        assert_eq!(wait.queue, vec![7891, 7893]);
        assert_eq!(
            wait.locks,
            vec![
                "AccessExclusiveLock on relation 16384 of database 5",
                "AccessShareLock on relation 16384 of database 5"
            ]
        );
        let json = serde_json::to_value(&found[0]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "client_eof_in_transaction", "meaning": LogKind::ClientEofInTransaction.meaning(), "count": 1,
                "first": "2024-05-11 09:13:09.000 UTC", "last": "2024-05-11 09:13:09.000 UTC", "pids": [7881]})
        );
    }

    #[test]
    fn the_story_line_with_one_space() {
        let found =
            scan("2022-05-11 09:13:05.509 PDT [7891] LOG: unexpected EOF on client connection with an open transaction");
        assert_eq!(
            found[0].first.as_deref(),
            Some("2022-05-11 09:13:05.509 PDT")
        );
        assert_eq!(found[0].pids, vec![7891]);
    }

    #[test]
    fn csvlog_with_quotes_and_newlines() {
        let csv = "\
2024-05-11 09:13:05.509 UTC,\"postgres\",\"incident\",7891,\"127.0.0.1:5000\",663f,3,\"ALTER TABLE\",2024-05-11 09:13:00 UTC,3/12,0,LOG,00000,\"process 7891 still waiting for AccessExclusiveLock on relation 16384 of database 5 after 1000.062 ms\",\"Process holding the lock: 7880. Wait queue: 7891.\",,,,,,\"ALTER TABLE \"\"academic_partners\"\"
  ADD CONSTRAINT u UNIQUE (informal_name)\",,,\"alembic\",\"client backend\",,0
2024-05-11 09:13:07.000 UTC,\"postgres\",\"incident\",7891,\"127.0.0.1:5000\",663f,4,\"ALTER TABLE\",2024-05-11 09:13:00 UTC,3/12,0,ERROR,55P03,\"canceling statement due to lock timeout\",,,,,,\"ALTER TABLE x\",,,\"alembic\",\"client backend\",,0
";
        let found = scan(csv);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].kind, LogKind::LockWait);
        assert_eq!(found[0].holding, vec![7880]);
        assert_eq!(found[0].queue, vec![7891]);
        assert_eq!(found[1].kind, LogKind::LockTimeout);
        assert_eq!(found[1].pids, vec![7891]);
        assert_eq!(
            found[1].first.as_deref(),
            Some("2024-05-11 09:13:07.000 UTC")
        );
    }

    #[test]
    fn every_kind_has_one_row_in_order_and_serialises_as_its_id() {
        for (i, k) in KINDS.iter().enumerate() {
            assert_eq!(KINDS.iter().position(|o| o.kind == k.kind), Some(i));
            assert!(
                i == 0 || KINDS[i - 1].kind < k.kind,
                "table order = enum order"
            );
            assert_eq!(serde_json::to_value(k.kind).unwrap(), k.id);
            assert!(!k.meaning.is_empty());
        }
    }

    #[test]
    fn unrelated_lines_are_ignored() {
        assert!(scan("hello\n\nLOG:  checkpoint starting: time\n").is_empty());
        assert_eq!(
            LogKind::classify("process 1 acquired ShareLock on transaction 5 after 1200 ms"),
            Some(LogKind::LockAcquired)
        );
        assert_eq!(LogKind::classify("lock acquired"), None);
    }
}
