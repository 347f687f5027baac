//! `locksmith run -- CMD`: the story's migration, written for alembic
//! (SQLAlchemy + psycopg2, as in the incident), run unchanged under the guard
//! against real leaked sessions on a throwaway cluster.
//!
//! The Python side comes from a venv: `LOCKSMITH_TEST_PYTHON` (a venv's
//! python with alembic, sqlalchemy and psycopg2), else the one
//! `scripts/python-venv.sh` creates in `target/py` (pip, from PyPI) on first use.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use locksmith_pg::ConnectionSettings;
use locksmith_sandbox::incident::{Incident, TABLE};
use locksmith_sandbox::traffic::LeakedSessions;
use locksmith_sandbox::Cluster;
use serde_json::Value;

mod support;

const CONSTRAINT: &str = "unique_informal_name_academic_partner";

/// The venv's python, created on first use.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(p) = std::env::var_os("LOCKSMITH_TEST_PYTHON").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = std::process::Command::new("bash")
            .arg(root.join("scripts/python-venv.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("running scripts/python-venv.sh");
        assert!(
            out.status.success(),
            "\n\n*** The `run` tests need Python 3 with alembic, sqlalchemy and psycopg2-binary. \
             scripts/python-venv.sh could not create that venv (is PyPI reachable?). Create one and \
             point LOCKSMITH_TEST_PYTHON at its python. ***\n"
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

/// A tiny alembic project: 0001 creates a side table, 0002 is the story's
/// `op.create_unique_constraint` on `academic_partners`.
struct AlembicProject {
    dir: tempfile::TempDir,
}

impl AlembicProject {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("migrations/versions")).unwrap();
        std::fs::write(
            root.join("alembic.ini"),
            format!(
                "[alembic]\nscript_location = {}\n\n\
                 [loggers]\nkeys = root,alembic\n[handlers]\nkeys = console\n[formatters]\nkeys = generic\n\
                 [logger_root]\nlevel = WARN\nhandlers = console\nqualname =\n\
                 [logger_alembic]\nlevel = INFO\nhandlers =\nqualname = alembic\n\
                 [handler_console]\nclass = StreamHandler\nargs = (sys.stderr,)\nlevel = NOTSET\nformatter = generic\n\
                 [formatter_generic]\nformat = %(levelname)-5.5s [%(name)s] %(message)s\n",
                root.join("migrations").display()
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("migrations/env.py"),
            r#"import os
import re
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine

if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name)

# The story's driver, psycopg2, whatever SQLAlchemy's default for postgresql:// is.
url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg2://", os.environ["DATABASE_URL"])
engine = create_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
"#,
        )
        .unwrap();
        std::fs::write(
            root.join("migrations/versions/0001_partner_notes.py"),
            r#"from alembic import op
import sqlalchemy as sa

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table("partner_notes", sa.Column("id", sa.Integer, primary_key=True))


def downgrade():
    op.drop_table("partner_notes")
"#,
        )
        .unwrap();
        std::fs::write(
            root.join("migrations/versions/0002_unique_informal_name.py"),
            r#"from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.create_unique_constraint(
        "unique_informal_name_academic_partner", "academic_partners", ["informal_name"]
    )


def downgrade():
    op.drop_constraint("unique_informal_name_academic_partner", "academic_partners", type_="unique")
"#,
        )
        .unwrap();
        AlembicProject { dir }
    }

    fn ini(&self) -> String {
        self.dir.path().join("alembic.ini").display().to_string()
    }

    /// `alembic … upgrade TARGET` as argv.
    fn upgrade(&self, target: &str) -> Vec<String> {
        let alembic = python().with_file_name("alembic");
        vec![
            alembic.display().to_string(),
            "-c".into(),
            self.ini(),
            "upgrade".into(),
            target.into(),
        ]
    }

    /// Applies up to `target` directly, without locksmith (the baseline).
    fn upgrade_directly(&self, url: &str, target: &str) {
        let argv = self.upgrade(target);
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .env("DATABASE_URL", url)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

fn locksmith_command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_locksmith"));
    cmd.arg("run")
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("PGAPPNAME")
        .env_remove("PGOPTIONS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

async fn collect(child: tokio::process::Child, started: Instant) -> Ran {
    let out = child.wait_with_output().await.unwrap();
    let ran = Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    };
    eprintln!(
        "--- locksmith run exited {} after {:?}\n--- stdout:\n{}\n--- stderr:\n{}",
        ran.code, ran.took, ran.stdout, ran.stderr
    );
    ran
}

/// Reads the child's stderr as it comes: the first receiver fires when a
/// line contains `needle`; the task returns all of stderr.
fn watch_stderr(
    child: &mut tokio::process::Child,
    needle: &'static str,
) -> (
    tokio::sync::oneshot::Receiver<()>,
    tokio::task::JoinHandle<String>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let (seen, seen_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let (mut seen, mut text) = (Some(seen), String::new());
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(needle) {
                if let Some(seen) = seen.take() {
                    let _ = seen.send(());
                }
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    (seen_rx, task)
}

async fn locksmith_run(args: &[&str]) -> Ran {
    let started = Instant::now();
    collect(locksmith_command(args).spawn().unwrap(), started).await
}

/// A request loop on the table from another session: the worst any one
/// `SELECT` waited is what traffic felt.
struct StallProbe {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<(Duration, usize)>,
}

impl StallProbe {
    async fn start(settings: &ConnectionSettings) -> StallProbe {
        let client = settings.connect().await.unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut n = 0;
            while !*stopped.borrow() {
                let t = Instant::now();
                client
                    .query_one("SELECT count(*) FROM academic_partners", &[])
                    .await
                    .unwrap();
                worst = worst.max(t.elapsed());
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (worst, n)
        });
        StallProbe { stop, task }
    }

    async fn stop(self) -> Duration {
        let _ = self.stop.send(true);
        let (worst, n) = self.task.await.unwrap();
        assert!(n > 10, "the probe barely ran ({n} queries)");
        worst
    }
}

async fn scalar_i64(client: &locksmith_pg::Connection, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

async fn constraint_exists(client: &locksmith_pg::Connection) -> bool {
    scalar_i64(
        client,
        &format!("SELECT count(*) FROM pg_constraint WHERE conname = '{CONSTRAINT}'"),
    )
    .await
        == 1
}

async fn alembic_version(client: &locksmith_pg::Connection) -> String {
    client
        .query_one("SELECT version_num FROM alembic_version", &[])
        .await
        .unwrap()
        .get(0)
}

/// No lock request left queued by anyone, and none of the wrapped command's sessions left.
async fn assert_nothing_left_queued(client: &locksmith_pg::Connection) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ungranted = scalar_i64(client, "SELECT count(*) FROM pg_locks WHERE NOT granted").await;
        let ours = scalar_i64(
            client,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'locksmith-run-%'",
        )
        .await;
        if ungranted == 0 && ours == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: {ungranted} ungranted locks, {ours} sessions of the command"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pids(report: &Value, key: &str) -> Vec<i64> {
    let mut p: Vec<i64> = report[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["pid"].as_i64().unwrap())
        .collect();
    p.sort();
    p
}

fn sorted(pids: &[i32]) -> Vec<i64> {
    let mut p: Vec<i64> = pids.iter().map(|p| *p as i64).collect();
    p.sort();
    p
}

/// Stages the incident with alembic at 0001 and two leaked sessions.
async fn stage(
    cluster: &Cluster,
    project: &AlembicProject,
) -> (Incident, LeakedSessions, locksmith_pg::Connection) {
    let (incident, admin) = staged_at_0001(cluster, project).await;
    let leaked = LeakedSessions::open(&incident.app.with_application_name("leaky-app"), 2, TABLE)
        .await
        .unwrap();
    (incident, leaked, admin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_cleanly_naming_the_leakers() {
    let project = AlembicProject::new();
    let cluster = Cluster::start().unwrap();
    let (incident, leaked, admin) = stage(&cluster, &project).await;
    let url = cluster.url("incident");
    let probe = StallProbe::start(&incident.app.with_application_name("web-request")).await;
    // Long-lived before locksmith first looks.
    support::idle_past_long_lived(&admin, leaked.pids()).await;

    let mut args = vec![
        "--format",
        "json",
        // Long enough for alembic's first attempt to start, lose and exit
        // on a loaded machine (python's start alone can take seconds).
        "--deadline",
        "8s",
        "--lock-timeout",
        "200ms",
        "--database-url",
        &url,
        "--",
    ];
    let alembic = project.upgrade("head");
    args.extend(alembic.iter().map(String::as_str));
    let ran = locksmith_run(&args).await;
    let worst = probe.stop().await;

    assert_eq!(ran.code, 3, "gave up: exit 3");
    let report: Value = serde_json::from_str(&ran.stdout).expect("stdout is only the JSON report");
    assert_eq!(report["status"], "blocked");
    // The look before the first attempt (the plan names the table) finds the
    // long-lived leakers, and alembic never queues behind them.
    assert_eq!(report["attempts"], 0, "never raced the leakers");
    assert_eq!(
        pids(&report, "blockers"),
        sorted(leaked.pids()),
        "the leakers are named"
    );
    for b in report["blockers"].as_array().unwrap() {
        assert_eq!(b["application_name"], "leaky-app");
        assert_eq!(b["state"], "idle in transaction");
        assert_eq!(b["relation"], TABLE);
        assert_eq!(b["mode"], "AccessShareLock");
    }
    assert_eq!(report["terminated"], serde_json::json!([]));
    assert!(
        ran.stderr.contains("waiting for 2 sessions"),
        "progress on stderr: {}",
        ran.stderr
    );
    assert!(
        ran.took < Duration::from_secs(20),
        "gave up near the deadline: {:?}",
        ran.took
    );
    assert!(worst < Duration::from_secs(1), "traffic stalled {worst:?}");

    assert!(
        !constraint_exists(&admin).await,
        "the constraint was not created"
    );
    assert_eq!(
        alembic_version(&admin).await,
        "0001",
        "alembic_version unchanged"
    );
    assert_nothing_left_queued(&admin).await;
    assert_eq!(leaked.alive(), 2, "without the policy nobody is terminated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminates_only_the_idle_blockers_and_completes() {
    let project = AlembicProject::new();
    let cluster = Cluster::start().unwrap();
    let (incident, leaked, admin) = stage(&cluster, &project).await;
    admin
        .batch_execute("CREATE TABLE other_table (id int); INSERT INTO other_table VALUES (1); GRANT SELECT ON other_table TO app")
        .await
        .unwrap();
    let url = cluster.url("incident");
    // An active query on another table: not a blocker, never to be touched.
    let busy = incident
        .app
        .with_application_name("reporting")
        .connect()
        .await
        .unwrap();
    let busy = tokio::spawn(async move {
        busy.query_one("SELECT pg_sleep(3) FROM other_table", &[])
            .await
            .map(|_| ())
    });
    let probe = StallProbe::start(&incident.app.with_application_name("web-request")).await;

    let mut args = vec![
        "--format",
        "json",
        "--terminate-idle-after",
        "500ms",
        "--lock-timeout",
        "200ms",
        "--deadline",
        "30s",
    ];
    args.extend(["--database-url", &url, "--"]);
    let alembic = project.upgrade("head");
    args.extend(alembic.iter().map(String::as_str));
    let ran = locksmith_run(&args).await;
    let worst = probe.stop().await;

    assert_eq!(ran.code, 0);
    let report: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(report["status"], "applied");
    assert_eq!(
        pids(&report, "terminated"),
        sorted(leaked.pids()),
        "the leakers, and only them"
    );
    assert_eq!(report["blockers"], serde_json::json!([]));
    assert_eq!(report["migrations"][0]["attempts"], report["attempts"]);
    assert!(worst < Duration::from_secs(1), "traffic stalled {worst:?}");
    assert!(
        busy.await.unwrap().is_ok(),
        "the active query was left alone"
    );

    assert!(constraint_exists(&admin).await);
    assert_eq!(alembic_version(&admin).await, "0002");
    let deadline = Instant::now() + Duration::from_secs(30);
    while leaked.alive() > 0 {
        assert!(Instant::now() < deadline, "the leakers were not terminated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_nothing_left_queued(&admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driver_that_ignores_lock_timeout_is_cancelled_by_the_watchdog() {
    let project = AlembicProject::new();
    let cluster = Cluster::start().unwrap();
    let (incident, leaked, admin) = stage(&cluster, &project).await;
    let url = cluster.url("incident");
    let probe = StallProbe::start(&incident.app.with_application_name("web-request")).await;
    // psycopg2 overriding the injected lock_timeout: only the watchdog can end its wait.
    let script = "import os, psycopg2\n\
                  c = psycopg2.connect(os.environ['DATABASE_URL'])\n\
                  cur = c.cursor()\n\
                  cur.execute('SET lock_timeout = 0')\n\
                  cur.execute('ALTER TABLE academic_partners ADD CONSTRAINT unique_informal_name_academic_partner UNIQUE (informal_name)')\n\
                  c.commit()\n";
    let py = python().display().to_string();
    let ran = locksmith_run(&[
        "--format",
        "json",
        "--lock-timeout",
        "200ms",
        "--deadline",
        "2s",
        "--database-url",
        &url,
        "--",
        &py,
        "-c",
        script,
    ])
    .await;
    let worst = probe.stop().await;

    assert_eq!(ran.code, 3);
    assert!(
        ran.stderr.contains("cancelled on the server"),
        "the watchdog cancelled the wait"
    );
    assert!(
        ran.stderr
            .contains("canceling statement due to user request"),
        "the child's error passed through"
    );
    let report: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(pids(&report, "blockers"), sorted(leaked.pids()));
    assert!(worst < Duration::from_secs(1), "traffic stalled {worst:?}");
    assert!(!constraint_exists(&admin).await);
    assert_nothing_left_queued(&admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_are_passed_on_and_the_queued_request_is_cancelled() {
    let project = AlembicProject::new();
    let cluster = Cluster::start().unwrap();
    let (_incident, leaked, admin) = stage(&cluster, &project).await;
    let url = cluster.url("incident");
    let script = "import os, psycopg2\n\
                  c = psycopg2.connect(os.environ['DATABASE_URL'])\n\
                  c.cursor().execute('ALTER TABLE academic_partners ADD CONSTRAINT unique_informal_name_academic_partner UNIQUE (informal_name)')\n";
    let py = python().display().to_string();
    // The wrapped command is a shell that records the signal it receives,
    // running the ALTER in python: only a signal passed on writes the file.
    let dir = tempfile::tempdir().unwrap();
    let got = dir.path().join("got");
    let shell = format!(
        "trap 'echo got-INT > {f}; exit 130' INT; trap 'echo got-TERM > {f}; exit 143' TERM; \
         \"$0\" -c \"$1\" & wait $!",
        f = got.display()
    );
    for (signal, code, recorded) in [("-INT", 130, "got-INT"), ("-TERM", 143, "got-TERM")] {
        let _ = std::fs::remove_file(&got);
        let started = Instant::now();
        // A budget long enough that only the signal can end the wait.
        let child = locksmith_command(&[
            "--lock-timeout",
            "60s",
            "--database-url",
            &url,
            "--",
            "sh",
            "-c",
            &shell,
            &py,
            script,
        ])
        .spawn()
        .unwrap();
        let pid = child.id().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while scalar_i64(&admin, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'locksmith-run-%' AND wait_event_type = 'Lock'").await == 0 {
            assert!(Instant::now() < deadline, "the command never queued");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sent = Instant::now();
        assert!(std::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .unwrap()
            .success());
        let ran = collect(child, started).await;
        assert_eq!(ran.code, code, "{signal}");
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "{signal}: took {:?} to stop",
            sent.elapsed()
        );
        assert!(ran.stderr.contains("interrupted"), "{signal}");
        // locksmith waited for the command to end: its trap has run by now.
        assert_eq!(
            std::fs::read_to_string(&got).ok().as_deref().map(str::trim),
            Some(recorded),
            "{signal}: the wrapped command never received the signal"
        );
        assert_nothing_left_queued(&admin).await;
        assert_eq!(leaked.alive(), 2, "{signal}: the leakers were not touched");
    }
    assert!(!constraint_exists(&admin).await);
}

#[tokio::test]
async fn other_failures_pass_the_exit_code_through() {
    let cluster = Cluster::start().unwrap();
    let url = cluster.url("postgres");
    let ran = locksmith_run(&[
        "--database-url",
        &url,
        "--",
        "sh",
        "-c",
        "echo doing work; exit 7",
    ])
    .await;
    assert_eq!(ran.code, 7);
    assert_eq!(
        ran.stdout, "doing work\n",
        "the command's stdout passes through"
    );
    assert!(ran.stderr.contains("exit code 7"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("lost a lock race"));
    assert!(ran.stderr.matches("attempt ").count() == 1, "not retried");

    let ran = locksmith_run(&[
        "--format",
        "json",
        "--database-url",
        &url,
        "--",
        "sh",
        "-c",
        "echo to stdout; exit 0",
    ])
    .await;
    assert_eq!(ran.code, 0);
    let report: Value =
        serde_json::from_str(&ran.stdout).expect("with --format json stdout holds only the report");
    assert_eq!(report["status"], "applied");
    assert!(
        ran.stderr.contains("to stdout"),
        "the command's stdout went to stderr"
    );

    let ran = locksmith_run(&["--database-url", &url, "--", "/nonexistent/migrate"]).await;
    assert_eq!(ran.code, 127);
}

#[tokio::test]
async fn the_command_sees_lock_timeout_and_application_name() {
    let cluster = Cluster::start().unwrap();
    let url = cluster.url("postgres");
    let echo = r#"echo "$PGOPTIONS|$PGAPPNAME|$DATABASE_URL""#;
    let ran = locksmith_run(&[
        "--lock-timeout",
        "20ms",
        "--database-url",
        &url,
        "--",
        "sh",
        "-c",
        echo,
    ])
    .await;
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let fields: Vec<&str> = ran.stdout.trim().split('|').collect();
    assert_eq!(fields[0], "-c lock_timeout=20ms");
    let suffix = fields[1]
        .strip_prefix("locksmith-run-")
        .expect("a PGAPPNAME to find its sessions by");
    assert!(suffix.parse::<u32>().is_ok(), "{}", fields[1]);
    assert_eq!(
        fields[2], url,
        "--database-url is handed on as DATABASE_URL"
    );

    // What the user set is kept: PGOPTIONS extended, PGAPPNAME and DATABASE_URL untouched.
    let started = Instant::now();
    let child = locksmith_command(&["--database-url", &url, "--", "sh", "-c", echo])
        .env("PGOPTIONS", "-c statement_timeout=5s")
        .env("PGAPPNAME", "deploy-42")
        .env("DATABASE_URL", "postgres://elsewhere/db")
        .spawn()
        .unwrap();
    let ran = collect(child, started).await;
    assert_eq!(ran.code, 0);
    assert_eq!(
        ran.stdout.trim(),
        "-c statement_timeout=5s -c lock_timeout=75ms|deploy-42|postgres://elsewhere/db",
        "the first attempt waits briefly for its locks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn races_a_young_blocker_and_waits_out_a_long_lived_one() {
    let project = AlembicProject::new();
    let cluster = Cluster::start().unwrap();
    let incident = Incident::stage(&cluster, "incident").await.unwrap();
    let url = cluster.url("incident");
    project.upgrade_directly(&url, "0001");
    let admin = incident
        .admin
        .with_application_name("test-admin")
        .connect()
        .await
        .unwrap();
    // A request that holds its transaction open for a while, then ends it.
    let slow = incident
        .app
        .with_application_name("slow-request")
        .connect()
        .await
        .unwrap();
    let slow_pid: i32 = slow
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    slow.batch_execute("BEGIN; SELECT count(*) FROM academic_partners")
        .await
        .unwrap();
    let alembic = project.upgrade("head");

    // --max-attempts 1: one lost race and it gives up at once, naming the blocker (human
    // report). Under --lock-timeout 30s the request (idle a second or two) is young, so
    // it is raced rather than waited out.
    let mut args = vec![
        "--max-attempts",
        "1",
        "--lock-timeout",
        "30s",
        "--database-url",
        &url,
        "--",
    ];
    args.extend(alembic.iter().map(String::as_str));
    let ran = locksmith_run(&args).await;
    assert_eq!(ran.code, 3);
    assert!(
        ran.stderr
            .contains("lost the race for its locks 1 time (--max-attempts 1)"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("Blocked by:") && ran.stderr.contains("\"slow-request\""));
    assert!(ran.stderr.contains("scoped_session.remove()"), "the advice");
    assert!(
        ran.stderr.contains("LockNotAvailable"),
        "alembic's own error passed through"
    );
    assert_eq!(alembic_version(&admin).await, "0001");

    // With the defaults, the slow request is long-lived by now: the look before the
    // first attempt (the plan names the table) waits for it without queueing, and the
    // command runs once its transaction ended, never racing it. The transaction ends only
    // once locksmith says it waits for it (a fixed delay raced the command's start-up on
    // a loaded machine).
    support::idle_past_long_lived(&admin, &[slow_pid]).await;
    let mut args = vec!["--format", "json", "--database-url", &url, "--"];
    args.extend(alembic.iter().map(String::as_str));
    let started = Instant::now();
    let mut child = locksmith_command(&args).spawn().unwrap();
    let (waiting, stderr) = watch_stderr(&mut child, "waiting for 1 session");
    tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("within 60 s, locksmith lost the race and waited for the slow request")
        .expect("locksmith ended without waiting for the slow request");
    slow.batch_execute("COMMIT").await.unwrap();
    let mut ran = collect(child, started).await;
    ran.stderr = stderr.await.unwrap();
    eprintln!("--- stderr:\n{}", ran.stderr);
    assert_eq!(ran.code, 0);
    let report: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(report["status"], "applied");
    assert_eq!(
        report["attempts"], 1,
        "looked before the first attempt: no race lost"
    );
    assert!(
        ran.stderr.contains("waiting for 1 session"),
        "looked before queueing again"
    );
    assert!(constraint_exists(&admin).await);
    assert_eq!(alembic_version(&admin).await, "0002");
    assert_nothing_left_queued(&admin).await;
}

/// The incident at alembic 0001, without leakers.
async fn staged_at_0001(
    cluster: &Cluster,
    project: &AlembicProject,
) -> (Incident, locksmith_pg::Connection) {
    let incident = Incident::stage(cluster, "incident").await.unwrap();
    project.upgrade_directly(&cluster.url("incident"), "0001");
    let admin = incident
        .admin
        .with_application_name("test-admin")
        .connect()
        .await
        .unwrap();
    (incident, admin)
}

/// `locksmith run ARGS -- alembic … upgrade head` for the project.
async fn run_alembic(project: &AlembicProject, args: &[&str]) -> Ran {
    let alembic = project.upgrade("head");
    let mut all: Vec<&str> = args.to_vec();
    all.push("--");
    all.extend(alembic.iter().map(String::as_str));
    locksmith_run(&all).await
}

/// The project's upgrade to head under `--max-hold 100ms`, and its JSON report.
async fn under_100ms_max_hold(project: &AlembicProject, url: &str) -> (Ran, Value) {
    let args = [
        "--max-hold",
        "100ms",
        "--format",
        "json",
        "--database-url",
        url,
    ];
    let ran = run_alembic(project, &args).await;
    let report = serde_json::from_str(&ran.stdout).unwrap();
    (ran, report)
}

#[tokio::test]
async fn the_plan_of_an_alembic_upgrade_is_read_before_it_runs() {
    let project = AlembicProject::new();
    let cluster = Cluster::start().unwrap();
    let (_incident, admin) = staged_at_0001(&cluster, &project).await;
    let url = cluster.url("incident");
    // 250 rows: the hold is nothing, even under a 100 ms --max-hold; it runs.
    let (ran, report) = under_100ms_max_hold(&project, &url).await;
    assert_eq!(ran.code, 0);
    assert_eq!(report["status"], "applied");
    let plan = &report["plan"];
    assert!(
        plan["sql_from"]
            .as_str()
            .unwrap()
            .contains("upgrade 0001:head --sql"),
        "{plan}"
    );
    let unique = plan["statements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sql"].as_str().unwrap().contains(CONSTRAINT))
        .expect("the ADD CONSTRAINT is in the plan");
    assert_eq!(unique["locks"][0]["mode"], "AccessExclusiveLock");
    assert_eq!(unique["tables"][0]["relation"], "academic_partners");
    assert_eq!(unique["tables"][0]["rows"], 250);
    assert!(
        unique["estimated_hold"]["estimated_hold_ms"]
            .as_u64()
            .unwrap()
            < 100
    );
    assert!(
        unique["online"]["steps"]
            .as_str()
            .unwrap()
            .contains("CONCURRENTLY"),
        "{unique}"
    );
    assert!(ran.stderr.contains("locksmith run: plan, from the SQL of"));
    assert!(ran
        .stderr
        .contains("reads in full academic_partners: about 250 rows"));
    assert!(constraint_exists(&admin).await);
    assert_eq!(alembic_version(&admin).await, "0002");
}

#[tokio::test]
async fn max_hold_refuses_a_big_table_before_alembic_runs() {
    let project = AlembicProject::new();
    let cluster = Cluster::start().unwrap();
    let (_incident, admin) = staged_at_0001(&cluster, &project).await;
    admin
        .batch_execute(
            "INSERT INTO academic_partners (name, informal_name)
               SELECT 'University ' || i, 'uni-' || i FROM generate_series(251, 1000000) AS i;
             ANALYZE academic_partners",
        )
        .await
        .unwrap();
    let url = cluster.url("incident");
    let (ran, report) = under_100ms_max_hold(&project, &url).await;
    assert_eq!(ran.code, 3);
    assert_eq!(report["status"], "hold_exceeded");
    assert_eq!(report["attempts"], 0);
    let error = report["error"].as_str().unwrap();
    for says in [
        "refused before running anything",
        CONSTRAINT,
        "ACCESS EXCLUSIVE on academic_partners",
        "about 1000000 rows",
        "over --max-hold 100ms",
        "apply --online",
    ] {
        assert!(error.contains(says), "{says}: {error}");
    }
    assert!(!ran.stderr.contains("attempt 1"), "alembic never ran");
    assert!(!constraint_exists(&admin).await);
    assert_eq!(alembic_version(&admin).await, "0001");
}

#[tokio::test]
async fn a_migration_that_reads_data_has_no_plan_and_runs_as_before() {
    let project = AlembicProject::new();
    std::fs::write(
        project
            .dir
            .path()
            .join("migrations/versions/0003_count_partners.py"),
        r#"from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    # Reads data: offline (--sql) there is no result to read.
    n = op.get_bind().execute(sa.text("SELECT count(*) FROM academic_partners")).scalar()
    op.execute(f"COMMENT ON TABLE academic_partners IS 'partners: {n}'")


def downgrade():
    pass
"#,
    )
    .unwrap();
    let cluster = Cluster::start().unwrap();
    let (_incident, admin) = staged_at_0001(&cluster, &project).await;
    let url = cluster.url("incident");
    // --plan-only has nothing to print: it says why, exit 1, nothing run.
    let ran = run_alembic(&project, &["--plan-only", "--database-url", &url]).await;
    assert_eq!(ran.code, 1);
    assert!(ran.stderr.contains("no plan:"), "{}", ran.stderr);
    assert_eq!(alembic_version(&admin).await, "0001");

    let ran = run_alembic(&project, &["--database-url", &url]).await;
    assert_eq!(ran.code, 0);
    assert!(
        ran.stderr.contains("note: no plan before running")
            && ran.stderr.contains("upgrade 0001:head --sql` failed"),
        "a clear note"
    );
    assert!(ran.stderr.contains("attempt 1"), "then a guarded run");
    assert!(constraint_exists(&admin).await);
    assert_eq!(alembic_version(&admin).await, "0003");
}

#[tokio::test]
async fn plan_only_prints_the_plan_and_runs_nothing() {
    let project = AlembicProject::new();
    let cluster = Cluster::start().unwrap();
    let (_incident, admin) = staged_at_0001(&cluster, &project).await;
    let url = cluster.url("incident");
    let ran = run_alembic(&project, &["--plan-only", "--database-url", &url]).await;
    assert_eq!(ran.code, 0);
    assert!(
        ran.stdout.starts_with("plan, from the SQL of"),
        "{}",
        ran.stdout
    );
    assert!(ran
        .stdout
        .contains("locks ACCESS EXCLUSIVE on academic_partners"));
    assert!(ran.stdout.contains("online: "));
    eprintln!("time to the plan: {:?}", ran.took);
    let ran = run_alembic(
        &project,
        &["--plan-only", "--format", "json", "--database-url", &url],
    )
    .await;
    assert_eq!(ran.code, 0);
    let out: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(out["status"], "planned");
    assert!(!out["plan"]["statements"].as_array().unwrap().is_empty());
    assert!(!constraint_exists(&admin).await);
    assert_eq!(alembic_version(&admin).await, "0001");

    // Another tool, with --sql-from: its SQL is planned the same way.
    let ran = locksmith_run(&[
        "--plan-only",
        "--sql-from",
        &format!("echo 'ALTER TABLE academic_partners ADD CONSTRAINT {CONSTRAINT} UNIQUE (informal_name);'"),
        "--database-url",
        &url,
        "--",
        "flyway",
        "migrate",
    ])
    .await;
    assert_eq!(ran.code, 0);
    assert!(ran.stdout.contains("about 250 rows"), "{}", ran.stdout);
    // No source of SQL at all: bad usage.
    let ran = locksmith_run(&[
        "--plan-only",
        "--database-url",
        &url,
        "--",
        "flyway",
        "migrate",
    ])
    .await;
    assert_eq!(ran.code, 2);
    assert!(ran.stderr.contains("--sql-from"), "{}", ran.stderr);
}

#[tokio::test]
async fn a_failing_sql_from_runs_nothing() {
    let cluster = Cluster::start().unwrap();
    let url = cluster.url("postgres");
    let dir = tempfile::tempdir().unwrap();
    let ran_file = dir.path().join("ran");
    let touch = format!("touch {}", ran_file.display());
    let ran = locksmith_run(&[
        "--sql-from",
        "echo 'cannot reach the app settings' >&2; exit 7",
        "--database-url",
        &url,
        "--",
        "sh",
        "-c",
        &touch,
    ])
    .await;
    assert_eq!(ran.code, 2);
    assert!(ran.stderr.contains("--sql-from"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("cannot reach the app settings"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("nothing was run"), "{}", ran.stderr);
    assert!(!ran_file.exists(), "the command ran");
}
