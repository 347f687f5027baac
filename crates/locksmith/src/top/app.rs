//! The state of `locksmith top` and what each key means.
//!
//! [`App`] holds the last snapshot, the selection, the mode (normal, filter,
//! confirmation, details, help) and the status line. Keys map to intent
//! methods (`ask`, `confirm`, `cycle_sort`, …); anything that needs the server
//! comes back as an [`Effect`] for the event loop to perform, so this file
//! does no I/O and every key can be tested without a terminal.

use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use locksmith_pg::blockers::{BlockerReport, StandbyReport, TreeLine};
use locksmith_pg::signal::{Sent, Signal, Target};
use locksmith_pg::snapshot::{Session, Snapshot};

/// What the screen is showing on top of the main view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The tree and the session list.
    Normal,
    /// Typing a filter after `/`.
    Filter,
    /// Waiting for y/n before signalling a session.
    Confirm(Confirm),
    /// Everything about the selected session.
    Details(i32),
    /// The key list.
    Help,
}

/// A signal waiting for the user's y/n.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirm {
    /// Cancel or terminate.
    pub signal: Signal,
    /// The session.
    pub pid: i32,
    /// The session as shown: the signal is sent only if it is still that.
    pub target: Target,
    /// `app@client (state: query)`, so the user knows whom they are about to hit.
    pub label: String,
}

/// Work for the event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send `signal` to the session, if it is still as shown (the user said yes).
    Signal(Signal, Target),
    /// Take a snapshot now.
    Refresh,
}

/// The session list's order (always longest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Transaction age.
    Transaction,
    /// Time in the current state (idle time for idle sessions).
    State,
    /// Time waiting for a lock.
    Wait,
}

impl Sort {
    /// For the header.
    pub fn label(self) -> &'static str {
        match self {
            Sort::Transaction => "transaction age",
            Sort::State => "state age",
            Sort::Wait => "lock wait",
        }
    }
}

/// The connection to the server, as the header shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// Not connected yet.
    Connecting,
    /// Snapshots arrive.
    Up,
    /// Lost; the loop keeps trying.
    Reconnecting {
        /// Failed attempts so far.
        attempts: u32,
        /// The last error.
        error: String,
    },
}

/// Which part of the screen a selectable row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// The lock-wait tree.
    Tree,
    /// The session list.
    Sessions,
}

/// The status line: the last thing that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The text.
    pub text: String,
    /// Drawn as an error.
    pub error: bool,
    /// Refreshes left before it goes away (it would otherwise read as current forever).
    pub refreshes_left: u32,
}

/// How many refreshes a status message stays on screen.
pub const STATUS_REFRESHES: u32 = 5;

/// One line of the lock-wait tree as `top` draws it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeRow {
    /// The session and its place in the tree.
    pub line: TreeLine,
    /// Sessions after it waiting the same way (same parent, nobody behind
    /// them), folded into this row as "+N more".
    pub folded: usize,
}

/// Everything `top` shows.
#[derive(Debug)]
pub struct App {
    /// Current mode.
    pub mode: Mode,
    /// `user@host:port/db`.
    pub target: String,
    /// Refresh interval.
    pub interval: Duration,
    /// The last snapshot, and the diagnosis built from it.
    pub snapshot: Option<(Snapshot, BlockerReport)>,
    /// How long the last refresh took.
    pub refresh_took: Option<Duration>,
    /// Connection state.
    pub link: Link,
    /// Refreshing stopped with `p`.
    pub paused: bool,
    /// Session list filter (case-insensitive substring of pid, app, client, user, db, state, query).
    pub filter: String,
    /// Session list order.
    pub sort: Sort,
    /// Last message.
    pub status: Option<Status>,
    /// Colours allowed (`NO_COLOR` unset).
    pub color: bool,
    /// Selected row (index into [`App::rows`]).
    pub cursor: usize,
    /// The selected row's identity, so the selection follows its session across refreshes.
    selected: Option<(Section, i32)>,
    /// Set by `q` or Ctrl-C (never by Esc, which only closes and clears).
    pub quit: bool,
    /// Each hot standby given with `--replica`: its diagnosis, or why it
    /// could not be read (the text names the server).
    pub standbys: Vec<Result<StandbyReport, String>>,
}

impl App {
    /// A fresh view of `target`.
    pub fn new(target: String, interval: Duration, color: bool) -> App {
        App {
            mode: Mode::Normal,
            target,
            interval,
            snapshot: None,
            refresh_took: None,
            link: Link::Connecting,
            paused: false,
            filter: String::new(),
            sort: Sort::Transaction,
            status: None,
            color,
            cursor: 0,
            selected: None,
            quit: false,
            standbys: Vec::new(),
        }
    }

