use std::collections::BTreeSet;

use super::*;
use crate::analysis::analyze;
use crate::lock::LockMode;

fn planned(sql: &str) -> Online {
    planned_after(sql, &[])
}

fn planned_after(sql: &str, created: &[&str]) -> Online {
    let s = analyze(sql, 18).unwrap().remove(0);
    let created: BTreeSet<String> = created.iter().map(|c| c.to_string()).collect();
    plan(&s, &created, 18)
}

fn steps(sql: &str) -> Vec<OnlineStep> {
    match planned(sql) {
        Online::Steps(steps) => steps,
        other => panic!("{sql}: {other:?}"),
    }
}

fn sqls(steps: &[OnlineStep]) -> Vec<&str> {
    steps.iter().map(|s| s.statement.sql.as_str()).collect()
}

/// No step of a plan blocks traffic while it reads or builds: the point of it.
fn assert_online(steps: &[OnlineStep]) {
    for step in steps {
        let s = &step.statement;
        for r in s.rewrites.iter().chain(&s.scans) {
            let mode = s.lock_on(r).unwrap();
            assert!(
                !mode.blocks_traffic(),
                "{}: {mode} while reading {r}",
                s.sql
            );
        }
        // Planning a step again gives the step itself: it is already online.
        assert_eq!(plan(s, &BTreeSet::new(), 18), Online::AsIs, "{}", s.sql);
    }
}

#[test]
fn unique_constraint_becomes_a_concurrent_index_then_adopted() {
    let steps = steps("ALTER TABLE academic_partners ADD CONSTRAINT u UNIQUE (informal_name)");
    assert_eq!(
        sqls(&steps),
        [
            "CREATE UNIQUE INDEX CONCURRENTLY u ON academic_partners (informal_name)",
            "ALTER TABLE academic_partners ADD CONSTRAINT u UNIQUE USING INDEX u",
        ]
    );
    assert!(!steps[0].statement.transactional);
    assert!(steps[1].statement.transactional);
    assert!(steps.iter().all(|s| s.done_when.is_some()));
    assert_online(&steps);
}

#[test]
fn unnamed_unique_gets_postgres_default_name() {
    let steps = steps("ALTER TABLE t ADD UNIQUE (a, b)");
    assert!(
        sqls(&steps)[0].contains(" t_a_b_key ON t (a, b)"),
        "{:?}",
        sqls(&steps)
    );
}

#[test]
fn primary_key_proves_not_null_first() {
    let steps = steps("ALTER TABLE t ADD PRIMARY KEY (id)");
    let sqls = sqls(&steps);
    assert_eq!(sqls.len(), 6, "{sqls:?}");
    assert!(
        sqls[0].ends_with("CHECK (id IS NOT NULL) NOT VALID"),
        "{sqls:?}"
    );
    assert!(sqls[1].contains("VALIDATE CONSTRAINT"));
    assert!(sqls[2].ends_with("SET NOT NULL"));
    assert!(sqls[3].contains("DROP CONSTRAINT IF EXISTS"));
    assert!(sqls[4].starts_with("CREATE UNIQUE INDEX CONCURRENTLY t_pkey"));
    assert!(sqls[5].ends_with("PRIMARY KEY USING INDEX t_pkey"));
    assert_online(&steps);
}

#[test]
fn foreign_key_and_check_are_added_not_valid_then_validated() {
    for sql in [
        "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id)",
        "ALTER TABLE orders ADD CONSTRAINT positive CHECK (amount > 0)",
    ] {
        let steps = steps(sql);
        assert_eq!(steps.len(), 2, "{sql}");
        assert!(steps[0].statement.sql.ends_with(" NOT VALID"), "{sql}");
        assert!(steps[1].statement.sql.contains("VALIDATE CONSTRAINT"));
        assert_eq!(
            steps[1].statement.lock_on("orders"),
            Some(LockMode::ShareUpdateExclusive)
        );
        assert_online(&steps);
    }
}

