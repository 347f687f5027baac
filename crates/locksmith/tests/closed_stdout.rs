//! A reader that stops early (`locksmith lint big.sql | head -1`) is not an
//! error: the command exits 0 and prints nothing on stderr, as ripgrep does.
//! Each report here is far larger than a pipe's buffer, so the write after
//! the reader has gone really fails.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use locksmith_sandbox::shared;

/// Runs locksmith, reads the first line of stdout, closes the pipe, and
/// returns (exit code, first line, stderr).
fn first_line_then_close(args: &[&str], cwd: &Path, url: Option<&str>) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_locksmith"));
    command
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(url) = url {
        command.env("DATABASE_URL", url);
    }
    let mut child = command.spawn().unwrap();
    let mut first = String::new();
    {
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut first).unwrap();
    } // the reader goes away, as `head -1` does
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    (status.code().unwrap_or(-1), first, stderr)
}

/// 2000 copies of the incident's ALTER: a report of several hundred kilobytes.
fn big_sql(dir: &Path) {
    let one =
        "ALTER TABLE academic_partners ADD CONSTRAINT academic_partners_name_key UNIQUE (name);\n";
    std::fs::write(dir.join("big.sql"), one.repeat(2000)).unwrap();
}

#[test]
fn lint_into_a_closed_pipe_exits_0_quietly() {
    let dir = tempfile::tempdir().unwrap();
    big_sql(dir.path());
    for format in ["human", "json", "github", "sarif"] {
        let (code, first, stderr) =
            first_line_then_close(&["lint", "--format", format, "big.sql"], dir.path(), None);
        assert!(!first.is_empty(), "{format}: no first line");
        assert_eq!((code, stderr.as_str()), (0, ""), "{format}");
    }
}

#[tokio::test]
async fn apply_dry_run_into_a_closed_pipe_exits_0_quietly() {
    let (settings, cluster) = shared::database("closed_stdout_apply").await.unwrap();
    let client = settings.connect().await.unwrap();
    client
        .batch_execute("CREATE TABLE t (id int)")
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let columns: String = (0..3000)
        .map(|i| format!("ALTER TABLE t ADD COLUMN c{i} int;\n"))
        .collect();
    std::fs::write(dir.path().join("001_columns.sql"), columns).unwrap();
    let url = cluster.url(settings.dbname());
    for format in ["human", "json"] {
        let (code, first, stderr) = first_line_then_close(
            &["apply", "--dry-run", "--format", format, "."],
            dir.path(),
            Some(&url),
        );
        assert!(!first.is_empty(), "{format}: no first line");
        assert_eq!((code, stderr.as_str()), (0, ""), "{format}");
    }
}
