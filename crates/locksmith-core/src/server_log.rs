//! Reading a PostgreSQL server log for the story's telltale lines: clients
//! that vanished mid-transaction, connection slots running out, lock waits
//! with who held the lock and who queued, lock and idle timeouts.
//!
//! Both of the server's text formats are read: plain `stderr` (any
//! `log_line_prefix` that keeps the default's timestamp and `[pid]`) and
//! `csvlog`; the format is detected from the first line. Pure: the caller
//! reads the file; nothing here touches a server or the file system.
//!
//! ```
//! use locksmith_core::server_log::scan;
//! let log = "2022-05-11 09:13:05.509 PDT [7891] LOG:  unexpected EOF on client connection with an open transaction\n";
//! let found = scan(log);
//! assert_eq!(found[0].kind, "client_eof_in_transaction");
//! assert_eq!(found[0].pids, vec![7891]);
//! ```

use std::collections::BTreeSet;

use serde::Serialize;

/// One log message with its `DETAIL`, whatever the format.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    /// The timestamp as the log wrote it, when the prefix has one.
    pub time: Option<String>,
    /// The backend's pid, when the prefix has one.
    pub pid: Option<i32>,
    /// `LOG`, `ERROR`, `FATAL`, …
    pub severity: String,
    /// The primary message.
    pub message: String,
    /// The `DETAIL` line, if any.
    pub detail: Option<String>,
}

/// The kinds of line the scan counts, in the story's order.
pub const KINDS: [(&str, &str, &str); 9] = [
    (
        "client_eof_in_transaction",
        "unexpected EOF on client connection with an open transaction",
        "A client vanished with its transaction open: until the server noticed, that session held its locks (the story's leaked sessions).",
    ),
    (
        "connection_slots_exhausted",
        "remaining connection slots are reserved",
        "Every ordinary connection slot was taken: requests queued behind a lock keep their connections, and new ones are refused.",
    ),
    (
        "too_many_clients",
        "sorry, too many clients already",
        "max_connections was reached: requests queued behind a lock keep their connections, and new ones are refused.",
    ),
    (
        "lock_wait",
        "still waiting for",
        "A session waited longer than deadlock_timeout for a lock; `holding` is who had it, `queue` who waited with it (the ALTER, and the requests behind it).",
    ),
    (
        "lock_acquired",
        " acquired ",
        "A session got its lock after waiting longer than deadlock_timeout: traffic stalled for that long.",
    ),
    (
        "lock_timeout",
        "canceling statement due to lock timeout",
        "A statement gave up waiting for a lock after lock_timeout: the safe outcome, and what a migration should do instead of queueing forever.",
    ),
    (
        "idle_in_transaction_timeout",
        "terminating connection due to idle-in-transaction timeout",
        "The server ended a session left idle in transaction: idle_in_transaction_session_timeout at work against leaked sessions.",
    ),
    (
        "statement_timeout",
        "canceling statement due to statement timeout",
        "A statement ran longer than statement_timeout and was cancelled.",
    ),
    (
        "deadlock",
        "deadlock detected",
        "Two transactions waited for each other; the server cancelled one.",
    ),
];

/// What the meaning of a kind is, in the story's terms.
pub fn meaning(kind: &str) -> &'static str {
    KINDS
        .iter()
        .find(|(k, _, _)| *k == kind)
        .map(|(_, _, m)| *m)
        .unwrap_or("")
}

/// One kind of telltale line, counted. Serialises as the `doctor` JSON
/// contract (`kind`, `count`, `first`, `last`, `pids`), plus, for lock waits,
/// the lock holders, the wait queue and the locks waited for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogSummary {
    /// e.g. `lock_wait`.
    pub kind: &'static str,
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

/// Classifies one message: the kind's id, or `None` when it is not a telltale line.
pub fn classify(message: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(kind, needle, _)| {
            message.contains(needle)
                && (*kind != "lock_acquired" || message.contains(" after "))
                && (*kind != "lock_wait"
                    || message.contains("Lock on")
                    || message.contains("lock on"))
        })
        .map(|(kind, _, _)| *kind)
}