    /// A new snapshot arrived.
    pub fn refreshed(&mut self, snapshot: Snapshot, took: Duration) {
        if let Link::Reconnecting { .. } = self.link {
            self.say("reconnected", false);
        }
        self.link = Link::Up;
        if let Some(status) = &mut self.status {
            status.refreshes_left = status.refreshes_left.saturating_sub(1);
            if status.refreshes_left == 0 {
                self.status = None;
            }
        }
        let report = BlockerReport::from_snapshot(&snapshot);
        self.snapshot = Some((snapshot, report));
        self.refresh_took = Some(took);
        self.follow_selection();
    }

    /// The standbys were read again.
    pub fn standbys_refreshed(&mut self, standbys: Vec<Result<StandbyReport, String>>) {
        self.standbys = standbys;
    }

    /// The standby section, one line each: a standby's root blockers and
    /// what waits for them (its replay named as such), or that none waits.
    pub fn standby_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for standby in &self.standbys {
            let standby = match standby {
                Ok(s) => s,
                Err(e) => {
                    lines.push(e.clone());
                    continue;
                }
            };
            let report = &standby.report;
            if report.blockers.is_empty() {
                lines.push(format!(
                    "{}  no session is waiting for a lock",
                    standby.server
                ));
            }
            for b in &report.blockers {
                let s = &b.session;
                let state = if s.is_idle_in_transaction() {
                    format!("idle in tx {}", crate::render::age(s.state_age_ms))
                } else {
                    s.state.clone().unwrap_or_else(|| "?".into())
                };
                let waiters: Vec<String> = b
                    .blocking
                    .iter()
                    .filter_map(|pid| report.waiting.iter().find(|w| w.pid == *pid))
                    .map(|w| {
                        let relation = w.wants.as_ref().map_or("?", |l| l.relation.as_str());
                        let who = if w.replay {
                            format!("replay of {relation}")
                        } else {
                            format!("pid {} on {relation}", w.pid)
                        };
                        match w.queued_behind.len() {
                            0 => who,
                            n => format!("{who} (+{n} queued behind)"),
                        }
                    })
                    .collect();
                lines.push(format!(
                    "{}  ROOT {} {} {state} ← {} waits",
                    standby.server,
                    s.pid,
                    s.application_name,
                    waiters.join(", ")
                ));
            }
        }
        lines
    }

    /// A refresh failed: `lost` when the connection is gone (the loop reconnects),
    /// otherwise the server refused the query and the view keeps its last snapshot.
    pub fn refresh_failed(&mut self, error: String, lost: bool) {
        if lost {
            let attempts = match &self.link {
                Link::Reconnecting { attempts, .. } => attempts + 1,
                _ => 1,
            };
            self.link = Link::Reconnecting { attempts, error };
        } else {
            self.say(&error, true);
        }
    }

    /// The loop performed a signal.
    pub fn signal_done(&mut self, signal: Signal, pid: i32, result: Result<Sent, String>) {
        match result {
            Ok(Sent::Signalled) => {
                self.say(&format!("sent {} to pid {pid}", signal.function()), false)
            }
            Ok(Sent::Gone) => self.say(&format!("pid {pid} is gone already"), false),
            Ok(Sent::MovedOn) => self.say(
                &format!(
                    "pid {pid} moved on (another statement, transaction or, behind a pooler, \
                     another client) since it was shown: nothing sent; look again"
                ),
                true,
            ),
            Err(e) => self.say(&e, true),
        }
    }

    fn say(&mut self, text: &str, error: bool) {
        self.status = Some(Status {
            text: text.to_string(),
            error,
            refreshes_left: STATUS_REFRESHES,
        });
    }

    /// The tree as drawn: every root blocker first (what to act on must be
    /// on screen even at 80×24), then the waiters in `BlockerReport::tree`
    /// order, a run of sessions waiting the same way folded into its first.
    pub fn tree(&self) -> Vec<TreeRow> {
        let lines = self
            .snapshot
            .as_ref()
            .map(|(_, r)| r.tree())
            .unwrap_or_default();
        let mut rows: Vec<TreeRow> = lines
            .iter()
            .filter(|l| l.depth == 0)
            .map(|&line| TreeRow { line, folded: 0 })
            .collect();
        // The row that heads the current run of leaf siblings.
        let mut run: Option<usize> = None;
        for (i, line) in lines.iter().enumerate().filter(|(_, l)| l.depth > 0) {
            let leaf = lines.get(i + 1).is_none_or(|next| next.depth <= line.depth);
            let sibling_of_run = run.is_some_and(|r| {
                let head = rows[r].line;
                leaf && head.depth == line.depth
                    && head.soft == line.soft
                    && lines[i - 1].depth == line.depth
            });
            match run {
                Some(r) if sibling_of_run => rows[r].folded += 1,
                _ => {
                    rows.push(TreeRow {
                        line: *line,
                        folded: 0,
                    });
                    run = leaf.then(|| rows.len() - 1);
                }
            }
        }
        rows
    }

    /// The session list: client backends and autovacuum, filtered, sorted longest first.
    pub fn sessions(&self) -> Vec<&Session> {
        let Some((snapshot, _)) = &self.snapshot else {
            return Vec::new();
        };
        let needle = self.filter.to_lowercase();
        let mut list: Vec<&Session> = snapshot
            .sessions
            .iter()
            .filter(|s| s.backend_type == "client backend" || s.backend_type.contains("autovacuum"))
            .filter(|s| needle.is_empty() || haystack(s).contains(&needle))
            .collect();
        // Whole seconds, then pid: sessions of about the same age keep their
        // places across refreshes instead of swapping on milliseconds.
        let key = |s: &Session| -> i64 {
            match self.sort {
                Sort::Transaction => s.xact_age_ms,
                Sort::State => s.state_age_ms,
                Sort::Wait => self.waiting_ms(s.pid),
            }
            .map_or(-1, |ms| ms / 1000)
        };
        list.sort_by_key(|s| (std::cmp::Reverse(key(s)), s.pid));
        list
    }

    /// How long `pid` has waited for a lock, if it waits.
    pub fn waiting_ms(&self, pid: i32) -> Option<i64> {
        let (_, report) = self.snapshot.as_ref()?;
        report
            .waiting
            .iter()
            .find(|w| w.pid == pid)
            .and_then(|w| w.waiting_ms)
    }

    /// Every selectable row: the tree's lines, then the session list.
    pub fn rows(&self) -> Vec<(Section, i32)> {
        self.tree()
            .iter()
            .map(|r| (Section::Tree, r.line.pid))
            .chain(self.sessions().iter().map(|s| (Section::Sessions, s.pid)))
            .collect()
    }

    /// The session under the cursor.
    pub fn selected(&self) -> Option<&Session> {
        let (_, pid) = self.rows().get(self.cursor).copied()?;
        self.session(pid)
    }

    /// A session of the last snapshot.
    pub fn session(&self, pid: i32) -> Option<&Session> {
        self.snapshot.as_ref()?.0.session(pid)
    }

    fn follow_selection(&mut self) {
        let rows = self.rows();
        // The same row, else the same session elsewhere (it left the tree), else the same place.
        if let Some(at) = self.selected.and_then(|sel| {
            rows.iter()
                .position(|r| *r == sel)
                .or_else(|| rows.iter().position(|r| r.1 == sel.1))
        }) {
            self.cursor = at;
        }
        self.cursor = self.cursor.min(rows.len().saturating_sub(1));
        self.selected = rows.get(self.cursor).copied();
    }

    /// Maps a key to an intent; returns work for the loop.
    pub fn handle_key(&mut self, key: KeyEvent) -> Option<Effect> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.quit = true;
            return None;
        }
        match self.mode.clone() {
            Mode::Normal => self.normal_key(key.code),
            Mode::Filter => {
                self.filter_key(key.code);
                None
            }
            Mode::Confirm(confirm) => self.confirm_key(key.code, confirm),
            Mode::Details(_) | Mode::Help => {
                if matches!(
                    key.code,
                    KeyCode::Esc | KeyCode::Enter | KeyCode::Char('q') | KeyCode::Char('?')
                ) {
                    self.mode = Mode::Normal;
                }
                None
            }
        }
    }

    fn normal_key(&mut self, code: KeyCode) -> Option<Effect> {
        match code {
            KeyCode::Char('q') => self.quit = true,
            // Esc closes and clears; it never quits: mid-incident, a key
            // pressed to dismiss something must not drop the view.
            KeyCode::Esc if !self.filter.is_empty() => {
                self.filter.clear();
                self.follow_selection();
                self.say("filter cleared", false);
            }
            KeyCode::Esc => self.say("nothing to close; q quits", false),
            KeyCode::Up => self.move_cursor(-1),
            KeyCode::Down => self.move_cursor(1),
            KeyCode::PageUp => self.move_cursor(-10),
            KeyCode::PageDown => self.move_cursor(10),
            KeyCode::Home => self.move_cursor(i64::MIN / 2),
            KeyCode::End => self.move_cursor(i64::MAX / 2),
            KeyCode::Enter => self.open_details(),
            KeyCode::Char('c') => self.ask(Signal::Cancel),
            KeyCode::Char('k') => self.ask(Signal::Terminate),
            KeyCode::Char('/') => self.mode = Mode::Filter,
            KeyCode::Char('s') => self.cycle_sort(),
            KeyCode::Char('p') => return self.toggle_pause(),
            KeyCode::Char('r') => return Some(Effect::Refresh),
            KeyCode::Char('?') => self.mode = Mode::Help,
            _ => {}
        }
        None
    }

    /// Moves the selection by `delta` rows, clamped.
    pub fn move_cursor(&mut self, delta: i64) {
        let rows = self.rows();
        if rows.is_empty() {
            return;
        }
        let at = (self.cursor as i64 + delta).clamp(0, rows.len() as i64 - 1) as usize;
        self.cursor = at;
        self.selected = Some(rows[at]);
    }

    /// Selects the first row showing `pid`.
    #[cfg(test)]
    pub fn select_pid(&mut self, pid: i32) -> bool {
        match self.rows().iter().position(|(_, p)| *p == pid) {
            Some(at) => {
                self.move_cursor(at as i64 - self.cursor as i64);
                true
            }
            None => false,
        }
    }

    fn open_details(&mut self) {
        if let Some(s) = self.selected() {
            self.mode = Mode::Details(s.pid);
        }
    }

    /// Asks for confirmation before cancelling or terminating the selected session.
    pub fn ask(&mut self, signal: Signal) {
        let Some(s) = self.selected() else {
            self.say("select a session first (arrow keys)", true);
            return;
        };
        // A cancel stops the running statement; an idle session runs none, so it would do nothing.
        if signal == Signal::Cancel && s.state.as_deref().is_some_and(|st| st.starts_with("idle")) {
            let (pid, state) = (s.pid, s.state.clone().unwrap_or_default());
            self.say(
                &format!(
                    "pid {pid} is {state}: a cancel does nothing to an idle session (it runs no statement); press k to terminate it"
                ),
                true,
            );
            return;
        }
        let label = format!(
            "{} ({}: {})",
            s.label(),
            s.state.as_deref().unwrap_or("?"),
            crate::render::one_line(&s.query, 60)
        );
        self.mode = Mode::Confirm(Confirm {
            signal,
            pid: s.pid,
            target: Target::from(s),
            label,
        });
    }

    fn confirm_key(&mut self, code: KeyCode, confirm: Confirm) -> Option<Effect> {
        match code {
            KeyCode::Char('y') | KeyCode::Char('Y') => {
                self.mode = Mode::Normal;
                let doing = match confirm.signal {
                    Signal::Cancel => "cancelling the statement of",
                    Signal::Terminate => "terminating",
                };
                self.say(&format!("{doing} pid {}…", confirm.pid), false);
                Some(Effect::Signal(confirm.signal, confirm.target))
            }
            // Anything but y is no, as the dialog says: a stray key must not
            // leave a loaded question on screen.
            _ => {
                self.mode = Mode::Normal;
                self.say(&format!("left pid {} alone", confirm.pid), false);
                None
            }
        }
    }

    fn filter_key(&mut self, code: KeyCode) {
        match code {
            KeyCode::Char(c) => self.filter.push(c),
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Enter => self.mode = Mode::Normal,
            KeyCode::Esc => {
                self.filter.clear();
                self.mode = Mode::Normal;
            }
            _ => {}
        }
        self.follow_selection();
    }

    /// Next sort order.
    pub fn cycle_sort(&mut self) {
        self.sort = match self.sort {
            Sort::Transaction => Sort::State,
            Sort::State => Sort::Wait,
            Sort::Wait => Sort::Transaction,
        };
        self.follow_selection();
    }

    /// Stops or resumes refreshing; resuming refreshes at once.
    pub fn toggle_pause(&mut self) -> Option<Effect> {
        self.paused = !self.paused;
        (!self.paused).then_some(Effect::Refresh)
    }
}

fn haystack(s: &Session) -> String {
    format!(
        "{} {} {} {} {} {} {} {}",
        s.pid,
        s.application_name,
        s.backend_type,
        s.client(),
        s.usename.as_deref().unwrap_or(""),
        s.datname.as_deref().unwrap_or(""),
        s.state.as_deref().unwrap_or(""),
        s.query
    )
    .to_lowercase()
}
