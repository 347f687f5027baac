//! `locksmith top`: a live view of sessions and lock queues.
//!
//! The event loop is one `tokio::select!` over a refresh tick, terminal
//! events and a channel of results (snapshots and signals, each run in its
//! own task so the screen never waits for the server). State lives in
//! [`app::App`], drawing in [`ui::render`]; this file only moves messages
//! between them and the server, and must not grow view logic of its own.
//!
//! One connection, two queries per refresh ([`Snapshotter`]), at most one
//! refresh in flight. A lost connection shows "reconnecting" and is reopened
//! on the next tick. `ratatui::init` restores the terminal on panic; the
//! loop restores it on every other way out.
//!
//! Through a pooler it works as directly: each snapshot is one transaction
//! (one backend), and a signal is sent only to the session as shown
//! ([`signal::send_if_unchanged`]): a pooled backend's pid may serve another
//! client by the time the key is pressed.
//!
//! Hot standbys given with `--replica` are read after each primary snapshot
//! (one connection each, reopened when lost) and shown as their own section.

pub mod app;
pub mod ui;

#[cfg(test)]
mod tests;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossterm::event::{Event, EventStream, KeyEventKind};
use futures_util::StreamExt;
use locksmith_pg::blockers::{BlockerReport, StandbyReport};
use locksmith_pg::guard::replica;
use locksmith_pg::signal::{self, Sent, Signal, Target};
use locksmith_pg::snapshot::{Snapshot, Snapshotter};
use locksmith_pg::Connection;
use locksmith_pg::ConnectionSettings;
use tokio::sync::mpsc;

use crate::cli::TopArgs;
use crate::exit::{CmdResult, Failure, Outcome};
use app::{App, Effect};

/// Runs `locksmith top` until the user quits.
pub async fn run(args: TopArgs) -> CmdResult {
    let settings =
        crate::cmd::settings(&(&args.connection).into())?.with_application_name("locksmith top");
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(Failure::input(miette::miette!(
            "locksmith top needs a terminal; for a one-shot report use `locksmith blockers`"
        )));
    }
    let color = std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let standbys = crate::cmd::replica_settings(&args.replicas)?;
    let mut app = App::new(settings.describe(), args.interval, color);
    let mut terminal = ratatui::try_init()?;
    let source = Source::new(settings).watching(standbys);
    let result = event_loop(&mut app, &mut terminal, source).await;
    ratatui::restore();
    result.map(|()| Outcome::Done)
}

/// The connection snapshots and signals go through; reopened when lost.
pub struct Source {
    settings: ConnectionSettings,
    conn: Option<(Arc<Connection>, Snapshotter)>,
    /// Hot standbys: settings, and the connection once open.
    standbys: Vec<(ConnectionSettings, Option<StandbyConn>)>,
}

/// An open standby connection: its `host:port`, the client, its snapshotter.
type StandbyConn = (String, Connection, Snapshotter);

/// Why a refresh failed.
#[derive(Debug)]
pub struct RefreshError {
    /// What to show.
    pub message: String,
    /// The connection is gone (reconnect) rather than a query refused.
    pub lost: bool,
}

impl Source {
    /// Not connected yet: the first refresh connects.
    pub fn new(settings: ConnectionSettings) -> Source {
        Source {
            settings,
            conn: None,
            standbys: Vec::new(),
        }
    }

    /// Reads these hot standbys too ([`Source::standbys`]).
    pub fn watching(mut self, standbys: Vec<ConnectionSettings>) -> Source {
        self.standbys = standbys
            .into_iter()
            .map(|s| (s.with_application_name("locksmith top"), None))
            .collect();
        self
    }

    /// One diagnosis per standby, or why it could not be read (naming it);
    /// a failed connection is reopened next time.
    pub async fn standbys(&mut self) -> Vec<Result<StandbyReport, String>> {
        let mut reports = Vec::with_capacity(self.standbys.len());
        for (settings, conn) in &mut self.standbys {
            if conn.as_ref().is_some_and(|(_, c, _)| c.is_closed()) {
                *conn = None;
            }
            if conn.is_none() {
                let opened = async {
                    let (server, client) = replica::connect_standby(settings).await?;
                    let snapshotter = Snapshotter::new(&client).await?;
                    Ok::<_, locksmith_pg::Error>((server, client, snapshotter))
                };
                match opened.await {
                    Ok(c) => *conn = Some(c),
                    Err(e) => {
                        reports.push(Err(format!("standby {}: {e}", settings.describe())));
                        continue;
                    }
                }
            }
            let (server, client, snapshotter) = conn.as_ref().expect("connected above");
            match snapshotter.take(client).await {
                Ok(snapshot) => reports.push(Ok(StandbyReport {
                    server: server.clone(),
                    report: BlockerReport::from_snapshot(&snapshot),
                })),
                Err(e) => {
                    reports.push(Err(format!("standby {server}: {e}")));
                    *conn = None;
                }
            }
        }
        reports
    }

    /// The open connection, for signals.
    pub fn client(&self) -> Option<Arc<Connection>> {
        self.conn.as_ref().map(|(c, _)| c.clone())
    }

