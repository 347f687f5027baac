//! The ways locksmith ships, end to end with the real tools: `pip install` of
//! the repository (pyproject.toml, maturin from PyPI) into a fresh venv, and
//! the pre-commit hook (`.pre-commit-hooks.yaml`) run by the real `pre-commit`
//! from PyPI on a throwaway git repository.
//!
//! The wheel builds reuse this test build's target directory and profile
//! (`CARGO_TARGET_DIR`, `MATURIN_PEP517_ARGS=--profile …`), so they cost a
//! link and a wheel, not a second release build of the workspace. Off CI a
//! machine without Python's venv skips them, saying so; with `CI=true` they
//! must run.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use locksmith_sandbox::Cluster;
use support::text;

const INCIDENT: &str =
    "ALTER TABLE academic_partners ADD CONSTRAINT academic_partners_name_key UNIQUE (name);\n";
const SAFE: &str = "SET lock_timeout = '2s';\nALTER TABLE t ADD COLUMN note text;\n";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// The target directory and cargo profile this test binary was built in:
/// `<target>/<profile dir>/locksmith`.
fn target_and_profile() -> (PathBuf, String) {
    let bin = Path::new(env!("CARGO_BIN_EXE_locksmith"));
    let profile_dir = bin.parent().unwrap();
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev".to_owned(),
        other => other.to_owned(),
    };
    (profile_dir.parent().unwrap().to_path_buf(), profile)
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A fresh venv at `<target>/ship/<name>`, or None (skip) when this machine
/// cannot make one and this is not CI.
fn fresh_venv(name: &str) -> Option<PathBuf> {
    let (target, _) = target_and_profile();
    let venv = target.join("ship").join(name);
    let _ = std::fs::remove_dir_all(&venv);
    std::fs::create_dir_all(venv.parent().unwrap()).unwrap();
    let made = Command::new("python3")
        .arg("-m")
        .arg("venv")
        .arg(&venv)
        .output();
    match made {
        Ok(out) if out.status.success() => Some(venv),
        other => {
            let why = match other {
                Ok(out) => text(&out),
                Err(e) => e.to_string(),
            };
            assert!(
                !in_ci(),
                "CI=true requires python3 with venv (bash scripts/setup.sh --tests): {why}"
            );
            eprintln!(
                "SKIPPED: `python3 -m venv` failed ({why}); install python3-venv \
                 (bash scripts/setup.sh --tests) to test the Python package and the pre-commit hook"
            );
            None
        }
    }
}

/// `program args` with the wheel build pointed at this build's target dir and
/// profile; panics with the output unless it exits 0.
fn run_ok(program: &Path, args: &[&str], cwd: &Path) -> Output {
    let out = command(program, args, cwd).output().unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}",
        program.display(),
        text(&out)
    );
    out
}

fn command(program: &Path, args: &[&str], cwd: &Path) -> Command {
    let (target, profile) = target_and_profile();
    let mut cmd = Command::new(program);
    // Not the variables cargo gives this test (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, …):
    // build scripts that watch them (ring's) would see them change and rebuild
    // half the dependency tree inside the wheel build.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_BIN_",
            "CARGO_CRATE_",
            "CARGO_PRIMARY_",
            "CARGO_TARGET_TMPDIR",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix))
        {
            cmd.env_remove(&*name);
        }
    }
    cmd.args(args)
        .current_dir(cwd)
        .env("CARGO_TARGET_DIR", &target)
        .env("MATURIN_PEP517_ARGS", format!("--profile {profile}"))
        .env("NO_COLOR", "1")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1");
    cmd
}

#[test]
fn pip_installs_the_locksmith_command_which_lints_and_runs() {
    let Some(venv) = fresh_venv("pip") else {
        return;
    };
    let root = repo_root();
    run_ok(&venv.join("bin/pip"), &["install", "-q", "."], &root);
    let locksmith = venv.join("bin/locksmith");
    assert!(locksmith.is_file(), "pip installed no `locksmith` command");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("0001_unique.sql"), INCIDENT).unwrap();
    let out = command(&locksmith, &["lint", "0001_unique.sql"], dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("error[LS101]"), "{}", text(&out));

    let cluster = Cluster::start().unwrap();
    let url = cluster.url("postgres");
    let out = command(
        &locksmith,
        &[
            "run",
            "--format",
            "json",
            "--database-url",
            &url,
            "--",
            "sh",
            "-c",
            "exit 0",
        ],
        dir.path(),
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "applied", "{report}");
}

/// A git repository with `file` staged.
fn staged_repo(file: &str, sql: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out));
    };
    git(&["init", "-q"]);
    support::write(dir.path(), &[(file, sql)]);
    git(&["add", file]);
    dir
}

#[test]
fn the_pre_commit_hook_fails_a_commit_adding_the_incident_and_passes_a_safe_one() {
    let Some(venv) = fresh_venv("pre-commit") else {
        return;
    };
    let root = repo_root();
    run_ok(
        &venv.join("bin/pip"),
        &["install", "-q", "pre-commit"],
        &root,
    );
    let pre_commit = venv.join("bin/pre-commit");
    let home = venv.join("home");
    let try_repo = |repo: &Path| {
        let root = root.to_str().unwrap();
        command(&pre_commit, &["try-repo", root, "locksmith-lint"], repo)
            .env("PRE_COMMIT_HOME", &home)
            .output()
            .unwrap()
    };

    let bad = staged_repo("migrations/0001_unique.sql", INCIDENT);
    let out = try_repo(bad.path());
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("error[LS101]"), "{}", text(&out));
    assert!(
        text(&out).contains("migrations/0001_unique.sql"),
        "{}",
        text(&out)
    );

    let good = staged_repo("migrations/0002_note.sql", SAFE);
    let out = try_repo(good.path());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("Passed"), "{}", text(&out));
}
