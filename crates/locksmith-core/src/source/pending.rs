//! Which migrations a run records and which it runs, from the folder and the
//! history: the rules of `apply`, pure. A versioned migration runs once; a
//! changed one is refused (unless `allow_changed`), and so is a different
//! migration under a recorded version (another name there: the wrong folder
//! for this database, which `allow_changed` must not wave through, since the
//! migration would then never run); an older one than the
//! latest applied too (unless `out_of_order`); a repeatable one runs again
//! whenever its checksum changed; `--baseline V` records every versioned
//! migration up to V without running it, on a database with no history yet.

use std::collections::BTreeMap;

use super::{Kind, Migration, Version};

/// One history row, as the history table gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The migration's key ([`Migration::id`]).
    pub id: String,
    /// The checksum recorded.
    pub checksum: String,
}

/// The name each history row recorded, by its id ([`Recorded::id`]): what
/// tells a different migration under the same version from an edited one.
pub type RecordedNames = BTreeMap<String, String>;

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
    /// An applied versioned migration's file changed (same name, other content).
    #[error("{path}: changed since it was applied (version {id}{}); a migration that ran must not change. Restore it, or pass --allow-changed if the change is cosmetic{}",
        if *.named { ", same name" } else { "" },
        if *.named { "" } else { ". If the database recorded a different migration under this version, this is the wrong folder or the wrong database: --allow-changed would skip it unapplied" })]
    Changed {
        /// The file.
        path: String,
        /// Its version.
        id: String,
        /// Whether the recorded name was known (and is the file's): without
        /// it, an edit cannot be told from another migration under the version.
        named: bool,
    },
    /// The history recorded another migration (another name) under this version.
    #[error("{path}: different migration under the same version: the database recorded version {id} as `{recorded}`, this folder has `{name}` there. Wrong folder or wrong database? Check the folder and --database-url; --allow-changed is for edits to the same migration and would skip `{name}` unapplied")]
    Collision {
        /// The file.
        path: String,
        /// The version both claim.
        id: String,
        /// The file's migration name.
        name: String,
        /// The name the history recorded under that version.
        recorded: String,
    },
    /// A pending migration older than the latest applied.
    #[error("{path}: version {version} is older than the latest applied ({latest}); refusing to apply out of order. Renumber it, or pass --out-of-order")]
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
/// [`super::read_folder`] returns them). Without the recorded names a
/// different migration under a recorded version reads as a changed one;
/// [`decide_knowing_names`] tells them apart.
pub fn decide(
    migrations: &[Migration],
    recorded: &[Recorded],
    options: &Options,
) -> Result<Decision, PendingError> {
    decide_knowing_names(migrations, recorded, &RecordedNames::new(), options)
}

/// [`decide`], with the name each history row recorded (the history table
/// has it): a recorded version whose name is not the file's is refused as a
/// collision, whatever `allow_changed` says.
pub fn decide_knowing_names(
    migrations: &[Migration],
    recorded: &[Recorded],
    names: &RecordedNames,
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
        let Some(r) = recorded.iter().find(|r| r.id == m.id()) else {
            decision.run.push(i);
            continue;
        };
        // Another name under this version is another migration, even when
        // the checksums happen to agree (an empty file, a copied one).
        let recorded_name = names.get(&r.id);
        if let Some(other) = recorded_name.filter(|n| **n != m.name) {
            if m.kind != Kind::Repeatable {
                return Err(PendingError::Collision {
                    path: m.path.clone(),
                    id: m.id(),
                    name: m.name.clone(),
                    recorded: other.clone(),
                });
            }
        }
        match () {
            _ if r.checksum == m.checksum => {}
            _ if m.kind == Kind::Repeatable => decision.run.push(i),
            _ if options.allow_changed => {}
            _ => {
                return Err(PendingError::Changed {
                    path: m.path.clone(),
                    id: m.id(),
                    named: recorded_name.is_some(),
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

    fn names(rows: &[(&str, &str)]) -> RecordedNames {
        rows.iter()
            .map(|(id, name)| (id.to_string(), name.to_string()))
            .collect()
    }

    #[test]
    fn another_migration_under_a_recorded_version_is_a_collision_not_a_change() {
        // The database recorded version 1 as create_a; this folder's version 1 is create_b.
        let theirs = folder(&[("001_create_a.sql", "CREATE TABLE a (id int);")]);
        let ours = folder(&[
            ("001_create_b.sql", "CREATE TABLE b (id int);"),
            ("002_more.sql", "SELECT 1;"),
        ]);
        let history = [recorded(&theirs[0])];
        let recorded_as = names(&[("1", "create_a")]);
        let err = decide_knowing_names(&ours, &history, &recorded_as, &options(None)).unwrap_err();
        assert_eq!(
            err,
            PendingError::Collision {
                path: "001_create_b.sql".into(),
                id: "1".into(),
                name: "create_b".into(),
                recorded: "create_a".into(),
            }
        );
        // --allow-changed is for edits: it does not skip a migration that never ran.
        let allow = Options {
            allow_changed: true,
            ..Options::default()
        };
        let err = decide_knowing_names(&ours, &history, &recorded_as, &allow).unwrap_err();
        assert!(matches!(err, PendingError::Collision { .. }), "{err}");
        insta::assert_snapshot!(err.to_string());
    }

    #[test]
    fn an_edit_under_the_same_name_is_a_change_and_allow_changed_passes_it() {
        let applied = folder(&[("001_create_a.sql", "CREATE TABLE a (id int);")]);
        let edited = folder(&[("001_create_a.sql", "CREATE TABLE a (id bigint);")]);
        let history = [recorded(&applied[0])];
        let recorded_as = names(&[("1", "create_a")]);
        let err =
            decide_knowing_names(&edited, &history, &recorded_as, &options(None)).unwrap_err();
        assert_eq!(
            err,
            PendingError::Changed {
                path: "001_create_a.sql".into(),
                id: "1".into(),
                named: true,
            }
        );
        insta::assert_snapshot!("changed_same_name", err.to_string());
        let allow = Options {
            allow_changed: true,
            ..Options::default()
        };
        assert_eq!(
            decide_knowing_names(&edited, &history, &recorded_as, &allow).unwrap(),
            Decision::default()
        );
        // Without the names, the message says both readings and what each means.
        let err = decide(&edited, &history, &options(None)).unwrap_err();
        insta::assert_snapshot!("changed_names_unknown", err.to_string());
    }

    /// Callers go on after the message ("{err}. The whole migration…"): a
    /// period of its own would print as "..".
    #[test]
    fn messages_leave_the_final_period_to_the_sentence_they_join() {
        let m = folder(&[("1_a.sql", "A"), ("2_b.sql", "B"), ("3_c.sql", "C")]);
        let changed = Recorded {
            id: "1".into(),
            checksum: "other".into(),
        };
        let errors = [
            decide(&m, std::slice::from_ref(&changed), &options(None)).unwrap_err(),
            decide_knowing_names(&m, &[changed], &names(&[("1", "a")]), &options(None))
                .unwrap_err(),
            decide(&m, &[recorded(&m[0]), recorded(&m[2])], &options(None)).unwrap_err(),
            decide(&m, &[], &options(Some("9"))).unwrap_err(),
            decide(&m, &[recorded(&m[0])], &options(Some("1"))).unwrap_err(),
        ];
        for e in errors {
            assert!(!e.to_string().ends_with('.'), "{e}");
        }
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
