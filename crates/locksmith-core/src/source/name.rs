//! Which file names are migrations, and what their names say: version,
//! description, repeatable or not. Down and undo files are recognised here
//! so that they are skipped, never run.

use super::version::Version;

/// The names `apply` looks for, for messages.
pub const LOOKED_FOR: &str =
    "<V>_<name>.sql (sqlx, dbmate, goose), <V>_<name>.up.sql (sqlx, golang-migrate, popx), \
V<V>__<name>.sql and R__<name>.sql (Flyway), <V>_<name>/migration.sql (Prisma), <V>_<name>/up.sql (diesel)";

/// popx's dialects other than PostgreSQL's: `<V>_<name>.<dialect>.up.sql`
/// files for another database, never read.
const OTHER_DIALECTS: &[&str] = &["mysql", "sqlite3", "sqlite", "cockroach", "mssql"];

/// What a file's path says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NameClass {
    /// Not a migration: not SQL, hidden, a down or undo file, or a file in a
    /// sub-folder that is not a Prisma migration folder.
    Skipped,
    /// `<V>_<name>.sql` or `<V>_<name>.up.sql` (popx: `<V>_<name>[.postgres][.autocommit].up.sql`).
    Numbered {
        version: Version,
        name: String,
        /// popx's `.autocommit.`: runs outside a transaction.
        autocommit: bool,
    },
    /// `V<V>__<name>.sql`.
    FlywayVersioned { version: Version, name: String },
    /// `R__<name>.sql`.
    FlywayRepeatable { name: String },
    /// `<V>_<name>/migration.sql`.
    Prisma { version: Version, name: String },
    /// `<V>_<name>/up.sql` (`<V>` may be `2024-01-01-120000`).
    Diesel { version: Version, name: String },
}

/// Classifies a path relative to the migrations folder (`/`-separated).
/// `Err` holds what was expected, for a file that looks like a migration
/// but cannot be read as one.
pub(crate) fn classify(path: &str) -> Result<NameClass, String> {
    let parts: Vec<&str> = path.split('/').collect();
    match parts.as_slice() {
        [file] => classify_file(file),
        [folder, file] if *file == "migration.sql" => match numbered(folder) {
            Some((version, name)) => Ok(NameClass::Prisma { version, name }),
            None => Err(format!(
                "a Prisma migration's folder is named <V>_<name> (V a number), not {folder:?}"
            )),
        },
        // diesel: `down.sql` beside it is never run up.
        [folder, "up.sql"] => match numbered(&folder.replace('-', "")) {
            Some((version, name)) => Ok(NameClass::Diesel { version, name }),
            None => Err(format!(
                "a diesel migration's folder is named <V>_<name> (V a number or 2024-01-01-120000), not {folder:?}"
            )),
        },
        _ => Ok(NameClass::Skipped),
    }
}

/// Whether a file is a down or undo file that must never run (`*.down.sql`,
/// Flyway's `U<V>__<name>.sql`).
pub fn is_down_or_undo(file_name: &str) -> bool {
    let Some(stem) = file_name.strip_suffix(".sql") else {
        return false;
    };
    stem.ends_with(".down")
        || stem == "down"
        || stem
            .strip_prefix('U')
            .and_then(|rest| rest.split_once("__"))
            .is_some_and(|(v, name)| Version::parse(v).is_some() && !name.is_empty())
}

/// Whether a file is never read as PostgreSQL up SQL: a down or undo
/// file, diesel's `down.sql`, or popx's file for another dialect.
pub fn never_read(file_name: &str) -> bool {
    is_down_or_undo(file_name)
        || file_name
            .strip_suffix(".sql")
            .map(|stem| stem.strip_suffix(".up").unwrap_or(stem))
            .and_then(|stem| stem.rsplit('.').find(|p| *p != "autocommit"))
            .is_some_and(|dialect| OTHER_DIALECTS.contains(&dialect))
}

