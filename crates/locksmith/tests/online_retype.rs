//! `apply --online` changes a column's type that would rewrite the table
//! through a shadow column (trigger, batched fill, concurrent indexes, a
//! validated NOT NULL, one short swap): the end state is the plain
//! statement's, writes made meanwhile are kept, kill -9 at a step boundary
//! or inside the fill needs one rerun, a value that does not convert undoes
//! the change naming its row, and what cannot be done online is refused
//! before anything runs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use locksmith_sandbox::incident::Incident;
use locksmith_sandbox::traffic::{Query, Traffic, TrafficProfile};

mod support;
use support::{locksmith, query_i64, text};

const SETUP: &str = "
    CREATE TABLE accounts (
        id serial PRIMARY KEY,
        balance int NOT NULL DEFAULT 0 CHECK (balance >= 0),
        note text
    );
    CREATE INDEX accounts_balance ON accounts (balance);
    CREATE INDEX accounts_note ON accounts (note) INCLUDE (balance);
    INSERT INTO accounts (balance, note) SELECT i % 1000, 'n' || i FROM generate_series(1, 100000) AS i;
    CREATE TABLE payments (
        id serial PRIMARY KEY,
        account_id int NOT NULL REFERENCES accounts (id),
        amount int
    );
    CREATE INDEX payments_account ON payments (account_id);
    INSERT INTO payments (account_id, amount) SELECT 1 + i % 100000, i FROM generate_series(1, 20000) AS i;
    ANALYZE accounts; ANALYZE payments;";

const BALANCE: &str = "ALTER TABLE accounts ALTER COLUMN balance TYPE bigint;\n";
const ID: &str = "ALTER TABLE accounts ALTER COLUMN id TYPE bigint;\n";

async fn staged(hint: &str) -> (Incident, locksmith_pg::Connection) {
    let incident = Incident::stage_shared(hint).await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    admin.batch_execute(SETUP).await.unwrap();
    (incident, admin)
}

fn folder(sql: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("1_retype.sql"), sql).unwrap();
    dir
}

fn dir_arg(dir: &Path) -> &str {
    dir.to_str().unwrap()
}

