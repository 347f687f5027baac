//! What the binary's integration tests share: running `locksmith` against a
//! database, reading its output, writing migration folders, one-number queries.
//! Each test file uses the part it needs.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// `locksmith ARGS` with `DATABASE_URL=url`, colours off, waited for.
pub fn locksmith(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// stdout then stderr, for assertions and failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Writes `files` (paths relative to `dir`, sub-folders made as needed).
pub fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, sql) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, sql).unwrap();
    }
}

/// The one `bigint` a query returns.
pub async fn query_i64(client: &locksmith_pg::Connection, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// A folder as a command-line argument.
pub fn dir_arg(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

pub mod online;
