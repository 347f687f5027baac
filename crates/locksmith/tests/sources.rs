//! `apply` on every migration layout it reads, against a real server: dry
//! run, apply, re-apply (nothing to do), the schema afterwards; down sections
//! and files never run; bad folders stop with `FILE:LINE` before anything
//! runs; a database another tool built is adopted with `--baseline`.

use std::path::Path;
use std::process::Command;

use locksmith_sandbox::shared;
use serde_json::Value;

mod support;
use support::{locksmith, query_i64, text, write};

/// A fresh database: its URL and an admin connection.
async fn database(hint: &str) -> (String, locksmith_pg::Connection) {
    let cluster = shared::cluster().unwrap();
    let name = shared::unique_name(hint);
    let settings = cluster.create_database(&name).await.unwrap();
    (cluster.url(&name), settings.connect().await.unwrap())
}

async fn exists(client: &locksmith_pg::Connection, relation: &str) -> bool {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&relation])
        .await
        .unwrap()
        .get(0)
}

/// Dry run (plans every migration, runs nothing, never shows a down
/// section), apply, re-apply (nothing to do). Returns the dry run's JSON.
async fn dry_run_apply_reapply(
    url: &str,
    admin: &locksmith_pg::Connection,
    dir: &Path,
    migrations: usize,
) -> Value {
    let d = dir.to_str().unwrap();
    let dry = locksmith(url, &["apply", d, "--dry-run", "--format", "json"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let plan: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(
        plan["migrations"].as_array().unwrap().len(),
        migrations,
        "{plan}"
    );
    assert!(!text(&dry).contains("DROP TABLE users"), "{}", text(&dry));
    assert!(!exists(admin, "users").await, "the dry run ran something");

    let human = locksmith(url, &["apply", d, "--dry-run"]);
    assert!(
        !text(&human).contains("DROP TABLE users"),
        "{}",
        text(&human)
    );

    let out = locksmith(url, &["apply", d, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["migrations"].as_array().unwrap().len(),
        migrations,
        "{report}"
    );

    let again = locksmith(url, &["apply", d]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        text(&again).contains("Nothing to apply"),
        "{}",
        text(&again)
    );
    plan
}

const USERS: &str = "CREATE TABLE users (id int PRIMARY KEY, address text);\nINSERT INTO users VALUES (1, 'Main St'), (2, 'High St');\n";
const MOVE_ADDRESS: &str = "CREATE TABLE addresses (user_id int, address text);\nINSERT INTO addresses SELECT id, address FROM users;\nALTER TABLE users DROP COLUMN address;\n";

/// users(id) with two rows, addresses with both addresses: what the two migrations above leave.
async fn assert_moved(admin: &locksmith_pg::Connection) {
    assert_eq!(query_i64(admin, "SELECT count(*) FROM users").await, 2);
    assert_eq!(
        query_i64(
            admin,
            "SELECT count(*) FROM addresses WHERE address IS NOT NULL"
        )
        .await,
        2
    );
    assert_eq!(
        query_i64(admin, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'address'").await,
        0
    );
}

#[tokio::test]
async fn sqlx_plain_and_reversible() {
    for (hint, files) in [
        (
            "sqlx_plain",
            vec![("1_users.sql", USERS), ("2_move.sql", MOVE_ADDRESS)],
        ),
        (
            "sqlx_reversible",
            vec![
                ("1_users.up.sql", USERS),
                ("1_users.down.sql", "DROP TABLE users;"),
                ("2_move.up.sql", MOVE_ADDRESS),
                ("2_move.down.sql", "DROP TABLE users;"),
            ],
        ),
    ] {
        let (url, admin) = database(hint).await;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &files);
        dry_run_apply_reapply(&url, &admin, dir.path(), 2).await;
        assert_moved(&admin).await;
    }
}

#[tokio::test]
async fn golang_migrate_down_files_never_run() {
    let (url, admin) = database("golang_migrate").await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("000001_users.up.sql", USERS),
            ("000001_users.down.sql", "DROP TABLE users;"),
            ("000002_move.up.sql", MOVE_ADDRESS),
            (
                "000002_move.down.sql",
                "DROP TABLE addresses; DROP TABLE users;",
            ),
        ],
    );
    dry_run_apply_reapply(&url, &admin, dir.path(), 2).await;
    assert_moved(&admin).await;
}

#[tokio::test]
async fn dbmate_runs_the_up_section_only_and_keeps_the_data() {
    let (url, admin) = database("dbmate").await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "20240101000000_users.sql",
                &format!("-- migrate:up\n{USERS}\n-- migrate:down\nDROP TABLE users;\n"),
            ),
            (
                "20240102000000_move.sql",
                &format!("-- migrate:up\n{MOVE_ADDRESS}\n-- migrate:down\nDROP TABLE addresses;\nDROP TABLE users;\n"),
            ),
            (
                "20240103000000_index.sql",
                "-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY users_id ON users (id);\n-- migrate:down\nDROP TABLE users;\n",
            ),
        ],
    );
    let plan = dry_run_apply_reapply(&url, &admin, dir.path(), 3).await;
    assert_eq!(plan["migrations"][2]["in_transaction"], false, "{plan}");
    // Positions are the file's: the up section's first statement is on line 2.
    assert_eq!(plan["migrations"][0]["statements"][0]["line"], 2, "{plan}");
    assert_moved(&admin).await;
    assert!(exists(&admin, "users_id").await);
}

