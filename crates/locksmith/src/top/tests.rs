//! `top` against a real staged incident: what is on screen, and what the keys
//! do to real sessions. Plus key handling on a hand-made snapshot, which
//! needs no server.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use locksmith_pg::signal::Signal;
use locksmith_pg::snapshot::{LockRow, Session, Snapshot};
use locksmith_pg::Connection;
use locksmith_sandbox::incident::Incident;
use locksmith_sandbox::queue::Queue;
use locksmith_sandbox::Cluster;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

use super::app::{App, Effect, Link, Mode, Sort};
use super::{send_signal, ui, Source};

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn press(app: &mut App, code: KeyCode) -> Option<Effect> {
    app.handle_key(key(code))
}

/// The screen as text, one string per row.
fn screen(app: &App, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| ui::render(app, f)).unwrap();
    let buf = terminal.backend().buffer();
    (0..height)
        .map(|y| (0..width).map(|x| buf[(x, y)].symbol()).collect::<String>())
        .collect()
}

fn row_of(screen: &[String], needle: &str) -> usize {
    screen
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not on screen:\n{}", screen.join("\n")))
}

/// The story, live: two leaked sessions, the ALTER queued behind them, a SELECT queued behind the ALTER.
struct Staged {
    cluster: Cluster,
    incident: Incident,
    queue: Queue,
    admin: Connection,
}

impl Staged {
    fn alter_pid(&self) -> i32 {
        self.queue.alter_pid
    }
    fn select_pid(&self) -> i32 {
        self.queue.reader_pids[0]
    }
}

async fn wait_for(admin: &Connection, sql: &str, what: &str) {
    locksmith_sandbox::wait::until(locksmith_sandbox::wait::BOUND, what, || async {
        admin
            .query_one(sql, &[])
            .await
            .unwrap()
            .get::<_, Option<bool>>(0)
            .unwrap_or(false)
    })
    .await
    .unwrap();
}

async fn stage() -> Staged {
    let cluster = Cluster::start().unwrap();
    let incident = Incident::stage(&cluster, "incident").await.unwrap();
    let queue = Queue::form(&incident, 2, 1).await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    // Let the ages grow past a second so they show as seconds.
    let leakers = queue
        .leaked
        .pids()
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>();
    wait_for(
        &admin,
        &format!(
            "SELECT bool_and(clock_timestamp() - xact_start > interval '1.1s') FROM pg_stat_activity WHERE pid IN ({})",
            leakers.join(", ")
        ),
        "the leakers' transactions are over a second old",
    )
    .await;
    Staged {
        cluster,
        incident,
        queue,
        admin,
    }
}

async fn live_app(source: &mut Source) -> App {
    let mut app = App::new(
        "postgres@127.0.0.1/incident".into(),
        Duration::from_secs(1),
        false,
    );
    let (snapshot, took) = source.refresh().await.unwrap();
    app.refreshed(snapshot, took);
    app
}