#[test]
fn set_not_null_goes_through_a_validated_check() {
    let steps = steps("ALTER TABLE users ALTER COLUMN email SET NOT NULL");
    assert_eq!(steps.len(), 4);
    assert!(steps[2].statement.scans.is_empty(), "proven by the check");
    assert_online(&steps);
}

#[test]
fn index_statements_become_concurrent() {
    let create = steps("CREATE UNIQUE INDEX IF NOT EXISTS i ON t (a) WHERE b");
    assert_eq!(
        sqls(&create),
        ["CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a) WHERE b"]
    );
    assert!(create[0].done_when.is_some());
    assert_online(&create);
    let drop = steps("DROP INDEX i, j");
    assert_eq!(
        sqls(&drop),
        [
            "DROP INDEX CONCURRENTLY IF EXISTS i",
            "DROP INDEX CONCURRENTLY IF EXISTS j"
        ]
    );
    assert_online(&drop);
    let refresh = steps("REFRESH MATERIALIZED VIEW daily");
    assert_eq!(
        sqls(&refresh),
        ["REFRESH MATERIALIZED VIEW CONCURRENTLY daily"]
    );
    assert_online(&refresh);
    let reindex = steps("REINDEX (VERBOSE) TABLE t");
    assert_eq!(sqls(&reindex), ["REINDEX (VERBOSE) TABLE CONCURRENTLY t"]);
    assert_online(&reindex);
}

#[test]
fn what_has_no_online_form_is_refused_with_what_to_do() {
    for (sql, says) in [
        (
            "ALTER TABLE t ALTER COLUMN a TYPE bigint",
            "Expand and contract",
        ),
        ("CREATE INDEX ON t (a)", "name the index"),
        ("DROP INDEX i CASCADE", "CASCADE"),
        (
            "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a), ADD COLUMN b int",
            "one statement per subcommand",
        ),
        ("VACUUM FULL t", "pg_repack"),
    ] {
        match planned(sql) {
            Online::Refused(why) => assert!(why.contains(says), "{sql}: {why}"),
            other => panic!("{sql}: {other:?}"),
        }
    }
}

#[test]
fn brief_locks_and_new_tables_stay_as_written() {
    for sql in [
        "ALTER TABLE t ADD COLUMN a int",
        "ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u (id) NOT VALID",
        "ALTER TABLE t VALIDATE CONSTRAINT f",
        "CREATE INDEX CONCURRENTLY i ON t (a)",
        "UPDATE t SET a = 1 WHERE id = 2",
        "CREATE TABLE n (id int)",
    ] {
        assert_eq!(planned(sql), Online::AsIs, "{sql}");
    }
    assert_eq!(
        planned_after("ALTER TABLE n ADD CONSTRAINT u UNIQUE (a)", &["n"]),
        Online::AsIs
    );
    assert_eq!(
        planned_after("CREATE INDEX i ON n (a)", &["n"]),
        Online::AsIs
    );
}

