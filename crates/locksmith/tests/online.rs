//! `apply --online` end to end: blocking statements run as their online
//! equivalents, reach the same schema as the plain migration, resume after an
//! interruption without redoing finished steps, and what has no online form is
//! refused before anything runs.

use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::online::{
    assert_finished, assert_not_applied, folder, progress, spawn_online, staged, staged_on,
};
use support::{dir_arg, locksmith, query_i64, text};

const SETUP: &str = "
    CREATE TABLE enrollments (id int, partner_id int, amount int);
    INSERT INTO enrollments SELECT i, 1 + i % 250, 1 + i % 7 FROM generate_series(1, 5000) AS i;";

const MIGRATION: &str = "\
ALTER TABLE academic_partners ADD CONSTRAINT unique_informal_name UNIQUE (informal_name);
CREATE INDEX enrollments_amount ON enrollments (amount);
ALTER TABLE enrollments ADD CONSTRAINT enrollments_partner_fk FOREIGN KEY (partner_id) REFERENCES academic_partners (id);
ALTER TABLE enrollments ADD CONSTRAINT positive CHECK (amount > 0);
ALTER TABLE enrollments ALTER COLUMN amount SET NOT NULL;
ALTER TABLE enrollments ADD PRIMARY KEY (id);
";

/// The one migration file of these tests.
const FILE: &str = "1_constraints.sql";