#[tokio::test]
async fn the_incident_on_screen_at_160x40_and_80x24() {
    let s = stage().await;
    let mut source = Source::new(s.incident.admin.with_application_name("locksmith top"));
    let app = live_app(&mut source).await;
    let root_pid = s.queue.leaked.pids().iter().min().unwrap();

    for (w, h) in [(160, 40), (80, 24)] {
        let screen = screen(&app, w, h);
        let text = screen.join("\n");
        let root = row_of(&screen, &format!("ROOT {root_pid} "));
        let alter = row_of(&screen, &format!("└─ {} academic_partners", s.alter_pid()));
        let select = row_of(&screen, &format!("└┄ {} academic_partners", s.select_pid()));
        assert!(
            root < alter && alter < select,
            "tree order at {w}x{h}:\n{text}"
        );
        assert!(screen[root].contains("leaky-app@127.0.0.1"), "{text}");
        assert!(screen[root].contains("idle in tx"), "{text}");
        // Ages in seconds: the transaction has been open for more than a second.
        assert!(
            screen[root].contains("idle in tx 1.") || screen[root].contains("idle in tx 2."),
            "{text}"
        );
        assert!(
            screen[alter].contains("wait 1.") || screen[alter].contains("wait 2."),
            "{text}"
        );
        assert!(screen[0].contains("locksmith top"), "{text}");
        assert!(screen[1].contains("idle in tx 2"), "{text}");
        assert!(screen[1].contains("waiting 2"), "{text}");
        assert!(
            text.contains("PID"),
            "the session list is visible at {w}x{h}:\n{text}"
        );
        assert!(screen[h as usize - 1].contains("q quit"), "{text}");
        if w == 160 {
            assert!(screen[alter].contains("alembic@"), "{text}");
            assert!(
                screen[alter].contains("wants AccessExclusiveLock"),
                "{text}"
            );
            assert!(screen[select].contains("web-request@"), "{text}");
            assert!(screen[alter].contains("(1 queued behind)"), "{text}");
            assert!(
                screen[root].contains(" tx 1.") || screen[root].contains(" tx 2."),
                "{text}"
            );
            assert!(
                screen[root].contains(&format!("ROOT {root_pid} academic_partners")),
                "{text}"
            );
            assert!(screen[root].contains("holds AccessShareLock"), "{text}");
        }
    }
    drop(s.cluster);
}

#[tokio::test]
async fn cancel_and_terminate_keys_end_the_sessions_on_the_server() {
    let mut s = stage().await;
    let mut source = Source::new(s.incident.admin.with_application_name("locksmith top"));
    let mut app = live_app(&mut source).await;
    let client = source.client().unwrap();

    // `c` on the ALTER, then `n`: nothing happens.
    assert!(app.select_pid(s.alter_pid()));
    assert_eq!(press(&mut app, KeyCode::Char('c')), None);
    let Mode::Confirm(confirm) = &app.mode else {
        panic!("{:?}", app.mode)
    };
    assert!(
        confirm.label.contains("alembic@127.0.0.1"),
        "{}",
        confirm.label
    );
    assert!(screen(&app, 80, 24)
        .join("\n")
        .contains(&format!("Cancel pid {}?", s.alter_pid())));
    assert_eq!(press(&mut app, KeyCode::Char('n')), None);
    assert_eq!(app.mode, Mode::Normal);

    // `c` then `y`: the ALTER is cancelled, and the SELECT behind it gets through.
    press(&mut app, KeyCode::Char('c'));
    let Some(Effect::Signal(Signal::Cancel, target)) = press(&mut app, KeyCode::Char('y')) else {
        panic!("no cancel")
    };
    assert_eq!(target.pid, s.alter_pid());
    app.signal_done(
        Signal::Cancel,
        s.alter_pid(),
        send_signal(&client, Signal::Cancel, &target).await,
    );
    assert!(!app.status.as_ref().unwrap().error, "{:?}", app.status);
    let err = s.queue.alter.await.unwrap().unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::QUERY_CANCELED)
    );
    assert_eq!(
        s.queue.readers.remove(0).await.unwrap().unwrap()[0].get::<_, i64>(0),
        250
    );
    wait_for(
        &s.admin,
        "SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE wait_event_type = 'Lock')",
        "nobody waits any more",
    )
    .await;

    // `k` then `y` on a leaker: its session is gone from pg_stat_activity.
    let (snapshot, took) = source.refresh().await.unwrap();
    app.refreshed(snapshot, took);
    let leaker = s.queue.leaked.pids()[0];
    assert!(app.select_pid(leaker));
    press(&mut app, KeyCode::Char('k'));
    assert!(screen(&app, 160, 40)
        .join("\n")
        .contains(&format!("Terminate pid {leaker}?")));
    let Some(Effect::Signal(Signal::Terminate, target)) = press(&mut app, KeyCode::Char('y'))
    else {
        panic!("no terminate")
    };
    assert_eq!(target.pid, leaker);
    app.signal_done(
        Signal::Terminate,
        leaker,
        send_signal(&client, Signal::Terminate, &target).await,
    );
    wait_for(
        &s.admin,
        &format!("SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = {leaker})"),
        "the terminated session is gone",
    )
    .await;
    assert_eq!(s.queue.leaked.alive(), 1);
}

