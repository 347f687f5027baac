//! The GitHub Action's logic (`scripts/action.sh`, run by action.yml) with
//! the environment a runner gives it: a git checkout whose pull request adds
//! migrations, `GITHUB_STEP_SUMMARY` and `GITHUB_OUTPUT` as files. It lints
//! only what changed, annotates, tabulates, and applies after a clean lint.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use locksmith_sandbox::Cluster;
use support::{text, write};

const INCIDENT: &str =
    "ALTER TABLE academic_partners ADD CONSTRAINT academic_partners_name_key UNIQUE (name);\n";
const SAFE: &str =
    "SET lock_timeout = '2s';\nCREATE TABLE notes (id bigint PRIMARY KEY, body text);\n";

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
}

/// A checkout: `base` committed on `main`, then `added` committed on top.
fn checkout(base: &[(&str, &str)], added: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    write(dir.path(), base);
    write(dir.path(), &[("README", "app\n")]);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "base"]);
    write(dir.path(), added);
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "the pull request"]);
    dir
}

struct Ran {
    out: Output,
    summary: String,
    outputs: String,
}

/// `scripts/action.sh` in `dir` with the runner's files and `env`.
fn action(dir: &Path, env: &[(&str, &str)]) -> Ran {
    let runner = tempfile::tempdir().unwrap();
    let summary = runner.path().join("summary.md");
    let outputs = runner.path().join("output");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/action.sh");
    let out = Command::new("bash")
        .arg(script)
        .current_dir(dir)
        .env("LOCKSMITH", env!("CARGO_BIN_EXE_locksmith"))
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &outputs)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    Ran {
        out,
        summary: std::fs::read_to_string(summary).unwrap_or_default(),
        outputs: std::fs::read_to_string(outputs).unwrap_or_default(),
    }
}

#[test]
fn a_pull_request_adding_the_incident_fails_with_annotations_and_a_table() {
    let dir = checkout(
        &[("migrations/0001_old.sql", INCIDENT)],
        &[
            ("migrations/0002_unique.sql", INCIDENT),
            ("migrations/0003_notes.sql", SAFE),
            ("docs/x.sql", INCIDENT),
        ],
    );
    let ran = action(dir.path(), &[("INPUT_BASE", "main~1")]);
    assert_eq!(ran.out.status.code(), Some(1), "{}", text(&ran.out));
    let stdout = String::from_utf8_lossy(&ran.out.stdout);
    assert!(
        stdout.contains("::error file=migrations/0002_unique.sql,line=1,col=1,title=LS101"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("0001_old.sql") && !stdout.contains("docs/x.sql"),
        "only the changed migrations under paths are linted: {stdout}"
    );
    assert!(
        ran.summary
            .contains("| severity | where | rule | finding |"),
        "{}",
        ran.summary
    );
    assert!(
        ran.summary.contains(
            "| error | `migrations/0002_unique.sql`:1 | LS101 adding-unique-constraint | ADD CONSTRAINT … UNIQUE builds its index"
        ),
        "{}",
        ran.summary
    );
    assert!(
        !ran.summary.contains("Fix:"),
        "the fix stays in the annotation"
    );
    for line in ["files=2", "findings=2", "errors=1"] {
        assert!(
            ran.outputs.lines().any(|l| l == line),
            "{line}: {}",
            ran.outputs
        );
    }
}

#[test]
fn a_clean_pull_request_is_applied_and_an_empty_one_says_so() {
    let dir = checkout(&[], &[("migrations/0001_notes.sql", SAFE)]);
    let cluster = Cluster::start().unwrap();
    let url = cluster.url("postgres");
    let ran = action(
        dir.path(),
        &[
            ("INPUT_BASE", "main~1"),
            ("INPUT_APPLY_DIR", "migrations"),
            ("INPUT_DATABASE_URL", &url),
        ],
    );
    assert_eq!(ran.out.status.code(), Some(0), "{}", text(&ran.out));
    assert!(
        ran.summary
            .contains("No findings in 1 changed migration(s)."),
        "{}",
        ran.summary
    );
    for line in ["files=1", "findings=0", "errors=0", "applied=true"] {
        assert!(
            ran.outputs.lines().any(|l| l == line),
            "{line}: {}",
            ran.outputs
        );
    }
    assert!(
        !text(&ran.out).contains(&url),
        "the database URL (a secret) is never printed"
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let exists: bool = runtime.block_on(async {
        let client = cluster
            .settings("postgres", "test")
            .connect()
            .await
            .unwrap();
        client
            .query_one("SELECT to_regclass('notes') IS NOT NULL", &[])
            .await
            .unwrap()
            .get(0)
    });
    assert!(exists, "the migration was applied");

    // Nothing under paths changed: said in the summary, exit 0.
    let other = checkout(&[], &[("src/app.py", "print(1)\n")]);
    let ran = action(other.path(), &[("INPUT_BASE", "main~1")]);
    assert_eq!(ran.out.status.code(), Some(0), "{}", text(&ran.out));
    assert!(
        ran.summary.contains("No changed SQL migrations"),
        "{}",
        ran.summary
    );
    assert!(
        ran.outputs.lines().any(|l| l == "files=0"),
        "{}",
        ran.outputs
    );
}
