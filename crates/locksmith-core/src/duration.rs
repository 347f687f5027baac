//! The one duration syntax of every locksmith flag: `150ms`, `2s`, `5m`, `1h30m`.
//!
//! A bare number is refused: `--lock-timeout 2` could mean seconds or
//! milliseconds, and guessing wrong is how a budget of 2 ms or 2000 s sneaks in.

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{input}`: {reason} (write it like 150ms, 2s, 5m)")]
pub struct DurationError {
    input: String,
    reason: String,
}

/// Parses a duration such as `150ms`, `2s` or `5m`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let trimmed = input.trim();
    let err = |reason: &str| DurationError {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    if trimmed.is_empty() {
        return Err(err("empty"));
    }
    if trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(err("a unit is required"));
    }
    // Every duration here is a budget or a wait: none can be negative.
    if trimmed.starts_with('-') {
        return Err(err("a duration cannot be negative"));
    }
    humantime::parse_duration(trimmed).map_err(|e| err(&e.to_string()))
}

/// Formats a duration the way PostgreSQL settings accept it (`lock_timeout = '150ms'`),
/// rounded to whole milliseconds; zero would mean "no timeout", so it is at least 1ms.
pub fn to_pg_setting(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// A short human spelling for reports: `850ms`, `4.2s`, `3m05s`.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", d.as_secs_f64())
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse_duration("150ms").unwrap(), Duration::from_millis(150));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
    }

    #[test]
    fn refuses_bare_numbers_and_garbage() {
        for bad in ["", "2", "1.5", "fast", "2 parsecs", "-1s"] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains("150ms"), "{bad}: {e}");
        }
    }

    #[test]
    fn negative_durations_say_so() {
        let e = parse_duration("-1s").unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid duration `-1s`: a duration cannot be negative (write it like 150ms, 2s, 5m)"
        );
    }

    #[test]
    fn human_and_pg_spellings() {
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_millis(4200)), "4.2s");
        assert_eq!(human(Duration::from_secs(185)), "3m05s");
        assert_eq!(to_pg_setting(Duration::from_micros(10)), "1ms");
        assert_eq!(to_pg_setting(Duration::from_millis(150)), "150ms");
    }
}