#[tokio::test]
async fn a_refused_signal_shows_in_the_status_line() {
    let s = stage().await;
    // The application's role may not signal the superuser's ALTER.
    let mut source = Source::new(s.incident.app.with_application_name("locksmith top"));
    let mut app = live_app(&mut source).await;
    assert!(app.select_pid(s.alter_pid()));
    press(&mut app, KeyCode::Char('k'));
    let Some(Effect::Signal(signal, target)) = press(&mut app, KeyCode::Char('y')) else {
        panic!()
    };
    let result = send_signal(&source.client().unwrap(), signal, &target).await;
    app.signal_done(signal, target.pid, result);
    let status = app.status.clone().unwrap();
    assert!(
        status.error && status.text.contains("pg_signal_backend"),
        "{status:?}"
    );
    let screen = screen(&app, 80, 24);
    assert!(
        screen[22].contains("pg_signal_backend"),
        "{}",
        screen.join("\n")
    );
    assert_eq!(app.mode, Mode::Normal);
    assert!(!app.quit);
    s.admin
        .execute("SELECT pg_cancel_backend($1)", &[&s.alter_pid()])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_lost_connection_shows_reconnecting_then_recovers() {
    let cluster = Cluster::start().unwrap();
    let settings = cluster
        .create_database("watched")
        .await
        .unwrap()
        .with_application_name("locksmith top");
    let admin = cluster
        .settings("postgres", "admin")
        .connect()
        .await
        .unwrap();
    let mut source = Source::new(settings);
    let mut app = live_app(&mut source).await;
    // The connection drops, and cannot come back for now.
    admin
        .batch_execute(
            "ALTER DATABASE watched ALLOW_CONNECTIONS false;
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'locksmith top'",
        )
        .await
        .unwrap();
    for attempt in 1..=2 {
        let err = source.refresh().await.unwrap_err();
        assert!(err.lost, "{err:?}");
        app.refresh_failed(err.message, err.lost);
        assert_eq!(
            app.link,
            Link::Reconnecting {
                attempts: attempt,
                error: match &app.link {
                    Link::Reconnecting { error, .. } => error.clone(),
                    _ => String::new(),
                }
            }
        );
    }
    let frame = screen(&app, 80, 24);
    assert!(
        frame[0].contains("reconnecting (attempt 2)"),
        "{}",
        frame.join("\n")
    );
    // The last snapshot stays on screen meanwhile.
    assert!(frame[1].contains("conn "), "{}", frame.join("\n"));
    admin
        .batch_execute("ALTER DATABASE watched ALLOW_CONNECTIONS true")
        .await
        .unwrap();
    let (snapshot, took) = source.refresh().await.unwrap();
    app.refreshed(snapshot, took);
    assert_eq!(app.link, Link::Up);
    assert!(!screen(&app, 80, 24)[0].contains("reconnecting"));
    assert_eq!(app.status.as_ref().unwrap().text, "reconnected");
}

fn session(
    pid: i32,
    app: &str,
    state: &str,
    xact_ms: i64,
    state_ms: i64,
    blocked_by: &[i32],
) -> Session {
    Session {
        pid,
        datname: Some("app".into()),
        usename: Some("web".into()),
        application_name: app.into(),
        client_addr: Some("10.0.0.5".into()),
        backend_type: "client backend".into(),
        state: Some(state.into()),
        xact_age_ms: Some(xact_ms),
        state_age_ms: Some(state_ms),
        query_age_ms: Some(state_ms),
        query: format!("SELECT * FROM academic_partners -- {app}"),
        wait_event_type: (!blocked_by.is_empty()).then(|| "Lock".into()),
        wait_event: (!blocked_by.is_empty()).then(|| "relation".into()),
        blocked_by: blocked_by.to_vec(),
        via_pooler: false,
        incarnation: Default::default(),
    }
}

fn lock(pid: i32, mode: &str, granted: bool) -> LockRow {
    LockRow {
        pid,
        locktype: "relation".into(),
        relation: Some("academic_partners".into()),
        mode: mode.into(),
        granted,
        waiting_ms: (!granted).then_some(12_000),
    }
}

/// The incident as a fixed snapshot: deterministic frames.
fn fixed() -> App {
    let mut alter = session(20, "alembic", "active", 13_000, 12_000, &[10]);
    alter.query = "ALTER TABLE academic_partners ADD CONSTRAINT unique_informal_name_academic_partner UNIQUE (informal_name)".into();
    let snapshot = Snapshot {
        max_connections: 100,
        reserved_connections: 3,
        own_pid: 1,
        pooler_addr: None,
        prepared: Vec::new(),
        role: "web".into(),
        sees_all_sessions: true,
        sessions: vec![
            session(10, "leaky-app", "idle in transaction", 95_000, 94_000, &[]),
            alter,
            session(30, "web-request", "active", 11_000, 11_000, &[20]),
            session(40, "worker", "idle", 0, 5_000, &[]),
        ],
        locks: vec![
            lock(10, "AccessShareLock", true),
            lock(20, "AccessExclusiveLock", false),
            lock(30, "AccessShareLock", false),
        ],
    };
    let mut app = App::new(
        "app@db.internal:5432/app".into(),
        Duration::from_secs(1),
        false,
    );
    app.refreshed(snapshot, Duration::from_millis(4));
    app
}

#[test]
fn fixed_incident_frame_80x24() {
    insta::assert_snapshot!(screen(&fixed(), 80, 24).join("\n"));
}

#[test]
fn fixed_incident_frame_160x40() {
    insta::assert_snapshot!(screen(&fixed(), 160, 40).join("\n"));
}

#[test]
fn keys_filter_sort_pause_help_details() {
    let mut app = fixed();
    assert_eq!(
        app.sessions().iter().map(|s| s.pid).collect::<Vec<_>>(),
        vec![10, 20, 30, 40]
    );
    press(&mut app, KeyCode::Char('s'));
    assert_eq!(app.sort, Sort::State);
    press(&mut app, KeyCode::Char('s'));
    assert_eq!(app.sort, Sort::Wait);
    assert_eq!(app.sessions()[0].pid, 20, "the longest wait first");
    press(&mut app, KeyCode::Char('/'));
    for c in "web-r".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    assert_eq!(app.mode, Mode::Filter);
    press(&mut app, KeyCode::Enter);
    assert_eq!(
        app.sessions().iter().map(|s| s.pid).collect::<Vec<_>>(),
        vec![30]
    );
    assert!(screen(&app, 80, 24).join("\n").contains("filter \"web-r\""));
    press(&mut app, KeyCode::Char('/'));
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.sessions().len(), 4);

    assert_eq!(press(&mut app, KeyCode::Char('p')), None);
    assert!(app.paused);
    assert!(screen(&app, 80, 24)[0].contains("PAUSED"));
    assert_eq!(press(&mut app, KeyCode::Char('p')), Some(Effect::Refresh));

    press(&mut app, KeyCode::Char('?'));
    assert!(screen(&app, 80, 24)
        .join("\n")
        .contains("terminate the selected session"));
    press(&mut app, KeyCode::Esc);

    // The cursor starts on the root; Down moves to the ALTER; Enter shows its details.
    press(&mut app, KeyCode::Home);
    press(&mut app, KeyCode::Down);
    assert_eq!(app.selected().unwrap().pid, 20);
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.mode, Mode::Details(20));
    let details = screen(&app, 160, 40).join("\n");
    assert!(
        details.contains("AccessExclusiveLock on academic_partners, for 12.0s"),
        "{details}"
    );
    assert!(details.contains("queued behind it  30"), "{details}");
    assert!(details.contains("(informal_name)"), "{details}");
    press(&mut app, KeyCode::Char('q'));
    assert_eq!(app.mode, Mode::Normal);
    assert!(!app.quit, "q closes the popup first");
    press(&mut app, KeyCode::Char('q'));
    assert!(app.quit);
}

