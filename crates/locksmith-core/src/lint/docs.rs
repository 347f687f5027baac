//! `docs/rules.md`, generated from the registry so the documentation is the
//! rules' own doc comments and cannot drift. A test compares the file with
//! [`markdown`] and rewrites it when run with `UPDATE_DOCS=1`.

use super::{Rule, RULES};

/// The doc comment with the one leading space of each `///` line removed.
pub fn clean(doc: &str) -> String {
    doc.lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The text of a `## Heading` section of a rule's doc.
pub fn section(doc: &str, heading: &str) -> Option<String> {
    let doc = clean(doc);
    let start = doc.find(&format!("## {heading}\n"))? + heading.len() + 4;
    let rest = &doc[start..];
    let end = rest.find("\n## ").unwrap_or(rest.len());
    Some(rest[..end].trim().to_string())
}

/// The SQL code blocks of a section.
pub fn sql_blocks(section: &str) -> Vec<String> {
    section
        .split("```sql\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .map(|b| b.trim().to_string())
        .collect()
}

/// A fix lint prints for one of the rules' documented examples, placed where
/// it would go: alone, or inside the file's own `BEGIN … COMMIT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleFix {
    /// The rule that gave it.
    pub rule: &'static str,
    /// The example as linted (inside `BEGIN … COMMIT` when `wrapped`).
    pub example: String,
    /// The fix as a file would hold it in the example's place.
    pub in_place: String,
    /// Whether the example sat in a transaction block.
    pub wrapped: bool,
}

/// Every fix the rules give for their documented examples, each example
/// linted alone and inside `BEGIN … COMMIT`: what the tests run and re-lint.
pub fn example_fixes() -> Vec<ExampleFix> {
    let mut out = Vec::new();
    for rule in RULES {
        let Some(example) = section(rule.doc, "Example") else {
            continue;
        };
        for bad in sql_blocks(&example) {
            for wrapped in [false, true] {
                let sql = if wrapped && !bad.contains("BEGIN") {
                    format!("BEGIN;\n{bad}\nCOMMIT;")
                } else {
                    bad.clone()
                };
                let Ok(report) = super::lint(&sql, &super::Options::default()) else {
                    continue;
                };
                for f in report.findings().filter(|f| f.rule == rule.id) {
                    let Some(fix) = &f.fix else { continue };
                    let fix = fix.trim_end().trim_end_matches(';');
                    out.push(ExampleFix {
                        rule: rule.id,
                        example: sql.clone(),
                        in_place: if wrapped {
                            format!("BEGIN;\n{fix};\nCOMMIT;")
                        } else {
                            format!("{fix};")
                        },
                        wrapped,
                    });
                }
            }
        }
    }
    out
}

/// The first paragraph of "What it does".
pub fn summary(doc: &str) -> String {
    section(doc, "What it does")
        .map(|s| s.split("\n\n").next().unwrap_or("").replace('\n', " "))
        .unwrap_or_default()
}

fn rule_section(rule: &Rule) -> String {
    // Demote the doc's `##` headings under the rule's own heading.
    let body = clean(rule.doc).replace("\n## ", "\n#### ");
    let body = body
        .strip_prefix("## ")
        .map(|b| format!("#### {b}"))
        .unwrap_or(body);
    let reported_by = match rule.check {
        super::Check::Statement(_) => "",
        super::Check::LiveServer => " Reported only by `lint --database-url`.",
        super::Check::Trace => " Reported only by `locksmith trace`.",
    };
    format!(
        "### {} `{}`\n\nDefault severity: **{}**.{reported_by}\n\n{}\n",
        rule.id,
        rule.name,
        rule.severity,
        body.trim()
    )
}

/// The whole `docs/rules.md`.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Lint rules\n\n\
         <!-- Generated from crates/locksmith-core/src/lint/rules/*.rs by the `docs_are_current` test; \
         edit the rules' doc comments, then run `UPDATE_DOCS=1 cargo test -p pg-locksmith-core docs`. -->\n\n\
         Suppress a finding with `-- locksmith: ignore RULE-ID reason` on the line before the statement; \
         turn a rule off in `locksmith.toml` with `disable = [\"RULE-ID\"]`.\n\n\
         | id | name | severity | what it flags |\n|---|---|---|---|\n",
    );
    for r in RULES {
        out += &format!(
            "| [{}](#{}) | `{}` | {} | {} |\n",
            r.id,
            anchor(r),
            r.name,
            r.severity,
            r.summary().replace('|', "\\|")
        );
    }
    out.push('\n');
    for r in RULES {
        out.push('\n');
        out += &rule_section(r);
    }
    out
}

fn anchor(rule: &Rule) -> String {
    format!("{}-{}", rule.id, rule.name).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::{lint, Options};

    /// Rules whose bad example cannot be written in SQL today.
    const NO_SQL_TRIGGER: &[&str] = &["LS901"];

    #[test]
    fn every_rule_has_docs_and_examples_that_behave() {
        let mut ids = std::collections::HashSet::new();
        for rule in RULES {
            assert!(ids.insert(rule.id), "duplicate id {}", rule.id);
            assert!(
                rule.id.starts_with("LS") && rule.id.len() == 5,
                "{}",
                rule.id
            );
            assert!(
                rule.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                rule.name
            );
            for heading in ["What it does", "Why is this bad?", "Example", "Use instead"] {
                let s = section(rule.doc, heading)
                    .unwrap_or_else(|| panic!("{} lacks `## {heading}`", rule.id));
                assert!(!s.is_empty(), "{}: empty {heading}", rule.id);
            }
            let bad = sql_blocks(&section(rule.doc, "Example").unwrap());
            let good = sql_blocks(&section(rule.doc, "Use instead").unwrap());
            assert!(
                !bad.is_empty() && !good.is_empty(),
                "{} needs a ```sql example and fix",
                rule.id
            );
            let fired = |sql: &str| {
                // An example may pin the version: `-- lint for PostgreSQL 14`.
                let version = sql
                    .lines()
                    .find_map(|l| l.strip_prefix("-- lint for PostgreSQL "))
                    .and_then(|v| v.trim().parse().ok());
                let options = Options {
                    pg_version: version.unwrap_or(Options::default().pg_version),
                    ..Options::default()
                };
                let report =
                    lint(sql, &options).unwrap_or_else(|e| panic!("{}: {sql}: {e}", rule.id));
                let fired = report.findings().any(|f| f.rule == rule.id);
                fired
            };
            // Live and trace findings need a server: their examples are for people.
            if !matches!(rule.check, crate::lint::Check::Statement(_)) {
                continue;
            }
            if !NO_SQL_TRIGGER.contains(&rule.id) {
                assert!(
                    bad.iter().any(|b| fired(b)),
                    "{}'s example does not trigger it",
                    rule.id
                );
            }
            for g in &good {
                assert!(!fired(g), "{}'s `Use instead` triggers it:\n{g}", rule.id);
            }
        }
    }

    /// What lint prints as a fix is safe as printed: linted again, alone or
    /// in place inside the file's own transaction block, it draws no
    /// warning or error.
    #[test]
    fn every_printed_fix_relints_clean() {
        let strict = |sql: &str| -> Vec<String> {
            lint(sql, &Options::default())
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
                .findings()
                .filter(|f| f.severity >= crate::Severity::Warning)
                .map(|f| format!("{} {}", f.rule, f.message))
                .collect()
        };
        let fixes = example_fixes();
        for f in &fixes {
            let left = strict(&f.in_place);
            assert!(
                left.is_empty(),
                "{}'s fix for\n{}\nis not clean:\n{}\n{left:#?}",
                f.rule,
                f.example,
                f.in_place
            );
        }
        let checked = fixes.len();
        assert!(checked >= 10, "only {checked} fixes checked");
    }

    #[test]
    fn docs_are_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/rules.md");
        let want = markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
            return;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "docs/rules.md is stale: run `UPDATE_DOCS=1 cargo test -p pg-locksmith-core docs`"
        );
    }
}
