//! `locksmith.toml`: which rules are off, and the server version to lint for.
//!
//! ```toml
//! pg_version = 15
//! disable = ["LS401", "renaming-column-or-table"]
//! assume_in_transaction = true   # the migration tool wraps each file in BEGIN/COMMIT
//! ```
//!
//! Parsing only: finding and reading the file is the binary's job. Unknown
//! keys and unknown rules are errors, so a typo does not silently lint with
//! the defaults.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::{rule_by_id, Options};
use crate::analysis::{MAX_PG_VERSION, MIN_PG_VERSION};

/// The parsed `locksmith.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Server major version to lint for.
    pub pg_version: Option<u32>,
    /// Rule ids or names turned off.
    #[serde(default)]
    pub disable: Vec<String>,
    /// The migration tool runs each file inside one transaction.
    #[serde(default)]
    pub assume_in_transaction: bool,
}

/// Why a `locksmith.toml` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl Config {
    /// Parses and checks the file's text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError(e.message().to_string()))?;
        if let Some(v) = config.pg_version {
            check_version(v).map_err(ConfigError)?;
        }
        for rule in &config.disable {
            if rule_by_id(rule).is_none() {
                return Err(ConfigError(format!(
                    "`disable` names unknown rule `{rule}`"
                )));
            }
        }
        Ok(config)
    }

    /// Lint options from this file, with a command-line version taking precedence.
    pub fn options(&self, pg_version: Option<u32>) -> Options {
        Options {
            pg_version: pg_version.or(self.pg_version).unwrap_or(MAX_PG_VERSION),
            disabled: self.disable.iter().cloned().collect::<BTreeSet<_>>(),
            assume_in_transaction: self.assume_in_transaction,
            place: super::fix::Where::default(),
        }
    }
}

/// Refuses a major version outside the modelled range.
pub fn check_version(v: u32) -> Result<u32, String> {
    if (MIN_PG_VERSION..=MAX_PG_VERSION).contains(&v) {
        Ok(v)
    } else {
        Err(format!("PostgreSQL {v} is not supported: use a major version from {MIN_PG_VERSION} to {MAX_PG_VERSION}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_checks() {
        let c =
            Config::parse("pg_version = 14\ndisable = [\"LS401\", \"renaming-column-or-table\"]\n")
                .unwrap();
        let o = c.options(None);
        assert_eq!(o.pg_version, 14);
        assert!(o.disabled.contains("LS401"));
        assert_eq!(c.options(Some(16)).pg_version, 16);
        assert_eq!(
            Config::parse("").unwrap().options(None).pg_version,
            MAX_PG_VERSION
        );
    }

    #[test]
    fn live_and_trace_findings_can_be_disabled() {
        let c =
            Config::parse("disable = [\"LS601\", \"LS602\", \"statement-not-traced\"]\n").unwrap();
        assert_eq!(c.options(None).disabled.len(), 3);
    }

    #[test]
    fn refuses_typos() {
        assert!(Config::parse("pg_versoin = 14")
            .unwrap_err()
            .0
            .contains("pg_versoin"));
        assert!(Config::parse("pg_version = 9")
            .unwrap_err()
            .0
            .contains("not supported"));
        assert!(Config::parse("disable = [\"LS999\"]")
            .unwrap_err()
            .0
            .contains("LS999"));
    }
}