#[test]
fn selection_follows_the_session_across_refreshes() {
    let mut app = fixed();
    assert!(app.select_pid(30));
    let (mut snapshot, _) = app.snapshot.clone().unwrap();
    snapshot.sessions.retain(|s| s.pid != 10);
    snapshot.locks.retain(|l| l.pid != 10);
    // Without the leaker the ALTER is no longer waiting: the tree is empty, the rows shift.
    snapshot.sessions.iter_mut().for_each(|s| {
        s.blocked_by.clear();
        s.wait_event_type = None;
    });
    app.refreshed(snapshot, Duration::from_millis(3));
    assert_eq!(app.selected().unwrap().pid, 30);
}

/// The story at its worst: three leakers, the ALTER queued behind all of
/// them, sixteen requests queued behind the ALTER, the pool at its limit.
fn outage() -> App {
    let mut sessions = Vec::new();
    let mut locks = Vec::new();
    for pid in [10, 11, 12] {
        sessions.push(session(
            pid,
            "leaky-app",
            "idle in transaction",
            95_000,
            94_000,
            &[],
        ));
        locks.push(lock(pid, "AccessShareLock", true));
    }
    let mut alter = session(20, "alembic", "active", 13_000, 12_000, &[10, 11, 12]);
    alter.query = "ALTER TABLE academic_partners ADD CONSTRAINT unique_informal_name_academic_partner UNIQUE (informal_name)".into();
    sessions.push(alter);
    locks.push(lock(20, "AccessExclusiveLock", false));
    for pid in 30..46 {
        sessions.push(session(pid, "web-request", "active", 11_000, 11_000, &[20]));
        locks.push(lock(pid, "AccessShareLock", false));
    }
    let mut launcher = session(5, "", "", 0, 0, &[]);
    launcher.backend_type = "autovacuum launcher".into();
    launcher.state = None;
    sessions.push(launcher);
    let snapshot = Snapshot {
        max_connections: 23,
        reserved_connections: 3,
        own_pid: 1,
        pooler_addr: None,
        prepared: Vec::new(),
        role: "web".into(),
        sees_all_sessions: true,
        sessions,
        locks,
    };
    let mut app = App::new(
        "postgres@a-rather-long-host-name.eu-west-1.rds.amazonaws.com:5432/app_production".into(),
        Duration::from_secs(1),
        false,
    );
    app.refreshed(snapshot, Duration::from_millis(4));
    app
}

