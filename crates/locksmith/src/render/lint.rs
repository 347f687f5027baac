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
use locksmith_core::lint::{FileFinding, Finding, LintedStatement, Report, Severity, RULES};
use serde::Serialize;
use serde_json::json;
use sha2::Digest;

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

/// Where a lint or trace report goes as it is produced: files in order, each
/// either statement by statement (then its findings outside any statement)
/// or as a syntax error. So `lint` never holds its analysed statements: each
/// format keeps between calls only what it must — the human and GitHub
/// formats one file's findings (listed after its statements, in line
/// order), SARIF every finding (one document) — never the statements.
pub trait Sink {
    /// A file without syntax errors starts.
    fn begin_file(&mut self, path: &str) -> io::Result<()>;
    /// Its next statement; `traced` is what `trace` observed of it.
    fn statement(&mut self, s: &LintedStatement, traced: Option<&Traced>) -> io::Result<()>;
    /// The file is done; `file_findings` belong to no statement.
    fn end_file(&mut self, path: &str, text: &str, file_findings: &[FileFinding])
        -> io::Result<()>;
    /// A file that did not parse (nothing of it was linted).
    fn syntax_error(&mut self, path: &str, text: &str, e: &SyntaxError) -> io::Result<()>;
    /// Every file is done: the closing lines (summary, brackets), flushed.
    fn finish(&mut self) -> io::Result<()>;
}

/// Feeds whole reports (`trace`, `lint --database-url`) to `sink`.
pub fn write_all(sink: &mut dyn Sink, files: &[LintedFile]) -> io::Result<()> {
    for f in files {
        match &f.result {
            Ok(report) => {
                sink.begin_file(&f.path)?;
                for (i, s) in report.statements.iter().enumerate() {
                    sink.statement(s, f.traced.get(i))?;
                }
                sink.end_file(&f.path, &f.text, &report.file_findings)?;
            }
            Err(e) => sink.syntax_error(&f.path, &f.text, e)?,
        }
    }
    sink.finish()
}

/// `{"files": [{"path", "statements": [{"line", "column", "sql", "locks", "rewrites", "findings"}]}]}`,
/// written as it comes, byte for byte what serializing the whole report
/// pretty would give.
pub struct Json<W: Write> {
    out: W,
    files: usize,
    statements: usize,
}

impl<W: Write> Json<W> {
    pub fn new(out: W) -> Self {
        Json {
            out,
            files: 0,
            statements: 0,
        }
    }

    fn next_file(&mut self) -> io::Result<()> {
        let sep = if self.files == 0 {
            "{\n  \"files\": [\n"
        } else {
            ",\n"
        };
        self.files += 1;
        self.out.write_all(sep.as_bytes())
    }
}

/// `value` as pretty JSON whose lines after the first are indented by
/// `indent` more (the first goes where the caller is): JSON strings escape
/// line breaks, so every line break is the formatter's.
fn pretty_at<T: Serialize>(value: &T, indent: usize) -> io::Result<Vec<u8>> {
    let text = serde_json::to_vec_pretty(value)?;
    let mut out = Vec::with_capacity(text.len() + text.len() / 8);
    for b in text {
        out.push(b);
        if b == b'\n' {
            out.extend(std::iter::repeat_n(b' ', indent));
        }
    }
    Ok(out)
}

impl<W: Write> Sink for Json<W> {
    fn begin_file(&mut self, path: &str) -> io::Result<()> {
        self.next_file()?;
        self.statements = 0;
        write!(
            self.out,
            "    {{\n      \"path\": {},\n      \"statements\": ",
            serde_json::to_string(path)?
        )
    }

    fn statement(&mut self, s: &LintedStatement, traced: Option<&Traced>) -> io::Result<()> {
        let sep = if self.statements == 0 { "[\n" } else { ",\n" };
        self.statements += 1;
        self.out.write_all(sep.as_bytes())?;
        let statement = JsonStatement {
            line: s.statement.line,
            column: s.statement.column,
            sql: &s.statement.sql,
            locks: &s.statement.locks,
            rewrites: &s.statement.rewrites,
            scans: &s.statement.scans,
            transactional: s.statement.transactional,
            findings: &s.findings,
            trace: traced.map(|t| JsonTrace {
                trace: &t.trace,
                model: JsonModel {
                    locks: &t.model.locks,
                    rewrites: &t.model.rewrites,
                    scans: &t.model.scans,
                },
            }),
        };
        self.out.write_all(b"        ")?;
        self.out.write_all(&pretty_at(&statement, 8)?)
    }

