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

/// Waits (polling, bounded by `wait::BOUND`) until each session of `pids`
/// has been idle in its transaction for over 1.5 s: past the 1 s floor at
/// which the guard's look calls a holder long-lived
/// (`look::LONG_LIVED_FLOOR`), so a test need not guess how fast locksmith
/// gets to its first look.
pub async fn idle_past_long_lived(client: &locksmith_pg::Connection, pids: &[i32]) {
    locksmith_sandbox::wait::until(
        locksmith_sandbox::wait::BOUND,
        "the sessions to be idle 1.5 s",
        || async {
            client
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE pid = ANY($1) AND state LIKE 'idle in transaction%'
                       AND clock_timestamp() - state_change > interval '1.5 s'",
                    &[&pids],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
                == pids.len() as i64
        },
    )
    .await
    .unwrap();
}