    /// Connects if needed and takes one snapshot.
    pub async fn refresh(&mut self) -> Result<(Snapshot, Duration), RefreshError> {
        if self.conn.as_ref().is_some_and(|(c, _)| c.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let lost = |e: &dyn std::fmt::Display| RefreshError {
                message: e.to_string(),
                lost: true,
            };
            // Snapshots are read in a transaction: behind a statement pooler
            // over --direct-url, else its refusal is what the header shows.
            let connecting = locksmith_pg::guard::connect_for_transactions(
                &self.settings,
                crate::cmd::READS_IN_TRANSACTIONS,
            );
            let client = connecting.await.map_err(|e| lost(&e))?;
            let snapshotter = Snapshotter::new(&client).await.map_err(|e| lost(&e))?;
            self.conn = Some((Arc::new(client), snapshotter));
        }
        let (client, snapshotter) = self.conn.as_ref().expect("connected above");
        let started = Instant::now();
        match snapshotter.take(client).await {
            Ok(snap) => Ok((snap, started.elapsed())),
            Err(e) => {
                // A server error (e.g. a permission) keeps the connection; anything else drops it.
                // So does the server's own goodbye (57P01 terminated by an administrator, 57P02/57P03
                // shutting down), which can arrive a moment before the socket closes.
                let lost = client.is_closed()
                    || matches!(&e, locksmith_pg::Error::Query { source, .. }
                        if source.as_db_error().is_none_or(|db| db.code().code().starts_with("57P")));
                if lost {
                    self.conn = None;
                }
                Err(RefreshError {
                    message: e.to_string(),
                    lost,
                })
            }
        }
    }
}

/// Sends `signal` to the session if it is still as shown; the error text is
/// what the status line shows.
pub async fn send_signal(
    client: &Connection,
    signal: Signal,
    target: &Target,
) -> Result<Sent, String> {
    signal::send_if_unchanged(client, signal, target)
        .await
        .map_err(|e| e.to_string())
}

enum Update {
    Refreshed(
        Box<Source>,
        Result<(Snapshot, Duration), RefreshError>,
        Vec<Result<StandbyReport, String>>,
    ),
    Signalled(Signal, i32, Result<Sent, String>),
}

/// Lets a refresh in flight finish before top exits (bounded): through a
/// pooler, a client gone mid-query leaves its answer on the pooled backend,
/// and PgBouncer 1.18 may hand it to the next client.
async fn settle(in_flight: bool, rx: &mut mpsc::Receiver<Update>) {
    if !in_flight {
        return;
    }
    let refreshed = async {
        while let Some(update) = rx.recv().await {
            if matches!(update, Update::Refreshed(..)) {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), refreshed).await;
}

async fn event_loop(
    app: &mut App,
    terminal: &mut ratatui::DefaultTerminal,
    source: Source,
) -> Result<(), Failure> {
    let (tx, mut rx) = mpsc::channel::<Update>(8);
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(app.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // `None` while a refresh is in flight: at most one at a time.
    let mut source = Some(source);
    let mut client: Option<Arc<Connection>> = None;
    let mut refresh_now = false;
    loop {
        terminal.draw(|frame| ui::render(app, frame))?;
        if app.quit {
            settle(source.is_none(), &mut rx).await;
            return Ok(());
        }
        let due = refresh_now;
        refresh_now = false;
        let start_refresh = |source: &mut Option<Source>| {
            if let Some(mut s) = source.take() {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let result = s.refresh().await;
                    let standbys = s.standbys().await;
                    let _ = tx
                        .send(Update::Refreshed(Box::new(s), result, standbys))
                        .await;
                });
            }
        };
        if due && !app.paused {
            start_refresh(&mut source);
        }
        tokio::select! {
            _ = tick.tick() => {
                if !app.paused {
                    start_refresh(&mut source);
                }
            }
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) if key.kind == KeyEventKind::Press => {
                    match app.handle_key(key) {
                        Some(Effect::Refresh) => refresh_now = true,
                        Some(Effect::Signal(signal, target)) => match client.clone() {
                            Some(c) => {
                                let tx = tx.clone();
                                tokio::spawn(async move {
                                    let result = send_signal(&c, signal, &target).await;
                                    let _ = tx.send(Update::Signalled(signal, target.pid, result)).await;
                                });
                            }
                            None => app.signal_done(signal, target.pid, Err("not connected; try again once reconnected".into())),
                        },
                        None => {}
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
                None => {
                    settle(source.is_none(), &mut rx).await;
                    return Ok(());
                }
            },
            Some(update) = rx.recv() => match update {
                Update::Refreshed(s, result, standbys) => {
                    client = s.client();
                    source = Some(*s);
                    app.standbys_refreshed(standbys);
                    match result {
                        Ok((snapshot, took)) => app.refreshed(snapshot, took),
                        Err(e) => app.refresh_failed(e.message, e.lost),
                    }
                }
                Update::Signalled(signal, pid, result) => {
                    app.signal_done(signal, pid, result);
                    refresh_now = true;
                }
            },
        }
    }
}