/// Columns (type, NOT NULL, default), constraints (validated or not),
/// indexes, sequences (type, owner), triggers and functions of both tables,
/// as the catalog prints them.
async fn schema(client: &locksmith_pg::Connection) -> Vec<String> {
    let rows = client
        .query(
            "SELECT format('%s.%s %s not null=%s default=%s', attrelid::regclass, attname,
                           format_type(atttypid, atttypmod), attnotnull, pg_get_expr(d.adbin, d.adrelid))
               FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              WHERE attrelid IN ('accounts'::regclass, 'payments'::regclass) AND attnum > 0 AND NOT attisdropped
             UNION ALL
             SELECT format('%s %s %s valid=%s', conrelid::regclass, conname, pg_get_constraintdef(oid), convalidated)
               FROM pg_constraint WHERE conrelid IN ('accounts'::regclass, 'payments'::regclass)
             UNION ALL
             SELECT indexdef FROM pg_indexes WHERE tablename IN ('accounts', 'payments')
             UNION ALL
             SELECT format('sequence %s %s owned by %s', s.sequencename, s.data_type,
                           pg_describe_object(d.refclassid, d.refobjid, d.refobjsubid))
               FROM pg_sequences s
               JOIN pg_depend d ON d.objid = format('%I.%I', s.schemaname, s.sequencename)::regclass
                AND d.classid = 'pg_class'::regclass AND d.deptype = 'a'
             UNION ALL
             SELECT format('trigger %s', tgname) FROM pg_trigger WHERE NOT tgisinternal
             UNION ALL
             SELECT format('function %s', proname) FROM pg_proc WHERE proname LIKE '%locksmith%'
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// The schema the plain statement leaves.
async fn plain(hint: &str, sql: &str) -> Vec<String> {
    let (incident, admin) = staged(hint).await;
    let dir = folder(sql);
    let out = locksmith(&incident.url, &["apply", dir_arg(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    schema(&admin).await
}

#[tokio::test]
async fn a_non_key_column_changes_type_online_to_the_plain_statements_schema_keeping_writes() {
    let want = plain("retype_balance_plain", BALANCE).await;
    let (incident, admin) = staged("retype_balance").await;
    let before = query_i64(&admin, "SELECT sum(balance)::bigint FROM accounts").await;
    // Writers during the change: each update adds 1, each insert a row of balance 1.
    let traffic = Traffic::start(
        incident.admin.with_application_name("web-app"),
        TrafficProfile {
            rate: 60.0,
            pool_size: 8,
            queries: vec![
                Query {
                    sql: "UPDATE accounts SET balance = balance + 1 WHERE id = $1 * 7919 % 100000 + 1"
                        .into(),
                    share: 2.0,
                },
                Query {
                    sql: "INSERT INTO accounts (balance, note) VALUES (1, 'new')".into(),
                    share: 1.0,
                },
            ],
            keys: 100_000,
            gateway_timeout: Duration::from_secs(30),
        },
    );
    let dir = folder(BALANCE);
    let url = incident.url.clone();
    let d = dir_arg(dir.path()).to_string();
    let out = tokio::task::spawn_blocking(move || locksmith(&url, &["apply", &d, "--online"]))
        .await
        .unwrap();
    let writes = traffic.stop().await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(writes.errors, 0, "{:?}", writes.first_errors);
    assert!(
        writes.max_stall_ms < 2_000,
        "a write waited {} ms",
        writes.max_stall_ms
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("ADD COLUMN balance_locksmith_new bigint"),
        "{said}"
    );
    assert_eq!(schema(&admin).await, want);
    // Every write reached the new column: the sum grew by exactly one per write.
    assert_eq!(
        query_i64(&admin, "SELECT sum(balance)::bigint FROM accounts").await,
        before + writes.requests as i64
    );
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_online_steps").await,
        0
    );
}

#[tokio::test]
async fn a_primary_key_referenced_by_a_foreign_key_changes_type_online() {
    let mut want = plain("retype_id_plain", ID).await;
    let (incident, admin) = staged("retype_id").await;
    let dir = folder(ID);
    let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The one difference, on purpose: the sequence is widened with its column.
    let plain_sequence = "sequence accounts_id_seq integer owned by column id of table accounts";
    assert!(want.contains(&plain_sequence.to_string()), "{want:#?}");
    for line in want.iter_mut().filter(|l| *l == plain_sequence) {
        *line = "sequence accounts_id_seq bigint owned by column id of table accounts".into();
    }
    want.sort();
    assert_eq!(schema(&admin).await, want);
    // The sequence goes on above the largest id, and the foreign key holds.
    let next = query_i64(
        &admin,
        "INSERT INTO accounts (balance) VALUES (1) RETURNING id",
    )
    .await;
    assert_eq!(next, 100_001);
    admin
        .batch_execute("INSERT INTO payments (account_id, amount) VALUES (100001, 1)")
        .await
        .unwrap();
    assert!(admin
        .batch_execute("INSERT INTO payments (account_id, amount) VALUES (999999, 1)")
        .await
        .is_err());
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM payments").await,
        20_001
    );
}

/// kill -9 after two recorded steps, after five, and inside the fill, then
/// one rerun each: it finishes, and the schema is the plain statement's
/// (the sequence widened).
#[tokio::test]
async fn kill_9_at_step_boundaries_and_inside_the_fill_needs_one_rerun() {
    let mut want = plain("retype_kill_plain", ID).await;
    for line in want
        .iter_mut()
        .filter(|l| l.starts_with("sequence accounts_id_seq"))
    {
        *line = line.replace(" integer ", " bigint ");
    }
    want.sort();
    let faults = [
        ("SELECT count(*) FROM locksmith_online_steps WHERE done", 2_i64),
        ("SELECT coalesce(max(rows_done), 0)::bigint FROM locksmith_online_steps WHERE NOT done AND unit >= 0", 20_000),
        ("SELECT count(*) FROM locksmith_online_steps WHERE done", 5),
    ];
    for (n, (progress, at)) in faults.into_iter().enumerate() {
        let (incident, admin) = staged(&format!("retype_kill_{n}")).await;
        let dir = folder(ID);
        let mut child = Command::new(env!("CARGO_BIN_EXE_locksmith"))
            .args(["apply", dir_arg(dir.path()), "--online"])
            .env("DATABASE_URL", &incident.url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        loop {
            // (An error until the run creates the table.)
            let done = admin
                .query_one(progress, &[])
                .await
                .map(|r| r.get::<_, i64>(0))
                .unwrap_or(0);
            if done >= at {
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "fault {n}: the run ended first"
            );
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "fault {n}: {done}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
            0,
            "fault {n}"
        );
        let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
        assert_eq!(out.status.code(), Some(0), "fault {n}: {}", text(&out));
        assert_eq!(schema(&admin).await, want, "fault {n}");
        assert_eq!(
            query_i64(&admin, "SELECT count(*) FROM accounts WHERE id IS NULL").await,
            0
        );
    }
}

/// A value that does not convert fails the fill, before the swap: the
/// message names the row, and the change is undone (no shadow column, no
/// trigger, no progress): the table is as it was.
#[tokio::test]
async fn a_value_that_does_not_convert_names_its_row_and_leaves_nothing_behind() {
    let (incident, admin) = staged("retype_bad_value").await;
    admin
        .batch_execute("ALTER TABLE accounts ALTER COLUMN note SET DEFAULT '0'; UPDATE accounts SET note = id::text; UPDATE accounts SET note = 'seven' WHERE id = 777")
        .await
        .unwrap();
    let before = schema(&admin).await;
    let dir = folder("ALTER TABLE accounts ALTER COLUMN note TYPE int USING note::int;\n");
    let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("invalid input syntax for type integer: \"seven\""),
        "{said}"
    );
    assert!(said.contains("rows where \"id\" = 777"), "{said}");
    assert!(said.contains("undone"), "{said}");
    assert_eq!(schema(&admin).await, before);
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_online_steps").await,
        0
    );
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        0
    );
}