#[tokio::test]
async fn goose_runs_the_up_section_with_blocks_whole_and_keeps_the_data() {
    let (url, admin) = database("goose").await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "00001_users.sql",
                &format!("-- +goose Up\n{USERS}\n-- +goose Down\nDROP TABLE users;\n"),
            ),
            (
                "00002_move.sql",
                &format!("-- +goose Up\n{MOVE_ADDRESS}\n-- +goose Down\n-- +goose StatementBegin\nDROP TABLE addresses;\nDROP TABLE users;\n-- +goose StatementEnd\n"),
            ),
            (
                "00003_audit.sql",
                "-- +goose Up\nCREATE TABLE audit (n int);\n-- +goose StatementBegin\nCREATE FUNCTION bump() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n  INSERT INTO audit VALUES (1);\n  RETURN NEW;\nEND;\n$$;\nCREATE TRIGGER bump AFTER INSERT ON users FOR EACH ROW EXECUTE FUNCTION bump();\n-- +goose StatementEnd\n-- +goose Down\nDROP TABLE users;\n",
            ),
            (
                "00004_index.sql",
                "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY users_id ON users (id);\n-- +goose Down\nDROP TABLE users;\n",
            ),
        ],
    );
    let plan = dry_run_apply_reapply(&url, &admin, dir.path(), 4).await;
    // The block (function and trigger) is one statement, after the CREATE TABLE.
    let audit = &plan["migrations"][2]["statements"];
    assert_eq!(audit.as_array().unwrap().len(), 2, "{plan}");
    assert!(
        audit[1]["sql"].as_str().unwrap().contains("CREATE TRIGGER"),
        "{plan}"
    );
    assert_eq!(audit[1]["line"], 4, "{plan}");
    assert_eq!(plan["migrations"][3]["in_transaction"], false, "{plan}");
    assert_moved(&admin).await;
    admin
        .batch_execute("INSERT INTO users VALUES (3)")
        .await
        .unwrap();
    assert_eq!(query_i64(&admin, "SELECT count(*) FROM audit").await, 1);
    assert!(exists(&admin, "users_id").await);
}

#[tokio::test]
async fn flyway_versions_repeatables_and_undo_files() {
    let (url, admin) = database("flyway").await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("V1__users.sql", USERS),
            ("V1_1__move.sql", MOVE_ADDRESS),
            (
                "V1.10__email.sql",
                "ALTER TABLE users ADD COLUMN email text;",
            ),
            (
                "V1.2__phone.sql",
                "ALTER TABLE users ADD COLUMN phone text;",
            ),
            ("U1_1__move.sql", "DROP TABLE users;"),
            (
                "R__user_view.sql",
                "CREATE OR REPLACE VIEW user_view AS SELECT id FROM users;",
            ),
        ],
    );
    let plan = dry_run_apply_reapply(&url, &admin, dir.path(), 5).await;
    let history = admin
        .query("SELECT coalesce(version_text, version::text) FROM locksmith_migrations ORDER BY applied_at, version", &[])
        .await
        .unwrap();
    let mut ids: Vec<String> = history.iter().map(|r| r.get(0)).collect();
    ids.sort();
    assert_eq!(ids, ["1", "1.1", "1.10", "1.2", "R__user_view"]);
    let order: Vec<String> = plan["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].to_string())
        .collect();
    assert_eq!(
        order,
        ["1", "\"1.1\"", "\"1.2\"", "\"1.10\"", "\"R__user_view\""]
    );
    assert_moved(&admin).await;
    // phone (1.2) was added before email (1.10).
    let attnum = |column: &'static str| {
        let admin = &admin;
        async move {
            query_i64(admin, &format!("SELECT attnum::bigint FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = '{column}'")).await
        }
    };
    assert!(attnum("phone").await < attnum("email").await);
    // The repeatable runs again when it changes, and keeps one history row.
    write(
        dir.path(),
        &[(
            "R__user_view.sql",
            "CREATE OR REPLACE VIEW user_view AS SELECT id, email FROM users;",
        )],
    );
    let d = dir.path().to_str().unwrap();
    let out = locksmith(&url, &["apply", d]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'user_view'"
        )
        .await,
        2
    );
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM locksmith_migrations WHERE version_text = 'R__user_view'"
        )
        .await,
        1
    );
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM locksmith_migrations WHERE version_text = '1.10'"
        )
        .await,
        1
    );
    assert!(text(&locksmith(&url, &["apply", d])).contains("Nothing to apply"));
}

