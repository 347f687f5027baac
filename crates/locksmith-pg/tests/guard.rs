//! The guard against real sessions: it must never make traffic wait more
//! than its budget, give up cleanly naming the blockers, terminate only what
//! the policy allows, and leave no lock request of its own behind.

use std::time::{Duration, Instant};

use locksmith_core::lock::LockMode;
use locksmith_pg::guard::{Event, Guard, GuardError, GuardPolicy, Interrupt, RelationLock, Step};
use locksmith_sandbox::incident::{Incident, MIGRATION, TABLE};
use locksmith_sandbox::traffic::{LeakedSessions, Traffic, TrafficProfile};
use locksmith_sandbox::wait;
use tokio::sync::watch;

fn alter_step() -> Step {
    Step {
        sql: MIGRATION.to_string(),
        locks: vec![RelationLock {
            relation: TABLE.into(),
            mode: LockMode::AccessExclusive,
        }],
        builds_index: None,
    }
}

fn policy(deadline_ms: u64, terminate_ms: Option<u64>) -> GuardPolicy {
    GuardPolicy {
        lock_timeout: Duration::from_millis(200),
        max_attempts: 50,
        deadline: Duration::from_millis(deadline_ms),
        terminate_idle_after: terminate_ms.map(Duration::from_millis),
        ..GuardPolicy::default()
    }
}

async fn constraint_exists(client: &locksmith_pg::Connection) -> bool {
    client
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conname = 'unique_informal_name_academic_partner'",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
        == 1
}

/// Whether `pid` holds (`granted`) or waits for (`!granted`) a lock on the story's table.
async fn has_table_lock(client: &locksmith_pg::Connection, pid: i32, granted: bool) -> bool {
    client
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE pid = $1 AND granted = $2 AND relation = $3::text::regclass",
            &[&pid, &granted, &TABLE],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
        > 0
}