#[test]
fn outage_frame_80x24() {
    let app = outage();
    let frame = screen(&app, 80, 24);
    let text = frame.join("\n");
    insta::assert_snapshot!(text);
    // Every root is on screen, before the waiters.
    let roots: Vec<usize> = [10, 11, 12]
        .iter()
        .map(|pid| row_of(&frame, &format!("ROOT {pid} academic_partners")))
        .collect();
    let alter = row_of(&frame, "└─ 20 academic_partners");
    assert!(roots.iter().all(|r| *r < alter), "{text}");
    assert!(frame[alter].contains("(16 queued behind)"), "{text}");
    // The identical waiters are one row and a count.
    let reader = row_of(&frame, "└┄ 30 academic_partners");
    assert!(frame[reader].contains("+15 more like it"), "{text}");
    assert!(!text.contains("└┄ 31 "), "{text}");
    // The header fits: the timing is on screen, the pool at its limit says so.
    assert!(
        frame[0].contains("every 1.0s · snapshot took 4ms"),
        "{text}"
    );
    assert!(frame[1].contains("/23 FULL"), "{text}");
    // A server process without an application_name says what it is.
    let mut app = app;
    press(&mut app, KeyCode::Char('/'));
    for c in "launcher".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);
    let text = screen(&app, 80, 24).join("\n");
    assert!(text.contains("5       [autovacuum la"), "{text}");
}