    fn end_file(&mut self, _: &str, _: &str, file_findings: &[FileFinding]) -> io::Result<()> {
        let close = if self.statements == 0 {
            "[]"
        } else {
            "\n      ]"
        };
        self.out.write_all(close.as_bytes())?;
        if !file_findings.is_empty() {
            let findings: Vec<&Finding> = file_findings.iter().map(|f| &f.finding).collect();
            self.out.write_all(b",\n      \"findings\": ")?;
            self.out.write_all(&pretty_at(&findings, 6)?)?;
        }
        self.out.write_all(b"\n    }")
    }

    fn syntax_error(&mut self, path: &str, _: &str, e: &SyntaxError) -> io::Result<()> {
        self.next_file()?;
        let file = JsonFile {
            path,
            statements: Vec::new(),
            findings: Vec::new(),
            syntax_error: Some(e),
        };
        self.out.write_all(b"    ")?;
        self.out.write_all(&pretty_at(&file, 4)?)
    }

    fn finish(&mut self) -> io::Result<()> {
        let close = if self.files == 0 {
            "{\n  \"files\": []\n}\n"
        } else {
            "\n  ]\n}\n"
        };
        self.out.write_all(close.as_bytes())?;
        self.out.flush()
    }
}

/// One file's findings with their positions, gathered as its statements
/// come, then in file order: the human, GitHub and SARIF formats list them so.
#[derive(Default)]
struct Located(Vec<(u32, u32, Finding)>);

impl Located {
    fn statement(&mut self, s: &LintedStatement) {
        let (line, column) = (s.statement.line, s.statement.column);
        self.0
            .extend(s.findings.iter().map(|f| (line, column, f.clone())));
    }

    /// The file's findings, sorted by position (stable: statement order first).
    fn take(&mut self, file_findings: &[FileFinding]) -> Vec<(u32, u32, Finding)> {
        let mut all = std::mem::take(&mut self.0);
        all.extend(
            file_findings
                .iter()
                .map(|f| (f.line, f.column, f.finding.clone())),
        );
        all.sort_by_key(|(l, c, _)| (*l, *c));
        all
    }
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// SARIF 2.1.0: the rules with their docs, one result per finding. One
/// document whose head says whether every file parsed, so the results are
/// kept until the end — as the text they will be written as (a tenth of
/// their `serde_json::Value`s), never the statements.
pub struct Sarif<W: Write> {
    out: W,
    located: Located,
    /// The results so far, formatted in place (elements of `runs[0].results`).
    results: Vec<u8>,
    notifications: Vec<serde_json::Value>,
}

impl<W: Write> Sarif<W> {
    pub fn new(out: W) -> Self {
        Sarif {
            out,
            located: Located::default(),
            results: Vec::new(),
            notifications: Vec::new(),
        }
    }
}

/// How deep SARIF's results sit: `{ "runs": [ { "results": [ here`.
const SARIF_RESULT_INDENT: usize = 8;

impl<W: Write> Sink for Sarif<W> {
    fn begin_file(&mut self, _: &str) -> io::Result<()> {
        Ok(())
    }

    fn statement(&mut self, s: &LintedStatement, _: Option<&Traced>) -> io::Result<()> {
        self.located.statement(s);
        Ok(())
    }

    fn end_file(&mut self, path: &str, _: &str, file_findings: &[FileFinding]) -> io::Result<()> {
        for (line, column, finding) in self.located.take(file_findings) {
            let mut result = json!({
                "ruleId": finding.rule,
                "level": sarif_level(finding.severity),
                "message": { "text": finding.message },
                "locations": [location(path, line, column)],
            });
            if let Some(index) = RULES.iter().position(|r| r.id == finding.rule) {
                result["ruleIndex"] = json!(index);
            }
            if let Some(fix) = &finding.fix {
                result["properties"] = json!({ "fix": fix });
            }
            if !self.results.is_empty() {
                self.results.extend_from_slice(b",\n");
            }
            self.results
                .extend(std::iter::repeat_n(b' ', SARIF_RESULT_INDENT));
            self.results
                .extend(pretty_at(&result, SARIF_RESULT_INDENT)?);
        }
        Ok(())
    }