/// The guard's events as (kind, pids of the holders named).
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(&'static str, Vec<i32>)>>>;

fn record_events(guard: &mut Guard) -> Seen {
    let seen = Seen::default();
    let sink = seen.clone();
    guard.on_event(move |event| {
        let entry = match event {
            Event::Waiting { holders, .. } => {
                ("waiting", holders.iter().map(|h| h.session.pid).collect())
            }
            Event::Attempt { .. } => ("attempt", Vec::new()),
            Event::LostRace { .. } => ("lost_race", Vec::new()),
            Event::Terminated(h) => ("terminated", vec![h.session.pid]),
            Event::DroppedInvalidIndex(_) => ("dropped_invalid_index", Vec::new()),
            Event::IndexAlreadyBuilt(_) => ("index_already_built", Vec::new()),
            Event::OnlineStep { .. } => ("online_step", Vec::new()),
            Event::Backfill { .. } => ("backfill", Vec::new()),
        };
        sink.lock().unwrap().push(entry);
    });
    seen
}

async fn ungranted_locks_of(client: &locksmith_pg::Connection, pid: i32) -> i64 {
    client
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted",
            &[&pid],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn gives_up_naming_the_leakers_without_stalling_traffic() {
    let incident = Incident::stage_shared("guard_blocked").await.unwrap();
    let leaked = LeakedSessions::open(&incident.app.with_application_name("leaky-app"), 3, TABLE)
        .await
        .unwrap();
    let traffic = Traffic::start(
        incident.app.clone(),
        TrafficProfile {
            rate: 50.0,
            ..TrafficProfile::default()
        },
    );

    let (_tx, rx) = watch::channel(None);
    let mut guard = Guard::connect(&incident.admin, policy(2500, None), rx)
        .await
        .unwrap();
    let started = Instant::now();
    let err = guard
        .run_transaction(&[alter_step()], None)
        .await
        .unwrap_err();
    let took = started.elapsed();
    let report = traffic.stop().await;

    let GuardError::Blocked { holders, .. } = err else {
        panic!("expected Blocked, got {err:?}")
    };
    let mut named: Vec<i32> = holders.iter().map(|h| h.session.pid).collect();
    named.sort();
    let mut leakers = leaked.pids().to_vec();
    leakers.sort();
    assert_eq!(named, leakers, "the blockers named are exactly the leakers");
    assert!(holders
        .iter()
        .all(|h| h.session.application_name == "leaky-app" && h.mode == "AccessShareLock"));
    assert!(holders
        .iter()
        .all(|h| h.session.state.as_deref() == Some("idle in transaction")));
    assert!(took < Duration::from_secs(5), "gave up in {took:?}");
    assert!(report.requests > 50);
    // Generous bound: the guard never queued, so traffic never waited for it.
    assert!(
        report.max_stall_ms < 1000,
        "traffic stalled {} ms",
        report.max_stall_ms
    );
    assert_eq!(report.timeouts, 0);
    let admin = incident.admin.connect().await.unwrap();
    assert!(!constraint_exists(&admin).await);
    assert_eq!(ungranted_locks_of(&admin, guard.pid()).await, 0);
    assert_eq!(
        leaked.alive(),
        3,
        "nothing was terminated without the policy"
    );
}

#[tokio::test]
async fn terminates_only_idle_blockers_past_the_threshold() {
    let incident = Incident::stage_shared("guard_terminate").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    admin
        .batch_execute("CREATE TABLE other (id int); GRANT SELECT ON other TO app")
        .await
        .unwrap();
    let leaked = LeakedSessions::open(&incident.app.with_application_name("leaky-app"), 2, TABLE)
        .await
        .unwrap();
    // Idle in transaction, but on another table: does not block us, must survive.
    let bystander =
        LeakedSessions::open(&incident.app.with_application_name("bystander"), 1, "other")
            .await
            .unwrap();
    // An active query in another database's session is never touched either.
    let busy = incident
        .app
        .with_application_name("busy")
        .connect()
        .await
        .unwrap();
    let busy_query = tokio::spawn(async move { busy.batch_execute("SELECT pg_sleep(2)").await });
    let traffic = Traffic::start(
        incident.app.clone(),
        TrafficProfile {
            rate: 50.0,
            ..TrafficProfile::default()
        },
    );

    let (_tx, rx) = watch::channel(None);
    let mut guard = Guard::connect(&incident.admin, policy(10_000, Some(500)), rx)
        .await
        .unwrap();
    let started = Instant::now();
    let attempts = guard.run_transaction(&[alter_step()], None).await.unwrap();
    let took = started.elapsed();
    let report = traffic.stop().await;

    assert!(attempts >= 1);
    let mut terminated: Vec<i32> = guard
        .report
        .terminated
        .iter()
        .map(|h| h.session.pid)
        .collect();
    terminated.sort();
    let mut leakers = leaked.pids().to_vec();
    leakers.sort();
    assert_eq!(terminated, leakers);
    assert!(constraint_exists(&admin).await);
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    assert!(
        report.max_stall_ms < 1000,
        "traffic stalled {} ms",
        report.max_stall_ms
    );
    wait::until(
        wait::BOUND,
        "the terminated leakers' connections to close",
        || async { leaked.alive() == 0 },
    )
    .await
    .unwrap();
    assert_eq!(
        bystander.alive(),
        1,
        "a session that does not block us is left alone"
    );
    assert!(
        busy_query.await.unwrap().is_ok(),
        "an active query is never terminated"
    );
}

#[tokio::test]
async fn active_long_query_is_waited_for_not_terminated() {
    let incident = Incident::stage_shared("guard_active").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    // Each side writes the server's clock as it finishes: the order of the
    // two rows is the order on the server, whatever the machine's load.
    admin
        .batch_execute(
            "CREATE TABLE finished (what text, at timestamptz);
             GRANT INSERT ON finished TO app;",
        )
        .await
        .unwrap();
    let reader = incident
        .app
        .with_application_name("report-job")
        .connect()
        .await
        .unwrap();
    let reader_pid: i32 = reader
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    // Long enough to outlive the 1 s after which a holder counts as long-lived.
    let long_read = tokio::spawn(async move {
        reader
            .batch_execute(
                "BEGIN; SELECT count(*) FROM academic_partners, pg_sleep(4);
                 INSERT INTO finished VALUES ('read', clock_timestamp()); COMMIT",
            )
            .await
    });
    wait::until(wait::BOUND, "the report job to hold its lock", || {
        has_table_lock(&admin, reader_pid, true)
    })
    .await
    .unwrap();
    let (_tx, rx) = watch::channel(None);
    let mut guard = Guard::connect(&incident.admin, policy(30_000, Some(0)), rx)
        .await
        .unwrap();
    let seen = record_events(&mut guard);
    let finish = |_: u32, _: Duration| {
        "INSERT INTO finished VALUES ('alter', clock_timestamp())".to_string()
    };
    guard
        .run_transaction(&[alter_step()], Some(&finish))
        .await
        .unwrap();
    assert!(
        guard.report.terminated.is_empty(),
        "an active query is never terminated"
    );
    long_read.await.unwrap().unwrap();
    // The guard waited for the reader, naming it, and got its lock only after the read ended.
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter()
            .any(|(kind, pids)| *kind == "waiting" && pids == &[reader_pid]),
        "{seen:?}"
    );
    let order: Vec<String> = admin
        .query("SELECT what FROM finished ORDER BY at", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(order, ["read", "alter"], "applied before the read ended");
    assert!(constraint_exists(&admin).await);
}

#[tokio::test]
async fn wins_against_a_stream_of_short_transactions() {
    let incident = Incident::stage_shared("guard_contention").await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..8 {
        let client = incident
            .app
            .with_application_name("writer")
            .connect()
            .await
            .unwrap();
        let (stop, done) = (stop.clone(), done.clone());
        writers.push(tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                client
                    .batch_execute("BEGIN; UPDATE academic_partners SET name = name WHERE id = 1 + (random() * 249)::int; COMMIT")
                    .await
                    .unwrap();
                worst = worst.max(t.elapsed());
                done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            worst
        }));
    }
    // The stream is flowing: every writer has committed a few transactions on average.
    wait::until(wait::BOUND, "the writers to get going", || async {
        done.load(std::sync::atomic::Ordering::Relaxed) >= 8 * 5
    })
    .await
    .unwrap();
    let (_tx, rx) = watch::channel(None);
    let mut guard = Guard::connect(&incident.admin, policy(20_000, None), rx)
        .await
        .unwrap();
    let started = Instant::now();
    guard.run_transaction(&[alter_step()], None).await.unwrap();
    let took = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut worst = Duration::ZERO;
    for w in writers {
        worst = worst.max(w.await.unwrap());
    }
    let admin = incident.admin.connect().await.unwrap();
    assert!(constraint_exists(&admin).await);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(
        worst < Duration::from_millis(1500),
        "a writer waited {worst:?}"
    );
}

