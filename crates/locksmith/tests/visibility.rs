//! What the guard and `blockers` cannot see by looking at sessions alone:
//! a prepared transaction (`PREPARE TRANSACTION`) holds locks with no
//! session and no pid, and a role without `pg_read_all_stats` sees other
//! roles' sessions without their state. Both must be named, never raced,
//! never mistaken for an all-clear.

mod support;

use std::time::Duration;

use locksmith_pg::Connection;
use locksmith_sandbox::cluster::{Cluster, ClusterOptions};
use locksmith_sandbox::incident::{Incident, TABLE};
use locksmith_sandbox::queue::{wait_until_waiting, Queue};
use locksmith_sandbox::traffic::{LeakedSessions, Traffic, TrafficProfile};
use locksmith_sandbox::wait;
use serde_json::Value;
use support::{locksmith, text, write};

/// The gid, with a quote in it so the advice must quote it properly.
const GID: &str = "order's 2pc";

/// A cluster that allows prepared transactions (off by default).
fn cluster_with_two_phase_commit() -> Cluster {
    Cluster::start_with(ClusterOptions {
        settings: vec![("max_prepared_transactions".into(), "4".into())],
        ..ClusterOptions::default()
    })
    .unwrap()
}

/// Prepares a transaction of the app's role that read the story's table: it
/// holds ACCESS SHARE on it with no session, until someone finishes it.
async fn prepare_reader(incident: &Incident) {
    let app = incident.app.connect().await.unwrap();
    app.batch_execute(&format!(
        "BEGIN; SELECT count(*) FROM {TABLE}; PREPARE TRANSACTION {}",
        locksmith_core::quote::literal(GID)
    ))
    .await
    .unwrap();
}

async fn count(client: &Connection, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

fn json(out: &std::process::Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn migration() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[(
            "1_add_country.sql",
            "ALTER TABLE academic_partners ADD COLUMN country text;\n",
        )],
    );
    dir
}

#[tokio::test]
async fn apply_waits_out_a_prepared_transaction_without_queueing_and_names_its_gid() {
    let cluster = cluster_with_two_phase_commit();
    let incident = Incident::stage(&cluster, "prepared").await.unwrap();
    prepare_reader(&incident).await;
    let admin = incident.admin.connect().await.unwrap();
    let dir = migration();
    let d = dir.path().to_str().unwrap();

    // --dry-run names it among the statement's blockers.
    let dry = locksmith(
        &incident.url,
        &["apply", d, "--dry-run", "--format", "json"],
    );
    let plan = json(&dry);
    let holder = &plan["migrations"][0]["blockers"][0];
    assert_eq!(holder["prepared"]["gid"], GID, "{}", text(&dry));
    assert!(holder["pid"].is_null(), "{holder}");

    // Under traffic, the guard never asks for the lock: nobody queues behind us.
    let traffic = Traffic::start(
        incident.app.with_application_name("web-app"),
        TrafficProfile::default(),
    );
    wait::until(Duration::from_secs(30), "app traffic", || async {
        traffic.live().served >= 5
    })
    .await
    .unwrap();
    let human = locksmith(&incident.url, &["apply", d, "--deadline", "2s"]);
    let out = locksmith(
        &incident.url,
        &["apply", d, "--deadline", "2s", "--format", "json"],
    );
    let served = traffic.stop().await;

    assert_eq!(human.status.code(), Some(3), "{}", text(&human));
    let progress = String::from_utf8_lossy(&human.stderr);
    assert!(
        progress.contains("waiting for 1 session holding a conflicting lock: prepared transaction 'order''s 2pc' (owner app"),
        "{progress}"
    );
    assert!(!progress.contains("pid 0"), "{progress}");
    let shown = String::from_utf8_lossy(&human.stdout);
    assert!(!shown.contains("pid 0"), "{shown}");
    assert!(
        shown.contains(
            "Blocked by:\n  prepared transaction 'order''s 2pc' (owner app, database prepared"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("ROLLBACK PREPARED 'order''s 2pc';"),
        "{shown}"
    );
    assert!(!progress.contains("attempt 1"), "never raced: {progress}");

    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report = json(&out);
    assert_eq!(report["status"], "blocked");
    assert_eq!(
        report["attempts"], 0,
        "no lock request was ever made: {report}"
    );
    let blockers = report["blockers"].as_array().unwrap();
    assert_eq!(blockers.len(), 1, "{report}");
    let b = &blockers[0];
    assert!(b["pid"].is_null(), "a prepared transaction has no pid: {b}");
    assert_eq!(b["prepared"]["gid"], GID);
    assert_eq!(b["prepared"]["owner"], "app");
    assert_eq!(b["prepared"]["database"], "prepared");
    assert_eq!(b["prepared"]["commit"], "COMMIT PREPARED 'order''s 2pc'");
    assert_eq!(
        b["prepared"]["rollback"],
        "ROLLBACK PREPARED 'order''s 2pc'"
    );
    assert!(b["prepared"]["age_ms"].as_i64().unwrap() >= 0);
    assert_eq!(b["relation"], TABLE);
    assert_eq!(b["mode"], "AccessShareLock");
    assert_eq!(report["migrations"].as_array().unwrap().len(), 0);

    // Nothing of ours is left waiting, the column was not added, and the
    // app's reads never queued behind us.
    assert_eq!(
        count(&admin, "SELECT count(*) FROM pg_locks WHERE NOT granted").await,
        0
    );
    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'academic_partners'::regclass AND attname = 'country'"
        )
        .await,
        0
    );
    assert!(served.requests > 0 && served.errors == 0, "{served:?}");
    // Reads by key take milliseconds; one queued behind an ACCESS EXCLUSIVE
    // request would wait for it (the bound is generous for a loaded machine).
    assert!(
        served.timeouts == 0 && served.max_stall_ms < 2_000,
        "traffic never queued behind a lock request of ours: {served:?}"
    );
}

