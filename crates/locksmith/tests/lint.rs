//! `locksmith lint` end to end: the built binary on files, directories and
//! stdin, every format, the exit codes and the syntax-error line.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn locksmith(args: &[&str], cwd: &Path, stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const INCIDENT: &str = "-- the incident\nALTER TABLE academic_partners ADD CONSTRAINT academic_partners_name_key UNIQUE (name);\n";
const SAFE: &str = "SET lock_timeout = '2s';\nALTER TABLE t ADD COLUMN note text;\n";

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

#[test]
fn json_contract_and_exit_1_on_errors() {
    let dir = dir_with(&[("m.sql", INCIDENT)]);
    let out = locksmith(&["lint", "--format", "json", "m.sql"], dir.path(), None);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["files"][0]["statements"][0];
    assert_eq!(v["files"][0]["path"], "m.sql");
    assert_eq!(
        (s["line"].as_u64(), s["column"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        s["sql"],
        "ALTER TABLE academic_partners ADD CONSTRAINT academic_partners_name_key UNIQUE (name)"
    );
    assert_eq!(
        s["locks"][0],
        serde_json::json!({"relation": "academic_partners", "mode": "AccessExclusiveLock"})
    );
    assert_eq!(s["rewrites"], serde_json::json!([]));
    let f = &s["findings"][0];
    assert_eq!(
        (f["rule"].as_str(), f["severity"].as_str()),
        (Some("LS101"), Some("error"))
    );
    assert!(f["message"]
        .as_str()
        .unwrap()
        .contains("AccessExclusiveLock"));
    assert!(f["fix"].as_str().unwrap().starts_with(
        "SET lock_timeout = '2s';\nCREATE UNIQUE INDEX CONCURRENTLY academic_partners_name_key"
    ));
}

#[test]
fn clean_input_exits_0() {
    let dir = dir_with(&[("ok.sql", SAFE)]);
    let out = locksmith(&["lint", "ok.sql"], dir.path(), None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("0 errors, 0 warnings in 1 file, 2 statements"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn syntax_error_is_file_line_column_and_exit_2() {
    let dir = dir_with(&[("bad.sql", "SELECT 1;\nALTER TABEL t ADD COLUMN a int;\n")]);
    let out = locksmith(&["lint", "--format", "json", "bad.sql"], dir.path(), None);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "bad.sql:2:7: syntax error at or near \"TABEL\""
    );
}

/// The human summary does not call a file it could not parse clean.
#[test]
fn human_syntax_error_is_not_summarised_as_zero_errors() {
    let dir = dir_with(&[("bad.sql", "SELECT 1;\nALTER TABEL t ADD COLUMN a int;\n")]);
    let out = locksmith(&["lint", "bad.sql"], dir.path(), None);
    assert_eq!(out.status.code(), Some(2));
    let said = stdout(&out);
    assert!(!said.contains("\n0 errors"), "{said}");
    insta::assert_snapshot!(said);
}

#[test]
fn missing_file_is_bad_input() {
    let dir = dir_with(&[]);
    let out = locksmith(&["lint", "nope.sql"], dir.path(), None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.sql"));
}

#[test]
fn stdin_and_directories() {
    let dir = dir_with(&[
        ("migrations/002_b.sql", SAFE),
        ("migrations/001_a.sql", INCIDENT),
        ("migrations/notes.txt", "x"),
    ]);
    let out = locksmith(
        &["lint", "--format", "json", "migrations", "-"],
        dir.path(),
        Some("VACUUM FULL t;"),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths: Vec<&str> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths.len(), 3);
    assert!(
        paths[0].ends_with("001_a.sql") && paths[1].ends_with("002_b.sql"),
        "{paths:?}"
    );
    assert_eq!(paths[2], "<stdin>");
}

#[test]
fn github_annotations() {
    let dir = dir_with(&[("m.sql", INCIDENT)]);
    let out = locksmith(&["lint", "--format", "github", "m.sql"], dir.path(), None);
    let text = stdout(&out);
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with(
            "::error file=m.sql,line=2,col=1,title=LS101 adding-unique-constraint::ADD CONSTRAINT"
        ),
        "{first}"
    );
    assert!(
        first.contains("%0AFix:%0ASET lock_timeout = '2s';%0ACREATE UNIQUE INDEX CONCURRENTLY"),
        "{first}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("::warning file=m.sql,line=2,col=1,title=LS401")),
        "{text}"
    );
}

#[test]
fn sarif_2_1_0() {
    let dir = dir_with(&[("m.sql", INCIDENT)]);
    let out = locksmith(&["lint", "--format", "sarif", "m.sql"], dir.path(), None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let run = &v["runs"][0];
    assert!(run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == "LS101"));
    let result = &run["results"][0];
    assert_eq!(result["ruleId"], "LS101");
    assert_eq!(result["level"], "error");
    let region = &result["locations"][0]["physicalLocation"]["region"];
    assert_eq!(
        (region["startLine"].as_u64(), region["startColumn"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(
        result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "m.sql"
    );
    assert!(
        !v.to_string().contains("example.invalid"),
        "no placeholder address"
    );
    assert_eq!(
        run["tool"]["driver"]["properties"]["documentation"],
        "docs/rules.md"
    );
    // Every finding id has its rule, with its name (LS601 and trace's too).
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    for id in ["LS105", "LS601", "LS602", "LS950"] {
        assert!(
            rules.iter().any(|r| r["id"] == id && r["name"].is_string()),
            "{id}"
        );
    }
}

#[test]
fn sarif_artifact_uris_are_valid_for_stdin_and_odd_paths() {
    let dir = dir_with(&[("my migrations/1 a.sql", INCIDENT)]);
    let out = locksmith(
        &["lint", "--format", "sarif", "my migrations/1 a.sql", "-"],
        dir.path(),
        Some(INCIDENT),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let uris: Vec<String> = v["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        uris.contains(&"my%20migrations/1%20a.sql".to_string()),
        "{uris:?}"
    );
    assert!(uris.contains(&"stdin".to_string()), "{uris:?}");
    // RFC 3986: no spaces, angle brackets or backslashes in a URI reference.
    assert!(
        uris.iter().all(|u| !u.contains([' ', '<', '>', '\\'])),
        "{uris:?}"
    );
}

#[test]
fn human_shows_the_source_line_with_a_marker() {
    let dir = dir_with(&[("m.sql", INCIDENT)]);
    let out = locksmith(&["lint", "m.sql"], dir.path(), None);
    insta::assert_snapshot!(stdout(&out));
}

#[test]
fn config_turns_rules_off_and_sets_the_version() {
    let sql = "ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY;\n";
    let dir = dir_with(&[
        ("m.sql", sql),
        ("locksmith.toml", "pg_version = 13\ndisable = [\"LS401\"]\n"),
    ]);
    let out = locksmith(&["lint", "--format", "json", "m.sql"], dir.path(), None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rules: Vec<&str> = v["files"][0]["statements"][0]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["LS501"]);
    // The flag wins over the file.
    let out = locksmith(
        &["lint", "--format", "json", "--pg-version", "17", "m.sql"],
        dir.path(),
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = locksmith(&["lint", "--pg-version", "9", "m.sql"], dir.path(), None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bad_config_is_bad_input() {
    let dir = dir_with(&[
        ("m.sql", SAFE),
        ("locksmith.toml", "disable = [\"LS999\"]\n"),
    ]);
    let out = locksmith(&["lint", "m.sql"], dir.path(), None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LS999"));
}

/// `--database-url`: the table's size grades the hold, and the sessions in the
/// way right now are named — against the incident staged with real sessions.
#[tokio::test]
async fn live_grading_names_size_and_current_blockers() {
    use locksmith_sandbox::incident::{Incident, TABLE};
    use locksmith_sandbox::traffic::LeakedSessions;

    let incident = Incident::stage_shared("lint_live").await.unwrap();
    let leaked = LeakedSessions::open(&incident.app.with_application_name("leaky-app"), 2, TABLE)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.sql");
    std::fs::write(
        &file,
        "ALTER TABLE academic_partners ADD COLUMN token uuid DEFAULT gen_random_uuid();\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["lint", "--format", "json", "--database-url", &incident.url])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = &report["files"][0]["statements"][0]["findings"];
    let rule = |id: &str| {
        findings
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["rule"] == id)
            .cloned()
    };
    // The size verdict is folded into the statement's own finding.
    let size = findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["message"].as_str().unwrap().contains("at this size"))
        .expect("a size verdict");
    assert!(
        size["message"].as_str().unwrap().contains("at 250 rows"),
        "{size}"
    );
    assert_eq!(size["rows"], 250, "{size}");
    assert!(
        size["estimated_hold_ms"].as_i64().unwrap() < 100,
        "a 250-row table rewrites in well under 100 ms: {size}"
    );
    let blocked = rule("LS602").expect("the leakers are named");
    assert!(
        blocked["message"]
            .as_str()
            .unwrap()
            .starts_with("2 sessions hold a lock"),
        "{blocked}"
    );
    assert!(
        blocked["message"].as_str().unwrap().contains("leaky-app"),
        "{blocked}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout)
        .contains(locksmith_sandbox::cluster::SUPERUSER_PASSWORD));
    drop(leaked);
}

/// `--database-url` during the incident: the ALTER is queued behind an idle
/// transaction, so opening the table for its size would queue too. Lint
/// reads the catalog under a short lock_timeout and says "size unknown"
/// instead of hanging.
#[tokio::test]
async fn live_grading_never_joins_the_lock_queue() {
    use locksmith_sandbox::incident::{Incident, MIGRATION};
    use locksmith_sandbox::queue::Queue;

    let incident = Incident::stage_shared("lint_queue").await.unwrap();
    let queue = Queue::form(&incident, 1, 0).await.unwrap();
    let dir = dir_with(&[("m.sql", &format!("{MIGRATION};\n"))]);
    let started = std::time::Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["lint", "--format", "json", "--database-url", &incident.url])
        .arg(dir.path().join("m.sql"))
        .output()
        .unwrap();
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(10),
        "lint took {took:?}"
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let findings = report["files"][0]["statements"][0]["findings"]
        .as_array()
        .unwrap()
        .clone();
    let size = findings
        .iter()
        .find(|f| f["message"].as_str().unwrap().contains("size unknown"))
        .expect("a size verdict");
    assert_eq!(size["bytes"], serde_json::Value::Null, "{size}");
    assert!(
        size["message"].as_str().unwrap().contains("size unknown"),
        "{size}"
    );
    // The ALTER is still queued: lint took nothing from it.
    assert!(!queue.alter.is_finished());
    drop(queue);
}

/// `--database-url` fills lint's schema from the catalog: widening a
/// `varchar` is known not to rewrite, and a column already `NOT NULL` is
/// known not to be scanned.
#[tokio::test]
async fn live_catalog_judges_type_changes() {
    use locksmith_sandbox::incident::Incident;

    let incident = Incident::stage_shared("lint_catalog").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    admin
        .batch_execute(
            "CREATE TABLE lint_catalog (id bigint NOT NULL, name varchar(50), total numeric(10,2))",
        )
        .await
        .unwrap();
    let sql = "SET lock_timeout = '1s';\n\
               ALTER TABLE lint_catalog ALTER COLUMN name TYPE varchar(100);\n\
               ALTER TABLE lint_catalog ALTER COLUMN id SET NOT NULL;\n\
               ALTER TABLE lint_catalog ALTER COLUMN total TYPE numeric(8,2);\n";
    let dir = dir_with(&[("m.sql", sql)]);
    let rules = |live: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_locksmith"));
        cmd.args(["lint", "--format", "json"]);
        if live {
            cmd.args(["--database-url", &incident.url]);
        }
        let out = cmd.arg(dir.path().join("m.sql")).output().unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        report["files"][0]["statements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s["findings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f["rule"].as_str().unwrap().to_string())
                    .filter(|r| r != "LS601" && r != "LS602")
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        rules(false),
        [
            vec![],
            vec!["LS108".to_string()],
            vec!["LS107".to_string()],
            vec!["LS108".to_string()]
        ]
    );
    // Known now: varchar widened (no rewrite), id NOT NULL (no scan), numeric narrowed (rewrite).
    assert_eq!(
        rules(true),
        [vec![], vec![], vec![], vec!["LS108".to_string()]]
    );
}

fn linted_paths(dir: &Path) -> Vec<String> {
    let out = locksmith(&["lint", "--format", "json", "."], dir, None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect()
}

fn corpus(tool: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(tool)
}

#[test]
fn diesel_down_sql_is_never_linted() {
    let paths = linted_paths(&corpus("diesel"));
    assert_eq!(
        paths,
        [
            "./2024-01-01-000000_init/up.sql",
            "./2024-03-01-000000_users/up.sql"
        ]
    );
}

#[test]
fn popx_other_dialects_are_never_linted() {
    let paths = linted_paths(&corpus("popx"));
    assert_eq!(
        paths,
        [
            "./20240101000000000000_init.postgres.up.sql",
            "./20240301000000000000_users.postgres.up.sql"
        ]
    );
}

/// The rules that fired, over every file.
fn rules(out: &Output) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut rules = Vec::new();
    for f in v["files"].as_array().unwrap() {
        for s in f["statements"].as_array().unwrap() {
            for finding in s["findings"].as_array().unwrap() {
                rules.push(finding["rule"].as_str().unwrap().to_string());
            }
        }
    }
    rules
}

#[test]
fn transaction_mode_comes_from_the_layout_its_marker_or_the_flag() {
    const CIC: &str = "CREATE INDEX CONCURRENTLY i ON t (a);\n";
    // sqlx runs a file in a transaction: the build fails there.
    let dir = dir_with(&[("1_a.sql", "CREATE TABLE t (a int);\n"), ("2_i.sql", CIC)]);
    let out = locksmith(&["lint", "--format", "json", "."], dir.path(), None);
    assert_eq!(rules(&out), ["LS105"], "{}", stdout(&out));
    // Its own marker says not.
    let marked = format!("-- no-transaction\n{CIC}");
    let dir = dir_with(&[
        ("1_a.sql", "CREATE TABLE t (a int);\n"),
        ("2_i.sql", &marked),
    ]);
    let out = locksmith(&["lint", "--format", "json", "."], dir.path(), None);
    assert_eq!(rules(&out), Vec::<String>::new(), "{}", stdout(&out));
    assert_eq!(out.status.code(), Some(0));
    // golang-migrate's `.up.sql` too (sqlx's reversible files look the same:
    // a lone statement is given the benefit of the doubt).
    let dir = dir_with(&[
        ("1_a.up.sql", "CREATE TABLE t (a int);\n"),
        ("2_i.up.sql", CIC),
    ]);
    let out = locksmith(&["lint", "--format", "json", "."], dir.path(), None);
    assert_eq!(rules(&out), Vec::<String>::new(), "{}", stdout(&out));
    // Prisma sends a file as one query: alone, the build runs outside a block.
    let dir = dir_with(&[
        (
            "20240101000000_a/migration.sql",
            "CREATE TABLE t (a int);\n",
        ),
        ("20240102000000_i/migration.sql", CIC),
    ]);
    let out = locksmith(&["lint", "--format", "json", "."], dir.path(), None);
    assert_eq!(rules(&out), Vec::<String>::new(), "{}", stdout(&out));
    // A plain file is judged as written, unless --assume-in-transaction.
    let dir = dir_with(&[("plain.sql", CIC)]);
    let out = locksmith(&["lint", "--format", "json", "plain.sql"], dir.path(), None);
    assert_eq!(rules(&out), Vec::<String>::new());
    let out = locksmith(
        &[
            "lint",
            "--format",
            "json",
            "--assume-in-transaction",
            "plain.sql",
        ],
        dir.path(),
        None,
    );
    assert_eq!(rules(&out), ["LS105"]);
}

#[test]
fn fix_diff_shows_without_writing() {
    let dir = dir_with(&[
        ("00001_a.sql", "-- +goose Up\nCREATE TABLE t (a int);\n"),
        ("00002_i.sql", "-- +goose Up\nCREATE INDEX i ON t (a);\n"),
    ]);
    let out = locksmith(&["lint", "--fix", "--diff", "."], dir.path(), None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    insta::assert_snapshot!(stdout(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("00002_i.sql")).unwrap(),
        "-- +goose Up\nCREATE INDEX i ON t (a);\n"
    );
    let out = locksmith(&["lint", "--fix", "."], dir.path(), None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("00002_i.sql")).unwrap(),
        "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY i ON t (a);\n"
    );
    let out = locksmith(&["lint", "."], dir.path(), None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}
