use super::*;

fn file(path: &str, content: &str) -> SourceFile {
    SourceFile {
        path: path.into(),
        content: content.into(),
    }
}

fn read(files: &[(&str, &str)]) -> Result<Vec<Migration>, SourceError> {
    let files: Vec<SourceFile> = files.iter().map(|(p, c)| file(p, c)).collect();
    read_folder(&files)
}

fn ids(files: &[(&str, &str)]) -> Vec<String> {
    read(files).unwrap().iter().map(Migration::id).collect()
}

fn problem(files: &[(&str, &str)]) -> (String, u32, Problem) {
    match read(files).unwrap_err() {
        SourceError::File {
            path,
            line,
            problem,
        } => (path, line, problem),
        other => panic!("{other}"),
    }
}

#[test]
fn sqlx_plain_and_reversible() {
    let files = [
        ("10_b.sql", "SELECT 10;"),
        ("2_a.up.sql", "SELECT 2;"),
        ("2_a.down.sql", "DROP TABLE everything;"),
        ("README.md", ""),
    ];
    let m = read(&files).unwrap();
    assert_eq!(m.iter().map(Migration::id).collect::<Vec<_>>(), ["2", "10"]);
    assert_eq!(m[0].layout, Layout::Numbered);
    assert_eq!(m[0].up_sql(), "SELECT 2;");
    assert_eq!(m[0].checksum, checksum("SELECT 2;"));
}

#[test]
fn golang_migrate_down_files_never_read() {
    let m = read(&[
        ("000001_users.up.sql", "CREATE TABLE users (id int);"),
        ("000001_users.down.sql", "DROP TABLE users;"),
        ("000002_x.down.sql", "DROP TABLE x;"),
    ])
    .unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].path.as_str(), m[0].name.as_str()),
        ("000001_users.up.sql", "users")
    );
}

#[test]
fn flyway_versions_repeatables_and_undo() {
    let files = [
        ("R__views.sql", "CREATE OR REPLACE VIEW v AS SELECT 1;"),
        ("V1_10__c.sql", "SELECT 3;"),
        ("V1.2__b.sql", "SELECT 2;"),
        ("V1__a.sql", "SELECT 1;"),
        ("U1_10__c.sql", "DROP TABLE c;"),
        ("R__a_first.sql", "SELECT 0;"),
    ];
    assert_eq!(ids(&files), ["1", "1.2", "1.10", "R__a_first", "R__views"]);
    let m = read(&files).unwrap();
    assert_eq!(m[3].kind, Kind::Repeatable);
    assert!(m.iter().all(|m| m.layout == Layout::Flyway));
    let (path, _, p) = problem(&[("V1_1__a.sql", ""), ("V1.1__b.sql", "")]);
    assert!(matches!(p, Problem::Duplicate { .. }), "{path}: {p}");
}

#[test]
fn dbmate_runs_the_up_section_only() {
    let sql = "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY i ON users (email);\n\n-- migrate:down\nDROP TABLE users;\n";
    let m = read(&[("20240101120000_idx.sql", sql)]).unwrap();
    assert_eq!(m[0].layout, Layout::Dbmate);
    assert!(m[0].no_transaction);
    assert!(!m[0].sql.contains("DROP"));
    assert_eq!(m[0].sql.len(), sql.len());
    assert_eq!(
        m[0].up_sql(),
        "CREATE INDEX CONCURRENTLY i ON users (email);\n\n"
    );
    assert_eq!(m[0].checksum, checksum(m[0].up_sql()));
}

#[test]
fn goose_runs_the_up_section_with_its_blocks() {
    let sql = "-- +goose Up\n-- +goose StatementBegin\nCREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1; $$;\n-- +goose StatementEnd\n-- +goose Down\nDROP TABLE users;\n";
    let m = read(&[
        ("00002_f.sql", sql),
        ("00001_a.sql", "-- +goose Up\nSELECT 1;\n"),
    ])
    .unwrap();
    assert_eq!(m[1].layout, Layout::Goose);
    assert!(!m[1].no_transaction);
    assert_eq!(m[1].blocks.len(), 1);
    assert!(!m[1].sql.contains("DROP"));
    let nt = read(&[(
        "1_a.sql",
        "-- +goose NO TRANSACTION\n-- +goose Up\nSELECT 1;\n",
    )])
    .unwrap();
    assert!(nt[0].no_transaction);
}

#[test]
fn prisma_folders() {
    let m = read(&[
        ("20240102000000_second/migration.sql", "SELECT 2;"),
        ("20240101000000_init/migration.sql", "SELECT 1;"),
        ("migration_lock.toml", ""),
    ])
    .unwrap();
    assert_eq!(m[0].name, "init");
    assert_eq!(m[0].layout, Layout::Prisma);
}

#[test]
fn locksmith_directive_is_read_from_the_up_section() {
    let m = read(&[("1_a.sql", "-- locksmith: no-transaction\nVACUUM t;")]).unwrap();
    assert!(m[0].no_transaction);
    let m = read(&[(
        "1_a.sql",
        "-- migrate:up\nSELECT 1;\n-- migrate:down\n-- locksmith: no-transaction\n",
    )])
    .unwrap();
    assert!(!m[0].no_transaction);
}