#[tokio::test]
async fn blockers_names_a_prepared_transaction_as_the_root_with_the_statements_that_finish_it() {
    let cluster = cluster_with_two_phase_commit();
    let incident = Incident::stage(&cluster, "prepared").await.unwrap();
    prepare_reader(&incident).await;
    let admin = incident.admin.connect().await.unwrap();

    // Nobody waits yet: it is listed, and there is no outage.
    let calm = locksmith(&incident.url, &["blockers", "--format", "json"]);
    assert_eq!(calm.status.code(), Some(0), "{}", text(&calm));
    let report = json(&calm);
    assert_eq!(report["prepared_transactions"][0]["gid"], GID, "{report}");
    assert_eq!(
        report["prepared_transactions"][0]["holds"][0]["relation"],
        TABLE
    );

    // An ALTER queues behind it.
    let migrator = incident
        .admin
        .with_application_name("alembic")
        .connect()
        .await
        .unwrap();
    let alter_pid: i32 = migrator
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let alter = tokio::spawn(async move {
        migrator
            .batch_execute(
                "SET lock_timeout = '60s'; ALTER TABLE academic_partners ADD COLUMN country text",
            )
            .await
    });
    wait_until_waiting(&admin, &[alter_pid]).await.unwrap();

    let out = locksmith(&incident.url, &["blockers", "--format", "json"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "an outage in progress: {}",
        text(&out)
    );
    let report = json(&out);
    let roots = report["blockers"].as_array().unwrap();
    assert_eq!(roots.len(), 1, "{report}");
    assert!(roots[0]["pid"].is_null());
    assert_eq!(roots[0]["prepared"]["gid"], GID);
    assert_eq!(roots[0]["blocking"], serde_json::json!([alter_pid]));
    assert_eq!(roots[0]["holds"][0]["mode"], "AccessShareLock");

    let human = locksmith(&incident.url, &["blockers"]);
    assert_eq!(human.status.code(), Some(3));
    let shown = text(&human);
    for part in [
        "ROOT prepared transaction 'order''s 2pc' (owner app, database prepared",
        &format!("blocks pid {alter_pid}"),
        "cannot be cancelled or terminated",
        "COMMIT PREPARED 'order''s 2pc';",
        "ROLLBACK PREPARED 'order''s 2pc';",
    ] {
        assert!(shown.contains(part), "{part}: {shown}");
    }
    assert!(!shown.contains("pg_cancel_backend(0)"), "{shown}");
    assert!(!shown.contains("pid 0"), "{shown}");

    admin
        .batch_execute(&format!(
            "ROLLBACK PREPARED {}",
            locksmith_core::quote::literal(GID)
        ))
        .await
        .unwrap();
    alter.await.unwrap().unwrap();
}

/// Creates a login role (not a superuser, without `pg_read_all_stats`) and
/// returns the incident's URL for it: it may not see other roles' session state.
async fn role_url(incident: &Incident, role: &str) -> String {
    let admin = incident.admin.connect().await.unwrap();
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN
               CREATE ROLE {role} LOGIN PASSWORD '{role}-password';
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$"
        ))
        .await
        .unwrap();
    // The incident's URL with the role's name and password instead of the superuser's.
    let rest = incident.url.split_once('@').unwrap().1;
    format!("postgresql://{role}:{role}-password@{rest}")
}

