//! Which migrations a run records and which it runs, from the folder and the
//! history: the rules of `apply`, pure. A versioned migration runs once; a
//! changed one is refused (unless `allow_changed`), an older one than the
//! latest applied too (unless `out_of_order`); a repeatable one runs again
//! whenever its checksum changed; `--baseline V` records every versioned
//! migration up to V without running it, on a database with no history yet.

use super::{Kind, Migration, Version};

/// One history row, as the history table gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The migration's key ([`Migration::id`]).
    pub id: String,
    /// The checksum recorded.
    pub checksum: String,
}

/// `apply`'s flags that change the decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// `--baseline VERSION`.
    pub baseline: Option<Version>,
    /// `--allow-changed`.
    pub allow_changed: bool,
    /// `--out-of-order`.
    pub out_of_order: bool,
}

/// What a run does, as indices into the migrations, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Recorded as applied without running (`--baseline`).
    pub baseline: Vec<usize>,
    /// Run.
    pub run: Vec<usize>,
}

/// Why a run must not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PendingError {
    /// An applied versioned migration's file changed.
    #[error("{path}: changed since it was applied (version {id}); a migration that ran must not change. Restore it, or pass --allow-changed if the change is cosmetic.")]
    Changed {
        /// The file.
        path: String,
        /// Its version.
        id: String,
    },
    /// A pending migration older than the latest applied.
    #[error("{path}: version {version} is older than the latest applied ({latest}); refusing to apply out of order. Renumber it, or pass --out-of-order.")]
    OutOfOrder {
        /// The file.
        path: String,
        /// Its version.
        version: Version,
        /// The latest applied.
        latest: Version,
    },
    /// `--baseline` on a database locksmith already manages.
    #[error("--baseline adopts a database locksmith has not managed yet, but its history already records {0} migrations; drop --baseline")]
    BaselineWithHistory(usize),
    /// `--baseline` with a version no migration has.
    #[error("--baseline {version}: no migration in the folder has this version (they run from {first} to {last}); pass the version of the last migration the database already has")]
    BaselineUnknown {
        /// The version given.
        version: Version,
        /// The folder's first version.
        first: String,
        /// Its last.
        last: String,
    },
}

