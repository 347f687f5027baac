use super::*;

#[test]
fn splits_subcommands_at_top_level_commas() {
    let (prefix, parts) = split_subcommands(
        "ALTER TABLE IF EXISTS ONLY app.\"Users\" ADD COLUMN a numeric(10, 2) DEFAULT f(1, 2), ADD CONSTRAINT c CHECK (a IN (1, 2))",
    )
    .unwrap();
    assert_eq!(prefix, "ALTER TABLE IF EXISTS ONLY app.\"Users\"");
    assert_eq!(
        parts,
        [
            "ADD COLUMN a numeric(10, 2) DEFAULT f(1, 2)",
            "ADD CONSTRAINT c CHECK (a IN (1, 2))"
        ]
    );
}

#[test]
fn strips_inline_constraints_only() {
    assert_eq!(
        strip_inline_constraints("ADD COLUMN handle text NOT NULL DEFAULT '' CONSTRAINT u UNIQUE"),
        "ADD COLUMN handle text NOT NULL DEFAULT ''"
    );
    assert_eq!(
        strip_inline_constraints(
            "ADD COLUMN o bigint REFERENCES orgs (id) ON DELETE SET NULL NOT NULL DEFAULT 1"
        ),
        "ADD COLUMN o bigint NOT NULL DEFAULT 1"
    );
    assert_eq!(
        strip_inline_constraints("ADD COLUMN n int CHECK (n > 0) DEFAULT 0"),
        "ADD COLUMN n int DEFAULT 0"
    );
}

fn fix_of(sql: &str, place: Where) -> String {
    let options = crate::lint::Options {
        assume_in_transaction: place.layout.is_some(),
        place,
        ..Default::default()
    };
    let report = crate::lint::lint(sql, &options).unwrap();
    let s = report.statements.last().unwrap();
    let fixes: Vec<_> = s.findings.iter().filter_map(|f| f.fix.clone()).collect();
    assert!(
        fixes.windows(2).all(|w| w[0] == w[1]),
        "one fix per statement: {fixes:#?}"
    );
    fixes.into_iter().next().unwrap_or_default()
}

#[test]
fn multi_part_alter_keeps_every_part() {
    let fix = fix_of(
        "ALTER TABLE users ADD COLUMN handle text NOT NULL DEFAULT '' UNIQUE, ADD COLUMN org_id bigint REFERENCES orgs (id);",
        Where::default(),
    );
    insta::assert_snapshot!(fix);
}

fn at(layout: Layout, path: &str) -> Where {
    Where {
        layout: Some(layout),
        path: Some(path.into()),
        alembic: false,
    }
}

#[test]
fn goose_gets_files_with_its_markers() {
    let fix = fix_of(
        "ALTER TABLE users ADD COLUMN handle text NOT NULL DEFAULT '' UNIQUE, ADD COLUMN org_id bigint REFERENCES orgs (id);",
        at(Layout::Goose, "00042_handles.sql"),
    );
    insta::assert_snapshot!(fix);
}

#[test]
fn volatile_default_backfill_runs_alone_outside_a_transaction() {
    let fix = fix_of(
        "ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid() NOT NULL;",
        at(Layout::Numbered, "20240101000000_token.up.sql"),
    );
    insta::assert_snapshot!(fix);
}

#[test]
fn concurrent_index_in_its_own_prisma_migration() {
    let fix = fix_of(
        "CREATE INDEX users_email_idx ON users (email);",
        at(Layout::Prisma, "20240101000000_email/migration.sql"),
    );
    insta::assert_snapshot!(fix);
}

#[test]
fn missing_lock_timeout_alone_is_the_statement_under_a_timeout() {
    let fix = fix_of(
        "ALTER TABLE users RENAME COLUMN a TO b;",
        at(Layout::Dbmate, "20240101000000_rename.sql"),
    );
    assert_eq!(
        fix,
        "SET LOCAL lock_timeout = '2s';\nALTER TABLE users RENAME COLUMN a TO b;"
    );
}