#[test]
fn a_tree_taller_than_its_area_says_how_much_is_cut() {
    let mut app = outage();
    let (mut snapshot, _) = app.snapshot.clone().unwrap();
    // Sixteen separate roots, each blocking one waiter: nothing folds.
    for pid in 100..116 {
        snapshot.sessions.push(session(
            pid,
            "leaky-app",
            "idle in transaction",
            5_000,
            5_000,
            &[],
        ));
        let mut held = lock(pid, "AccessExclusiveLock", true);
        held.relation = Some(format!("t{pid}"));
        snapshot.locks.push(held);
        snapshot
            .sessions
            .push(session(pid + 100, "job", "active", 1_000, 1_000, &[pid]));
        let mut wanted = lock(pid + 100, "AccessShareLock", false);
        wanted.relation = Some(format!("t{pid}"));
        snapshot.locks.push(wanted);
    }
    app.refreshed(snapshot, Duration::from_millis(4));
    let text = screen(&app, 80, 24).join("\n");
    assert!(text.contains("more below (↓ scrolls)"), "{text}");
}

#[test]
fn cancel_on_an_idle_session_offers_terminate_and_dialogs_say_y_n() {
    let mut app = outage();
    assert!(app.select_pid(10));
    assert_eq!(press(&mut app, KeyCode::Char('c')), None);
    assert_eq!(
        app.mode,
        Mode::Normal,
        "no dialog for a cancel that would do nothing"
    );
    let status = app.status.clone().unwrap();
    assert!(
        status
            .text
            .contains("a cancel does nothing to an idle session"),
        "{status:?}"
    );
    assert!(status.text.contains("press k"), "{status:?}");
    press(&mut app, KeyCode::Char('k'));
    assert!(matches!(app.mode, Mode::Confirm(_)));
    let text = screen(&app, 80, 24).join("\n");
    assert!(text.contains("Terminate pid 10? [y/N]"), "{text}");
    // Anything but y is no.
    assert_eq!(press(&mut app, KeyCode::Char('x')), None);
    assert_eq!(press(&mut app, KeyCode::Esc), None);
    assert_eq!(app.mode, Mode::Normal);
    // An active statement can be cancelled.
    assert!(app.select_pid(20));
    press(&mut app, KeyCode::Char('c'));
    assert!(screen(&app, 80, 24)
        .join("\n")
        .contains("Cancel pid 20? [y/N]"));
    assert!(matches!(
        press(&mut app, KeyCode::Char('y')),
        Some(Effect::Signal(Signal::Cancel, target)) if target.pid == 20
    ));
}

#[test]
fn the_status_line_expires_after_a_few_refreshes() {
    let mut app = outage();
    assert!(app.select_pid(10));
    press(&mut app, KeyCode::Char('c'));
    assert!(app.status.is_some());
    let (snapshot, _) = app.snapshot.clone().unwrap();
    for _ in 0..super::app::STATUS_REFRESHES {
        app.refreshed(snapshot.clone(), Duration::from_millis(4));
    }
    assert_eq!(app.status, None);
}