/// Decides what a run records and runs. `migrations` in folder order (as
/// [`super::read_folder`] returns them).
pub fn decide(
    migrations: &[Migration],
    recorded: &[Recorded],
    options: &Options,
) -> Result<Decision, PendingError> {
    let mut decision = Decision::default();
    if let Some(baseline) = &options.baseline {
        if !recorded.is_empty() {
            return Err(PendingError::BaselineWithHistory(recorded.len()));
        }
        let versions: Vec<&Version> = migrations.iter().filter_map(Migration::version).collect();
        if !versions.contains(&baseline) {
            let spell = |v: Option<&&Version>| v.map_or("-".to_string(), |v| v.to_string());
            return Err(PendingError::BaselineUnknown {
                version: baseline.clone(),
                first: spell(versions.first()),
                last: spell(versions.last()),
            });
        }
    }
    for (i, m) in migrations.iter().enumerate() {
        if let (Some(b), Some(v)) = (&options.baseline, m.version()) {
            if v <= b {
                decision.baseline.push(i);
                continue;
            }
        }
        match recorded.iter().find(|r| r.id == m.id()) {
            None => decision.run.push(i),
            Some(r) if r.checksum == m.checksum => {}
            Some(_) if m.kind == Kind::Repeatable => decision.run.push(i),
            Some(_) if options.allow_changed => {}
            Some(_) => {
                return Err(PendingError::Changed {
                    path: m.path.clone(),
                    id: m.id(),
                })
            }
        }
    }
    let latest = recorded
        .iter()
        .filter_map(|r| Version::parse(&r.id))
        .chain(options.baseline.clone())
        .max();
    let first = decision
        .run
        .iter()
        .find_map(|&i| Some((&migrations[i], migrations[i].version()?)));
    if let (Some(latest), Some((m, version))) = (latest, first) {
        if *version < latest && !options.out_of_order {
            return Err(PendingError::OutOfOrder {
                path: m.path.clone(),
                version: version.clone(),
                latest,
            });
        }
    }
    Ok(decision)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{read_folder, SourceFile};

    fn folder(files: &[(&str, &str)]) -> Vec<Migration> {
        let files: Vec<SourceFile> = files
            .iter()
            .map(|(p, c)| SourceFile {
                path: p.to_string(),
                content: c.to_string(),
            })
            .collect();
        read_folder(&files).unwrap()
    }

    fn recorded(m: &Migration) -> Recorded {
        Recorded {
            id: m.id(),
            checksum: m.checksum.clone(),
        }
    }

    fn options(baseline: Option<&str>) -> Options {
        Options {
            baseline: baseline.map(|b| Version::parse(b).unwrap()),
            ..Options::default()
        }
    }

    #[test]
    fn runs_what_is_not_recorded() {
        let m = folder(&[("1_a.sql", "A"), ("2_b.sql", "B"), ("3_c.sql", "C")]);
        let d = decide(&m, &[recorded(&m[0])], &options(None)).unwrap();
        assert_eq!(
            d,
            Decision {
                baseline: vec![],
                run: vec![1, 2]
            }
        );
    }

    #[test]
    fn changed_files_are_refused_unless_allowed() {
        let m = folder(&[("1_a.sql", "A")]);
        let old = Recorded {
            id: "1".into(),
            checksum: "other".into(),
        };
        let err = decide(&m, std::slice::from_ref(&old), &options(None)).unwrap_err();
        assert!(matches!(err, PendingError::Changed { .. }), "{err}");
        let allow = Options {
            allow_changed: true,
            ..Options::default()
        };
        assert_eq!(decide(&m, &[old], &allow).unwrap(), Decision::default());
    }

    #[test]
    fn repeatables_rerun_when_changed() {
        let m = folder(&[("V1__a.sql", "A"), ("R__v.sql", "V")]);
        let same = [recorded(&m[0]), recorded(&m[1])];
        assert_eq!(
            decide(&m, &same, &options(None)).unwrap().run,
            Vec::<usize>::new()
        );
        let changed = [
            recorded(&m[0]),
            Recorded {
                id: "R__v".into(),
                checksum: "old".into(),
            },
        ];
        assert_eq!(decide(&m, &changed, &options(None)).unwrap().run, vec![1]);
    }

    #[test]
    fn out_of_order_is_refused_unless_allowed() {
        let m = folder(&[("1_a.sql", "A"), ("2_b.sql", "B"), ("3_c.sql", "C")]);
        let rec = [recorded(&m[0]), recorded(&m[2])];
        let err = decide(&m, &rec, &options(None)).unwrap_err();
        assert!(matches!(err, PendingError::OutOfOrder { .. }), "{err}");
        let allow = Options {
            out_of_order: true,
            ..Options::default()
        };
        assert_eq!(decide(&m, &rec, &allow).unwrap().run, vec![1]);
    }

    #[test]
    fn baseline_records_up_to_its_version_on_an_empty_history() {
        let m = folder(&[
            ("V1__a.sql", "A"),
            ("V1_1__b.sql", "B"),
            ("V2__c.sql", "C"),
            ("R__v.sql", "V"),
        ]);
        let d = decide(&m, &[], &options(Some("1.1"))).unwrap();
        assert_eq!(
            d,
            Decision {
                baseline: vec![0, 1],
                run: vec![2, 3]
            }
        );
        let err = decide(&m, &[], &options(Some("1.5"))).unwrap_err();
        assert!(err.to_string().contains("from 1 to 2"), "{err}");
        let err = decide(&m, &[recorded(&m[0])], &options(Some("1.1"))).unwrap_err();
        assert_eq!(err, PendingError::BaselineWithHistory(1));
    }
}