/// Columns, constraints and indexes of the two tables, as the catalog renders them.
async fn schema(client: &locksmith_pg::Connection) -> Vec<String> {
    let rows = client
        .query(
            "SELECT format('%s.%s %s not null=%s', attrelid::regclass, attname, format_type(atttypid, atttypmod), attnotnull)
               FROM pg_attribute WHERE attrelid IN ('academic_partners'::regclass, 'enrollments'::regclass) AND attnum > 0
             UNION ALL
             SELECT format('%s %s %s %s', conrelid::regclass, conname, pg_get_constraintdef(oid), convalidated)
               FROM pg_constraint WHERE conrelid IN ('academic_partners'::regclass, 'enrollments'::regclass)
             UNION ALL
             SELECT indexdef FROM pg_indexes WHERE tablename IN ('academic_partners', 'enrollments')
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

#[tokio::test]
async fn online_reaches_the_same_schema_as_the_plain_migration() {
    let (plain, plain_admin) = staged("online_plain", SETUP).await;
    let (online, online_admin) = staged("online_online", SETUP).await;
    let dir = folder(FILE, MIGRATION);

    let out = locksmith(&plain.url, &["apply", dir_arg(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = locksmith(
        &online.url,
        &["apply", dir_arg(dir.path()), "--online", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "applied");

    let (a, b) = (schema(&plain_admin).await, schema(&online_admin).await);
    assert_eq!(a, b);
    assert!(
        b.iter()
            .any(|l| l.contains("unique_informal_name UNIQUE (informal_name)")),
        "{b:#?}"
    );
    assert!(
        b.iter()
            .any(|l| l.contains("enrollments_pkey PRIMARY KEY (id)")),
        "{b:#?}"
    );
    assert!(
        !b.iter().any(|l| l.contains("not_null_check")),
        "helper checks dropped: {b:#?}"
    );
    assert_finished(&online_admin, 1).await;

    let again = locksmith(&online.url, &["apply", dir_arg(dir.path()), "--online"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        text(&again).contains("Nothing to apply"),
        "{}",
        text(&again)
    );
}

#[tokio::test]
async fn a_failed_step_resumes_where_it_stopped() {
    let (incident, admin) = staged("online_resume", SETUP).await;
    // A row that breaks the CHECK: its validation step fails.
    admin
        .batch_execute("UPDATE enrollments SET amount = -1 WHERE id = 7")
        .await
        .unwrap();
    let dir = folder(FILE, MIGRATION);
    let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("online step 7 of 17"), "{}", text(&out));
    assert!(text(&out).contains("resume"), "{}", text(&out));
    // The steps before it are done and recorded; the migration is not.
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_online_steps").await,
        6
    );
    assert_not_applied(&admin).await;
    let index_before = query_i64(
        &admin,
        "SELECT 'unique_informal_name'::regclass::oid::bigint",
    )
    .await;

    admin
        .batch_execute("UPDATE enrollments SET amount = 1 WHERE id = 7")
        .await
        .unwrap();
    let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Each step is labelled as it starts, the resumed ones as skipped.
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(
        progress.contains("online step 1 of 17 (done by an earlier run, skipped): CREATE UNIQUE INDEX CONCURRENTLY"),
        "{progress}"
    );
    assert!(progress.contains("online step 7 of 17: "), "{progress}");
    assert!(
        !progress.contains("online step 7 of 17 (done"),
        "{progress}"
    );
    let index_after = query_i64(
        &admin,
        "SELECT 'unique_informal_name'::regclass::oid::bigint",
    )
    .await;
    assert_eq!(
        index_before, index_after,
        "the finished index build was not redone"
    );
    assert_finished(&admin, 1).await;
}

#[tokio::test]
async fn kill_9_mid_plan_then_one_rerun_finishes_without_redoing_steps() {
    let (incident, admin) = staged("online_kill", SETUP).await;
    // A slow statement kept as written after the index steps: the kill lands there.
    let sql = format!("{MIGRATION}SELECT pg_sleep(8);\n");
    let dir = folder(FILE, &sql);
    let mut child = spawn_online(&incident.url, dir.path(), &[]);
    // Every online step before the sleep is recorded: 2 (unique) + 1 + 2 + 2 + 4 + 6 (primary key) = 17.
    let started = Instant::now();
    loop {
        let done = progress(&admin, "SELECT count(*) FROM locksmith_online_steps").await;
        if done >= 17 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {done} steps recorded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_not_applied(&admin).await;
    let index_before = query_i64(&admin, "SELECT 'enrollments_pkey'::regclass::oid::bigint").await;

    let rerun = tempfile::tempdir().unwrap();
    std::fs::write(rerun.path().join("1_constraints.sql"), &sql).unwrap();
    // The killed run's backend may sleep on until it notices its client is
    // gone, holding the runner lock; the rerun waits for it, then resumes.
    let out = locksmith(&incident.url, &["apply", dir_arg(rerun.path()), "--online"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let index_after = query_i64(&admin, "SELECT 'enrollments_pkey'::regclass::oid::bigint").await;
    assert_eq!(index_before, index_after, "finished steps were not redone");
    assert_finished(&admin, 1).await;
}

#[tokio::test]
async fn dry_run_prints_the_online_plan_and_runs_nothing() {
    let (incident, admin) = staged("online_dry", SETUP).await;
    let dir = folder(FILE, MIGRATION);
    let out = locksmith(
        &incident.url,
        &[
            "apply",
            dir_arg(dir.path()),
            "--online",
            "--dry-run",
            "--format",
            "json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    let units = plan["migrations"][0]["online"].as_array().unwrap();
    assert_eq!(units[0]["transaction"], false);
    assert_eq!(
        units[0]["statements"][0]["sql"],
        "CREATE UNIQUE INDEX CONCURRENTLY unique_informal_name ON academic_partners (informal_name)"
    );
    let human = locksmith(
        &incident.url,
        &["apply", dir_arg(dir.path()), "--online", "--dry-run"],
    );
    assert!(
        text(&human).contains("step 1 (no transaction"),
        "{}",
        text(&human)
    );
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'unique_informal_name'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn a_statement_without_online_form_is_refused_before_anything_runs() {
    let (incident, admin) = staged("online_refuse", SETUP).await;
    let dir = folder(
        FILE,
        "ALTER TABLE academic_partners ADD CONSTRAINT unique_informal_name UNIQUE (informal_name);\n\
         ALTER TABLE enrollments ALTER COLUMN amount TYPE bigint, ADD COLUMN note text;\n",
    );
    let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("1_constraints.sql:2:1"), "{said}");
    assert!(said.contains("Split the ALTER TABLE"), "{said}");
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'unique_informal_name'"
        )
        .await,
        0
    );
}

/// A type change that rewrites, on a column whose type only the server
/// knows (`bigint → numeric`), is judged by the live catalog, not by the
/// file alone: planned through a shadow column, here refused before
/// anything runs because the table has no key to fill it in batches over.
#[tokio::test]
async fn a_rewriting_type_change_known_only_to_the_server_is_refused_online() {
    let (incident, admin) = staged("online_type_live", SETUP).await;
    admin
        .batch_execute("ALTER TABLE enrollments ADD COLUMN total bigint")
        .await
        .unwrap();
    let before = query_i64(&admin, "SELECT pg_relation_filenode('enrollments')::bigint").await;
    let dir = folder(
        FILE,
        "CREATE TABLE notes (id int);\nALTER TABLE enrollments ALTER COLUMN total TYPE numeric;\n",
    );
    let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains("1_constraints.sql:2:1"), "{said}");
    assert!(said.contains("no single-column primary key"), "{said}");
    assert!(said.contains("Nothing was run"), "{said}");
    // Nothing ran: no table, no rewrite, no history row.
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_class WHERE relname = 'notes'"
        )
        .await,
        0
    );
    assert_eq!(
        query_i64(&admin, "SELECT pg_relation_filenode('enrollments')::bigint").await,
        before
    );
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'enrollments' AND column_name = 'total' AND data_type = 'bigint'"
        )
        .await,
        1
    );
}

/// Online steps that block no traffic (a concurrent build, a VALIDATE) run
/// to their end however long they take: `--deadline` bounds waiting for
/// locks, never running work (a build cut off at the deadline was dropped
/// and started again by every rerun).
#[tokio::test]
async fn online_steps_that_block_no_traffic_outlive_the_deadline() {
    let (incident, admin) = staged("online_deadline", SETUP).await;
    // A scan of the 5000 rows takes about 1.5 s: each step runs past the deadline.
    admin
        .batch_execute(
            "CREATE FUNCTION slow(int) RETURNS int IMMUTABLE LANGUAGE plpgsql
               AS $$ BEGIN PERFORM pg_sleep(0.0003); RETURN $1; END $$",
        )
        .await
        .unwrap();
    let dir = folder(
        FILE,
        "CREATE INDEX enrollments_slow ON enrollments (slow(amount));\n\
         ALTER TABLE enrollments ADD CONSTRAINT slow_positive CHECK (slow(amount) > 0);\n",
    );
    let started = Instant::now();
    let out = locksmith(
        &incident.url,
        &["apply", dir_arg(dir.path()), "--online", "--deadline", "1s"],
    );
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        took > Duration::from_secs(2),
        "took {took:?}: the steps did not run past the 1 s deadline, so this proves nothing"
    );
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_index WHERE indexrelid = 'enrollments_slow'::regclass AND indisvalid"
        )
        .await,
        1
    );
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'slow_positive' AND convalidated"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn a_volatile_default_is_backfilled_in_batches_to_the_same_result() {
    let (plain, plain_admin) = staged("online_default_plain", SETUP).await;
    let (online, online_admin) = staged("online_default_online", SETUP).await;
    let dir = folder(
        FILE,
        "ALTER TABLE enrollments ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid();\n",
    );
    let out = locksmith(&plain.url, &["apply", dir_arg(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let before = query_i64(
        &online_admin,
        "SELECT pg_relation_filenode('enrollments')::bigint",
    )
    .await;
    let out = locksmith(&online.url, &["apply", dir_arg(dir.path()), "--online"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    assert_eq!(schema(&plain_admin).await, schema(&online_admin).await);
    // Every existing row got its own value, and the table was never rewritten.
    assert_eq!(
        query_i64(
            &online_admin,
            "SELECT count(DISTINCT token) FROM enrollments"
        )
        .await,
        5000
    );
    let after = query_i64(
        &online_admin,
        "SELECT pg_relation_filenode('enrollments')::bigint",
    )
    .await;
    assert_eq!(before, after, "no rewrite");
    // New rows get the default.
    online_admin
        .batch_execute("INSERT INTO enrollments (id, partner_id, amount) VALUES (9999, 1, 1)")
        .await
        .unwrap();
    assert_eq!(
        query_i64(
            &online_admin,
            "SELECT count(*) FROM enrollments WHERE token IS NULL"
        )
        .await,
        0
    );
}

/// The same comparison on every PostgreSQL major the machine has (CI lists
/// 13 to 18 in `LOCKSMITH_PG_BINS`): lock and catalog behaviour differ
/// between versions, and the plan must hold on each.
#[tokio::test]
async fn online_reaches_the_same_schema_on_every_version() {
    use locksmith_sandbox::bin_dir::BinDir;
    use locksmith_sandbox::cluster::{Cluster, ClusterOptions};
    let mut bins = BinDir::listed().unwrap();
    bins.extend(BinDir::find(None).ok());
    bins.sort_by_key(|b| b.major);
    bins.dedup_by_key(|b| b.major);
    let dir = folder(FILE, MIGRATION);
    for bin in bins {
        let major = bin.major;
        let cluster = Cluster::start_with(ClusterOptions {
            bin: Some(bin),
            ..ClusterOptions::default()
        })
        .unwrap();
        let mut schemas = Vec::new();
        for online in [false, true] {
            let db = format!("versions_{online}");
            let (incident, admin) = staged_on(&cluster, &db, SETUP).await;
            let version = major.to_string();
            let mut args = vec!["apply", dir_arg(dir.path()), "--pg-version", &version];
            if online {
                args.push("--online");
            }
            let out = locksmith(&incident.url, &args);
            assert_eq!(out.status.code(), Some(0), "PG {major}: {}", text(&out));
            schemas.push(schema(&admin).await);
        }
        assert_eq!(schemas[0], schemas[1], "PG {major}");
    }
}

/// kill -9 of `apply --online`, or a server restart, at points spread over
/// the plan (after 0, 3, 7, 11 and 15 recorded steps), then one rerun: it
/// always finishes, and the schema is the plain migration's.
#[tokio::test]
async fn a_fault_at_any_step_needs_one_rerun() {
    let (plain, plain_admin) = staged("online_faults_plain", SETUP).await;
    let dir = folder(FILE, MIGRATION);
    let out = locksmith(&plain.url, &["apply", dir_arg(dir.path())]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let want = schema(&plain_admin).await;

    let mut cluster = locksmith_sandbox::Cluster::start().unwrap();
    for (i, after) in [0_i64, 3, 7, 11, 15].into_iter().enumerate() {
        let restart = i % 2 == 1;
        let db = format!("faults_{i}");
        let (incident, admin) = staged_on(&cluster, &db, SETUP).await;
        let mut child = spawn_online(&incident.url, dir.path(), &[]);
        // Wait until that many steps are recorded, or the run has ended.
        let started = Instant::now();
        loop {
            let done = progress(&admin, "SELECT count(*) FROM locksmith_online_steps").await;
            if done >= after || child.try_wait().unwrap().is_some() {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "step {after} never came"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if restart {
            cluster.restart().unwrap();
        }
        let _ = child.kill();
        child.wait().unwrap();
        let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "rerun after a {} at step {after}: {}",
            if restart { "restart" } else { "kill -9" },
            text(&out)
        );
        let admin = incident.admin.connect().await.unwrap();
        assert_eq!(schema(&admin).await, want, "after a fault at step {after}");
        assert_finished(&admin, 1).await;
    }
}

/// The dry run shows every online step whole: a backfill is a block of
/// several lines, and cut with "…" nobody could check what it does.
#[tokio::test]
async fn the_dry_run_shows_a_backfill_whole() {
    let (incident, _admin) = staged("online_dry_backfill", SETUP).await;
    let dir = folder(
        FILE,
        "ALTER TABLE enrollments ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid();\n",
    );
    let out = locksmith(
        &incident.url,
        &["apply", dir_arg(dir.path()), "--online", "--dry-run"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("WHILE page <= pages LOOP"), "{said}");
    assert!(said.contains("      $locksmith$;"), "{said}");
    let steps = &said[said.find("online plan").unwrap()..];
    assert!(!steps.contains('…'), "a step was cut: {said}");
}

/// A migration edited after a failed online run is not resumed by step
/// number: the step recorded at a place must still be the step planned
/// there, or the run stops saying so (before, the new first statement was
/// skipped as "done" and the migration recorded as applied without it).
#[tokio::test]
async fn an_online_migration_edited_after_a_failure_is_not_resumed_blindly() {
    let (incident, admin) = staged("online_edited", SETUP).await;
    let dir = folder(
        FILE,
        "CREATE INDEX enrollments_amount ON enrollments (amount);\n\
         ALTER TABLE enrollments ADD COLUMN x int DEFAULT 1/0;\n",
    );
    let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("division by zero"), "{}", text(&out));
    // The index step was done and recorded; then the file is edited.
    std::fs::write(
        dir.path().join("1_constraints.sql"),
        "CREATE TABLE notes (id int);\n\
         CREATE INDEX enrollments_amount ON enrollments (amount);\n\
         ALTER TABLE enrollments ADD COLUMN x int DEFAULT 1;\n",
    )
    .unwrap();
    let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("online step 1 of 3 was done and recorded by an earlier run"),
        "{said}"
    );
    assert!(said.contains("edited"), "{said}");
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_class WHERE relname = 'notes'"
        )
        .await,
        0
    );
    assert_not_applied(&admin).await;
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'enrollments' AND column_name = 'x'"
        )
        .await,
        0
    );
}

/// A VALIDATE that fails leaves its NOT VALID constraint in place, and that
/// constraint already rejects new rows: the message says so, with the
/// statement that removes it, instead of claiming a roll back.
#[tokio::test]
async fn a_failed_validate_says_what_it_left_and_how_to_remove_it() {
    let (incident, admin) = staged("online_validate_fails", SETUP).await;
    let dir = folder(
        FILE,
        "ALTER TABLE enrollments ADD CONSTRAINT big CHECK (amount > 5);\n",
    );
    let out = locksmith(
        &incident.url,
        &["apply", dir_arg(dir.path()), "--online", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("online step 2 of 2 failed"), "{error}");
    assert!(
        error.contains(
            "step 1: ALTER TABLE enrollments ADD CONSTRAINT big CHECK (amount > 5) NOT VALID"
        ),
        "{error}"
    );
    assert!(error.contains("it already rejects new rows"), "{error}");
    assert!(!error.contains("rolled back"), "{error}");
    // What it says is true: the constraint is there, not validated, and
    // rejects a new row; the statement it names removes it.
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'big' AND NOT convalidated"
        )
        .await,
        1
    );
    assert!(admin
        .batch_execute("INSERT INTO enrollments VALUES (0, 1, 1)")
        .await
        .is_err());
    let remove = "ALTER TABLE enrollments DROP CONSTRAINT big";
    assert!(error.contains(remove), "{error}");
    admin.batch_execute(remove).await.unwrap();
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'big'"
        )
        .await,
        0
    );
}