    fn syntax_error(&mut self, path: &str, _: &str, e: &SyntaxError) -> io::Result<()> {
        self.notifications.push(json!({
            "level": "error",
            "message": { "text": e.message },
            "locations": [location(path, e.line, e.column)],
        }));
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
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
        let notifications = std::mem::take(&mut self.notifications);
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
                "results": [],
            }],
        });
        let text = serde_json::to_vec_pretty(&doc)?;
        // The results go into the one `"results": []` (quotes inside strings are escaped).
        let empty = b"\"results\": []";
        let at = match text.windows(empty.len()).position(|w| w == empty) {
            Some(at) if !self.results.is_empty() => at + empty.len() - 1,
            _ => text.len(),
        };
        self.out.write_all(&text[..at])?;
        if at < text.len() {
            self.out.write_all(b"\n")?;
            self.out.write_all(&std::mem::take(&mut self.results))?;
            self.out.write_all(b"\n      ")?;
            self.out.write_all(&text[at..])?;
        }
        writeln!(self.out)?;
        self.out.flush()
    }
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
pub struct Github<W: Write> {
    out: W,
    located: Located,
}

impl<W: Write> Github<W> {
    pub fn new(out: W) -> Self {
        Github {
            out,
            located: Located::default(),
        }
    }
}

impl<W: Write> Sink for Github<W> {
    fn begin_file(&mut self, _: &str) -> io::Result<()> {
        Ok(())
    }

    fn statement(&mut self, s: &LintedStatement, _: Option<&Traced>) -> io::Result<()> {
        self.located.statement(s);
        Ok(())
    }

    fn end_file(&mut self, path: &str, _: &str, file_findings: &[FileFinding]) -> io::Result<()> {
        // One fix per statement: under its first finding only.
        let mut shown_fix: Option<(u32, u32, String)> = None;
        for (line, column, finding) in self.located.take(file_findings) {
            let level = match finding.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Info => "notice",
            };
            let mut message = finding.message.clone();
            let again = shown_fix.as_ref().is_some_and(|(l, c, f)| {
                (*l, *c) == (line, column) && finding.fix.as_ref() == Some(f)
            });
            if let Some(fix) = finding.fix.as_ref().filter(|_| !again) {
                shown_fix = Some((line, column, fix.clone()));
                message += &format!("\nFix:\n{fix}");
            }
            writeln!(
                self.out,
                "::{level} file={},line={line},col={column},title={}::{}",
                gh_property(path),
                gh_property(&format!("{} {}", finding.rule, rule_name(finding.rule))),
                gh_data(&message)
            )?;
        }
        Ok(())
    }

    fn syntax_error(&mut self, path: &str, _: &str, e: &SyntaxError) -> io::Result<()> {
        writeln!(
            self.out,
            "::error file={},line={},col={}::{}",
            gh_property(path),
            e.line,
            e.column,
            gh_data(&e.message)
        )
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// GitLab Code Quality: the JSON array GitLab reads from a `codequality`
/// report artifact, one issue per finding (a syntax error is a `blocker`).
/// Each fingerprint is a digest of the path, the rule, the message and the
/// finding's rank among identical ones in the file, not of its line, so a
/// finding keeps its identity when lines above it move (GitLab compares the
/// merge request's issues with the target branch's by fingerprint).
pub struct Gitlab<W: Write> {
    out: W,
    located: Located,
    issues: Vec<serde_json::Value>,
}

impl<W: Write> Gitlab<W> {
    pub fn new(out: W) -> Self {
        Gitlab {
            out,
            located: Located::default(),
            issues: Vec::new(),
        }
    }

    fn issue(&mut self, path: &str, line: u32, check: &str, severity: &str, description: &str) {
        let key = format!("{path}\0{check}\0{description}");
        let rank = self
            .issues
            .iter()
            .filter(|i| {
                i["location"]["path"] == path
                    && i["check_name"] == check
                    && i["description"] == description
            })
            .count();
        let digest = sha2::Sha256::digest(format!("{key}\0{rank}").as_bytes());
        let fingerprint: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        self.issues.push(json!({
            "description": description,
            "check_name": check,
            "fingerprint": fingerprint,
            "severity": severity,
            "location": { "path": path, "lines": { "begin": line } },
        }));
    }
}

fn gitlab_severity(s: Severity) -> &'static str {
    match s {
        Severity::Error => "critical",
        Severity::Warning => "major",
        Severity::Info => "info",
    }
}

impl<W: Write> Sink for Gitlab<W> {
    fn begin_file(&mut self, _: &str) -> io::Result<()> {
        Ok(())
    }

    fn statement(&mut self, s: &LintedStatement, _: Option<&Traced>) -> io::Result<()> {
        self.located.statement(s);
        Ok(())
    }

    fn end_file(&mut self, path: &str, _: &str, file_findings: &[FileFinding]) -> io::Result<()> {
        for (line, _, finding) in self.located.take(file_findings) {
            let check = format!("{} {}", finding.rule, rule_name(finding.rule));
            self.issue(
                path,
                line,
                &check,
                gitlab_severity(finding.severity),
                &finding.message,
            );
        }
        Ok(())
    }

