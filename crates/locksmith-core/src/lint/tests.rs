//! Linting through one [`Schema`]: files judged against what earlier files
//! (or a live catalog) left.

use super::*;

fn rules(report: &Report) -> Vec<&'static str> {
    report.findings().map(|f| f.rule).collect()
}

#[test]
fn later_files_are_judged_against_the_schema_earlier_files_left() {
    let options = Options {
        disabled: ["LS401".to_string()].into(),
        ..Options::default()
    };
    let mut schema = Schema::default();
    let first = lint_in(
        &mut schema,
        "CREATE TABLE users (email varchar(50), name varchar, nick text);\n\
         ALTER TABLE users ADD CONSTRAINT email_nn CHECK (email IS NOT NULL) NOT VALID;\n\
         ALTER TABLE users VALIDATE CONSTRAINT email_nn;",
        &options,
    )
    .unwrap();
    assert_eq!(rules(&first), Vec::<&str>::new());
    let second = "ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n\
         ALTER TABLE users ALTER COLUMN email TYPE varchar(100);\n\
         ALTER TABLE users ALTER COLUMN name TYPE text;";
    // Alone, the file's column types and the check are unknown.
    assert_eq!(
        rules(&lint(second, &options).unwrap()),
        ["LS107", "LS108", "LS108"]
    );
    assert_eq!(
        rules(&lint_in(&mut schema, second, &options).unwrap()),
        Vec::<&str>::new()
    );
    // The earlier file's table is in use by now: locking it is a finding.
    let third = lint_in(
        &mut schema,
        "ALTER TABLE users ADD CONSTRAINT u UNIQUE (email);",
        &options,
    )
    .unwrap();
    assert_eq!(rules(&third), ["LS101"]);
}

#[test]
fn a_live_catalog_fills_the_schema() {
    let options = Options {
        disabled: ["LS401".to_string()].into(),
        ..Options::default()
    };
    let sql = "ALTER TABLE users ALTER COLUMN email TYPE varchar(100);\n\
         ALTER TABLE users ALTER COLUMN id SET NOT NULL;\n\
         ALTER TABLE users ADD COLUMN price positive;";
    assert_eq!(rules(&lint(sql, &options).unwrap()), ["LS108", "LS107"]);
    let mut schema = Schema::default();
    schema.learn_column("users", "email", "varchar", vec![50], false);
    schema.learn_column("users", "id", "int8", vec![], true);
    schema.learn_domain("positive", true);
    assert_eq!(
        rules(&lint_in(&mut schema, sql, &options).unwrap()),
        ["LS111"]
    );
}

#[test]
fn the_schema_follows_renames_drops_and_declared_not_nulls() {
    let options = Options {
        disabled: [
            "LS401".to_string(),
            "LS201".to_string(),
            "LS202".to_string(),
        ]
        .into(),
        ..Options::default()
    };
    let mut schema = Schema::default();
    lint_in(
        &mut schema,
        "CREATE TABLE t (id int PRIMARY KEY, a varchar(10) NOT NULL, b int);",
        &options,
    )
    .unwrap();
    let later = "ALTER TABLE t RENAME COLUMN a TO c;\n\
         ALTER TABLE t ALTER COLUMN c SET NOT NULL;\n\
         ALTER TABLE t ALTER COLUMN c TYPE varchar(20);\n\
         ALTER TABLE t ALTER COLUMN id SET NOT NULL;";
    assert_eq!(
        rules(&lint_in(&mut schema.clone(), later, &options).unwrap()),
        Vec::<&str>::new()
    );
    lint_in(
        &mut schema,
        "ALTER TABLE t DROP COLUMN a; ALTER TABLE t ADD COLUMN a text;",
        &options,
    )
    .unwrap();
    assert_eq!(
        rules(
            &lint_in(
                &mut schema,
                "ALTER TABLE t ALTER COLUMN a SET NOT NULL;",
                &options
            )
            .unwrap()
        ),
        ["LS107"]
    );
}

#[test]
fn hazards_inside_do_blocks_are_found() {
    let sql = "SET lock_timeout = '2s';\nDO $$\nBEGIN\n  CREATE INDEX orders_note_idx ON orders (note);\n  EXECUTE 'ALTER TABLE orders ALTER COLUMN note SET NOT NULL';\nEND\n$$;";
    let report = lint(sql, &Options::default()).unwrap();
    let findings: Vec<(&str, &str)> = report.statements[1]
        .findings
        .iter()
        .map(|f| (f.rule, f.message.as_str()))
        .collect();
    assert_eq!(findings.len(), 2, "{findings:#?}");
    assert_eq!(findings[0].0, "LS102");
    assert!(
        findings[0]
            .1
            .starts_with("in the DO block, line 4: CREATE INDEX"),
        "{}",
        findings[0].1
    );
    assert_eq!(findings[1].0, "LS107");
    assert!(
        findings[1]
            .1
            .starts_with("in the DO block, line 5: SET NOT NULL"),
        "{}",
        findings[1].1
    );
    assert!(report.statements[1]
        .findings
        .iter()
        .all(|f| f.fix.is_none()));
    // An ignore before the DO statement names the rule.
    let ignored = format!("-- locksmith: ignore LS102 table is tiny\n{}", &sql[25..]);
    let report = lint(&ignored, &Options::default()).unwrap();
    assert!(report.statements[0]
        .findings
        .iter()
        .all(|f| f.rule != "LS102"));
}
