//! `lint --fix` on the corpus (`tests/corpus/<tool>/`: each tool's layout,
//! a first migration that fills two tables, a newest one with the hazards),
//! proved on a real server: each folder runs the way its tool runs it
//! (`docs/tools.md`: one multi-statement query per file, the tool's
//! transaction unless its marker says not, goose and Flyway statement by
//! statement), once as written and once after `lint --fix`, and both reach
//! the same schema. After the fix, `lint` finds no error, and `apply` runs
//! the fixed folder to the same schema (its no-transaction markers honoured).

use std::path::{Path, PathBuf};

use locksmith_core::source::{self, Layout, Migration, SourceFile};
use locksmith_sandbox::shared;

mod support;
use support::{locksmith, text};

fn corpus(tool: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(tool)
}

/// A copy of the tool's corpus folder, to change.
fn copy(tool: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&corpus(tool), dir.path());
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// The folder's migrations as the core reads them (its layout, the up
/// sections, the markers), with side files (`metadata.toml`, `.sql.conf`).
fn migrations(dir: &Path) -> Vec<Migration> {
    let mut files = Vec::new();
    list(dir, "", &mut files);
    source::read_folder(&files).unwrap()
}

fn list(dir: &Path, prefix: &str, out: &mut Vec<SourceFile>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = format!("{prefix}{}", path.file_name().unwrap().to_str().unwrap());
        if path.is_dir() {
            list(&path, &format!("{name}/"), out);
        } else {
            out.push(SourceFile {
                path: name,
                content: std::fs::read_to_string(&path).unwrap(),
            });
        }
    }
}

/// How the tool sends a file, from its source (docs/tools.md).
#[derive(Clone, Copy, Debug)]
enum Runs {
    /// sqlx, diesel, dbmate, popx: `BEGIN`, the file as one query, `COMMIT`;
    /// without `BEGIN` when marked no-transaction.
    WrappedWholeFile,
    /// golang-migrate, Prisma: the file as one query, nothing around it.
    WholeFile,
    /// goose: statement by statement (cut at lines ending in `;` outside
    /// `StatementBegin`/`End`), in one transaction unless NO TRANSACTION.
    GooseStatements,
    /// Flyway: statement by statement, in one transaction unless
    /// `executeInTransaction=false` or every statement is non-transactional.
    FlywayStatements,
}

