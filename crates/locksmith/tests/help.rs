//! `--help` is what users read first: snapshot it, so a changed flag or
//! wording is a reviewed change. Every command in `--help` is built; every
//! flag shown works (tested in the command's own tests).

use std::process::Command;

fn help(args: &[&str]) -> String {
    help_with(args, "--help")
}

fn help_with(args: &[&str], flag: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(args)
        .arg(flag)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn help_texts() {
    insta::assert_snapshot!("locksmith", help(&[]));
    for command in COMMANDS {
        insta::assert_snapshot!(command, help(&[command]));
    }
}

#[test]
fn bad_durations_are_usage_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["apply", "--lock-timeout", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("150ms"));
}

/// `--deadline -1s` reaches the duration parser, which says what is wrong,
/// instead of clap's tip to write `-- -1` (which would make it a folder).
#[test]
fn negative_durations_are_named_as_such() {
    let out = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["apply", "--deadline", "-1s"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!said.contains("tip"), "{said}");
    insta::assert_snapshot!(said);
}

const COMMANDS: [&str; 9] = [
    "demo", "apply", "run", "blockers", "top", "lint", "trace", "doctor", "rehearse",
];

/// One layout everywhere: `-h` prints what `--help` prints, the description
/// (if any) comes before Usage, and examples and exit codes after the options.
#[test]
fn short_and_long_help_are_the_same_page_with_usage_before_examples() {
    for command in COMMANDS {
        let long = help(&[command]);
        assert_eq!(long, help_with(&[command], "-h"), "{command}");
        let usage = long.find("Usage:").unwrap();
        let examples = long.find("Examples:").unwrap_or(usage + 1);
        let exit = long.find("Exit codes:").unwrap();
        assert!(usage < examples && examples < exit, "{command}:\n{long}");
    }
}

/// `--direct-url` only where a route straight to the server is used.
#[test]
fn direct_url_is_offered_only_where_it_is_used() {
    for command in [
        "apply", "run", "trace", "rehearse", "doctor", "blockers", "top",
    ] {
        assert!(help(&[command]).contains("--direct-url"), "{command}");
    }
    // Where it is only a way past a statement pooler, the help says so.
    for command in ["blockers", "top", "doctor"] {
        assert!(help(&[command]).contains("statement pooler"), "{command}");
    }
    assert!(!help(&["lint"]).contains("--direct-url"));
}

#[test]
fn every_command_has_examples_and_exit_codes_and_top_lists_its_keys() {
    for command in COMMANDS {
        let text = help(&[command]);
        assert!(
            text.contains(&format!("  locksmith {command}")),
            "{command}: no example\n{text}"
        );
        assert!(
            text.contains("Exit codes: 0"),
            "{command}: no exit codes\n{text}"
        );
    }
    assert!(help(&[]).contains("Exit codes: 0"));
    let top = help(&["top"]);
    for key in ["Enter", "c ", "k ", "[y/N]", "q  quit"] {
        assert!(top.contains(key), "top --help lacks {key}\n{top}");
    }
}

fn locksmith_stdout(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every visible subcommand, from the CLI definition (`--help`'s list).
fn subcommands() -> Vec<String> {
    let help = help(&[]);
    let list = help.split("Commands:\n").nth(1).unwrap();
    list.lines()
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn completions_name_every_subcommand_and_lint_flag() {
    let commands = subcommands();
    assert!(commands.len() >= 10, "{commands:?}");
    for shell in ["bash", "zsh", "fish"] {
        let script = locksmith_stdout(&["completions", shell]);
        for command in &commands {
            assert!(script.contains(command.as_str()), "{shell}: no `{command}`");
        }
        for flag in ["pg-version", "database-url", "lock-timeout"] {
            assert!(script.contains(flag), "{shell}: no `{flag}`");
        }
    }
    let out = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_man_page_renders_with_every_subcommand() {
    let page = locksmith_stdout(&["man"]);
    assert!(page.contains(".TH locksmith 1"), "{page}");
    assert!(page.contains("never lock out your traffic"));
    for command in subcommands() {
        assert!(
            page.contains(&format!("locksmith\\-{command}")) || page.contains(&command),
            "{command}"
        );
    }
    // man(1) itself renders it when the machine has it.
    if let Ok(out) = Command::new("man")
        .args(["-l", "-"])
        .env("MANWIDTH", "100")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(page.as_bytes())?;
            child.wait_with_output()
        })
    {
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("SUBCOMMANDS") || text.contains("locksmith"),
                "{text}"
            );
        }
    }
}
