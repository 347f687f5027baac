//! `apply --replica`: a hot standby replays the migration's ACCESS EXCLUSIVE
//! lock, so its own readers of the table are blockers too. With a real
//! primary and a streaming standby on this machine: a standby session in the
//! way is named with its server and waited out without stalling the standby's
//! reads, or terminated under `--terminate-idle-after`; without `--replica`,
//! the unwatched standby is pointed out. `blockers --replica` shows a
//! standby's stalled replay with the standby session it waits for.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use locksmith_sandbox::cluster::ClusterOptions;
use locksmith_sandbox::incident::{Incident, TABLE};
use locksmith_sandbox::traffic::{Query, Traffic, TrafficProfile};
use locksmith_sandbox::{wait, Cluster};
use serde_json::Value;

mod support;
use support::text;

fn apply(url: &str, dir: &std::path::Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["apply", dir.to_str().unwrap(), "--format", "json"])
        .args(extra)
        .env("DATABASE_URL", url)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// A primary with the incident's table, a standby that has replayed it, and
/// a migration folder adding a column.
async fn staged(db: &str) -> (Cluster, Cluster, Incident, tempfile::TempDir) {
    staged_with(db, &[], &[]).await
}

/// [`staged`], the primary and the standby started with these settings.
async fn staged_with(
    db: &str,
    primary_settings: &[(&str, &str)],
    standby_settings: &[(&str, &str)],
) -> (Cluster, Cluster, Incident, tempfile::TempDir) {
    let primary = Cluster::start_with(ClusterOptions {
        settings: primary_settings
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
        ..ClusterOptions::default()
    })
    .unwrap();
    let incident = Incident::stage(&primary, db).await.unwrap();
    let standby = primary.start_standby(standby_settings).unwrap();
    let url = standby.url(db);
    wait::until(wait::BOUND, "the standby to replay the table", || {
        let url = url.clone();
        async move {
            let Ok(settings) = locksmith_pg::ConnectionSettings::resolve(Some(&url)) else {
                return false;
            };
            match settings.connect().await {
                Ok(c) => c
                    .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])
                    .await
                    .is_ok(),
                Err(_) => false,
            }
        }
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("1_note.sql"),
        format!("ALTER TABLE {TABLE} ADD COLUMN note text;\n"),
    )
    .unwrap();
    (primary, standby, incident, dir)
}

async fn standby_client(standby: &Cluster, db: &str, app: &str) -> locksmith_pg::Connection {
    standby.settings(db, app).connect().await.unwrap()
}

/// Reads the table on the standby every 50 ms; the worst latency seen.
fn standby_reads(
    client: locksmith_pg::Connection,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let worst = Arc::new(AtomicU64::new(0));
    let task = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                client
                    .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])
                    .await
                    .unwrap();
                worst.fetch_max(t.elapsed().as_millis() as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            worst.load(Ordering::Relaxed)
        })
    };
    (stop, task)
}

/// `apply --replica <the standby> EXTRA` while a standby session reads the
/// table every 50 ms: the output, and the longest any of those reads waited.
async fn apply_watching_standby(
    standby: &Cluster,
    db: &str,
    incident: &Incident,
    dir: &std::path::Path,
    extra: &[&str],
) -> (Output, Duration) {
    let (stop, reads) = standby_reads(standby_client(standby, db, "standby-traffic").await);
    let mut args = vec!["--replica".to_string(), standby.url(db)];
    args.extend(extra.iter().map(|a| a.to_string()));
    let (url, path) = (incident.url.clone(), dir.to_path_buf());
    let out = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        apply(&url, &path, &args)
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    (out, Duration::from_millis(reads.await.unwrap()))
}