fn classify_file(file: &str) -> Result<NameClass, String> {
    if file.starts_with('.') || !file.to_ascii_lowercase().ends_with(".sql") {
        return Ok(NameClass::Skipped);
    }
    let expected = || format!("expected one of {LOOKED_FOR}");
    let Some(stem) = file.strip_suffix(".sql") else {
        let lower = format!("{}.sql", &file[..file.len() - 4]);
        return Err(match classify_file(&lower) {
            Ok(NameClass::Skipped) | Err(_) => expected(),
            Ok(_) => format!("the ending must be `.sql` in lower case: rename it {lower}"),
        });
    };
    if is_down_or_undo(file) {
        return Ok(NameClass::Skipped);
    }
    if let Some(name) = stem.strip_prefix("R__") {
        return if name.is_empty() {
            Err(expected())
        } else {
            Ok(NameClass::FlywayRepeatable {
                name: name.to_string(),
            })
        };
    }
    if let Some(rest) = stem.strip_prefix('V') {
        let (version, name) = rest.split_once("__").ok_or_else(expected)?;
        return match Version::parse(version) {
            Some(version) if !name.is_empty() => Ok(NameClass::FlywayVersioned {
                version,
                name: name.to_string(),
            }),
            _ => Err(expected()),
        };
    }
    let stem = stem.strip_suffix(".up").unwrap_or(stem);
    // popx: `<V>_<name>.<dialect>[.autocommit]`; only PostgreSQL's is read.
    let mut stem = stem;
    let mut autocommit = false;
    while let Some((rest, suffix)) = stem.rsplit_once('.') {
        match suffix {
            "autocommit" => autocommit = true,
            "postgres" | "postgresql" => {}
            d if OTHER_DIALECTS.contains(&d) => return Ok(NameClass::Skipped),
            _ => break,
        }
        stem = rest;
    }
    numbered(stem)
        .map(|(version, name)| NameClass::Numbered {
            version,
            name,
            autocommit,
        })
        .ok_or_else(expected)
}

/// `<digits>_<name>`, the name non-empty.
fn numbered(stem: &str) -> Option<(Version, String)> {
    let (version, name) = stem.split_once('_')?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
        return None;
    }
    Some((Version::parse(version)?, name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn recognises_every_layout() {
        let numbered = |n: &str, name: &str| NameClass::Numbered {
            version: v(n),
            name: name.into(),
            autocommit: false,
        };
        let cases = [
            ("001_create_users.sql", numbered("1", "create_users")),
            (
                "20240101120000_add_index.up.sql",
                numbered("20240101120000", "add_index"),
            ),
            (
                "V1_1__split.sql",
                NameClass::FlywayVersioned {
                    version: v("1.1"),
                    name: "split".into(),
                },
            ),
            (
                "V2.0.1__x.sql",
                NameClass::FlywayVersioned {
                    version: v("2.0.1"),
                    name: "x".into(),
                },
            ),
            (
                "R__views.sql",
                NameClass::FlywayRepeatable {
                    name: "views".into(),
                },
            ),
            (
                "20150100000001000000_identities.postgres.up.sql",
                numbered("20150100000001000000", "identities"),
            ),
            (
                "20220301102700000000_index.autocommit.up.sql",
                NameClass::Numbered {
                    version: v("20220301102700000000"),
                    name: "index".into(),
                    autocommit: true,
                },
            ),
            (
                "2024-01-01-120000_create_users/up.sql",
                NameClass::Diesel {
                    version: v("20240101120000"),
                    name: "create_users".into(),
                },
            ),
            (
                "20240101120000_init/migration.sql",
                NameClass::Prisma {
                    version: v("20240101120000"),
                    name: "init".into(),
                },
            ),
        ];
        for (path, want) in cases {
            assert_eq!(classify(path).unwrap(), want, "{path}");
        }
    }

    #[test]
    fn skips_down_undo_and_other_files() {
        for path in [
            "README.md",
            "001_x.down.sql",
            "U2__undo.sql",
            ".hidden.sql",
            "migration_lock.toml",
            "seeds/users.sql",
            "a/b/c.sql",
            "20240101_init/README.md",
            "2024-01-01-120000_create_users/down.sql",
            "20150100000001000000_identities.mysql.up.sql",
            "20150100000001000000_identities.sqlite3.up.sql",
            "20150100000001000000_identities.cockroach.up.sql",
        ] {
            assert_eq!(classify(path).unwrap(), NameClass::Skipped, "{path}");
        }
    }

    #[test]
    fn bad_names_say_what_is_expected() {
        for bad in [
            "add_users.sql",
            "1-add.sql",
            "V1_single.sql",
            "01a_x.sql",
            "7_.sql",
            "R__.sql",
            "V1.__x.sql",
        ] {
            let err = classify(bad).unwrap_err();
            assert!(err.contains("<V>_<name>.sql"), "{bad}: {err}");
        }
        let err = classify("2_b.SQL").unwrap_err();
        assert!(err.contains("rename it 2_b.sql"), "{err}");
        let err = classify("init/migration.sql").unwrap_err();
        assert!(err.contains("<V>_<name>"), "{err}");
    }
}