/// A file's own `BEGIN … COMMIT` is not split into separately committed
/// online steps without a word.
#[tokio::test]
async fn splitting_a_files_own_transaction_is_said() {
    let (incident, admin) = staged("online_split", SETUP).await;
    let dir = folder(
        FILE,
        "BEGIN;\nALTER TABLE academic_partners ADD CONSTRAINT unique_informal_name UNIQUE (informal_name);\nCOMMIT;\n",
    );
    let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("1_constraints.sql wraps its statements in BEGIN … COMMIT, but --online runs them as 2 steps"),
        "{said}"
    );
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_constraint WHERE conname = 'unique_informal_name'"
        )
        .await,
        1
    );
}

/// An online plan PostgreSQL would refuse on a partitioned table (an index
/// built CONCURRENTLY on the parent) is refused before anything runs, the
/// dry run included, with the partition-by-partition way.
#[tokio::test]
async fn a_concurrent_build_on_a_partitioned_table_is_refused_up_front() {
    let (incident, admin) = staged("online_partitioned", SETUP).await;
    admin
        .batch_execute(
            "CREATE TABLE events (id int, at date) PARTITION BY RANGE (at);
             CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');",
        )
        .await
        .unwrap();
    let dir = folder(
        FILE,
        "CREATE TABLE notes (id int);\nCREATE INDEX events_at ON events (at);\n",
    );
    for extra in [None, Some("--dry-run")] {
        let mut args = vec!["apply", dir_arg(dir.path()), "--online"];
        args.extend(extra);
        let out = locksmith(&incident.url, &args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", text(&out));
        let said = text(&out);
        assert!(said.contains("1_constraints.sql:2:1"), "{said}");
        assert!(said.contains("`events` is partitioned"), "{said}");
        assert!(said.contains("ON ONLY events"), "{said}");
    }
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_class WHERE relname IN ('notes', 'events_at')"
        )
        .await,
        0
    );
}

