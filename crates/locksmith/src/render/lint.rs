//! Rendering `lint` and `trace` results: human (source line with a marker),
//! JSON (the contract other tools read), SARIF 2.1.0 and GitHub workflow
//! commands. `trace` reports in the same shape, with the observed locks and
//! rewrites in place of the predicted ones and a `trace` object per statement.
//!
//! Formatting only: no file access, no exit codes. Syntax errors are printed
//! by the command (`FILE:LINE:COLUMN: message`); renderers include them where
//! the format has a place for them.

use std::io::{self, Write};

use locksmith_core::analysis::source::LineIndex;
use locksmith_core::analysis::{RelationLock, Statement, SyntaxError};
use locksmith_core::lint::{Finding, Report, Severity, RULES};
use serde::Serialize;
use serde_json::json;

use super::style::Style;

/// One linted input.
pub struct LintedFile {
    /// The path as given (or `<stdin>`).
    pub path: String,
    /// Its text, for showing source lines.
    pub text: String,
    /// The report, or the syntax error that stopped the analysis.
    pub result: Result<Report, SyntaxError>,
    /// For `trace`: what each statement did, in statement order; empty for `lint`.
    pub traced: Vec<Traced>,
}

/// What `trace` observed for one statement, beside lint's model of it.
pub struct Traced {
    /// The observation.
    pub trace: locksmith_pg::trace::StatementTrace,
    /// Lint's model of the statement (with what `--setup` taught it).
    pub model: Statement,
}

#[derive(Serialize)]
struct JsonTrace<'a> {
    #[serde(flatten)]
    trace: &'a locksmith_pg::trace::StatementTrace,
    model: JsonModel<'a>,
}

#[derive(Serialize)]
struct JsonModel<'a> {
    locks: &'a [RelationLock],
    rewrites: &'a [String],
    scans: &'a [String],
}

#[derive(Serialize)]
struct JsonFile<'a> {
    path: &'a str,
    statements: Vec<JsonStatement<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    findings: Vec<&'a Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    syntax_error: Option<&'a SyntaxError>,
}

#[derive(Serialize)]
struct JsonStatement<'a> {
    line: u32,
    column: u32,
    sql: &'a str,
    locks: &'a [RelationLock],
    rewrites: &'a [String],
    scans: &'a [String],
    transactional: bool,
    findings: &'a [Finding],
    #[serde(skip_serializing_if = "Option::is_none")]
    trace: Option<JsonTrace<'a>>,
}

/// `{"files": [{"path", "statements": [{"line", "column", "sql", "locks", "rewrites", "findings"}]}]}`.
pub fn json(out: &mut dyn Write, files: &[LintedFile]) -> io::Result<()> {
    let files: Vec<JsonFile> = files
        .iter()
        .map(|f| match &f.result {
            Ok(report) => JsonFile {
                path: &f.path,
                statements: report
                    .statements
                    .iter()
                    .enumerate()
                    .map(|(i, s)| JsonStatement {
                        line: s.statement.line,
                        column: s.statement.column,
                        sql: &s.statement.sql,
                        locks: &s.statement.locks,
                        rewrites: &s.statement.rewrites,
                        scans: &s.statement.scans,
                        transactional: s.statement.transactional,
                        findings: &s.findings,
                        trace: f.traced.get(i).map(|t| JsonTrace {
                            trace: &t.trace,
                            model: JsonModel {
                                locks: &t.model.locks,
                                rewrites: &t.model.rewrites,
                                scans: &t.model.scans,
                            },
                        }),
                    })
                    .collect(),
                findings: report.file_findings.iter().map(|f| &f.finding).collect(),
                syntax_error: None,
            },
            Err(e) => JsonFile {
                path: &f.path,
                statements: Vec::new(),
                findings: Vec::new(),
                syntax_error: Some(e),
            },
        })
        .collect();
    // Serialized straight from the report, not through a `Value` tree: the
    // output of a 50 MB file is written without a copy of it in memory.
    #[derive(Serialize)]
    struct JsonReport<'a> {
        files: Vec<JsonFile<'a>>,
    }
    let mut buffered = io::BufWriter::new(out);
    super::json(&mut buffered, &JsonReport { files })?;
    buffered.flush()
}