    fn syntax_error(&mut self, path: &str, _: &str, e: &SyntaxError) -> io::Result<()> {
        self.issue(path, e.line, "syntax-error", "blocker", &e.message);
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut self.out, &self.issues)?;
        writeln!(self.out)?;
        self.out.flush()
    }
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
pub struct Human<W: Write> {
    out: W,
    style: Style,
    located: Located,
    errors: usize,
    warnings: usize,
    /// Files that did not parse (and so were not checked).
    syntax_errors: usize,
    statements: usize,
    files: usize,
}

impl<W: Write> Human<W> {
    pub fn new(out: W, style: Style) -> Self {
        Human {
            out,
            style,
            located: Located::default(),
            errors: 0,
            warnings: 0,
            syntax_errors: 0,
            statements: 0,
            files: 0,
        }
    }
}

impl<W: Write> Sink for Human<W> {
    fn begin_file(&mut self, path: &str) -> io::Result<()> {
        self.files += 1;
        writeln!(self.out, "{}", self.style.bold(path))
    }

    fn statement(&mut self, s: &LintedStatement, traced: Option<&Traced>) -> io::Result<()> {
        self.statements += 1;
        self.located.statement(s);
        let (st, style) = (&s.statement, &self.style);
        let traced = traced.map(|t| traced_effects(&t.trace));
        if st.locks.is_empty() && s.findings.is_empty() && traced.is_none() {
            return Ok(());
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
            self.out,
            "  {:>4}:{:<3} {}  {}{}",
            st.line,
            st.column,
            super::one_line(&st.sql, 48),
            style.dim(&locks.join(", ")),
            style.yellow(&effects)
        )
    }

    fn end_file(
        &mut self,
        path: &str,
        text: &str,
        file_findings: &[FileFinding],
    ) -> io::Result<()> {
        let index = LineIndex::new(text);
        let style = &self.style;
        // One fix per statement: printed under its first finding only.
        let mut shown_fix: Option<(u32, u32, String)> = None;
        for (line, column, finding) in self.located.take(file_findings) {
            let head = match finding.severity {
                Severity::Error => {
                    self.errors += 1;
                    style.red(&format!("error[{}]", finding.rule))
                }
                Severity::Warning => {
                    self.warnings += 1;
                    style.yellow(&format!("warning[{}]", finding.rule))
                }
                Severity::Info => format!("info[{}]", finding.rule),
            };
            writeln!(
                self.out,
                "\n{head} {}: {}",
                style.bold(rule_name(finding.rule)),
                finding.message
            )?;
            let gutter = marker(&mut self.out, path, &index, line, column, style)?;
            let again = shown_fix.as_ref().is_some_and(|(l, c, f)| {
                (*l, *c) == (line, column) && finding.fix.as_ref() == Some(f)
            });
            if let Some(fix) = finding.fix.as_ref().filter(|_| !again) {
                shown_fix = Some((line, column, fix.clone()));
                writeln!(
                    self.out,
                    "{:gutter$} = {}",
                    "",
                    style.green("safe rewrite:")
                )?;
                for l in fix.lines() {
                    writeln!(self.out, "{:gutter$}     {l}", "")?;
                }
            }
        }
        writeln!(self.out)
    }