#[tokio::test]
async fn prisma_folders() {
    let (url, admin) = database("prisma").await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("20240101000000_init/migration.sql", USERS),
            ("20240102000000_move/migration.sql", MOVE_ADDRESS),
            ("migration_lock.toml", "provider = \"postgresql\"\n"),
        ],
    );
    dry_run_apply_reapply(&url, &admin, dir.path(), 2).await;
    assert_moved(&admin).await;
}

#[tokio::test]
async fn bad_folders_stop_with_file_and_line_before_anything_runs() {
    let (url, admin) = database("sources_bad").await;
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, String);
    let cases: Vec<Case> = vec![
        (
            "mixed layouts",
            vec![("1_t.sql", "CREATE TABLE t (id int);"), ("V2__u.sql", "SELECT 1;")],
            "V2__u.sql:1: the folder mixes layouts".into(),
        ),
        (
            "upper-case ending",
            vec![("1_t.sql", "CREATE TABLE t (id int);"), ("2_b.SQL", "SELECT 1;")],
            "2_b.SQL:1: ".into(),
        ),
        (
            "goose block never closed",
            vec![("1_t.sql", "-- +goose Up\nCREATE TABLE t (id int);\n-- +goose StatementBegin\nSELECT 1;\n-- +goose Down\nDROP TABLE t;\n")],
            "1_t.sql:3: `-- +goose StatementBegin` without".into(),
        ),
        (
            "dbmate file without up marker",
            vec![
                ("1_t.sql", "-- migrate:up\nCREATE TABLE t (id int);\n"),
                ("2_u.sql", "-- migrate:down\nDROP TABLE t;\n"),
            ],
            "2_u.sql:1: no `-- migrate:up` marker".into(),
        ),
        (
            "plain file among goose files",
            vec![
                ("1_t.sql", "-- +goose Up\nCREATE TABLE t (id int);\n"),
                ("2_u.sql", "DROP TABLE t;\n"),
            ],
            "2_u.sql:1: no `-- +goose Up` marker".into(),
        ),
        ("empty folder", vec![], "no migrations found in".into()),
        (
            "only down files",
            vec![("1_t.down.sql", "DROP TABLE t;"), ("README.md", "")],
            "no migrations found in".into(),
        ),
    ];
    for (what, files, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &files);
        let out = locksmith(&url, &["apply", dir.path().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", text(&out));
        assert!(
            text(&out).contains(&expected),
            "{what}: wanted {expected:?} in {}",
            text(&out)
        );
        if what == "upper-case ending" {
            assert!(text(&out).contains("rename it 2_b.sql"), "{}", text(&out));
        }
        if expected.starts_with("no migrations") {
            assert!(text(&out).contains("looked for:"), "{}", text(&out));
        }
        assert!(!exists(&admin, "t").await, "{what}: something ran");
        assert!(
            !exists(&admin, "locksmith_migrations").await,
            "{what}: history touched"
        );
    }
}

