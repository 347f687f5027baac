//! Reading either of the server's log formats into [`Message`]s: plain
//! `stderr` (any `log_line_prefix` that keeps the default's timestamp and
//! `[pid]`) and `csvlog`. Knows nothing of what the messages mean; that is
//! the classification in the parent module.

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