async fn has_note(client: &locksmith_pg::Connection) -> bool {
    client
        .query_one(
            "SELECT count(*) > 0 FROM information_schema.columns WHERE column_name = 'note'",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_reader_is_named_and_waited_out_without_stalling_the_standby() {
    let db = "replica_wait";
    let (primary, standby, incident, dir) = staged(db).await;
    // A report on the standby, left idle in its transaction: it holds the table.
    let report = standby_client(&standby, db, "standby-report").await;
    report
        .batch_execute(&format!("BEGIN; SELECT count(*) FROM {TABLE}"))
        .await
        .unwrap();
    let report_pid: i32 = report
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let (out, worst) =
        apply_watching_standby(&standby, db, &incident, dir.path(), &["--deadline", "5s"]).await;

    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report_json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let named = report_json["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["pid"] == report_pid && b["application_name"] == "standby-report")
        .unwrap_or_else(|| panic!("the standby session is not named: {report_json}"));
    assert_eq!(
        named["server"],
        format!("127.0.0.1:{}", standby.port()),
        "{named}"
    );
    assert!(
        worst < Duration::from_secs(1),
        "a standby read waited {worst:?}"
    );
    let admin = primary.settings(db, "check").connect().await.unwrap();
    assert!(!has_note(&admin).await, "nothing applied");

    // Once the report ends, the migration applies and the standby replays it.
    report.batch_execute("COMMIT").await.unwrap();
    let replica = standby.url(db);
    let out = apply(&incident.url, dir.path(), &["--replica", &replica]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let check = standby_client(&standby, db, "check").await;
    wait::until(wait::BOUND, "the standby to replay the column", || async {
        has_note(&check).await
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_standby_session_is_terminated_under_the_policy() {
    let db = "replica_terminate";
    let (_primary, standby, incident, dir) = staged(db).await;
    let leaked = standby_client(&standby, db, "standby-leak").await;
    leaked
        .batch_execute(&format!("BEGIN; SELECT count(*) FROM {TABLE}"))
        .await
        .unwrap();
    let (out, worst) = apply_watching_standby(
        &standby,
        db,
        &incident,
        dir.path(),
        &["--terminate-idle-after", "1s"],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let terminated = report["terminated"].as_array().unwrap();
    assert!(
        terminated
            .iter()
            .any(|t| t["application_name"] == "standby-leak" && t["server"].is_string()),
        "{report}"
    );
    assert!(
        worst < Duration::from_secs(1),
        "a standby read waited {worst:?}"
    );
    let check = standby_client(&standby, db, "check").await;
    wait::until(wait::BOUND, "the standby to replay the column", || async {
        has_note(&check).await
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn an_unwatched_standby_is_pointed_out() {
    let db = "replica_unwatched";
    let (_primary, _standby, incident, dir) = staged(db).await;
    let out = Command::new(env!("CARGO_BIN_EXE_locksmith"))
        .args(["apply", dir.path().to_str().unwrap(), "--dry-run"])
        .env("DATABASE_URL", &incident.url)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("1 standby server(s) stream from this primary and are not watched"),
        "{stderr}"
    );
}

/// The standby rule (`replica::standby_waits_out`): a standby query is
/// waited out whatever its age. The report is far younger than the age at
/// which the primary's rule stops racing a holder (`--lock-timeout 4s`, so
/// 4 s) at every look of the first seconds: on the primary it would be
/// raced. Without the rule the first look races it — `NOWAIT` wins at once
/// on the primary, nothing there holds the table — the migration is applied
/// (`attempts` 1, exit 0) and replay on the standby stalls every read of the
/// table until the report ends. With the rule: no attempt at all, exit 3 at
/// the deadline, the report named with its server, no read stalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_young_standby_query_is_waited_out_not_raced() {
    let db = "replica_active";
    let (_primary, standby, incident, dir) = staged(db).await;
    let report = standby_client(&standby, db, "standby-long-report").await;
    let running = tokio::spawn(async move {
        report
            .batch_execute(&format!("SELECT count(*), pg_sleep(10) FROM {TABLE}"))
            .await
    });
    let watcher = standby_client(&standby, db, "check").await;
    wait::until(wait::BOUND, "the report to run on the standby", || async {
        report_age_ms(&watcher).await.is_some()
    })
    .await
    .unwrap();
    let started = Instant::now();
    let age_at_start = report_age_ms(&watcher).await.expect("the report runs");
    let (out, worst) = apply_watching_standby(
        &standby,
        db,
        &incident,
        dir.path(),
        &["--lock-timeout", "4s", "--deadline", "5s"],
    )
    .await;
    let took = started.elapsed();

    // The looks that tell the rules apart came while the report was younger
    // than 4 s: it was under 1 s old when apply started, and apply gave up
    // at its 5 s deadline (so it was looking from its first second on).
    assert!(age_at_start < 1000, "the report was {age_at_start} ms old");
    assert!(took < Duration::from_secs(8), "apply took {took:?}");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["attempts"], 0,
        "the standby's report was raced: {json}"
    );
    let named = json["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["application_name"] == "standby-long-report")
        .unwrap_or_else(|| panic!("the report is not named: {json}"));
    assert_eq!(named["server"], format!("127.0.0.1:{}", standby.port()));
    assert!(
        worst < Duration::from_secs(1),
        "a standby read waited {worst:?}"
    );
    running.await.unwrap().unwrap();
}

/// How long the standby's report has run, while it runs.
async fn report_age_ms(watcher: &locksmith_pg::Connection) -> Option<i64> {
    watcher
        .query_one(
            "SELECT (extract(epoch FROM clock_timestamp() - query_start) * 1000)::int8
             FROM pg_stat_activity
             WHERE application_name = 'standby-long-report' AND state = 'active'",
            &[],
        )
        .await
        .ok()
        .map(|r| r.get::<_, i64>(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_readers_that_never_stop_are_waited_out_never_raced() {
    let db = "replica_never_stop";
    let (primary, standby, incident, dir) = staged(db).await;
    // Reports of 4 s on the standby, one starting every 3.5 s: from the first
    // one on, a report always holds the table there (never a gap).
    let reports = Traffic::start(
        standby.settings(db, "standby-report"),
        TrafficProfile {
            rate: 1.0 / 3.5,
            pool_size: 3,
            queries: vec![Query {
                sql: format!("SELECT count(*), pg_sleep(4) FROM {TABLE}"),
                share: 1.0,
            }],
            keys: 1,
            gateway_timeout: Duration::from_secs(60),
        },
    );
    let watcher = standby_client(&standby, db, "check").await;
    until_positive(
        &watcher,
        "the first report to run on the standby",
        "SELECT count(*)::int FROM pg_stat_activity
         WHERE application_name = 'standby-report' AND state = 'active'",
    )
    .await;
    // A 1 s budget, so the first look finds that report younger than the
    // budget: a young query is no promise of a short one, and replay would
    // wait for it however long it runs.
    let (out, worst) = apply_watching_standby(
        &standby,
        db,
        &incident,
        dir.path(),
        &["--lock-timeout", "1s", "--deadline", "6s"],
    )
    .await;
    let reports = reports.stop().await;

    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let named = json["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["application_name"] == "standby-report")
        .unwrap_or_else(|| panic!("the standby reports are not named: {json}"));
    assert_eq!(named["server"], format!("127.0.0.1:{}", standby.port()));
    assert!(
        worst < Duration::from_secs(2),
        "a standby read waited {worst:?}, over twice the 1 s budget"
    );
    let admin = primary.settings(db, "check").connect().await.unwrap();
    assert!(!has_note(&admin).await, "nothing applied");
    assert!(reports.requests >= 2, "the reports overlapped: {reports:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_query_started_during_the_migration_queues_behind_replay() {
    let db = "replica_window";
    // As on a production server: the sandbox's `off` has the WAL writer send
    // the lock record within 200 ms by itself.
    let (primary, standby, incident, dir) =
        staged_with(db, &[("synchronous_commit", "on")], &[]).await;
    // The migration holds its lock a second on the primary before it changes
    // anything: its lock record is all the WAL it wrote meanwhile (a change
    // would fill WAL pages, which the WAL writer flushes on its own).
    std::fs::write(
        dir.path().join("1_note.sql"),
        format!("SELECT pg_sleep(1);\nALTER TABLE {TABLE} ADD COLUMN note text;\n"),
    )
    .unwrap();
    let on_primary = primary.settings(db, "check").connect().await.unwrap();
    let on_standby = standby_client(&standby, db, "check").await;
    let report = standby_client(&standby, db, "standby-late-report").await;
    // After the look, while the migration holds its lock: a 5 s report on the standby.
    let late_report = async {
        until_positive(
            &on_primary,
            "the migration to hold its lock",
            "SELECT count(*)::int FROM pg_stat_activity
             WHERE state = 'active' AND query LIKE '%SELECT pg_sleep(1)%'
               AND pid <> pg_backend_pid()",
        )
        .await;
        let holding = Instant::now();
        // Until replay holds the lock on the standby, or its record has not
        // left the primary 600 ms into its 1 s hold.
        wait::until(wait::BOUND, "replay to lock or 600 ms", || async {
            holding.elapsed() > Duration::from_millis(600)
                || on_standby
                    .query_one(
                        &format!(
                            "SELECT count(*) > 0 FROM pg_locks l
                             JOIN pg_stat_activity a ON a.pid = l.pid
                             WHERE a.backend_type = 'startup' AND l.granted
                               AND l.relation = '{TABLE}'::regclass"
                        ),
                        &[],
                    )
                    .await
                    .unwrap()
                    .get::<_, bool>(0)
        })
        .await
        .unwrap();
        report
            .batch_execute(&format!("SELECT count(*), pg_sleep(5) FROM {TABLE}"))
            .await
            .unwrap();
    };
    let (stop, reads) = standby_reads(standby_client(&standby, db, "standby-traffic").await);
    let (url, path, replica) = (
        incident.url.clone(),
        dir.path().to_path_buf(),
        standby.url(db),
    );
    let applying =
        tokio::task::spawn_blocking(move || apply(&url, &path, &["--replica", &replica]));
    let (out, ()) = tokio::join!(applying, late_report);
    let out = out.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Reads go on until the standby has replayed the migration: a replay
    // stalled behind the report would stall them after apply returned.
    wait::until(wait::BOUND, "the standby to replay the column", || async {
        has_note(&on_standby).await
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let worst = Duration::from_millis(reads.await.unwrap());
    // The report waited for the migration's hold; nobody waited for the report.
    assert!(
        worst < Duration::from_millis(2500),
        "a standby read waited {worst:?} for a report that started during the migration"
    );
}

/// Polls `sql` (one integer) on `client` until it is positive; returns it.
async fn until_positive(client: &locksmith_pg::Connection, what: &str, sql: &str) -> i32 {
    let read = || async {
        client
            .query_one(sql, &[])
            .await
            .unwrap()
            .get::<_, Option<i32>>(0)
            .unwrap_or(0)
    };
    wait::until(wait::BOUND, what, || async { read().await > 0 })
        .await
        .unwrap();
    read().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blockers_shows_a_standby_replay_waiting_for_a_standby_session() {
    let db = "replica_blockers";
    // Never cancelled by the standby itself while the test looks.
    let (primary, standby, incident, _dir) =
        staged_with(db, &[], &[("max_standby_streaming_delay", "-1")]).await;
    let report = standby_client(&standby, db, "standby-report").await;
    report
        .batch_execute(&format!("BEGIN; SELECT count(*) FROM {TABLE}"))
        .await
        .unwrap();
    let report_pid: i32 = report
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    // The primary locks the table; an xid commit elsewhere flushes the lock record.
    let ddl = primary.settings(db, "ddl").connect().await.unwrap();
    ddl.batch_execute(&format!(
        "BEGIN; LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE"
    ))
    .await
    .unwrap();
    let other = primary.settings(db, "flush").connect().await.unwrap();
    other.batch_execute("SELECT txid_current()").await.unwrap();
    let watcher = standby_client(&standby, db, "check").await;
    let startup = until_positive(
        &watcher,
        "replay to wait on the standby",
        "SELECT max(pid) FROM pg_stat_activity
         WHERE backend_type = 'startup' AND wait_event_type = 'Lock'",
    )
    .await;
    // A read on the standby now queues behind the replay.
    let reader = standby_client(&standby, db, "standby-reader").await;
    let reading = tokio::spawn(async move {
        reader
            .query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])
            .await
            .map(|_| ())
    });
    let reader_pid = until_positive(
        &watcher,
        "the standby read to queue",
        "SELECT max(pid) FROM pg_stat_activity
         WHERE application_name = 'standby-reader' AND wait_event_type = 'Lock'",
    )
    .await;

    let replica = standby.url(db);
    let url = incident.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        support::locksmith(
            &url,
            &["blockers", "--replica", &replica, "--format", "json"],
        )
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let standbys = json["standbys"].as_array().unwrap();
    assert_eq!(standbys.len(), 1, "{json}");
    let on_standby = &standbys[0];
    assert_eq!(
        on_standby["server"],
        format!("127.0.0.1:{}", standby.port())
    );
    let roots: Vec<i64> = on_standby["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(roots, vec![i64::from(report_pid)], "{on_standby}");
    let replay = on_standby["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["pid"] == startup)
        .unwrap_or_else(|| panic!("the replay is not waiting: {on_standby}"));
    assert_eq!(replay["replay"], true, "{replay}");
    assert_eq!(
        replay["blocked_by"],
        serde_json::json!([report_pid]),
        "{replay}"
    );
    assert_eq!(
        replay["queued_behind"],
        serde_json::json!([reader_pid]),
        "{replay}"
    );

    // The same in words.
    let replica = standby.url(db);
    let url = incident.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        support::locksmith(&url, &["blockers", "--replica", &replica])
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let words = String::from_utf8_lossy(&out.stdout);
    assert!(
        words.contains(&format!(
            "replay of {TABLE} on standby 127.0.0.1:{} waits for pid {report_pid}",
            standby.port()
        )),
        "{words}"
    );

    // Once the report ends, replay goes on and the read finishes.
    report.batch_execute("COMMIT").await.unwrap();
    ddl.batch_execute("ROLLBACK").await.unwrap();
    reading.await.unwrap().unwrap();
}

/// The findings of `doctor ARGS --format json` against `url`, by id.
fn doctor_findings(url: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["doctor", "--format", "json"];
    all.extend_from_slice(args);
    let out = support::locksmith(url, &all);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    json["findings"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_reads_the_standby_delays_and_the_primary_replication() {
    let db = "replica_doctor";
    let (primary, standby, incident, _dir) = staged_with(
        db,
        &[],
        &[
            ("max_standby_streaming_delay", "-1"),
            ("hot_standby_feedback", "on"),
        ],
    )
    .await;
    let admin = primary.settings(db, "setup").connect().await.unwrap();
    admin
        .batch_execute("SELECT pg_create_physical_replication_slot('forgotten', true)")
        .await
        .unwrap();
    let server = format!("127.0.0.1:{}", standby.port());
    let find = |findings: &[Value], id: &str| -> Option<Value> {
        findings.iter().find(|f| f["id"] == id).cloned()
    };

    let findings = doctor_findings(&incident.url, &["--replica", &standby.url(db)]);
    let delay =
        find(&findings, "max_standby_streaming_delay").unwrap_or_else(|| panic!("{findings:?}"));
    assert_eq!(delay["severity"], "warning");
    assert!(
        delay["message"].as_str().unwrap().contains(&format!(
            "standby {server}: max_standby_streaming_delay is -1"
        )),
        "{delay}"
    );
    assert!(delay["fix"]
        .as_str()
        .unwrap()
        .contains("ALTER SYSTEM SET max_standby_streaming_delay"));
    let feedback =
        find(&findings, "hot_standby_feedback").unwrap_or_else(|| panic!("{findings:?}"));
    assert_eq!(feedback["severity"], "info");
    assert!(
        find(&findings, "max_standby_archive_delay").is_none(),
        "30s default: {findings:?}"
    );
    let slot = find(&findings, "replication_slot").unwrap_or_else(|| panic!("{findings:?}"));
    assert!(
        slot["message"]
            .as_str()
            .unwrap()
            .contains("forgotten is inactive"),
        "{slot}"
    );
    assert_eq!(
        slot["fix"],
        "SELECT pg_drop_replication_slot('forgotten');  -- only if nothing will consume it again"
    );
    assert!(
        find(&findings, "unwatched_standby").is_none(),
        "{findings:?}"
    );

    // Without --replica the streaming standby is pointed out; its settings are not read.
    let findings = doctor_findings(&incident.url, &[]);
    let unwatched = find(&findings, "unwatched_standby").unwrap_or_else(|| panic!("{findings:?}"));
    assert!(
        unwatched["message"]
            .as_str()
            .unwrap()
            .starts_with("1 standby server(s) stream from this primary, 0 given with --replica"),
        "{unwatched}"
    );
    assert!(find(&findings, "max_standby_streaming_delay").is_none());

    // A primary given as a standby is refused, nothing audited.
    let out = support::locksmith(&incident.url, &["doctor", "--replica", &incident.url]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("not a hot standby"), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_waits_out_a_standby_query_before_a_retry() {
    let db = "replica_run";
    let (_primary, standby, incident, _dir) = staged(db).await;
    // On the standby, a report running longer than the run may take.
    let report = standby_client(&standby, db, "standby-long-report").await;
    let running = tokio::spawn(async move {
        report
            .batch_execute(&format!("SELECT count(*), pg_sleep(8) FROM {TABLE}"))
            .await
    });
    let watcher = standby_client(&standby, db, "check").await;
    until_positive(
        &watcher,
        "the report to run on the standby",
        "SELECT count(*)::int FROM pg_stat_activity
         WHERE application_name = 'standby-long-report' AND state = 'active'",
    )
    .await;
    // On the primary, a leaked session makes the first try lose its race.
    let leaked = incident
        .app
        .with_application_name("leaky-app")
        .connect()
        .await
        .unwrap();
    leaked
        .batch_execute(&format!("BEGIN; SELECT count(*) FROM {TABLE}"))
        .await
        .unwrap();
    let (stop, reads) = standby_reads(standby_client(&standby, db, "standby-traffic").await);

    let replica = standby.url(db);
    let url = incident.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        support::locksmith(
            &url,
            &[
                "run",
                "--replica",
                &replica,
                "--terminate-idle-after",
                "1s",
                "--deadline",
                "4s",
                "--format",
                "json",
                "--",
                "/usr/lib/postgresql/15/bin/psql",
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                &url,
                "-c",
                &format!("ALTER TABLE {TABLE} ADD COLUMN note text"),
            ],
        )
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    let worst = Duration::from_millis(reads.await.unwrap());

    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        json["terminated"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["application_name"] == "leaky-app" && t["server"].is_null()),
        "the primary's leak is terminated: {json}"
    );
    let named = json["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["application_name"] == "standby-long-report")
        .unwrap_or_else(|| panic!("the standby query is not named: {json}"));
    assert_eq!(named["server"], format!("127.0.0.1:{}", standby.port()));
    assert!(
        worst < Duration::from_secs(1),
        "a standby read waited {worst:?}"
    );
    let admin = incident.admin.connect().await.unwrap();
    assert!(!has_note(&admin).await, "nothing applied");
    running.await.unwrap().unwrap();
}