/// An index, a foreign key added `NOT VALID`, its `VALIDATE`: three online steps.
const INDEX_AND_FK: &str = "\
CREATE INDEX enrollments_amount ON enrollments (amount);
ALTER TABLE enrollments ADD CONSTRAINT enrollments_partner_fk FOREIGN KEY (partner_id) REFERENCES academic_partners (id);
";

/// `apply --online --abort` after a run stopped after step 1 (the index
/// built; the foreign key's lock stayed taken) and after step 2 (the key
/// added `NOT VALID`; its validation failed): each finished step is taken
/// back, last first, the progress forgotten, the schema as before; then
/// `apply --online` applies the migration from its start (before, abort
/// refused anything but a type change).
#[tokio::test]
async fn abort_after_each_step_takes_it_back_and_a_rerun_applies_it() {
    for stop in [1, 2] {
        let (incident, admin) = staged(&format!("online_abort_step_{stop}"), SETUP).await;
        let before = schema(&admin).await;
        let dir = folder(FILE, INDEX_AND_FK);
        let holder = incident.admin.connect().await.unwrap();
        let out = if stop == 1 {
            // A writer of academic_partners in an open transaction: the
            // foreign key's lock stays taken.
            holder
                .batch_execute("BEGIN; UPDATE academic_partners SET name = name WHERE id = 1")
                .await
                .unwrap();
            let out = locksmith(
                &incident.url,
                &["apply", dir_arg(dir.path()), "--online", "--deadline", "2s"],
            );
            assert_eq!(out.status.code(), Some(3), "{}", text(&out));
            out
        } else {
            // A row no partner has: the validation fails.
            admin
                .batch_execute("INSERT INTO enrollments VALUES (9999, 9999, 1)")
                .await
                .unwrap();
            let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
            assert_eq!(out.status.code(), Some(1), "{}", text(&out));
            out
        };
        assert_eq!(
            query_i64(
                &admin,
                "SELECT count(*) FROM locksmith_online_steps WHERE done"
            )
            .await,
            stop,
            "{}",
            text(&out)
        );
        let abort = locksmith(
            &incident.url,
            &[
                "apply",
                dir_arg(dir.path()),
                "--online",
                "--abort",
                "--format",
                "json",
            ],
        );
        assert_eq!(abort.status.code(), Some(0), "{}", text(&abort));
        let report: Value = serde_json::from_slice(&abort.stdout).unwrap();
        assert_eq!(report["status"], "aborted", "{report}");
        assert_eq!(report["migration"], "1 constraints", "{report}");
        assert!(report["message"]
            .as_str()
            .unwrap()
            .contains("still pending"));
        let removed: Vec<&str> = report["removed"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let mut want = vec!["DROP INDEX CONCURRENTLY IF EXISTS enrollments_amount"];
        if stop == 2 {
            want.insert(
                0,
                "ALTER TABLE enrollments DROP CONSTRAINT IF EXISTS enrollments_partner_fk",
            );
        }
        assert_eq!(removed[..removed.len() - 1], want[..], "{report}");
        assert_eq!(schema(&admin).await, before, "stop {stop}");
        assert_finished(&admin, 0).await;
        // The cause dealt with, the migration applies from its first step.
        holder.batch_execute("ROLLBACK").await.ok();
        admin
            .batch_execute("DELETE FROM enrollments WHERE id = 9999")
            .await
            .unwrap();
        let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(text(&out).contains("online step 1 of 3: CREATE INDEX CONCURRENTLY"));
        assert!(!text(&out).contains("skipped"), "{}", text(&out));
        assert_eq!(
            query_i64(
                &admin,
                "SELECT count(*) FROM pg_index WHERE indexrelid = 'enrollments_amount'::regclass AND indisvalid"
            )
            .await,
            1
        );
        assert_eq!(
            query_i64(
                &admin,
                "SELECT count(*) FROM pg_constraint WHERE conname = 'enrollments_partner_fk' AND convalidated"
            )
            .await,
            1
        );
        assert_finished(&admin, 1).await;
    }
}

/// kill -9 while the first step's concurrent build runs (its function
/// sleeps on one row), the server session ended too: an invalid index is
/// left and nothing is recorded. `--abort` finds the build cut off, drops
/// the index, and the migration then applies from its start.
#[tokio::test]
async fn kill_9_inside_a_concurrent_build_then_abort_drops_its_invalid_index() {
    let (incident, admin) = staged("online_abort_kill", SETUP).await;
    admin
        .batch_execute(
            "CREATE FUNCTION slow_id(id int) RETURNS int IMMUTABLE LANGUAGE plpgsql
               AS $$ BEGIN IF id = 1 THEN PERFORM pg_sleep(30); END IF; RETURN id; END $$;",
        )
        .await
        .unwrap();
    let before = schema(&admin).await;
    let dir = folder(
        FILE,
        &format!("CREATE INDEX enrollments_slow ON enrollments (slow_id(id));\n{INDEX_AND_FK}"),
    );
    let mut child = spawn_online(&incident.url, dir.path(), &[]);
    let building = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY enrollments_slow%' AND state = 'active'";
    let started = Instant::now();
    while query_i64(&admin, building).await == 0 {
        assert!(child.try_wait().unwrap().is_none(), "the run ended first");
        assert!(started.elapsed() < Duration::from_secs(60), "never built");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The killed run's server session builds on until it notices: ended here.
    admin
        .batch_execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY enrollments_slow%'")
        .await
        .unwrap();
    while query_i64(&admin, building).await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still building"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_index WHERE indexrelid = 'enrollments_slow'::regclass AND NOT indisvalid"
        )
        .await,
        1
    );
    let abort = locksmith(
        &incident.url,
        &["apply", dir_arg(dir.path()), "--online", "--abort"],
    );
    assert_eq!(abort.status.code(), Some(0), "{}", text(&abort));
    assert!(
        text(&abort).contains("was removed (2 statements)"),
        "{}",
        text(&abort)
    );
    assert_eq!(schema(&admin).await, before);
    admin
        .batch_execute(
            "CREATE OR REPLACE FUNCTION slow_id(id int) RETURNS int IMMUTABLE LANGUAGE sql AS $$ SELECT id $$",
        )
        .await
        .unwrap();
    let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_index WHERE indexrelid IN ('enrollments_slow'::regclass, 'enrollments_amount'::regclass) AND indisvalid"
        )
        .await,
        2
    );
}

