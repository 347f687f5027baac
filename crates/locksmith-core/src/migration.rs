//! Migration files: which names are migrations, their order, their checksum
//! and their directives. Pure: the caller lists and reads the folder.
//!
//! Accepted names (VERSION is a number and orders the files):
//! `<VERSION>_<name>.sql`, `<VERSION>_<name>.up.sql` (`.down.sql` is ignored),
//! `V<VERSION>__<name>.sql` (Flyway). Any other `.sql` file is an error naming
//! it: a typo in a migration's name must not silently skip the migration.

use std::fmt;

use sha2::{Digest, Sha256};

/// A migration file's identity, from its name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MigrationName {
    /// The version number.
    pub version: i64,
    /// The descriptive part of the name.
    pub name: String,
    /// The file name as found.
    pub file: String,
}

/// Why a folder of migrations is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// A `.sql` file whose name fits no accepted pattern.
    #[error("{file}: not a migration name; expected <VERSION>_<name>.sql, <VERSION>_<name>.up.sql or V<VERSION>__<name>.sql (VERSION a number)")]
    Unrecognised {
        /// The file.
        file: String,
    },
    /// Two files with one version.
    #[error("{first} and {second} both have version {version}")]
    Duplicate {
        /// The version.
        version: i64,
        /// One file.
        first: String,
        /// The other.
        second: String,
    },
}

impl MigrationName {
    /// Classifies a file name: `Ok(None)` for files that are not migrations
    /// (no `.sql` ending, or a `.down.sql`), an error for a `.sql` file with a bad name.
    pub fn parse(file: &str) -> Result<Option<MigrationName>, NameError> {
        let Some(stem) = file.strip_suffix(".sql") else {
            return Ok(None);
        };
        if stem.ends_with(".down") || file.starts_with('.') {
            return Ok(None);
        }
        let stem = stem.strip_suffix(".up").unwrap_or(stem);
        let bad = || NameError::Unrecognised {
            file: file.to_string(),
        };
        let (version, name) = if let Some(rest) = stem.strip_prefix('V') {
            rest.split_once("__").ok_or_else(bad)?
        } else {
            stem.split_once('_').ok_or_else(bad)?
        };
        if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit()) || name.is_empty() {
            return Err(bad());
        }
        let version = version.parse().map_err(|_| bad())?;
        Ok(Some(MigrationName {
            version,
            name: name.to_string(),
            file: file.to_string(),
        }))
    }

    /// Sorts the migrations among `files` by version, refusing bad names and duplicates.
    pub fn ordered<'a>(
        files: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<MigrationName>, NameError> {
        let mut found = Vec::new();
        for file in files {
            if let Some(m) = MigrationName::parse(file)? {
                found.push(m);
            }
        }
        found.sort();
        for pair in found.windows(2) {
            if pair[0].version == pair[1].version {
                return Err(NameError::Duplicate {
                    version: pair[0].version,
                    first: pair[0].file.clone(),
                    second: pair[1].file.clone(),
                });
            }
        }
        Ok(found)
    }
}

impl fmt::Display for MigrationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.version, self.name)
    }
}

/// The checksum recorded in the history table: SHA-256 of the file, hex.
pub fn checksum(content: &str) -> String {
    Sha256::digest(content.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether the file asks to run statement by statement, outside a
/// transaction (`-- locksmith: no-transaction` on a line of its own).
pub fn wants_no_transaction(content: &str) -> bool {
    content.lines().any(|l| {
        let l = l.trim();
        l.strip_prefix("--")
            .map(|rest| {
                rest.trim()
                    .replace(' ', "")
                    .eq_ignore_ascii_case("locksmith:no-transaction")
            })
            .unwrap_or(false)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let ok = [
            ("001_create_users.sql", 1, "create_users"),
            (
                "20240101120000_add_index.up.sql",
                20240101120000,
                "add_index",
            ),
            ("V3__unique_name.sql", 3, "unique_name"),
        ];
        for (file, version, name) in ok {
            let m = MigrationName::parse(file).unwrap().unwrap();
            assert_eq!((m.version, m.name.as_str()), (version, name), "{file}");
        }
        for ignored in ["README.md", "001_x.down.sql", "notes.txt"] {
            assert_eq!(MigrationName::parse(ignored).unwrap(), None, "{ignored}");
        }
        for bad in [
            "add_users.sql",
            "1-add.sql",
            "V1_single.sql",
            "01a_x.sql",
            "7_.sql",
        ] {
            let err = MigrationName::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with(bad), "{err}");
        }
    }

    #[test]
    fn ordering_and_duplicates() {
        let ordered =
            MigrationName::ordered(["10_b.sql", "2_a.sql", "README.md", "2_a.down.sql"]).unwrap();
        assert_eq!(
            ordered.iter().map(|m| m.version).collect::<Vec<_>>(),
            vec![2, 10]
        );
        let err = MigrationName::ordered(["2_a.sql", "V2__b.sql"]).unwrap_err();
        assert!(matches!(err, NameError::Duplicate { version: 2, .. }));
    }

    #[test]
    fn directives_and_checksums() {
        assert!(wants_no_transaction(
            "-- locksmith: no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);"
        ));
        assert!(!wants_no_transaction(
            "SELECT 1; -- locksmith: no-transaction is mentioned here"
        ));
        assert_eq!(checksum("").len(), 64);
        assert_ne!(checksum("a"), checksum("b"));
    }
}