fn rewritten(path: &str, content: &str) -> String {
    let files = [crate::source::SourceFile {
        path: path.into(),
        content: content.into(),
    }];
    let m = crate::source::read_folder(&files).unwrap().remove(0);
    let changes = rewrite(&m, content, &[], &crate::lint::Options::default()).unwrap();
    changes
        .iter()
        .map(|c| {
            format!(
                "==> {} ({})\n{}",
                c.path,
                if c.before.is_some() { "changed" } else { "new" },
                c.after
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn fix_splits_a_goose_migration_and_keeps_its_order() {
    insta::assert_snapshot!(rewritten(
        "00042_orders.sql",
        "-- +goose Up\nALTER TABLE orders ADD COLUMN note text;\nCREATE INDEX orders_note_idx ON orders (note);\nALTER TABLE orders RENAME COLUMN note TO remark;\n\n-- +goose Down\nDROP INDEX orders_note_idx;\n"
    ));
}

#[test]
fn fix_marks_a_lone_concurrent_build() {
    insta::assert_snapshot!(rewritten(
        "20240101000000_idx.sql",
        "-- migrate:up\nCREATE INDEX orders_note_idx ON orders (note);\n\n-- migrate:down\nDROP INDEX orders_note_idx;\n"
    ));
}

#[test]
fn a_concurrent_build_in_the_tools_transaction_moves_out() {
    let fix = fix_of(
        "CREATE INDEX CONCURRENTLY i ON t (a);",
        at(Layout::Numbered, "2_i.sql"),
    );
    assert_eq!(
        fix,
        "-- locksmith: the statement runs in a migration of its own after this one (sqlx/golang-migrate runs a file's statements in one transaction); the statements after this one move after them:\n-- file 3_i_2.sql:\n-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);"
    );
}

#[test]
fn alembic_output_gets_its_autocommit_block() {
    let sql = "BEGIN;\nCREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL);\nALTER TABLE orders ADD CONSTRAINT fk FOREIGN KEY (customer_id) REFERENCES customers (id);\nCREATE INDEX ix_orders_customer_id ON orders (customer_id);\nINSERT INTO alembic_version (version_num) VALUES ('3f2a');\nCOMMIT;\n";
    let options = text_options(&crate::lint::Options::default(), sql);
    let report = crate::lint::lint(sql, &options).unwrap();
    let fixes: Vec<&str> = report
        .statements
        .iter()
        .filter_map(|s| s.findings.iter().find_map(|f| f.fix.as_deref()))
        .collect();
    insta::assert_snapshot!(fixes.join("\n\n"));
}

#[test]
fn a_popx_file_shared_by_dialects_gets_a_postgres_one() {
    let files = [
        crate::source::SourceFile {
            path: "20200101000000000000_a.postgres.up.sql".into(),
            content: "CREATE TABLE t (a int);".into(),
        },
        crate::source::SourceFile {
            path: "20200102000000000000_i.up.sql".into(),
            content: "CREATE INDEX i ON t (a);".into(),
        },
    ];
    let ms = crate::source::read_folder(&files).unwrap();
    let changes = rewrite(
        &ms[1],
        &files[1].content,
        &ms[..1],
        &crate::lint::Options::default(),
    )
    .unwrap();
    let paths: Vec<(&str, bool)> = changes
        .iter()
        .map(|c| (c.path.as_str(), c.before.is_some()))
        .collect();
    assert_eq!(
        paths,
        [
            ("20200102000000000000_i.postgres.up.sql", false),
            ("20200102000000000001_i_2.postgres.autocommit.up.sql", false)
        ]
    );
    assert_eq!(changes[0].after, "");
    assert_eq!(
        changes[1].after,
        "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON t (a);\n"
    );
}

#[test]
fn an_added_column_keeps_not_null_and_default_beside_its_constraint() {
    let fix = fix_of(
        "ALTER TABLE users ADD COLUMN org_id bigint NOT NULL DEFAULT 1 REFERENCES orgs (id);",
        Where::default(),
    );
    assert_eq!(
        fix,
        "SET lock_timeout = '2s';\nALTER TABLE users ADD COLUMN org_id bigint NOT NULL DEFAULT 1;\nALTER TABLE users ADD CONSTRAINT users_org_id_fkey FOREIGN KEY (org_id) REFERENCES orgs (id) NOT VALID;\nALTER TABLE users VALIDATE CONSTRAINT users_org_id_fkey;"
    );
}
