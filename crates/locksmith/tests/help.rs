//! `--help` is what users read first: snapshot it, so a changed flag or
//! wording is a reviewed change. Every command in `--help` is built; every
//! flag shown works (tested in the command's own tests).

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(args)
        .arg("--help")
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
    for command in [
        "demo", "apply", "run", "blockers", "top", "lint", "trace", "doctor", "rehearse",
    ] {
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

#[test]
fn every_command_has_examples_and_exit_codes_and_top_lists_its_keys() {
    for command in [
        "demo", "apply", "run", "blockers", "top", "lint", "trace", "doctor",
    ] {
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
