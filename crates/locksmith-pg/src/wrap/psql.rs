//! What the wrapper knows about one tool, psql, because psql's defaults
//! hide a failed statement: without `ON_ERROR_STOP`, a script whose third
//! statement fails on `lock_timeout` runs on to its end and exits 0, with
//! the statements around it committed.
//!
//! So a wrapped psql (its `argv[0]` named `psql`) is given
//! `-v ON_ERROR_STOP=1` unless its arguments set `ON_ERROR_STOP`
//! themselves: psql then stops at the first failed statement and exits 3
//! (and with `-1`/`--single-transaction`, rolls the whole script back).
//! psql sets `-v` variables before it reads `~/.psqlrc` (or `PSQLRC`), so a
//! psqlrc that sets `ON_ERROR_STOP` wins; `run` says so, and whatever psql
//! does, a statement that failed on a lock timeout is still seen in its
//! output and by the session watch (never reported as applied).
//!
//! psql's exit codes: 0 done (even after failed statements, without
//! `ON_ERROR_STOP`); 1 a fatal error of its own (out of memory, file not
//! found); 2 the connection went bad in a non-interactive session; 3 a
//! statement of the script failed with `ON_ERROR_STOP` set. That 3 is not
//! locksmith's "gave up blocked" 3: [`exit_code_meaning`] says which.

use std::path::Path;

/// The variable psql must have set to stop at the first failed statement.
const ON_ERROR_STOP: &str = "ON_ERROR_STOP";

/// Whether the command is psql.
pub fn is_psql(cmd: &[String]) -> bool {
    cmd.first()
        .and_then(|c| Path::new(c).file_name())
        .is_some_and(|name| name == "psql")
}

/// The command to start: a psql whose arguments do not mention
/// `ON_ERROR_STOP` gets `-v ON_ERROR_STOP=1` first (a variable: any place
/// among its options counts, and first is before any `--`). Returns `None`
/// when the command is started as given.
pub fn stop_on_error(cmd: &[String]) -> Option<Vec<String>> {
    if !is_psql(cmd) || cmd.iter().any(|a| a.contains(ON_ERROR_STOP)) {
        return None;
    }
    let mut with = vec![cmd[0].clone(), "-v".into(), format!("{ON_ERROR_STOP}=1")];
    with.extend(cmd[1..].iter().cloned());
    Some(with)
}

/// The psqlrc that psql will read and that sets `ON_ERROR_STOP` (after our
/// `-v`, so its value wins), if any: `PSQLRC`, else `~/.psqlrc`; none
/// with `-X`/`--no-psqlrc`.
pub fn psqlrc_setting_it(cmd: &[String], env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    if !is_psql(cmd) || cmd.iter().any(|a| a == "-X" || a == "--no-psqlrc") {
        return None;
    }
    let path = env("PSQLRC")
        .filter(|p| !p.is_empty())
        .or_else(|| env("HOME").map(|home| format!("{home}/.psqlrc")))?;
    let text = std::fs::read_to_string(&path).ok()?;
    text.contains(ON_ERROR_STOP).then_some(path)
}

/// Whose the exit code passed through is: the command's, and for a 3, not
/// locksmith's "gave up blocked" (psql's 3 is a failed statement with
/// `ON_ERROR_STOP`).
pub fn exit_code_meaning(cmd: &[String], code: u8) -> String {
    match (code, is_psql(cmd)) {
        (3, true) => "exit code 3 is the command's own, psql's: a statement of its script \
                      failed and ON_ERROR_STOP stopped it; not locksmith giving up blocked (that \
                      is status \"blocked\")"
            .to_string(),
        (3, false) => "exit code 3 is the command's own, not locksmith giving up blocked (that \
                       is status \"blocked\")"
            .to_string(),
        (code, _) => format!("exit code {code} is the command's own"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn psql_gets_on_error_stop_unless_it_sets_it() {
        assert_eq!(
            stop_on_error(&cmd(&[
                "/usr/bin/psql",
                "postgres://h/db",
                "-1",
                "-f",
                "m.sql"
            ])),
            Some(cmd(&[
                "/usr/bin/psql",
                "-v",
                "ON_ERROR_STOP=1",
                "postgres://h/db",
                "-1",
                "-f",
                "m.sql"
            ]))
        );
        for own in [
            &["psql", "-v", "ON_ERROR_STOP=0", "-f", "m.sql"][..],
            &["psql", "-vON_ERROR_STOP=off", "-f", "m.sql"],
            &["psql", "--set=ON_ERROR_STOP=on", "-f", "m.sql"],
            &["psql", "--variable", "ON_ERROR_STOP", "-f", "m.sql"],
        ] {
            assert_eq!(stop_on_error(&cmd(own)), None, "{own:?}");
        }
        assert_eq!(stop_on_error(&cmd(&["alembic", "upgrade", "head"])), None);
        assert_eq!(stop_on_error(&cmd(&["psql-wrapper", "-f", "m.sql"])), None);
    }

    #[test]
    fn a_psqlrc_that_sets_it_is_found_unless_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let rc = dir.path().join("rc");
        std::fs::write(&rc, "\\set ON_ERROR_STOP off\n").unwrap();
        let rc_text = rc.to_str().unwrap().to_string();
        let env = |k: &str| (k == "PSQLRC").then(|| rc_text.clone());
        assert_eq!(
            psqlrc_setting_it(&cmd(&["psql", "-f", "m.sql"]), &env),
            Some(rc_text.clone())
        );
        assert_eq!(
            psqlrc_setting_it(&cmd(&["psql", "-X", "-f", "m.sql"]), &env),
            None
        );
        let none = |_: &str| None;
        assert_eq!(
            psqlrc_setting_it(&cmd(&["psql", "-f", "m.sql"]), &none),
            None
        );
    }

    #[test]
    fn exit_code_3_is_told_apart() {
        let psql = exit_code_meaning(&cmd(&["psql"]), 3);
        assert!(psql.contains("psql's: a statement"), "{psql}");
        assert!(psql.contains("not locksmith giving up"), "{psql}");
        let other = exit_code_meaning(&cmd(&["flyway"]), 3);
        assert!(other.contains("command's own, not locksmith"), "{other}");
        assert_eq!(
            exit_code_meaning(&cmd(&["psql"]), 1),
            "exit code 1 is the command's own"
        );
    }
}