#[test]
fn sessions_of_about_the_same_age_keep_their_order() {
    let mut app = fixed();
    let (mut snapshot, _) = app.snapshot.clone().unwrap();
    snapshot.sessions.retain(|s| s.pid == 40);
    let mut other = snapshot.sessions[0].clone();
    other.pid = 41;
    for (a, b) in [(5_100, 5_900), (5_900, 5_100)] {
        snapshot.sessions[0].xact_age_ms = Some(a);
        other.xact_age_ms = Some(b);
        let mut both = snapshot.clone();
        both.sessions.push(other.clone());
        app.refreshed(both, Duration::from_millis(4));
        let order: Vec<i32> = app.sessions().iter().map(|s| s.pid).collect();
        assert_eq!(order, vec![40, 41], "same second, so by pid");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_replay_stalled_by_a_standby_session_has_its_section() {
    let primary = Cluster::start().unwrap();
    let incident = Incident::stage(&primary, "top_standby").await.unwrap();
    let standby = primary
        .start_standby(&[("max_standby_streaming_delay", "-1")])
        .unwrap();
    let table = locksmith_sandbox::incident::TABLE;
    let settings = standby.settings("top_standby", "standby-report");
    locksmith_sandbox::wait::until(
        locksmith_sandbox::wait::BOUND,
        "the standby to replay the table",
        || async {
            match settings.connect().await {
                Ok(c) => c
                    .batch_execute(&format!("SELECT count(*) FROM {table}"))
                    .await
                    .is_ok(),
                Err(_) => false,
            }
        },
    )
    .await
    .unwrap();
    let report = settings.connect().await.unwrap();
    report
        .batch_execute(&format!("BEGIN; SELECT count(*) FROM {table}"))
        .await
        .unwrap();
    let report_pid: i32 = report
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    // The primary locks the table; an xid commit elsewhere flushes the record.
    let ddl = incident.admin.connect().await.unwrap();
    ddl.batch_execute(&format!(
        "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
    ))
    .await
    .unwrap();
    let flush = incident.admin.connect().await.unwrap();
    flush.batch_execute("SELECT txid_current()").await.unwrap();
    let watcher = standby
        .settings("top_standby", "check")
        .connect()
        .await
        .unwrap();
    wait_for(
        &watcher,
        "SELECT count(*) > 0 FROM pg_stat_activity
         WHERE backend_type = 'startup' AND wait_event_type = 'Lock'",
        "replay to wait on the standby",
    )
    .await;

    let mut source = Source::new(incident.admin.with_application_name("locksmith top"))
        .watching(vec![standby.settings("top_standby", "locksmith top")]);
    let mut app = live_app(&mut source).await;
    app.standbys_refreshed(source.standbys().await);
    let screen = screen(&app, 120, 30);
    let text = screen.join("\n");
    let row = row_of(
        &screen,
        &format!(
            "127.0.0.1:{}  ROOT {report_pid} standby-report idle in tx",
            standby.port()
        ),
    );
    assert!(
        screen[row].contains(&format!("← replay of {table} waits")),
        "{text}"
    );
    report.batch_execute("COMMIT").await.unwrap();
    ddl.batch_execute("ROLLBACK").await.unwrap();
}

/// Through a transaction pooler with traffic on the pool: the pooler's
/// connections are labelled, and a signal reaches the session only while it
/// is still the one shown (a pooled pid serves one client after another).
#[tokio::test]
async fn through_a_pooler_sessions_are_labelled_and_signals_hit_only_the_session_shown() {
    use locksmith_pg::signal::Sent;
    use locksmith_sandbox::pooler::{PoolMode, Pooler, PoolerOptions};
    use locksmith_sandbox::traffic::{LeakedSessions, Traffic, TrafficProfile};

    let cluster = Cluster::start().unwrap();
    let incident = Incident::stage(&cluster, "incident").await.unwrap();
    let admin = incident.admin.connect().await.unwrap();
    let pooler = Pooler::start_with(
        &cluster,
        PoolerOptions {
            pool_size: 4,
            ..PoolerOptions::new(PoolMode::Transaction)
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let traffic = Traffic::start(
        pooler.settings("incident", "web-app"),
        TrafficProfile {
            rate: 30.0,
            pool_size: 6,
            ..TrafficProfile::default()
        },
    );
    let leaked = LeakedSessions::open(
        &pooler.settings("incident", "leaky-app"),
        1,
        "academic_partners",
    )
    .await
    .unwrap();
    let leaker: i32 = admin
        .query_one(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'leaky-app' \
             AND state = 'idle in transaction'",
            &[],
        )
        .await
        .unwrap()
        .get(0);

    let mut source = Source::new(pooler.settings("incident", "locksmith top"));
    let mut app = live_app(&mut source).await;
    let text = screen(&app, 160, 40).join("\n");
    assert!(text.contains("through a pooler (127.0.0.1)"), "{text}");
    assert!(app.select_pid(leaker), "{text}");
    assert!(app.selected().unwrap().via_pooler);
    press(&mut app, KeyCode::Char('k'));
    let Mode::Confirm(confirm) = &app.mode else {
        panic!("{:?}", app.mode)
    };
    assert!(
        confirm.label.contains("leaky-app@127.0.0.1 via pooler"),
        "{}",
        confirm.label
    );
    let Some(Effect::Signal(Signal::Terminate, target)) = press(&mut app, KeyCode::Char('y'))
    else {
        panic!("no terminate")
    };
    let client = source.client().unwrap();

    // The same pid, another transaction than the one shown: nothing is sent.
    let mut moved = target.clone();
    moved.incarnation.xact_start_us = moved.incarnation.xact_start_us.map(|t| t + 1);
    let sent = send_signal(&client, Signal::Terminate, &moved).await;
    assert_eq!(sent, Ok(Sent::MovedOn));
    app.signal_done(Signal::Terminate, leaker, sent);
    let status = app.status.clone().unwrap();
    assert!(
        status.error && status.text.contains("moved on"),
        "{status:?}"
    );
    let alive: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)",
            &[&leaker],
        )
        .await
        .unwrap()
        .get(0);
    assert!(alive, "a moved-on session must not be signalled");

    // The session as shown: terminated.
    let sent = send_signal(&client, Signal::Terminate, &target).await;
    assert_eq!(sent, Ok(Sent::Signalled));
    wait_for(
        &admin,
        &format!("SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE pid = {leaker})"),
        "the terminated session is gone",
    )
    .await;
    drop(leaked);
    let report = traffic.stop().await;
    assert!(report.requests > 0);
    assert_eq!(report.errors, 0, "application requests failed");
}

#[test]
fn esc_closes_and_clears_but_never_quits() {
    let mut app = fixed();
    // On the main screen with nothing open, Esc does nothing but say how to quit.
    assert_eq!(press(&mut app, KeyCode::Esc), None);
    assert!(!app.quit, "Esc on the main screen must not quit");
    assert_eq!(app.mode, Mode::Normal);
    assert!(app.status.as_ref().unwrap().text.contains("q quits"));
    // A kept filter is cleared by Esc on the main screen, and top stays.
    press(&mut app, KeyCode::Char('/'));
    for c in "alembic".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.sessions().len(), 1);
    press(&mut app, KeyCode::Esc);
    assert!(!app.quit);
    assert!(app.filter.is_empty());
    assert_eq!(app.sessions().len(), 4);
    // Esc closes each overlay and lands on the main screen, never further.
    for open in [KeyCode::Char('?'), KeyCode::Enter, KeyCode::Char('k')] {
        press(&mut app, KeyCode::Home);
        press(&mut app, open);
        assert_ne!(app.mode, Mode::Normal, "{open:?} opens an overlay");
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.mode, Mode::Normal, "Esc closes what {open:?} opened");
        press(&mut app, KeyCode::Esc);
        assert!(!app.quit, "a second Esc after {open:?} must not quit");
    }
    // Quit is q, or Ctrl-C.
    press(&mut app, KeyCode::Char('q'));
    assert!(app.quit);
    let mut app = fixed();
    app.handle_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    assert!(app.quit);
}