#[tokio::test]
async fn interrupt_while_waiting_leaves_nothing_queued() {
    let incident = Incident::stage_shared("guard_interrupt").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    // An active read, younger than the budget: the guard does not wait it out
    // by looking but issues its statement, which queues behind the read.
    let reader = incident
        .app
        .with_application_name("report-job")
        .connect()
        .await
        .unwrap();
    let reader_pid: i32 = reader
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let long_read = tokio::spawn(async move {
        reader
            .batch_execute("BEGIN; SELECT count(*) FROM academic_partners, pg_sleep(60); COMMIT")
            .await
    });
    wait::until(wait::BOUND, "the read to hold its lock", || {
        has_table_lock(&admin, reader_pid, true)
    })
    .await
    .unwrap();
    let (tx, rx) = watch::channel(None);
    // A budget that lets the statement wait a long time: the interrupt must still cancel it on the server.
    let policy = GuardPolicy {
        lock_timeout: Duration::from_secs(30),
        ..policy(60_000, None)
    };
    let mut guard = Guard::connect(&incident.admin, policy, rx).await.unwrap();
    let seen = record_events(&mut guard);
    let pid = guard.pid();
    let watcher = incident.admin.connect().await.unwrap();
    let sender = tokio::spawn(async move {
        // Interrupt only once the guard's own lock request is queued on the server.
        wait::until(
            wait::BOUND,
            "the guard's statement to queue for its lock",
            || has_table_lock(&watcher, pid, false),
        )
        .await
        .unwrap();
        tx.send(Some(Interrupt::Interrupt)).unwrap();
        tx
    });
    let step = alter_step();
    let err = guard.run_outside_transaction(&step).await.unwrap_err();
    assert!(
        matches!(err, GuardError::Interrupted(Interrupt::Interrupt)),
        "{err:?}"
    );
    let _tx = sender.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [("attempt", vec![])],
        "one attempt, interrupted while queued"
    );
    assert_eq!(ungranted_locks_of(&admin, pid).await, 0);
    assert!(!constraint_exists(&admin).await);
    assert!(!long_read.is_finished(), "the read was left alone");
    long_read.abort();
}

#[tokio::test]
async fn history_row_commits_with_the_migration_or_not_at_all() {
    let incident = Incident::stage_shared("guard_atomic").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    admin
        .batch_execute("CREATE TABLE history (version int)")
        .await
        .unwrap();
    let (_tx, rx) = watch::channel(None);
    let mut guard = Guard::connect(&incident.admin, policy(5000, None), rx)
        .await
        .unwrap();
    let failing = Step {
        sql: "ALTER TABLE academic_partners ADD COLUMN x int DEFAULT 1/0".into(),
        ..alter_step()
    };
    let finish = |_: u32, _: Duration| "INSERT INTO history VALUES (1)".to_string();
    let err = guard
        .run_transaction(&[alter_step(), failing], Some(&finish))
        .await
        .unwrap_err();
    assert!(matches!(err, GuardError::Failed(_)), "{err:?}");
    assert!(err.to_string().contains("division by zero"), "{err}");
    assert!(
        !constraint_exists(&admin).await,
        "the first statement was rolled back too"
    );
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
    guard
        .run_transaction(&[alter_step()], Some(&finish))
        .await
        .unwrap();
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    assert!(constraint_exists(&admin).await);
}

#[tokio::test]
async fn a_dropped_interrupt_sender_means_never_interrupted() {
    let incident = Incident::stage_shared("guard_no_sender").await.unwrap();
    let (tx, rx) = watch::channel(None);
    drop(tx);
    let mut guard = Guard::connect(&incident.admin, policy(5000, None), rx)
        .await
        .unwrap();
    let attempts = guard.run_transaction(&[alter_step()], None).await.unwrap();
    assert_eq!(attempts, 1);
    let admin = incident.admin.connect().await.unwrap();
    assert!(constraint_exists(&admin).await);
}
