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
//!
//! A psql's SQL is in its arguments (`-c SQL`, `-f FILE`, in order), so
//! `run` can plan it before it runs ([`script`]) without asking any
//! command. Meta-commands (`\set`, `\timing`, …) are psql's, not the
//! server's: their lines are blanked, keeping line numbers; a script that
//! includes files (`\i`), runs printed SQL (`\gexec`) or branches (`\if`)
//! has no plan (its SQL cannot be known ahead), and runs as without one.

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

/// One part of a psql script, in the order psql runs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// `-c SQL` / `--command=SQL`.
    Command(String),
    /// `-f FILE` / `--file=FILE`, relative to the directory psql starts in.
    File(String),
}

/// psql's short options that take a value (its getopt string
/// `aAbc:d:eEf:F:h:HlL:no:p:P:qR:sStT:U:vVwWxXz?01`, `-v` being `--set`).
const SHORT_WITH_VALUE: &str = "cdfFhLopPRTUv";

/// psql's long options that take a value when not given as `--name=value`.
const LONG_WITH_VALUE: &[&str] = &[
    "--command",
    "--dbname",
    "--file",
    "--field-separator",
    "--host",
    "--log-file",
    "--output",
    "--port",
    "--pset",
    "--record-separator",
    "--set",
    "--table-attr",
    "--username",
    "--variable",
];

/// The script a psql command runs, read from its arguments: `None` when it
/// is not psql, or reads SQL from its standard input (no `-c`/`-f`, or
/// `-f -`), which `run` cannot read ahead.
pub fn script(cmd: &[String]) -> Option<Vec<Part>> {
    if !is_psql(cmd) {
        return None;
    }
    let mut parts = Vec::new();
    let mut args = cmd[1..].iter();
    let mut push = |option: char, value: &str| match option {
        'c' => parts.push(Part::Command(value.to_string())),
        _ => parts.push(Part::File(value.to_string())),
    };
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            let (name, value) = match long.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (long, None),
            };
            let value = match value {
                Some(v) => Some(v),
                None if LONG_WITH_VALUE.contains(&arg.as_str()) => Some(args.next()?.clone()),
                None => None,
            };
            match (name, value) {
                ("command", Some(v)) => push('c', &v),
                ("file", Some(v)) => push('f', &v),
                _ => {}
            }
            continue;
        }
        let Some(flags) = arg.strip_prefix('-').filter(|f| !f.is_empty()) else {
            continue; // the database name or user name
        };
        // Clustered short options (`-Xqf m.sql`): the first one taking a
        // value takes the rest of the word, or the next argument.
        for (i, c) in flags.char_indices() {
            if SHORT_WITH_VALUE.contains(c) {
                let rest = &flags[i + c.len_utf8()..];
                let value = if rest.is_empty() {
                    args.next()?.clone()
                } else {
                    rest.to_string()
                };
                if c == 'c' || c == 'f' {
                    push(c, &value);
                }
                break;
            }
        }
    }
    let from_stdin = parts.is_empty() || parts.contains(&Part::File("-".into()));
    (!from_stdin).then_some(parts)
}

/// The SQL of a psql script, its files read from the current directory:
/// each meta-command line blanked (so lines keep their numbers), the parts
/// one after another. A file that cannot be read is the error.
pub fn script_sql(parts: &[Part]) -> Result<String, String> {
    let mut sql = String::new();
    for part in parts {
        let text = match part {
            Part::Command(text) => text.clone(),
            Part::File(path) => {
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?
            }
        };
        for line in text.lines() {
            let meta = line.trim_start();
            if !meta.starts_with('\\') {
                sql.push_str(line);
            } else if let Some(why) = unplannable(meta) {
                return Err(format!("the script {why} (`{}`)", meta.trim_end()));
            }
            sql.push('\n');
        }
        // psql ends a `-c` (and a file) at its end: never run on into the next part.
        if !sql.trim_end().ends_with(';') {
            sql.push_str(";\n");
        }
    }
    Ok(sql)
}

/// Why a meta-command makes the script's SQL unknowable ahead: it reads
/// other files, runs what a query prints, or runs statements conditionally.
fn unplannable(meta: &str) -> Option<&'static str> {
    let command = meta.split_whitespace().next().unwrap_or_default();
    match command {
        "\\i" | "\\ir" | "\\include" | "\\include_relative" => {
            Some("includes another file, which is not read ahead")
        }
        "\\gexec" => Some("runs SQL that a query prints (\\gexec)"),
        "\\if" | "\\elif" => Some("runs statements conditionally (\\if)"),
        _ => None,
    }
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
    fn the_script_is_read_from_its_arguments() {
        let c = |s: &str| Part::Command(s.into());
        let f = |s: &str| Part::File(s.into());
        for (argv, parts) in [
            (
                &["psql", "postgres://h/db", "-f", "m.sql"][..],
                vec![f("m.sql")],
            ),
            (&["psql", "-1", "-Xqfm.sql", "db"], vec![f("m.sql")]),
            (
                &[
                    "psql",
                    "-v",
                    "x=1",
                    "-c",
                    "SELECT 1",
                    "--file=b.sql",
                    "-U",
                    "u",
                ],
                vec![c("SELECT 1"), f("b.sql")],
            ),
            (
                &["psql", "--command", "ALTER TABLE t ADD c int", "-h", "-f"],
                vec![c("ALTER TABLE t ADD c int")],
            ),
        ] {
            assert_eq!(script(&cmd(argv)), Some(parts), "{argv:?}");
        }
        for stdin in [
            &["psql", "db"][..],
            &["psql", "-f", "-"],
            &["psql", "-f"],
            &["alembic", "upgrade", "head"],
        ] {
            assert_eq!(script(&cmd(stdin)), None, "{stdin:?}");
        }
    }

    #[test]
    fn meta_commands_are_blanked_keeping_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.sql");
        std::fs::write(
            &file,
            "\\set ON_ERROR_STOP on\nALTER TABLE t\n  ADD c int;\n",
        )
        .unwrap();
        let parts = [
            Part::File(file.display().to_string()),
            Part::Command("SELECT 1".into()),
        ];
        assert_eq!(
            script_sql(&parts).unwrap(),
            "\nALTER TABLE t\n  ADD c int;\nSELECT 1\n;\n"
        );
        for (script, why) in [
            ("\\i other.sql\n", "includes another file"),
            (
                "SELECT 'ALTER TABLE t ADD c int' \\gexec\n\\gexec\n",
                "\\gexec",
            ),
            (
                "\\if :big\nALTER TABLE t ADD c int;\n\\endif\n",
                "conditionally",
            ),
        ] {
            let error = script_sql(&[Part::Command(script.into())]).unwrap_err();
            assert!(error.contains(why), "{script}: {error}");
        }
        let missing = script_sql(&[Part::File("/nonexistent/m.sql".into())]).unwrap_err();
        assert!(
            missing.starts_with("cannot read /nonexistent/m.sql"),
            "{missing}"
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