/// goose's statement split (`internal/sqlparser/parser.go`).
fn goose_statements(up: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_block = false;
    for line in up.lines() {
        let t = line.trim();
        if t.starts_with("-- +goose StatementBegin") {
            in_block = true;
            continue;
        }
        if t.starts_with("-- +goose StatementEnd") {
            in_block = false;
            out.push(std::mem::take(&mut current));
            continue;
        }
        if t.starts_with("-- +goose") || (t.starts_with("--") && current.trim().is_empty()) {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if !in_block && t.ends_with(';') {
            out.push(std::mem::take(&mut current));
        }
    }
    out.retain(|s| !s.trim().is_empty());
    out
}

/// Runs the folder's migrations on `url` the way the tool does, on one
/// connection as the tools do; returns that connection's `lock_timeout`
/// after the last one.
async fn run_like_the_tool(url: &str, dir: &Path, runs: Runs) -> String {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    for m in migrations(dir) {
        let up = m.up_sql().to_string();
        let fail = |e: tokio_postgres::Error| panic!("{} under {runs:?}: {e:?}\n{up}", m.path);
        match runs {
            Runs::WholeFile => client.batch_execute(&up).await.unwrap_or_else(fail),
            Runs::WrappedWholeFile => {
                if m.no_transaction {
                    client.batch_execute(&up).await.unwrap_or_else(fail);
                } else {
                    client.batch_execute("BEGIN").await.unwrap();
                    client.batch_execute(&up).await.unwrap_or_else(fail);
                    client.batch_execute("COMMIT").await.unwrap();
                }
            }
            Runs::GooseStatements | Runs::FlywayStatements => {
                let statements: Vec<String> = match runs {
                    Runs::GooseStatements => goose_statements(&up),
                    _ => locksmith_core::analysis::analyze(&up, 15)
                        .unwrap()
                        .into_iter()
                        .map(|s| s.sql)
                        .collect(),
                };
                let all_outside = matches!(runs, Runs::FlywayStatements)
                    && locksmith_core::analysis::analyze(&up, 15)
                        .unwrap()
                        .iter()
                        .all(|s| !s.transactional);
                let tx = !m.no_transaction && !all_outside;
                if tx {
                    client.batch_execute("BEGIN").await.unwrap();
                }
                for s in &statements {
                    // One statement per query, as database/sql and JDBC send them.
                    client.batch_execute(s).await.unwrap_or_else(fail);
                }
                if tx {
                    client.batch_execute("COMMIT").await.unwrap();
                }
            }
        }
    }
    let row = client.query_one("SHOW lock_timeout", &[]).await.unwrap();
    row.get(0)
}

/// The schema of the corpus tables: columns, constraints (validated or
/// not), indexes (valid or not), in a stable order.
async fn schema(url: &str) -> String {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let rows = client
        .query(
            "SELECT format('column %s.%s %s not_null=%s default=%s', c.relname, a.attname,
                           format_type(a.atttypid, a.atttypmod), a.attnotnull,
                           pg_get_expr(d.adbin, d.adrelid))
               FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
               LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE c.relname IN ('users', 'orgs') AND a.attnum > 0 AND NOT a.attisdropped
             UNION ALL
             SELECT format('constraint %s %s validated=%s', conname, pg_get_constraintdef(oid), convalidated)
               FROM pg_constraint WHERE conrelid IN ('users'::regclass, 'orgs'::regclass)
             UNION ALL
             SELECT format('index %s valid=%s', pg_get_indexdef(indexrelid), indisvalid)
               FROM pg_index WHERE indrelid IN ('users'::regclass, 'orgs'::regclass)
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn database(hint: &str) -> String {
    let cluster = shared::cluster().unwrap();
    let name = shared::unique_name(hint);
    cluster.create_database(&name).await.unwrap();
    cluster.url(&name)
}

/// The whole proof for one tool's corpus.
async fn fix_reaches_the_same_schema(tool: &str, layout: Layout, runs: &[Runs]) {
    let fixed = copy(tool);
    let d = fixed.path().to_str().unwrap();
    let before = locksmith("", &["lint", d]);
    assert_eq!(
        before.status.code(),
        Some(1),
        "the corpus has errors: {}",
        text(&before)
    );
    let fix = locksmith("", &["lint", "--fix", d]);
    assert_eq!(fix.status.code(), Some(0), "{}", text(&fix));
    let ms = migrations(fixed.path());
    assert!(ms.iter().all(|m| m.layout == layout), "{ms:#?}");
    assert!(ms.len() > 2, "the fix split the migration: {}", text(&fix));
    let after = locksmith("", &["lint", d]);
    assert_eq!(
        after.status.code(),
        Some(0),
        "no error after --fix: {}",
        text(&after)
    );

    for &how in runs {
        let original = database(tool).await;
        run_like_the_tool(&original, &corpus(tool), how).await;
        let want = schema(&original).await;
        assert!(want.contains("users_email_idx"), "{want}");
        let rewritten = database(tool).await;
        // The fix's lock_timeout bounds its own file only: left on the
        // tool's connection, it would cut a later CREATE INDEX CONCURRENTLY
        // short on a busy server and leave an invalid index behind.
        let left = run_like_the_tool(&rewritten, fixed.path(), how).await;
        assert_eq!(
            left, "0",
            "{tool} run as {how:?}: the fix's lock_timeout outlived its file"
        );
        assert_eq!(schema(&rewritten).await, want, "{tool} run as {how:?}");
    }
    // apply runs the fixed folder as its tool would: the markers honoured.
    let applied = database(tool).await;
    let out = locksmith(&applied, &["apply", d]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let original = database(tool).await;
    run_like_the_tool(&original, &corpus(tool), runs[0]).await;
    assert_eq!(
        schema(&applied).await,
        schema(&original).await,
        "{tool} by apply"
    );
}

#[tokio::test]
async fn sqlx_fix_runs_under_sqlx_and_golang_migrate() {
    fix_reaches_the_same_schema(
        "sqlx",
        Layout::Numbered,
        &[Runs::WrappedWholeFile, Runs::WholeFile],
    )
    .await;
}

#[tokio::test]
async fn golang_migrate_fix_runs_as_one_query_per_file() {
    fix_reaches_the_same_schema("golang-migrate", Layout::Numbered, &[Runs::WholeFile]).await;
}

#[tokio::test]
async fn flyway_fix_runs_statement_by_statement_with_its_conf() {
    fix_reaches_the_same_schema("flyway", Layout::Flyway, &[Runs::FlywayStatements]).await;
}

#[tokio::test]
async fn dbmate_fix_runs_with_transaction_false() {
    fix_reaches_the_same_schema("dbmate", Layout::Dbmate, &[Runs::WrappedWholeFile]).await;
}

#[tokio::test]
async fn goose_fix_runs_with_no_transaction() {
    fix_reaches_the_same_schema("goose", Layout::Goose, &[Runs::GooseStatements]).await;
}

#[tokio::test]
async fn diesel_fix_runs_with_metadata_toml() {
    fix_reaches_the_same_schema("diesel", Layout::Diesel, &[Runs::WrappedWholeFile]).await;
}

#[tokio::test]
async fn prisma_fix_runs_one_statement_per_migration() {
    fix_reaches_the_same_schema("prisma", Layout::Prisma, &[Runs::WholeFile]).await;
}

#[tokio::test]
async fn popx_fix_runs_with_autocommit_files() {
    fix_reaches_the_same_schema("popx", Layout::Numbered, &[Runs::WrappedWholeFile]).await;
}