/// A view on the column is refused before anything runs, saying what to do.
#[tokio::test]
async fn a_dependent_view_is_refused_before_anything_runs() {
    let (incident, admin) = staged("retype_view").await;
    admin
        .batch_execute("CREATE VIEW rich AS SELECT id FROM accounts WHERE balance > 900")
        .await
        .unwrap();
    let before = schema(&admin).await;
    let dir = folder(BALANCE);
    let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("view rich depends on the column"), "{said}");
    assert!(said.contains("Nothing was run"), "{said}");
    assert_eq!(schema(&admin).await, before);
}

/// kill -9 after the swap, while a check re-added `NOT VALID` is being
/// validated (slowly: its function sleeps on one row): the rerun plans from
/// the facts kept when the change began, though the column is `bigint` by
/// now, and finishes.
#[tokio::test]
async fn kill_9_after_the_swap_then_one_rerun_finishes_from_the_kept_facts() {
    let (incident, admin) = staged("retype_after_swap").await;
    admin
        .batch_execute(
            "CREATE FUNCTION slow_check(id bigint) RETURNS boolean IMMUTABLE LANGUAGE plpgsql
               AS $$ BEGIN IF id = 1 THEN PERFORM pg_sleep(3); END IF; RETURN true; END $$;
             ALTER TABLE accounts ADD CONSTRAINT slow CHECK (slow_check(id));",
        )
        .await
        .unwrap();
    let dir = folder(ID);
    let mut child = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["apply", dir_arg(dir.path()), "--online"])
        .env("DATABASE_URL", &incident.url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let swapped = admin
            .query_one(
                "SELECT format_type(atttypid, atttypmod) = 'bigint' FROM pg_attribute
                  WHERE attrelid = 'accounts'::regclass AND attname = 'id'",
                &[],
            )
            .await
            .map(|r| r.get::<_, bool>(0))
            .unwrap_or(false);
        if swapped {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the run ended first");
        assert!(started.elapsed() < Duration::from_secs(60), "never swapped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_constraint WHERE conname IN ('slow', 'payments_account_id_fkey') AND NOT convalidated"
        )
        .await,
        2
    );
    let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_constraint WHERE conname IN ('slow', 'payments_account_id_fkey') AND convalidated"
        )
        .await,
        2
    );
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        1
    );
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_online_steps").await,
        0
    );
}
