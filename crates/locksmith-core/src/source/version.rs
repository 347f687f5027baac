//! Migration versions as comparable values: `7`, `20240101120000`, Flyway's
//! `1.1` / `1_1`. Parts compare numerically one by one (`1.10` after `1.9`),
//! a missing part counts as zero (`1` = `1.0`), leading zeros do not count
//! (`001` = `1`), and no part is limited in size.

use std::cmp::Ordering;
use std::fmt;

/// A version: one or more numbers separated by `.` or `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    /// Each part's digits without leading zeros (`"0"` for zero); trailing
    /// zero parts dropped, so equal versions have equal parts.
    parts: Vec<String>,
}

impl Version {
    /// Parses `1`, `001`, `1.1`, `1_1`, `2.0.3`; `None` for anything else
    /// (empty parts, signs, letters).
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = Vec::new();
        for part in text.split(['.', '_']) {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let digits = part.trim_start_matches('0');
            parts.push(if digits.is_empty() { "0" } else { digits }.to_string());
        }
        while parts.len() > 1 && parts.last().is_some_and(|p| p == "0") {
            parts.pop();
        }
        Some(Version { parts })
    }

    /// The version as one number, when it is one that fits (`20240101120000`);
    /// `None` for dotted versions (`1.1`) and huge numbers.
    pub fn as_i64(&self) -> Option<i64> {
        match self.parts.as_slice() {
            [one] => one.parse().ok(),
            _ => None,
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let zero = "0".to_string();
        let len = self.parts.len().max(other.parts.len());
        for i in 0..len {
            let a = self.parts.get(i).unwrap_or(&zero);
            let b = other.parts.get(i).unwrap_or(&zero);
            // Without leading zeros, a longer number is a bigger one.
            match a.len().cmp(&b.len()).then_with(|| a.cmp(b)) {
                Ordering::Equal => continue,
                unequal => return unequal,
            }
        }
        Ordering::Equal
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    /// The canonical spelling: parts joined by `.` (`1_1` shows as `1.1`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.parts.join("."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn orders_numerically_part_by_part() {
        assert!(v("1.9") < v("1.10"));
        assert!(v("2") > v("1.10"));
        assert!(v("9") < v("10"));
        assert!(v("1") < v("1.1"));
        assert_eq!(v("1_1"), v("1.1"));
        assert_eq!(v("001"), v("1"));
        assert_eq!(v("1.0"), v("1"));
        assert!(v("99999999999999999999999") > v("20240101120000"));
        assert_eq!(v("1_01").to_string(), "1.1");
    }

    #[test]
    fn spells_and_converts() {
        assert_eq!(v("20240101120000").as_i64(), Some(20240101120000));
        assert_eq!(v("1.1").as_i64(), None);
        assert_eq!(v("99999999999999999999999").as_i64(), None);
        assert_eq!(v("0").to_string(), "0");
        for bad in ["", "1.", ".1", "1..2", "a", "-1", "1a", " 1"] {
            assert_eq!(Version::parse(bad), None, "{bad:?}");
        }
    }
}