#[tokio::test]
async fn blockers_as_a_role_without_pg_read_all_stats_names_hidden_holders_and_the_grant() {
    let incident = Incident::stage_shared("hidden").await.unwrap();
    let monitor = role_url(&incident, "monitor").await;

    // Two of the app's sessions idle in transaction, nobody waiting yet.
    let leaked = LeakedSessions::open(&incident.app.with_application_name("leaky-app"), 2, TABLE)
        .await
        .unwrap();
    let calm = locksmith(&monitor, &["blockers", "--format", "json"]);
    assert_eq!(calm.status.code(), Some(0), "{}", text(&calm));
    let report = json(&calm);
    let hidden = &report["hidden"];
    assert_eq!(hidden["role"], "monitor", "{report}");
    assert_eq!(hidden["grant"], "GRANT pg_read_all_stats TO monitor;");
    let mut pids: Vec<i64> = hidden["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["holds"][0]["relation"] == TABLE)
        .map(|s| s["pid"].as_i64().unwrap())
        .collect();
    pids.sort();
    let mut leakers: Vec<i64> = leaked.pids().iter().map(|p| *p as i64).collect();
    leakers.sort();
    assert_eq!(pids, leakers, "{report}");
    let human = locksmith(&monitor, &["blockers"]);
    let shown = text(&human);
    assert!(
        !shown.contains("No session is waiting for a lock.\n"),
        "no silent all-clear: {shown}"
    );
    for part in [
        "as far as role monitor can see",
        "GRANT pg_read_all_stats TO monitor;",
        &format!("pid {:<7} role app", leakers[0]),
        "holds AccessShareLock on academic_partners",
    ] {
        assert!(shown.contains(part), "{part}: {shown}");
    }
    drop(leaked);

    // The outage: leakers, the ALTER queued behind them, a reader behind it,
    // all of other roles: the low role still sees who waits and who to blame.
    let queue = Queue::form(&incident, 2, 1).await.unwrap();
    let out = locksmith(&monitor, &["blockers", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report = json(&out);
    let mut roots: Vec<i64> = report["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["pid"].as_i64().unwrap())
        .collect();
    roots.sort();
    let mut leakers: Vec<i64> = queue.leaked.pids().iter().map(|p| *p as i64).collect();
    leakers.sort();
    assert_eq!(roots, leakers, "{report}");
    let alter = report["waiting"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["pid"] == queue.alter_pid)
        .unwrap_or_else(|| panic!("the queued ALTER is seen waiting: {report}"));
    assert_eq!(alter["wants"]["mode"], "AccessExclusiveLock");
    assert_eq!(alter["queued_behind"], serde_json::json!(queue.reader_pids));
    let human = locksmith(&monitor, &["blockers"]);
    assert_eq!(human.status.code(), Some(3));
    let shown = text(&human);
    for part in [
        &format!(
            "ROOT pid {} \"leaky-app\" (role app): state, query and ages hidden from role monitor",
            leakers[0]
        ),
        "GRANT pg_read_all_stats TO monitor",
        &format!("pg_cancel_backend({})", queue.alter_pid),
    ] {
        assert!(shown.contains(part), "{part}: {shown}");
    }
}

/// The deploy role owns the database and the table but may not see the
/// app's session state: the guard must wait out what it cannot inspect.
async fn deployer_owns_the_table(incident: &Incident) -> String {
    let url = role_url(incident, "deployer").await;
    let admin = incident.admin.connect().await.unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} OWNER TO deployer;
             GRANT ALL ON SCHEMA public TO deployer;
             ALTER TABLE academic_partners OWNER TO deployer;",
            incident.admin.dbname()
        ))
        .await
        .unwrap();
    url
}

/// pids of a JSON list of holders.
fn pids(list: &Value) -> Vec<i64> {
    let mut pids: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["pid"].as_i64().unwrap())
        .collect();
    pids.sort();
    pids
}