#[test]
fn empty_or_unrecognised_folders_have_no_migrations() {
    for files in [
        &[][..],
        &[("README.md", "")][..],
        &[("1_a.down.sql", "DROP TABLE a;"), ("U1__a.sql", "")][..],
    ] {
        assert_eq!(read(files).unwrap_err(), SourceError::NoMigrations);
    }
    assert!(SourceError::NoMigrations
        .to_string()
        .contains("R__<name>.sql"));
}

#[test]
fn bad_names_and_mixed_layouts_are_refused_with_the_file() {
    let (path, line, p) = problem(&[("1_a.sql", "SELECT 1;"), ("2_b.SQL", "SELECT 2;")]);
    assert_eq!((path.as_str(), line), ("2_b.SQL", 1));
    assert!(p.to_string().contains("2_b.sql"), "{p}");

    let (path, _, p) = problem(&[("1_a.sql", ""), ("V2__b.sql", "")]);
    assert_eq!(path, "V2__b.sql");
    assert!(matches!(p, Problem::MixedLayouts { .. }), "{p}");

    let (path, _, p) = problem(&[
        ("1_a.sql", "-- migrate:up\n"),
        ("2_b.sql", "-- +goose Up\n"),
    ]);
    assert_eq!(path, "2_b.sql");
    assert!(matches!(p, Problem::MixedLayouts { .. }), "{p}");

    // A plain file among dbmate files lacks its marker: it would otherwise run whole.
    let (path, line, p) = problem(&[
        ("1_a.sql", "-- migrate:up\n"),
        ("2_b.sql", "DROP TABLE a;\n"),
    ]);
    assert_eq!(
        (path.as_str(), line, p),
        ("2_b.sql", 1, Problem::NoUpMarker(Markers::Dbmate))
    );

    let (path, line, p) = problem(&[(
        "1_a.sql",
        "-- +goose Up\n-- +goose StatementBegin\nSELECT 1;\n",
    )]);
    assert_eq!(
        (path.as_str(), line, p),
        ("1_a.sql", 2, Problem::UnclosedBlock)
    );

    let (_, _, p) = problem(&[("1_a.up.sql", ""), ("1_b.sql", "")]);
    assert!(matches!(p, Problem::Duplicate { .. }));

    let err = read(&[("init/migration.sql", "")]).unwrap_err();
    assert!(
        err.to_string().starts_with("init/migration.sql:1: "),
        "{err}"
    );
}

#[test]
fn diesel_folders_never_read_down_sql() {
    let files = [
        (
            "2024-01-02-000000_b/up.sql",
            "CREATE INDEX CONCURRENTLY i ON t (a);",
        ),
        ("2024-01-02-000000_b/down.sql", "DROP INDEX i;"),
        (
            "2024-01-02-000000_b/metadata.toml",
            "run_in_transaction = false\n",
        ),
        ("2024-01-01-000000_a/up.sql", "CREATE TABLE t (a int);"),
        ("2024-01-01-000000_a/down.sql", "DROP TABLE t;"),
    ];
    let m = read(&files).unwrap();
    assert_eq!(m.len(), 2);
    assert!(m.iter().all(|m| m.layout == Layout::Diesel));
    assert_eq!(m[0].up_sql(), "CREATE TABLE t (a int);");
    assert!(!m[0].no_transaction);
    assert!(
        m[1].no_transaction,
        "metadata.toml run_in_transaction = false"
    );
}

#[test]
fn popx_reads_postgres_and_autocommit_only() {
    let files = [
        (
            "20200101000000000000_a.postgres.up.sql",
            "CREATE TABLE t (a int);",
        ),
        (
            "20200101000000000000_a.mysql.up.sql",
            "CREATE TABLE t (a int) ENGINE=InnoDB;",
        ),
        (
            "20200101000000000000_a.sqlite3.up.sql",
            "CREATE TABLE t (a int);",
        ),
        (
            "20200101000000000000_a.cockroach.up.sql",
            "CREATE TABLE t (a int);",
        ),
        ("20200101000000000000_a.postgres.down.sql", "DROP TABLE t;"),
        (
            "20200102000000000000_b.postgres.autocommit.up.sql",
            "CREATE INDEX CONCURRENTLY i ON t (a);",
        ),
        // A file without a dialect is for the dialects without their own.
        (
            "20200103000000000000_c.up.sql",
            "CREATE TABLE u (a int, INDEX i (a));",
        ),
        (
            "20200103000000000000_c.postgres.up.sql",
            "CREATE TABLE u (a int);",
        ),
    ];
    let m = read(&files).unwrap();
    assert_eq!(m.len(), 3);
    assert_eq!(m[2].path, "20200103000000000000_c.postgres.up.sql");
    assert!(!m[0].no_transaction);
    assert!(m[1].no_transaction);
}

#[test]
fn sqlx_and_flyway_markers() {
    let m = read(&[(
        "1_a.sql",
        "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);",
    )])
    .unwrap();
    assert!(m[0].no_transaction);
    let m = read(&[
        ("V1__a.sql", "CREATE INDEX CONCURRENTLY i ON t (a);"),
        ("V1__a.sql.conf", "executeInTransaction=false\n"),
    ])
    .unwrap();
    assert!(m[0].no_transaction);
}