    fn syntax_error(&mut self, path: &str, text: &str, e: &SyntaxError) -> io::Result<()> {
        self.files += 1;
        self.syntax_errors += 1;
        let style = &self.style;
        // The parser's message mostly starts with the same words as the heading.
        let detail = match e.message.strip_prefix("syntax error") {
            Some(rest) => rest.to_string(),
            None => format!(": {}", e.message),
        };
        writeln!(
            self.out,
            "{}{detail}",
            style.red(&style.bold("syntax error")),
        )?;
        marker(
            &mut self.out,
            path,
            &LineIndex::new(text),
            e.line,
            e.column,
            style,
        )?;
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        // A file that did not parse was not checked: "0 errors" alone would
        // read as a clean bill while the exit code says bad input.
        let unchecked = match self.syntax_errors {
            0 => String::new(),
            1 => "1 syntax error (that file was not checked), ".into(),
            n => format!("{n} syntax errors (those files were not checked), "),
        };
        let summary = format!(
            "{unchecked}{}, {} in {}, {}",
            plural(self.errors, "error"),
            plural(self.warnings, "warning"),
            plural(self.files, "file"),
            plural(self.statements, "statement")
        );
        let style = &self.style;
        let summary = if self.errors + self.syntax_errors > 0 {
            style.red(&summary)
        } else if self.warnings > 0 {
            style.yellow(&summary)
        } else {
            style.green(&summary)
        };
        writeln!(self.out, "{summary}")?;
        self.out.flush()
    }
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

/// `lint --fix --diff`: each changed or new file as a unified diff.
pub fn diff(out: &mut dyn Write, changes: &[locksmith_core::lint::fix::Change]) -> io::Result<()> {
    if changes.is_empty() {
        return writeln!(out, "nothing to fix");
    }
    for c in changes {
        let before = c.before.as_deref().unwrap_or("");
        let old = if c.before.is_some() {
            format!("a/{}", c.path)
        } else {
            "/dev/null".to_string()
        };
        let text = similar::TextDiff::from_lines(before, &c.after);
        write!(
            out,
            "{}",
            text.unified_diff()
                .context_radius(3)
                .header(&old, &format!("b/{}", c.path))
        )?;
    }
    Ok(())
}

/// `lint --fix`: what was written.
pub fn fixed(
    out: &mut dyn Write,
    dir: &std::path::Path,
    changes: &[locksmith_core::lint::fix::Change],
) -> io::Result<()> {
    if changes.is_empty() {
        return writeln!(out, "nothing to fix");
    }
    for c in changes {
        let what = if c.before.is_some() {
            "rewrote"
        } else {
            "wrote"
        };
        writeln!(out, "{what} {}", dir.join(&c.path).display())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use locksmith_core::lint::{lint, Options};

    fn files() -> Vec<LintedFile> {
        let inputs = [
            ("a.sql", "SET lock_timeout = '2s';\nALTER TABLE t ADD COLUMN b int NOT NULL DEFAULT 1;\n-- locksmith: ignore LS101\nCREATE INDEX i ON t (b);\n-- locksmith: ignore LS999 trailing\n"),
            ("empty.sql", ""),
            ("bad.sql", "SELEC 1;\n"),
            ("é \"q\".sql", "CREATE TABLE é (x int); ALTER TABLE é ALTER COLUMN x TYPE bigint;"),
        ];
        inputs
            .iter()
            .map(|(path, text)| LintedFile {
                path: path.to_string(),
                text: text.to_string(),
                result: lint(text, &Options::default()),
                traced: Vec::new(),
            })
            .collect()
    }

    /// The whole report serialized at once: what the JSON sink writes piece by piece.
    fn whole(files: &[LintedFile]) -> Vec<u8> {
        #[derive(Serialize)]
        struct JsonReport<'a> {
            files: Vec<JsonFile<'a>>,
        }
        let files = files
            .iter()
            .map(|f| match &f.result {
                Ok(report) => JsonFile {
                    path: &f.path,
                    statements: report
                        .statements
                        .iter()
                        .map(|s| JsonStatement {
                            line: s.statement.line,
                            column: s.statement.column,
                            sql: &s.statement.sql,
                            locks: &s.statement.locks,
                            rewrites: &s.statement.rewrites,
                            scans: &s.statement.scans,
                            transactional: s.statement.transactional,
                            findings: &s.findings,
                            trace: None,
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
        let mut out = serde_json::to_vec_pretty(&JsonReport { files }).unwrap();
        out.push(b'\n');
        out
    }

    #[test]
    fn streamed_json_is_the_whole_report_serialized() {
        let files = files();
        for n in 0..=files.len() {
            let mut out = Vec::new();
            write_all(&mut Json::new(&mut out), &files[..n]).unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                String::from_utf8(whole(&files[..n])).unwrap()
            );
        }
    }

    #[test]
    fn gitlab_code_quality_report() {
        let mut out = Vec::new();
        write_all(&mut Gitlab::new(&mut out), &files()).unwrap();
        let text = String::from_utf8(out).unwrap();
        insta::assert_snapshot!(text);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let issues = v.as_array().unwrap();
        let fingerprints: std::collections::BTreeSet<_> = issues
            .iter()
            .map(|i| i["fingerprint"].to_string())
            .collect();
        assert_eq!(fingerprints.len(), issues.len(), "fingerprints are unique");
    }

    #[test]
    fn sarif_results_go_where_the_document_has_them() {
        let files = files();
        for n in [0, 2, files.len()] {
            let mut out = Vec::new();
            write_all(&mut Sarif::new(&mut out), &files[..n]).unwrap();
            let text = String::from_utf8(out).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            // Pretty, as a whole document would be written.
            assert_eq!(text, serde_json::to_string_pretty(&v).unwrap() + "\n");
            let results = v["runs"][0]["results"].as_array().unwrap();
            let expected: usize = files[..n]
                .iter()
                .filter_map(|f| f.result.as_ref().ok())
                .map(|r| r.findings().count())
                .sum();
            assert_eq!(results.len(), expected);
        }
    }
}
