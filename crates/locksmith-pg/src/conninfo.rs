//! Connection strings as text: the URL and `key=value` forms libpq accepts,
//! taken apart just enough to pull out what tokio-postgres does not parse
//! (`sslmode=verify-full`, `sslrootcert`, …), to let `PGPORT` fill a URL
//! without a port, and to print a string with its password hidden. Parsing
//! proper is tokio-postgres' job; nothing here connects.

pub(crate) const TLS_KEYS: [&str; 6] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "sslcompression",
];

pub(crate) fn is_url(text: &str) -> bool {
    let t = text.trim_start();
    t.starts_with("postgres://") || t.starts_with("postgresql://")
}

/// Adds `:port` to every host of a URL that names none.
pub(crate) fn with_url_port(url: &str, port: &str) -> String {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or(0);
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    let hosts: Vec<String> = hosts
        .split(',')
        .map(|h| {
            if h.is_empty() {
                h.to_string()
            } else {
                format!("{h}:{port}")
            }
        })
        .collect();
    format!("{}{userinfo}{}{tail}", &url[..scheme_end], hosts.join(","))
}

/// Whether a URL or `key=value` string names a port itself.
pub(crate) fn sets_port(text: &str) -> bool {
    let trimmed = text.trim();
    if let Some(rest) = trimmed
        .strip_prefix("postgres://")
        .or_else(|| trimmed.strip_prefix("postgresql://"))
    {
        let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
        let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let query_port = rest
            .split_once('?')
            .is_some_and(|(_, q)| q.split('&').any(|p| p.starts_with("port=")));
        // A port follows the last ':' outside IPv6 brackets.
        let after_bracket = hosts.rsplit_once(']').map_or(hosts, |(_, tail)| tail);
        return query_port || after_bracket.split(',').any(|h| h.contains(':'));
    }
    keyword_pairs(trimmed).iter().any(|(k, _)| k == "port")
}

/// Takes the TLS keys tokio-postgres does not know out of a URL or
/// `key=value` string; returns the rest and the keys taken.
pub(crate) fn split_tls_keys(text: &str) -> (String, Vec<(String, String)>) {
    let mut taken = Vec::new();
    let trimmed = text.trim();
    if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
        let Some((base, query)) = trimmed.split_once('?') else {
            return (trimmed.to_string(), taken);
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if TLS_KEYS.contains(&k) {
                taken.push((k.to_string(), percent_decode(v)));
            } else {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        return (rest, taken);
    }
    let mut kept = Vec::new();
    for (k, v) in keyword_pairs(trimmed) {
        if TLS_KEYS.contains(&k.as_str()) {
            taken.push((k, v));
        } else {
            kept.push(format!(
                "{k}='{}'",
                v.replace('\\', "\\\\").replace('\'', "\\'")
            ));
        }
    }
    (kept.join(" "), taken)
}

/// Splits `key=value key='quoted value'` as libpq does.
pub(crate) fn keyword_pairs(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == '=') {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        pairs.push((key, value));
    }
    pairs
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Hides the password in a connection string, URL or `key=value` form.
pub fn redact(text: &str) -> String {
    let trimmed = text.trim();
    if let Some(scheme_end) = trimmed.find("://") {
        let (scheme, rest) = trimmed.split_at(scheme_end + 3);
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        let authority = match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                let user = userinfo.split(':').next().unwrap_or("");
                let masked = if userinfo.contains(':') {
                    format!("{user}:***")
                } else {
                    user.to_string()
                };
                format!("{masked}{}", &authority[at..])
            }
            None => authority.to_string(),
        };
        let tail = redact_query(tail);
        return format!("{scheme}{authority}{tail}");
    }
    keyword_pairs(trimmed)
        .into_iter()
        .map(|(k, v)| {
            if k == "password" {
                format!("{k}=***")
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|p| {
            if p.starts_with("password=") {
                "password=***".to_string()
            } else {
                p.to_string()
            }
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_postgres::Config;

    #[test]
    fn redaction() {
        let cases = [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgresql://u@h/db", "postgresql://u@h/db"),
            (
                "postgres://h/db?user=u&password=secret&sslmode=require",
                "postgres://h/db?user=u&password=***&sslmode=require",
            ),
            (
                "host=h password='se cret' user=u",
                "host=h password=*** user=u",
            ),
            ("postgres://u:p%40ss@h/db", "postgres://u:***@h/db"),
        ];
        for (input, expected) in cases {
            assert_eq!(redact(input), expected);
        }
    }

    #[test]
    fn keyword_strings_keep_quoted_values() {
        let (rest, tls) = split_tls_keys(
            "host=h application_name='my app' sslrootcert='/tmp/a b.crt' sslmode=verify-ca",
        );
        assert_eq!(
            tls,
            vec![
                ("sslrootcert".into(), "/tmp/a b.crt".into()),
                ("sslmode".into(), "verify-ca".into())
            ]
        );
        let config: Config = rest.parse().unwrap();
        assert_eq!(config.get_application_name(), Some("my app"));
    }
}