/// Every finding with its position, in file order.
fn located(file: &LintedFile) -> Vec<(u32, u32, &Finding)> {
    let Ok(report) = &file.result else {
        return Vec::new();
    };
    let mut all: Vec<(u32, u32, &Finding)> = report
        .statements
        .iter()
        .flat_map(|s| {
            s.findings
                .iter()
                .map(|f| (s.statement.line, s.statement.column, f))
        })
        .chain(
            report
                .file_findings
                .iter()
                .map(|f| (f.line, f.column, &f.finding)),
        )
        .collect();
    all.sort_by_key(|(l, c, _)| (*l, *c));
    all
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// SARIF 2.1.0: the rules with their docs, one result per finding.
pub fn sarif(out: &mut dyn Write, files: &[LintedFile]) -> io::Result<()> {
    let rules: Vec<_> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.id,
                "name": r.name,
                "shortDescription": { "text": r.summary() },
                "help": { "text": r.summary(), "markdown": locksmith_core::lint::docs::clean(r.doc) },
                "defaultConfiguration": { "level": sarif_level(r.severity) },
            })
        })
        .collect();
    let mut results = Vec::new();
    let mut notifications = Vec::new();
    for f in files {
        for (line, column, finding) in located(f) {
            let mut result = json!({
                "ruleId": finding.rule,
                "level": sarif_level(finding.severity),
                "message": { "text": finding.message },
                "locations": [location(&f.path, line, column)],
            });
            if let Some(index) = RULES.iter().position(|r| r.id == finding.rule) {
                result["ruleIndex"] = json!(index);
            }
            if let Some(fix) = &finding.fix {
                result["properties"] = json!({ "fix": fix });
            }
            results.push(result);
        }
        if let Err(e) = &f.result {
            notifications.push(json!({
                "level": "error",
                "message": { "text": e.message },
                "locations": [location(&f.path, e.line, e.column)],
            }));
        }
    }
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "locksmith",
                "version": env!("CARGO_PKG_VERSION"),
                // SARIF wants an absolute `informationUri`; the project has no
                // published address yet, so the docs are named by their path.
                "rules": rules,
                "properties": { "documentation": RULES_DOC },
            }},
            "invocations": [{
                "executionSuccessful": notifications.is_empty(),
                "toolExecutionNotifications": notifications,
            }],
            "results": results,
        }],
    });
    super::json(out, &doc)
}

/// Where the rules' documentation lives in the repository.
const RULES_DOC: &str = "docs/rules.md";

fn location(path: &str, line: u32, column: u32) -> serde_json::Value {
    // The name `lint` gives stdin (see `LintedFile::path`) is no URI.
    let artifact = if path == "<stdin>" {
        json!({ "uri": "stdin", "description": { "text": "standard input" } })
    } else {
        json!({ "uri": artifact_uri(path) })
    };
    json!({ "physicalLocation": {
        "artifactLocation": artifact,
        "region": { "startLine": line, "startColumn": column },
    }})
}

/// A path as a SARIF artifact URI: relative paths stay relative references,
/// absolute ones become `file://` URIs; anything but unreserved characters
/// and `/` is percent-encoded.
fn artifact_uri(path: &str) -> String {
    let path = path.replace('\\', "/");
    let mut out = String::new();
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// GitHub Actions workflow commands: `::error file=F,line=L,col=C,title=T::message`.
pub fn github(out: &mut dyn Write, files: &[LintedFile]) -> io::Result<()> {
    for f in files {
        for (line, column, finding) in located(f) {
            let level = match finding.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Info => "notice",
            };
            let mut message = finding.message.clone();
            if let Some(fix) = &finding.fix {
                message += &format!("\nFix:\n{fix}");
            }
            writeln!(
                out,
                "::{level} file={},line={line},col={column},title={}::{}",
                gh_property(&f.path),
                gh_property(&format!("{} {}", finding.rule, rule_name(finding.rule))),
                gh_data(&message)
            )?;
        }
        if let Err(e) = &f.result {
            writeln!(
                out,
                "::error file={},line={},col={}::{}",
                gh_property(&f.path),
                e.line,
                e.column,
                gh_data(&e.message)
            )?;
        }
    }
    Ok(())
}

fn gh_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn gh_property(s: &str) -> String {
    gh_data(s).replace(':', "%3A").replace(',', "%2C")
}

fn rule_name(id: &str) -> &'static str {
    locksmith_core::lint::rule_by_id(id).map_or("", |r| r.name)
}