#[tokio::test]
async fn lint_sees_only_up_sections() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "1_t.sql",
                "-- migrate:up\nCREATE TABLE t (id int);\n-- migrate:down\nDROP TABLE users;\n",
            ),
            ("2_u.down.sql", "DROP TABLE users;"),
        ],
    );
    for path in [dir.path().to_path_buf(), dir.path().join("1_t.sql")] {
        let out = Command::new(env!("CARGO_BIN_EXE_locksmith"))
            .args(["lint", "--format", "json", path.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(!text(&out).contains("users"), "{}", text(&out));
        assert!(text(&out).contains("CREATE TABLE t"), "{}", text(&out));
    }
}

#[tokio::test]
async fn a_golang_migrate_database_is_adopted_with_baseline() {
    let (url, admin) = database("baseline").await;
    // What golang-migrate leaves after its migrations 1 and 2.
    admin
        .batch_execute(&format!(
            "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);
             INSERT INTO schema_migrations VALUES (2, false);
             {USERS}{MOVE_ADDRESS}"
        ))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("1_users.up.sql", USERS),
            ("1_users.down.sql", "DROP TABLE users;"),
            ("2_move.up.sql", MOVE_ADDRESS),
            ("3_phone.up.sql", "ALTER TABLE users ADD COLUMN phone text;"),
        ],
    );
    let d = dir.path().to_str().unwrap();
    for dry in [false, true] {
        let args: &[&str] = if dry {
            &["apply", d, "--dry-run"]
        } else {
            &["apply", d]
        };
        let out = locksmith(&url, args);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains("golang-migrate"), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("locksmith apply {d} --baseline 2")),
            "{}",
            text(&out)
        );
    }
    assert!(!exists(&admin, "locksmith_migrations").await);

    let out = locksmith(&url, &["apply", d, "--baseline", "7"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(!exists(&admin, "locksmith_migrations").await);

    let dry = locksmith(
        &url,
        &[
            "apply",
            d,
            "--baseline",
            "2",
            "--dry-run",
            "--format",
            "json",
        ],
    );
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let plan: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(plan["baseline"], serde_json::json!([1, 2]), "{plan}");
    assert_eq!(plan["migrations"][0]["version"], 3, "{plan}");

    let out = locksmith(&url, &["apply", d, "--baseline", "2", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows = admin
        .query(
            "SELECT version, attempts, length(checksum) FROM locksmith_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    let rows: Vec<(i64, i32, i32)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(rows[..2], [(1, 0, 64), (2, 0, 64)]);
    assert_eq!(rows[2].0, 3);
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'phone'").await,
        1
    );
    assert_eq!(query_i64(&admin, "SELECT count(*) FROM users").await, 2);

    // Adopted: later runs need no --baseline, and refuse one.
    write(
        dir.path(),
        &[("4_email.up.sql", "ALTER TABLE users ADD COLUMN email text;")],
    );
    let out = locksmith(&url, &["apply", d]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = locksmith(&url, &["apply", d, "--baseline", "2"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[tokio::test]
async fn every_other_tools_history_is_recognised() {
    let tables = [
        (
            "Flyway",
            "CREATE TABLE flyway_schema_history (installed_rank int PRIMARY KEY, version varchar(50), success boolean NOT NULL);
             INSERT INTO flyway_schema_history VALUES (1, '1', true), (2, '1_1', true), (3, NULL, true), (4, '1.2', false);",
            "--baseline 1.1",
        ),
        (
            "sqlx",
            "CREATE TABLE _sqlx_migrations (version bigint PRIMARY KEY, success boolean NOT NULL);
             INSERT INTO _sqlx_migrations VALUES (1, true), (2, true), (3, false);",
            "--baseline 2",
        ),
        (
            "goose",
            "CREATE TABLE goose_db_version (id serial PRIMARY KEY, version_id bigint NOT NULL, is_applied boolean NOT NULL);
             INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), (1, true), (2, true), (2, false);",
            "--baseline 1",
        ),
        (
            "dbmate",
            "CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY);
             INSERT INTO schema_migrations VALUES ('20240101000000'), ('20240102000000');",
            "--baseline 20240102000000",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &[("1_t.sql", "CREATE TABLE t (id int);")]);
    for (tool, setup, expected) in tables {
        let (url, admin) = database(tool).await;
        admin.batch_execute(setup).await.unwrap();
        let out = locksmith(&url, &["apply", dir.path().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{tool}: {}", text(&out));
        assert!(text(&out).contains(tool), "{tool}: {}", text(&out));
        assert!(
            text(&out).contains(expected),
            "{tool}: wanted {expected} in {}",
            text(&out)
        );
        assert!(!exists(&admin, "t").await, "{tool}: something ran");
    }
}

#[tokio::test]
async fn a_history_table_from_an_older_locksmith_is_kept_and_extended() {
    let (url, admin) = database("old_history").await;
    admin
        .batch_execute(
            "CREATE TABLE locksmith_migrations (version bigint PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now(), duration_ms bigint NOT NULL, attempts integer NOT NULL);
             CREATE TABLE a (id int);",
        )
        .await
        .unwrap();
    let a = "CREATE TABLE a (id int);";
    admin
        .execute(
            "INSERT INTO locksmith_migrations (version, name, checksum, duration_ms, attempts) VALUES (1, 'a', $1, 1, 1)",
            &[&locksmith_core::source::checksum(a)],
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("001_a.sql", a),
            ("V1_1__b.sql", "CREATE TABLE b (id int);"),
        ],
    );
    // Mixed layouts are refused; renamed to one layout, 1 is recognised as applied.
    let d = dir.path().to_str().unwrap();
    assert_eq!(locksmith(&url, &["apply", d]).status.code(), Some(2));
    std::fs::rename(dir.path().join("001_a.sql"), dir.path().join("V1__a.sql")).unwrap();
    let out = locksmith(&url, &["apply", d, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["migrations"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    assert!(exists(&admin, "b").await);
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM locksmith_migrations WHERE version_text = '1.1' AND version < 0"
        )
        .await,
        1
    );
}