#[test]
fn quoted_and_qualified_names_survive() {
    let steps = steps(r#"ALTER TABLE app."Users" ADD CONSTRAINT "Weird""Name" UNIQUE ("E-mail")"#);
    assert_eq!(
        sqls(&steps)[0],
        r#"CREATE UNIQUE INDEX CONCURRENTLY "Weird""Name" ON app."Users" ("E-mail")"#
    );
    assert!(steps[0]
        .done_when
        .as_deref()
        .unwrap()
        .contains(r#"'"app"."Weird""Name"'"#));
}

#[test]
fn a_migration_becomes_units_with_kept_statements_grouped() {
    let statements = analyze(
        "CREATE TABLE n (id int);
         ALTER TABLE n ADD CONSTRAINT n_u UNIQUE (id);
         ALTER TABLE t ADD CONSTRAINT u UNIQUE (a);
         ALTER TABLE t ADD COLUMN b int;
         COMMENT ON TABLE t IS 'x';",
        18,
    )
    .unwrap();
    let planned = units(&statements, 18).unwrap().unwrap();
    let shape: Vec<(usize, bool, bool)> = planned
        .iter()
        .map(|u| (u.statements.len(), u.transactional, u.done_when.is_some()))
        .collect();
    // The new table and its constraint as written; the index concurrently;
    // the adoption; then the rest together.
    assert_eq!(
        shape,
        [
            (2, true, false),
            (1, false, true),
            (1, true, true),
            (2, true, false)
        ]
    );
    // Nothing to change: run as written.
    let plain = analyze(
        "ALTER TABLE t ADD COLUMN c int; CREATE INDEX CONCURRENTLY i ON t (c);",
        18,
    )
    .unwrap();
    assert_eq!(units(&plain, 18), Ok(None));
    // One refusal refuses the migration, naming the statement.
    let bad = analyze("ALTER TABLE t ADD COLUMN c int; VACUUM FULL t;", 18).unwrap();
    assert_eq!(units(&bad, 18).unwrap_err().index, 1);
    // A type change that rewrites is a unit of its own, expanded from the catalog's facts.
    let retype = analyze(
        "ALTER TABLE t ADD COLUMN c int; ALTER TABLE t ALTER COLUMN a TYPE bigint;",
        18,
    )
    .unwrap();
    let planned = units(&retype, 18).unwrap().unwrap();
    assert_eq!(
        planned[1].unexpanded().map(|r| r.column.as_str()),
        Some("a")
    );
}

#[test]
fn a_volatile_default_becomes_column_default_and_batched_backfill() {
    let steps = steps("ALTER TABLE t ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid()");
    let sqls = sqls(&steps);
    assert_eq!(sqls[0], "ALTER TABLE t ADD COLUMN token uuid");
    assert_eq!(
        sqls[1],
        "ALTER TABLE t ALTER COLUMN token SET DEFAULT gen_random_uuid()"
    );
    assert!(sqls[2].starts_with("DO $locksmith$"), "{}", sqls[2]);
    assert!(
        !steps[2].statement.transactional,
        "the backfill commits its batches"
    );
    assert_eq!(steps.len(), 3 + 4, "NOT NULL through a validated check");
    assert_online(&steps);
    // Without NOT NULL: no check steps.
    assert_eq!(
        self::steps("ALTER TABLE t ADD COLUMN r float8 DEFAULT random()").len(),
        3
    );
}

#[test]
fn an_update_of_an_existing_table_is_a_batched_unit_of_its_own() {
    let statements = analyze(
        "CREATE TABLE notes (id int);
         UPDATE notes SET id = 1;
         UPDATE accounts SET balance = balance + 1 WHERE balance > 0;
         CREATE INDEX notes_id ON notes (id);",
        18,
    )
    .unwrap();
    let units = units(&statements, 18).unwrap().unwrap();
    // The new table's UPDATE joins its CREATE; the other is batched alone.
    assert_eq!(units.len(), 3);
    assert!(units[0].batch.is_none());
    assert_eq!(units[0].statements.len(), 2);
    let batch = units[1].batch.as_ref().unwrap();
    assert_eq!(batch.table, "accounts");
    assert_eq!(batch.condition.as_deref(), Some("balance > 0"));
    assert!(units[2].batch.is_none());
}

#[test]
fn an_update_that_batches_would_change_is_refused_at_its_place() {
    let statements = analyze(
        "CREATE INDEX CONCURRENTLY a_b ON accounts (b);
         UPDATE accounts SET b = p.b FROM payments p WHERE p.id = accounts.id;",
        18,
    )
    .unwrap();
    let refusal = units(&statements, 18).unwrap_err();
    assert_eq!(refusal.index, 1);
    assert!(refusal.why.contains("FROM"), "{}", refusal.why);
}