/// For people: each statement that locks something, then its findings with
/// the source line and a marker, rustc style; a summary line at the end.
pub fn human(out: &mut dyn Write, files: &[LintedFile], style: &Style) -> io::Result<()> {
    let (mut errors, mut warnings, mut statements) = (0, 0, 0);
    for f in files {
        let index = LineIndex::new(&f.text);
        let report = match &f.result {
            Ok(r) => r,
            Err(e) => {
                writeln!(
                    out,
                    "{}: {}",
                    style.red(&style.bold("syntax error")),
                    e.message
                )?;
                marker(out, &f.path, &index, e.line, e.column, style)?;
                continue;
            }
        };
        statements += report.statements.len();
        writeln!(out, "{}", style.bold(&f.path))?;
        for (i, s) in report.statements.iter().enumerate() {
            let st = &s.statement;
            let traced = f.traced.get(i).map(|t| traced_effects(&t.trace));
            if st.locks.is_empty() && s.findings.is_empty() && traced.is_none() {
                continue;
            }
            let locks: Vec<String> = st
                .locks
                .iter()
                .map(|l| format!("{} {}", l.mode, l.relation))
                .collect();
            let mut effects = String::new();
            if !st.rewrites.is_empty() {
                effects += &format!("  rewrites {}", st.rewrites.join(", "));
            }
            if !st.scans.is_empty() {
                effects += &format!("  scans {}", st.scans.join(", "));
            }
            effects += traced.as_deref().unwrap_or("");
            writeln!(
                out,
                "  {:>4}:{:<3} {}  {}{}",
                st.line,
                st.column,
                super::one_line(&st.sql, 48),
                style.dim(&locks.join(", ")),
                style.yellow(&effects)
            )?;
        }
        for (line, column, finding) in located(f) {
            let head = match finding.severity {
                Severity::Error => {
                    errors += 1;
                    style.red(&format!("error[{}]", finding.rule))
                }
                Severity::Warning => {
                    warnings += 1;
                    style.yellow(&format!("warning[{}]", finding.rule))
                }
                Severity::Info => format!("info[{}]", finding.rule),
            };
            writeln!(
                out,
                "\n{head} {}: {}",
                style.bold(rule_name(finding.rule)),
                finding.message
            )?;
            let gutter = marker(out, &f.path, &index, line, column, style)?;
            if let Some(fix) = &finding.fix {
                writeln!(out, "{:gutter$} = {}", "", style.green("safe rewrite:"))?;
                for l in fix.lines() {
                    writeln!(out, "{:gutter$}     {l}", "")?;
                }
            }
        }
        writeln!(out)?;
    }
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    let summary = format!(
        "{}, {} in {}, {}",
        plural(errors, "error"),
        plural(warnings, "warning"),
        plural(files.len(), "file"),
        plural(statements, "statement")
    );
    let summary = if errors > 0 {
        style.red(&summary)
    } else if warnings > 0 {
        style.yellow(&summary)
    } else {
        style.green(&summary)
    };
    writeln!(out, "{summary}")
}

/// What `trace` adds to a statement's line: constraints, and how it was observed.
fn traced_effects(t: &locksmith_pg::trace::StatementTrace) -> String {
    use locksmith_pg::trace::Method;
    let mut out = String::new();
    for c in &t.constraints {
        out += &format!(
            "  {} {} {} on {}{}",
            c.change,
            c.kind,
            c.name,
            c.relation,
            if c.validated { "" } else { " (not validated)" }
        );
    }
    match t.method {
        Method::Transaction => {}
        Method::SecondSession => out += "  [seen from a second session]",
        Method::NotTraced => out += "  [not traced]",
        Method::Blocked => out += "  [blocked]",
    }
    out
}

/// `  --> path:line:col`, the source line, and carets from the column to the
/// end of that line; returns the gutter width.
fn marker(
    out: &mut dyn Write,
    path: &str,
    index: &LineIndex<'_>,
    line: u32,
    column: u32,
    style: &Style,
) -> io::Result<usize> {
    let gutter = line.to_string().len();
    writeln!(
        out,
        "{:gutter$}{} {path}:{line}:{column}",
        "",
        style.dim("-->")
    )?;
    writeln!(out, "{:gutter$} {}", "", style.dim("|"))?;
    writeln!(
        out,
        "{} {} {}",
        style.dim(&line.to_string()),
        style.dim("|"),
        index.line_text(line)
    )?;
    let text = index.line_text(line);
    let before = column.saturating_sub(1) as usize;
    // Keep tabs so the carets line up under tab-indented SQL.
    let pad: String = text
        .chars()
        .take(before)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let rest: String = text.chars().skip(before).collect();
    let carets = "^".repeat(rest.trim_end().chars().count().max(1));
    writeln!(
        out,
        "{:gutter$} {} {pad}{}",
        "",
        style.dim("|"),
        style.red(&carets)
    )?;
    Ok(gutter)
}