#[tokio::test]
async fn apply_as_a_role_without_pg_read_all_stats_waits_out_hidden_table_lock_holders() {
    let incident = Incident::stage_shared("hidden-apply").await.unwrap();
    let deployer = deployer_owns_the_table(&incident).await;
    let leaked = LeakedSessions::open(&incident.app.with_application_name("leaky-app"), 2, TABLE)
        .await
        .unwrap();
    let dir = migration();
    let d = dir.path().to_str().unwrap();
    let out = locksmith(
        &deployer,
        &["apply", d, "--deadline", "1s", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report = json(&out);
    assert_eq!(
        report["attempts"], 0,
        "never raced what it cannot see: {report}"
    );
    let mut leakers: Vec<i64> = leaked.pids().iter().map(|p| *p as i64).collect();
    leakers.sort();
    assert_eq!(pids(&report["blockers"]), leakers, "{report}");
    for b in report["blockers"].as_array().unwrap() {
        assert!(b["state"].is_null(), "hidden from the deploy role: {b}");
        assert_eq!(b["usename"], "app");
        assert_eq!(b["application_name"], "leaky-app");
    }
}

#[tokio::test]
async fn apply_as_a_role_without_pg_read_all_stats_waits_out_a_hidden_row_lock_holder() {
    let incident = Incident::stage_shared("hidden-row").await.unwrap();
    let deployer = deployer_owns_the_table(&incident).await;
    // The app's session locked the row and went idle: no table lock in the
    // way, so only the server's answer to our first attempt (we waited for
    // its transaction) tells the guard about it.
    let leaked = LeakedSessions::holding(
        &incident.app.with_application_name("leaky-app"),
        1,
        "SELECT id FROM academic_partners WHERE id = 7 FOR UPDATE",
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[(
            "1_rename.sql",
            "UPDATE academic_partners SET informal_name = 'uni-seven' WHERE id = 7;\n",
        )],
    );
    let d = dir.path().to_str().unwrap();
    let out = locksmith(
        &deployer,
        &["apply", d, "--deadline", "3s", "--format", "json"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report = json(&out);
    assert_eq!(
        pids(&report["blockers"]),
        vec![leaked.pids()[0] as i64],
        "the hidden session we waited for is named: {report}"
    );
    assert_eq!(report["blockers"][0]["lock_type"], "transactionid");
    assert_eq!(
        report["attempts"], 1,
        "once it blocked us, it is waited out, not raced again: {report}"
    );
}

/// `run --terminate-idle-after` as a role that cannot see the blockers'
/// state: as for `apply`, never terminated on a guess and never silently
/// left in place; the report names the grant that shows them.
#[tokio::test]
async fn run_as_a_role_without_pg_read_all_stats_says_the_terminate_policy_cannot_see_its_blockers()
{
    let incident = Incident::stage_shared("hidden-run").await.unwrap();
    let deployer = deployer_owns_the_table(&incident).await;
    let leaked = LeakedSessions::open(&incident.app.with_application_name("leaky-app"), 1, TABLE)
        .await
        .unwrap();
    let out = locksmith(
        &deployer,
        &[
            "run",
            "--terminate-idle-after",
            "0s",
            "--lock-timeout",
            "300ms",
            "--deadline",
            "3s",
            "--format",
            "json",
            "--",
            "/usr/lib/postgresql/15/bin/psql",
            "-X",
            &deployer,
            "-c",
            "ALTER TABLE academic_partners ADD COLUMN nickname text",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report = json(&out);
    assert_eq!(report["status"], "blocked", "{report}");
    assert_eq!(report["terminated"], Value::Array(vec![]), "{report}");
    let error = report["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("pg_read_all_stats") && error.contains("--terminate-idle-after"),
        "{report}"
    );
    let admin = incident.admin.connect().await.unwrap();
    let alive = count(
        &admin,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {}",
            leaked.pids()[0]
        ),
    )
    .await;
    assert_eq!(alive, 1, "the hidden session was left alone");
}

/// `run` sees a prepared transaction too. With psql's plan, the look before
/// the first attempt finds it: never raced. Without a plan (a command run
/// through `sh`), the first attempt's brief wait is seen blocked by "pid 0",
/// named by its gid, and waited out from then on.
#[tokio::test]
async fn run_names_a_prepared_transaction_by_its_gid_and_never_races_it_twice() {
    let cluster = cluster_with_two_phase_commit();
    let incident = Incident::stage(&cluster, "prepared_run").await.unwrap();
    prepare_reader(&incident).await;
    let admin = incident.admin.connect().await.unwrap();
    let psql = cluster.bin().tool("psql").display().to_string();
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[(
            "m.sql",
            "ALTER TABLE academic_partners ADD COLUMN country text;\n",
        )],
    );
    let file = dir.path().join("m.sql").display().to_string();

    let run = |command: &[&str]| {
        let mut args = vec!["run", "--deadline", "2s", "--format", "json", "--"];
        args.extend(command);
        locksmith(&incident.url, &args)
    };
    let planned = run(&[&psql, "-X", &incident.url, "-f", &file]);
    assert_eq!(planned.status.code(), Some(3), "{}", text(&planned));
    let report = json(&planned);
    assert_eq!(report["status"], "blocked", "{report}");
    assert_eq!(report["attempts"], 0, "never raced: {report}");
    assert_eq!(report["blockers"][0]["prepared"]["gid"], GID, "{report}");

    let script = format!("{psql} -X -v ON_ERROR_STOP=1 \"$DATABASE_URL\" -f {file}");
    let unplanned = run(&["sh", "-c", &script]);
    assert_eq!(unplanned.status.code(), Some(3), "{}", text(&unplanned));
    let report = json(&unplanned);
    assert_eq!(report["status"], "blocked", "{report}");
    assert_eq!(
        report["attempts"], 1,
        "raced once to learn the table, then waited out: {report}"
    );
    let blockers = report["blockers"].as_array().unwrap();
    assert_eq!(blockers.len(), 1, "{report}");
    assert_eq!(blockers[0]["prepared"]["gid"], GID, "{report}");
    assert!(!text(&unplanned).contains("pid 0"), "{}", text(&unplanned));

    assert_eq!(
        count(
            &admin,
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'country'"
        )
        .await,
        0,
        "nothing ran"
    );
    assert_eq!(
        count(&admin, "SELECT count(*) FROM pg_locks WHERE NOT granted").await,
        0,
        "nothing left queued"
    );
    admin
        .batch_execute(&format!(
            "ROLLBACK PREPARED {}",
            locksmith_core::quote::literal(GID)
        ))
        .await
        .unwrap();
}