/// A batched `UPDATE` that committed batches cannot be taken back: `--abort`
/// refuses before anything runs, naming the step, and says what to do (the
/// other steps' inverses included); nothing is undone. Finishing works:
/// the rerun goes on after the committed batches, each row updated once.
#[tokio::test]
async fn abort_refuses_a_batched_update_that_changed_rows() {
    let (incident, admin) = staged("online_abort_update", SETUP).await;
    // Row 4900 cannot take the update until `stopper` goes: the batches
    // before it commit, its batch fails.
    admin
        .batch_execute(
            "ALTER TABLE enrollments ADD PRIMARY KEY (id);
             ALTER TABLE enrollments ADD CONSTRAINT stopper CHECK (id <> 4900 OR amount < 2);",
        )
        .await
        .unwrap();
    let sum = "SELECT sum(amount)::bigint FROM enrollments";
    let before = query_i64(&admin, sum).await;
    let dir = folder(
        FILE,
        "CREATE INDEX enrollments_amount ON enrollments (amount);\nUPDATE enrollments SET amount = amount + 1;\n",
    );
    let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(query_i64(&admin, sum).await > before, "no batch committed");
    let steps = "SELECT count(*) FROM locksmith_online_steps";
    let progress = query_i64(&admin, steps).await;
    let abort = locksmith(
        &incident.url,
        &["apply", dir_arg(dir.path()), "--online", "--abort"],
    );
    assert_eq!(abort.status.code(), Some(2), "{}", text(&abort));
    let said = text(&abort);
    for part in [
        "cannot abort: step 2 of 2 (`UPDATE enrollments SET amount = amount + 1`)",
        "a batched UPDATE that already changed rows",
        "apply --online",
        "Nothing was undone",
        "DROP INDEX CONCURRENTLY IF EXISTS enrollments_amount; DELETE FROM locksmith_online_steps WHERE version = 1",
    ] {
        assert!(said.contains(part), "{part}: {said}");
    }
    // Nothing was undone: the index and the progress are there.
    assert_eq!(query_i64(&admin, steps).await, progress);
    assert_eq!(
        query_i64(
            &admin,
            "SELECT count(*) FROM pg_index WHERE indexrelid = 'enrollments_amount'::regclass"
        )
        .await,
        1
    );
    admin
        .batch_execute("ALTER TABLE enrollments DROP CONSTRAINT stopper")
        .await
        .unwrap();
    let out = locksmith(&incident.url, &["apply", dir_arg(dir.path()), "--online"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(query_i64(&admin, sum).await, before + 5000);
    assert_eq!(query_i64(&admin, steps).await, 0);
}
