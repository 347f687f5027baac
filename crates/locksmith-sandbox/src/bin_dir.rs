//! Finding the PostgreSQL server binaries (`initdb`, `postgres`).
//!
//! Order: an explicit directory (`--pg-bin` / `LOCKSMITH_PG_BIN`), then
//! `pg_config --bindir`, then `PATH`, then `/usr/lib/postgresql/*/bin`,
//! newest major first. Debian keeps `initdb` out of `PATH`, hence the last step.
//!
//! Other major versions (for `locksmith trace --pg-version` and the
//! conformance test) are listed in `LOCKSMITH_PG_BINS`, colon-separated bin
//! folders (`scripts/pg-versions.sh` installs them): [`BinDir::listed`] and
//! [`BinDir::find_major`] read it, so the lookup is written once.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// A directory holding `initdb` and `postgres`, with the server's major version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinDir {
    /// The directory.
    pub path: PathBuf,
    /// Major version reported by `postgres --version`, e.g. 15.
    pub major: u32,
}

impl BinDir {
    /// Finds the server binaries, preferring `explicit`, then `LOCKSMITH_PG_BIN`.
    pub fn find(explicit: Option<&Path>) -> Result<BinDir, Error> {
        let from_env = std::env::var_os("LOCKSMITH_PG_BIN").map(PathBuf::from);
        if let Some(dir) = explicit.map(Path::to_path_buf).or(from_env) {
            return BinDir::at(&dir).ok_or(Error::NoServer {
                looked: format!("{} (given)", dir.display()),
            });
        }
        let mut looked = Vec::new();
        for dir in candidates() {
            looked.push(dir.display().to_string());
            if let Some(found) = BinDir::at(&dir) {
                return Ok(found);
            }
        }
        Err(Error::NoServer {
            looked: if looked.is_empty() {
                "pg_config, PATH, /usr/lib/postgresql/*/bin".into()
            } else {
                looked.join(", ")
            },
        })
    }

    /// Checks that `dir` has a working server and reads its version.
    pub fn at(dir: &Path) -> Option<BinDir> {
        if !dir.join("initdb").is_file() || !dir.join("postgres").is_file() {
            return None;
        }
        let out = Command::new(dir.join("postgres"))
            .arg("--version")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        // "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
        let version = text.split_whitespace().nth(2)?;
        let major = version
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()?;
        Some(BinDir {
            path: dir.to_path_buf(),
            major,
        })
    }

    /// Every bin folder in `LOCKSMITH_PG_BINS`, in order. A folder that holds
    /// no server is an error: a list that names a version must deliver it.
    pub fn listed() -> Result<Vec<BinDir>, Error> {
        listed_dirs()
            .into_iter()
            .map(|dir| {
                BinDir::at(&dir).ok_or_else(|| Error::NotAServer {
                    dir: dir.display().to_string(),
                    listed_in: "LOCKSMITH_PG_BINS",
                })
            })
            .collect()
    }

    /// The server binaries of major `version`: the first of
    /// `LOCKSMITH_PG_BIN`, `LOCKSMITH_PG_BINS`, `/usr/lib/postgresql/<version>/bin`
    /// and the default server that has that version.
    pub fn find_major(version: u32) -> Option<BinDir> {
        let mut dirs: Vec<PathBuf> = std::env::var_os("LOCKSMITH_PG_BIN")
            .map(PathBuf::from)
            .into_iter()
            .collect();
        dirs.extend(listed_dirs());
        dirs.push(PathBuf::from(format!("/usr/lib/postgresql/{version}/bin")));
        if let Ok(found) = BinDir::find(None) {
            dirs.push(found.path);
        }
        dirs.iter()
            .filter_map(|d| BinDir::at(d))
            .find(|b| b.major == version)
    }

    /// The path of one of the binaries.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

/// The folders `LOCKSMITH_PG_BINS` lists.
fn listed_dirs() -> Vec<PathBuf> {
    std::env::var_os("LOCKSMITH_PG_BINS")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            Some((major, e.path().join("bin")))
        })
        .collect();
    debian.sort_by_key(|d| std::cmp::Reverse(d.0));
    dirs.extend(debian.into_iter().map(|(_, p)| p));
    dirs
}
