//! Inline suppressions: `-- locksmith: ignore LS101 reason` (or several ids,
//! comma-separated, or rule names) in the comments before a statement.
//!
//! An ignore belongs to the first statement that ends after it: the one it
//! precedes, or the one it sits inside. One that suppresses nothing is
//! reported, so stale ignores don't pile up. Must not look inside string
//! literals: comments come from the real scanner.

use crate::analysis::source::{comments, LineIndex};

use super::{rule_by_id, Rule, RULES};

/// One rule id or name from an ignore comment.
#[derive(Debug, Clone)]
pub(crate) struct Ignore {
    /// The id or name as written.
    pub rule: String,
    pub line: u32,
    pub column: u32,
    /// Where the comment starts in the file.
    pub offset: usize,
    /// Index of the statement it applies to, once that statement is known
    /// ([`assign`]); `None` after the last statement.
    pub statement: Option<usize>,
    /// Whether it suppressed a finding.
    pub used: bool,
}

impl Ignore {
    pub fn unmatched_message(&self) -> String {
        let known = rule_by_id(&self.rule).is_some() || RULES.iter().any(|r| r.name == self.rule);
        if known {
            format!(
                "`locksmith: ignore {}` on line {} matches no finding of the next statement; remove it",
                self.rule, self.line
            )
        } else {
            format!(
                "`locksmith: ignore {}` on line {} names no rule locksmith knows",
                self.rule, self.line
            )
        }
    }
}

/// Parses the ids and reason of `-- locksmith: ignore …`, if `comment` is one.
fn parse(comment: &str) -> Option<(Vec<String>, String)> {
    let body = comment
        .strip_prefix("--")
        .or_else(|| comment.strip_prefix("/*")?.strip_suffix("*/"))?;
    let rest = body
        .trim()
        .strip_prefix("locksmith:")?
        .trim_start()
        .strip_prefix("ignore")?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let rest = rest.trim();
    let mut ids = Vec::new();
    let mut words = rest.split_whitespace().peekable();
    // Ids come first: `LS101`, `LS101,LS120`, `LS101, LS120`, or rule names.
    while let Some(word) = words.peek() {
        let parts: Vec<&str> = word.split(',').filter(|p| !p.is_empty()).collect();
        let looks_like_rule = |p: &&str| {
            p.starts_with("LS") && p[2..].chars().all(|c| c.is_ascii_digit())
                || RULES.iter().any(|r| r.name == *p)
        };
        if parts.is_empty() || !parts.iter().all(looks_like_rule) {
            break;
        }
        ids.extend(parts.iter().map(|p| p.to_string()));
        words.next();
    }
    if ids.is_empty() {
        // Report the first word as an unknown rule rather than drop the comment.
        ids.extend(words.next().map(str::to_string));
    }
    Some((ids, words.collect::<Vec<_>>().join(" ")))
}

/// Every ignore in `sql`'s comments, in file order, not yet given a
/// statement: [`assign`] does that as the statements come.
pub(crate) fn collect(sql: &str) -> Vec<Ignore> {
    if !sql.contains("locksmith:") {
        return Vec::new();
    }
    let index = LineIndex::new(sql);
    let mut out = Vec::new();
    for c in comments(sql) {
        let Some((ids, _reason)) = parse(&c.text) else {
            continue;
        };
        let (line, column) = index.position(c.offset);
        for rule in ids {
            out.push(Ignore {
                rule,
                line,
                column,
                offset: c.offset,
                statement: None,
                used: false,
            });
        }
    }
    out
}

/// Gives statement `i`, which ends at byte `end`, the ignores before that
/// end that no earlier statement took. `assigned` counts the ignores taken
/// so far (they are in file order); returns the new count.
pub(crate) fn assign(ignores: &mut [Ignore], assigned: usize, i: usize, end: usize) -> usize {
    let mut n = assigned;
    while n < ignores.len() && ignores[n].offset < end {
        ignores[n].statement = Some(i);
        n += 1;
    }
    n
}

/// Marks the ignores of statement `i` that name `rule`; true if there was one.
pub(crate) fn consume(ignores: &mut [Ignore], i: usize, rule: &Rule) -> bool {
    let mut hit = false;
    for ig in ignores.iter_mut().filter(|ig| ig.statement == Some(i)) {
        if ig.rule == rule.id || ig.rule == rule.name {
            ig.used = true;
            hit = true;
        }
    }
    hit
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_ids_and_reason() {
        assert_eq!(
            parse("-- locksmith: ignore LS101 table has 10 rows"),
            Some((vec!["LS101".into()], "table has 10 rows".into()))
        );
        assert_eq!(
            parse("--locksmith: ignore LS101,LS401"),
            Some((vec!["LS101".into(), "LS401".into()], String::new()))
        );
        assert_eq!(
            parse("/* locksmith: ignore adding-unique-constraint, LS401 ok */"),
            Some((
                vec!["adding-unique-constraint".into(), "LS401".into()],
                "ok".into()
            ))
        );
        assert_eq!(parse("-- locksmith: ignored"), None);
        assert_eq!(parse("-- just a comment"), None);
        assert_eq!(
            parse("-- locksmith: ignore XYZ because"),
            Some((vec!["XYZ".into()], "because".into()))
        );
    }
}