/// Scans a log (either format) and counts each kind, in [`KINDS`] order.
pub fn scan(text: &str) -> Vec<LogSummary> {
    let mut found: Vec<LogSummary> = Vec::new();
    for m in parse(text) {
        let Some(kind) = classify(&m.message) else {
            continue;
        };
        let summary = match found.iter_mut().find(|s| s.kind == kind) {
            Some(s) => s,
            None => {
                found.push(LogSummary {
                    kind,
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
        if kind == "lock_wait" {
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
    let order = |k: &str| KINDS.iter().position(|(kind, _, _)| *kind == k);
    found.sort_by_key(|s| order(s.kind));
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
    let order = |k: &str| KINDS.iter().position(|(kind, _, _)| *kind == k);
    all.sort_by_key(|s| order(s.kind));
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

/// Parses a log in either format into messages.
pub fn parse(text: &str) -> Vec<Message> {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if is_csv_line(first) {
        parse_csv(text)
    } else {
        parse_stderr(text)
    }
}

/// The length of a leading `YYYY-MM-DD HH:MM:SS[.fff][ TZ]` timestamp.
fn timestamp_len(line: &str) -> Option<usize> {
    let b = line.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    if !(digits(0..4)
        && b.get(4) == Some(&b'-')
        && digits(5..7)
        && b.get(10) == Some(&b' ')
        && digits(11..13)
        && b.get(13) == Some(&b':'))
    {
        return None;
    }
    let mut end = 19.min(b.len());
    while end < b.len() && (b[end] == b'.' || b[end].is_ascii_digit()) {
        end += 1;
    }
    // A time zone abbreviation or offset: ` UTC`, ` PDT`, ` +02`.
    if b.get(end) == Some(&b' ') {
        let tz: String = line[end + 1..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '-' || *c == ':')
            .collect();
        if !tz.is_empty()
            && tz
                .chars()
                .any(|c| c.is_ascii_alphabetic() || c == '+' || c == '-')
        {
            end += 1 + tz.len();
        }
    }
    Some(end)
}

fn is_csv_line(line: &str) -> bool {
    timestamp_len(line).is_some_and(|n| line.as_bytes().get(n) == Some(&b','))
}

const SEVERITIES: [&str; 13] = [
    "LOG",
    "ERROR",
    "FATAL",
    "PANIC",
    "WARNING",
    "NOTICE",
    "INFO",
    "DEBUG",
    "DETAIL",
    "HINT",
    "STATEMENT",
    "CONTEXT",
    "QUERY",
];

/// Finds `SEVERITY:` after the prefix: (prefix end, severity, message start).
fn severity_marker(line: &str) -> Option<(usize, &'static str, usize)> {
    let mut best: Option<(usize, &'static str, usize)> = None;
    for sev in SEVERITIES {
        let mut from = 0;
        while let Some(found) = line[from..].find(sev) {
            let at = from + found;
            let after = &line[at + sev.len()..];
            // DEBUG1..DEBUG5.
            let digits = after.chars().take_while(char::is_ascii_digit).count();
            let after_digits = &after[digits..];
            let boundary = at == 0 || line.as_bytes()[at - 1] == b' ';
            if boundary
                && after_digits.starts_with(':')
                && after_digits[1..].starts_with([' ', '\t'])
            {
                let start = at + sev.len() + digits + 1;
                if best.is_none_or(|(b, _, _)| at < b) {
                    best = Some((at, sev, start));
                }
                break;
            }
            from = at + sev.len();
        }
    }
    best
}

fn prefix_pid(prefix: &str) -> Option<i32> {
    let open = prefix.find('[')?;
    let digits: String = prefix[open + 1..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn parse_stderr(text: &str) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    for line in text.lines() {
        if line.starts_with('\t') {
            // A continuation of the previous message or statement.
            if let Some(last) = out.last_mut() {
                if last.detail.is_none() {
                    last.message.push(' ');
                    last.message.push_str(line.trim());
                }
            }
            continue;
        }
        let Some((at, severity, start)) = severity_marker(line) else {
            continue;
        };
        let prefix = &line[..at];
        let body = line[start..].trim().to_string();
        let pid = prefix_pid(prefix);
        match severity {
            "DETAIL" => {
                if let Some(last) = out.iter_mut().rev().find(|m| pid.is_none() || m.pid == pid) {
                    last.detail = Some(body);
                }
            }
            "HINT" | "STATEMENT" | "CONTEXT" | "QUERY" => {}
            _ => out.push(Message {
                time: timestamp_len(prefix).map(|n| prefix[..n].to_string()),
                pid,
                severity: severity.to_string(),
                message: body,
                detail: None,
            }),
        }
    }
    out
}

/// Splits CSV text into records of fields; quoted fields may hold commas, `""` and newlines.
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, '\r') => {}
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    records
}

fn parse_csv(text: &str) -> Vec<Message> {
    // csvlog columns: 0 log_time, 3 process_id, 11 error_severity, 13 message, 14 detail.
    csv_records(text)
        .into_iter()
        .filter(|r| r.len() > 14)
        .map(|r| Message {
            time: Some(r[0].clone()).filter(|t| !t.is_empty()),
            pid: r[3].parse().ok(),
            severity: r[11].clone(),
            message: r[13].clone(),
            detail: Some(r[14].clone()).filter(|d| !d.is_empty()),
        })
        .collect()
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
        let kinds: Vec<_> = found.iter().map(|s| (s.kind, s.count)).collect();
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
            serde_json::json!({"kind": "client_eof_in_transaction", "count": 1,
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
        assert_eq!(found[0].kind, "lock_wait");
        assert_eq!(found[0].holding, vec![7880]);
        assert_eq!(found[0].queue, vec![7891]);
        assert_eq!(found[1].kind, "lock_timeout");
        assert_eq!(found[1].pids, vec![7891]);
        assert_eq!(
            found[1].first.as_deref(),
            Some("2024-05-11 09:13:07.000 UTC")
        );
    }

    #[test]
    fn unrelated_lines_are_ignored() {
        assert!(scan("hello\n\nLOG:  checkpoint starting: time\n").is_empty());
        assert_eq!(
            classify("process 1 acquired ShareLock on transaction 5 after 1200 ms"),
            Some("lock_acquired")
        );
        assert_eq!(classify("lock acquired"), None);
    }
}