#[test]
fn any_key_but_y_answers_no_as_the_dialog_says() {
    let mut app = outage();
    assert!(app.select_pid(10));
    press(&mut app, KeyCode::Char('k'));
    assert!(matches!(app.mode, Mode::Confirm(_)));
    assert_eq!(press(&mut app, KeyCode::Char('x')), None);
    assert_eq!(app.mode, Mode::Normal, "x is no: the dialog closes");
    assert!(app
        .status
        .as_ref()
        .unwrap()
        .text
        .contains("left pid 10 alone"));
}

#[test]
fn help_popup_80x24() {
    let mut app = fixed();
    press(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!(screen(&app, 80, 24).join("\n"));
}

/// At 80 columns every waiting line of the tree still shows the lock its
/// session wants: for the queued DDL, the one thing the on-call engineer
/// needs from that line.
#[test]
fn at_80_columns_the_tree_keeps_the_lock_modes_wanted() {
    for app in [fixed(), outage()] {
        let screen = screen(&app, 80, 24);
        let text = screen.join("\n");
        let alter = screen
            .iter()
            .find(|l| l.contains("└─ 20 "))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(alter.contains("wants AccessExclusiveLock"), "{text}");
        let reader = screen
            .iter()
            .find(|l| l.contains("└┄ 30 "))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(reader.contains("wants AccessShareLock"), "{text}");
    }
}
