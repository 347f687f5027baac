//! Size-aware verdicts against a real server: the same `ADD CONSTRAINT …
//! UNIQUE` on 250 rows (the danger is the lock queue: run it under the
//! guard) and on a million (the hold is the outage: `--online`), in `lint
//! --database-url`'s JSON and in `apply --max-hold`'s refusal before
//! anything runs.

mod support;

use locksmith_sandbox::incident::{Incident, MIGRATION, TABLE};
use serde_json::Value;
use support::{locksmith, query_i64, text, write};

/// Grows the incident's table to `rows` rows in one statement (random
/// keys, as a real column's are), and has the planner count them. The
/// names are long (~350 bytes a row, ~400 MB for a million rows), so the
/// unique index build is far from instant (about 0.8 s on an idle machine).
async fn grow(incident: &Incident, rows: i64) {
    let admin = incident.admin.connect().await.unwrap();
    admin
        .batch_execute(&format!(
            "INSERT INTO {TABLE} (name, informal_name)
               SELECT 'University ' || i || ' ' || repeat(md5(i::text), 10), md5(i::text)
               FROM generate_series(251, {rows}) AS i"
        ))
        .await
        .unwrap();
    // What autovacuum does to a real table: hint bits set, rows counted.
    admin
        .batch_execute(&format!("VACUUM ANALYZE {TABLE}"))
        .await
        .unwrap();
}

/// `lint --database-url … --format json` of the incident's migration: its findings.
fn lint_findings(incident: &Incident, dir: &std::path::Path) -> Vec<Value> {
    let file = dir.join("m.sql");
    std::fs::write(&file, format!("{MIGRATION};\n")).unwrap();
    let out = locksmith(
        &incident.url,
        &[
            "lint",
            "--format",
            "json",
            "--database-url",
            &incident.url,
            file.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["files"][0]["statements"][0]["findings"]
        .as_array()
        .unwrap()
        .clone()
}

async fn constraint_count(incident: &Incident) -> i64 {
    let admin = incident.admin.connect().await.unwrap();
    query_i64(
        &admin,
        "SELECT count(*) FROM pg_constraint WHERE conname = 'unique_informal_name_academic_partner'",
    )
    .await
        + query_i64(
            &admin,
            "SELECT count(*) FROM pg_class WHERE relname = 'unique_informal_name_academic_partner'",
        )
        .await
}

#[tokio::test]
async fn on_a_million_rows_the_hold_dominates_lint_says_online_and_apply_refuses_up_front() {
    let incident = Incident::stage_shared("size_big").await.unwrap();
    grow(&incident, 1_000_000).await;
    let dir = tempfile::tempdir().unwrap();

    let findings = lint_findings(&incident, dir.path());
    let main = findings
        .iter()
        .find(|f| f["rule"] == "LS101")
        .expect("the statement's own finding");
    // The numbers are fields of the finding, on every finding of the statement.
    // (The planner's count, sampled: within a percent.)
    assert!(
        findings
            .iter()
            .all(|f| (990_000..1_010_000).contains(&f["rows"].as_i64().unwrap())),
        "{findings:?}"
    );
    let bytes = main["bytes"].as_i64().unwrap();
    assert!(bytes > 300 * 1024 * 1024, "{main}");
    // The probe's rates swing with the machine's load (about 2x here), so
    // the bounds leave room: the hold dominates from 500 ms on.
    let hold = main["estimated_hold_ms"].as_i64().unwrap();
    assert!(hold > 500, "{main}");
    let message = main["message"].as_str().unwrap();
    assert!(
        message.contains("builds an index over ")
            && message.contains("under ACCESS EXCLUSIVE")
            && message.contains("rates measured on this server")
            && message.contains("`locksmith apply --online`"),
        "{message}"
    );
    let severity = if hold >= 1000 { "error" } else { "warning" };
    assert_eq!(main["severity"], severity, "{main}");
    // One verdict per statement: no LS601 beside it.
    assert!(
        findings.iter().all(|f| f["rule"] != "LS601"),
        "{findings:?}"
    );

    // --max-hold 300ms: refused before running anything, the estimate
    // named. (The build itself takes about 0.8 s on an idle machine, so a
    // budget of 1 s is a coin toss between this refusal and a clean run.)
    let migrations = dir.path().join("migrations");
    write(&migrations, &[("1_unique.sql", &format!("{MIGRATION};\n"))]);
    let out = locksmith(
        &incident.url,
        &[
            "apply",
            migrations.to_str().unwrap(),
            "--format",
            "json",
            "--max-hold",
            "300ms",
        ],
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(report["status"], "hold_exceeded", "{report}");
    assert_eq!(report["attempts"], 0, "nothing was attempted: {report}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("1_unique.sql:1:1")
            && error.contains("refused before running anything")
            && error.contains("ADD CONSTRAINT unique_informal_name_academic_partner")
            && error.contains("estimate, rates measured on this server")
            && error.contains("over --max-hold 300ms")
            && error.contains("--online"),
        "{error}"
    );
    // Nothing changed: no constraint, no index, no history row.
    assert_eq!(constraint_count(&incident).await, 0);
    let admin = incident.admin.connect().await.unwrap();
    assert_eq!(
        query_i64(&admin, "SELECT count(*) FROM locksmith_migrations").await,
        0
    );
}

#[tokio::test]
async fn on_250_rows_the_lock_queue_dominates_lint_says_guard_and_apply_runs() {
    let incident = Incident::stage_shared("size_small").await.unwrap();
    let dir = tempfile::tempdir().unwrap();

    let findings = lint_findings(&incident, dir.path());
    let main = findings
        .iter()
        .find(|f| f["rule"] == "LS101")
        .expect("the statement's own finding");
    assert_eq!(main["rows"], 250, "{main}");
    assert!(main["bytes"].as_i64().unwrap() > 0, "{main}");
    assert!(main["estimated_hold_ms"].as_i64().unwrap() < 100, "{main}");
    let message = main["message"].as_str().unwrap();
    assert!(
        message.contains("at 250 rows")
            && message.contains("the danger is the lock queue")
            && message.contains("`locksmith apply`")
            && !message.contains("--online"),
        "{message}"
    );

    let migrations = dir.path().join("migrations");
    write(&migrations, &[("1_unique.sql", &format!("{MIGRATION};\n"))]);
    let out = locksmith(
        &incident.url,
        &[
            "apply",
            migrations.to_str().unwrap(),
            "--format",
            "json",
            "--max-hold",
            "1s",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(constraint_count(&incident).await, 2);
}
