//! Drawing `locksmith top`: header, lock-wait tree, session list, status
//! line, and the popups (confirmation, details, help).
//!
//! [`render`] only reads the [`App`]; it never changes state or talks to the
//! server. Layout is planned for 80×24 first (one title line per section, no
//! side borders, the client column dropped when narrow) and uses the extra
//! room at 160×40. Without colour (`NO_COLOR`) only bold, dim and reverse
//! video are used, so nothing depends on colour to be read.

use locksmith_pg::blockers::{held_locks, wanted_lock};
use locksmith_pg::signal::Signal;
use locksmith_pg::snapshot::Session;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};
use ratatui::Frame;

use super::app::{App, Link, Mode, Section, TreeRow};
use crate::render::{age, one_line};

/// Colours when allowed; modifiers always.
#[derive(Clone, Copy)]
struct Palette {
    color: bool,
}

impl Palette {
    fn fg(self, c: Color) -> Style {
        if self.color {
            Style::new().fg(c)
        } else {
            Style::new()
        }
    }
    fn red(self) -> Style {
        self.fg(Color::Red)
    }
    fn yellow(self) -> Style {
        self.fg(Color::Yellow)
    }
    fn green(self) -> Style {
        self.fg(Color::Green)
    }
    fn dim(self) -> Style {
        Style::new().add_modifier(Modifier::DIM)
    }
    fn bold(self) -> Style {
        Style::new().add_modifier(Modifier::BOLD)
    }
    fn selected(self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }
    /// Idle-in-transaction rows: yellow from 10 s, red from a minute.
    fn idle_age(self, s: &Session) -> Style {
        if !s.is_idle_in_transaction() {
            return Style::new();
        }
        match s.state_age_ms.unwrap_or(0) {
            ms if ms >= 60_000 => self.red().add_modifier(Modifier::BOLD),
            ms if ms >= 10_000 => self.red(),
            _ => self.yellow(),
        }
    }
}

/// Draws the whole screen from `app`.
pub fn render(app: &App, frame: &mut Frame) {
    let p = Palette { color: app.color };
    let area = frame.area();
    let tree_len = app.tree().len().max(1) as u16;
    let body = area.height.saturating_sub(4);
    // The tree gets what it needs up to half the body; the session list the rest.
    let tree_height = (tree_len + 1).min(body / 2).max(2);
    let standby_lines = app.standby_lines();
    let standby_height = match standby_lines.len() {
        0 => 0,
        n => (n as u16 + 1).min(body / 4).max(2),
    };
    let [header, tree, standbys, sessions, status, keys] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(tree_height),
        Constraint::Length(standby_height),
        Constraint::Min(2),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    render_header(app, p, frame, header);
    render_tree(app, p, frame, tree);
    if standby_height > 0 {
        render_standbys(&standby_lines, p, frame, standbys);
    }
    render_sessions(app, p, frame, sessions);
    render_status(app, p, frame, status, keys);
    match &app.mode {
        Mode::Confirm(c) => {
            let (title, what) = match c.signal {
                Signal::Cancel => ("Cancel", "its running statement fails; the session stays"),
                Signal::Terminate => (
                    "Terminate",
                    "the session ends and its transaction rolls back",
                ),
            };
            let text = vec![
                Line::styled(format!("{title} pid {}? [y/N]", c.pid), p.bold()),
                Line::raw(c.label.clone()),
                Line::styled(format!("({}: {what})", c.signal.function()), p.dim()),
                Line::raw(""),
                Line::styled("y = yes; n, Esc or anything else = no", p.bold()),
            ];
            popup(frame, p, title, text, 70, 7);
        }
        Mode::Details(pid) => popup(
            frame,
            p,
            "Details (Esc to close)",
            details(app, p, *pid),
            100,
            30,
        ),
        Mode::Help => popup(frame, p, "Keys (Esc to close)", help(p), 76, 17),
        Mode::Normal | Mode::Filter => {}
    }
}

fn render_header(app: &App, p: Palette, frame: &mut Frame, area: Rect) {
    // What needs attention first: a narrow terminal cuts the end of the line.
    let mut first = vec![Span::styled("locksmith top ", p.bold())];
    if app.paused {
        first.push(Span::styled(
            "PAUSED ",
            p.yellow().add_modifier(Modifier::BOLD),
        ));
    }
    match &app.link {
        Link::Connecting => first.push(Span::styled("connecting… ", p.yellow())),
        Link::Up => {}
        Link::Reconnecting { attempts, error } => first.push(Span::styled(
            format!(
                "reconnecting (attempt {attempts}): {} ",
                one_line(error, 60)
            ),
            p.red().add_modifier(Modifier::BOLD),
        )),
    }
    let mut timing = format!(" · every {}", age(Some(app.interval.as_millis() as i64)));
    if let Some(took) = app.refresh_took {
        timing.push_str(&format!(
            " · snapshot took {}",
            age(Some(took.as_millis() as i64))
        ));
    }
    // The target gets what is left of the width, so the timing stays on screen.
    let used: usize = first
        .iter()
        .map(|s| s.content.chars().count())
        .sum::<usize>()
        + timing.chars().count();
    let room = (area.width as usize).saturating_sub(used).max(12);
    // Behind a pooler, say so: client addresses shown as the pooler's are labelled `via pooler`.
    let target = match app
        .snapshot
        .as_ref()
        .and_then(|(s, _)| s.pooler_addr.as_deref())
    {
        Some(addr) => format!("{} through a pooler ({addr})", app.target),
        None => app.target.clone(),
    };
    first.push(Span::raw(one_line(&target, room)));
    first.push(Span::styled(timing, p.dim()));
    let second = match &app.snapshot {
        None => Line::styled("waiting for the first snapshot…", p.dim()),
        Some((snap, report)) => {
            let c = &report.connections;
            let idle = &report.idle_in_transaction;
            let oldest = idle.iter().filter_map(|s| s.session.state_age_ms).max();
            let longest = snap.sessions.iter().filter_map(|s| s.xact_age_ms).max();
            let idle_style = if idle.is_empty() { p.green() } else { p.red() };
            let wait_style = if report.waiting.is_empty() {
                p.green()
            } else {
                p.red()
            };
            // Out of ordinary slots: new connections are refused, so say it loudly.
            let full = c.used as i64 >= i64::from(c.max - c.reserved);
            let conn = if full {
                Span::styled(
                    format!("conn {}/{} FULL", c.used, c.max),
                    p.red().add_modifier(Modifier::BOLD | Modifier::REVERSED),
                )
            } else {
                Span::raw(format!("conn {}/{}", c.used, c.max))
            };
            let mut spans = vec![
                conn,
                Span::styled(" │ ", p.dim()),
                Span::styled(format!("idle in tx {}", idle.len()), idle_style),
            ];
            if oldest.is_some() {
                spans.push(Span::styled(
                    format!(", oldest {}", age(oldest)),
                    idle_style,
                ));
            }
            spans.extend([
                Span::styled(" │ ", p.dim()),
                Span::styled(format!("waiting {}", report.waiting.len()), wait_style),
                Span::styled(" │ ", p.dim()),
                Span::raw(format!("longest tx {}", age(longest))),
            ]);
            Line::from(spans)
        }
    };
    frame.render_widget(Paragraph::new(vec![Line::from(first), second]), area);
}

fn render_tree(app: &App, p: Palette, frame: &mut Frame, area: Rect) {
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(p.dim())
        .title(Span::styled(
            " Lock waits: ROOT blocker, └─ waits for it, └┄ queued behind it ",
            p.bold(),
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let Some((snap, report)) = &app.snapshot else {
        return;
    };
    let tree = app.tree();
    if tree.is_empty() {
        frame.render_widget(
            Paragraph::new(Line::styled("No session is waiting for a lock.", p.green())),
            inner,
        );
        return;
    }
    let cursor = app
        .rows()
        .get(app.cursor)
        .filter(|(s, _)| *s == Section::Tree)
        .map(|_| app.cursor);
    let mut lines: Vec<Line> = tree
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let line = tree_line(snap, report, p, row);
            if Some(i) == cursor {
                line.style(p.selected())
            } else {
                line
            }
        })
        .collect();
    // Keep the selected line visible; say how many rows the screen cuts off.
    let height = inner.height as usize;
    let scroll = cursor.map(|c| (c + 1).saturating_sub(height)).unwrap_or(0);
    let below = lines.len().saturating_sub(scroll + height);
    if below > 0 && height > 0 {
        lines.truncate(scroll + height - 1);
        lines.push(Line::styled(
            format!("+{} more below (↓ scrolls)", below + 1),
            p.bold(),
        ));
    }
    frame.render_widget(Paragraph::new(lines).scroll((scroll as u16, 0)), inner);
}

/// The hot standbys given with `--replica`: their roots and what waits, one line each.
fn render_standbys(lines: &[String], p: Palette, frame: &mut Frame, area: Rect) {
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(p.dim())
        .title(Span::styled(" Hot standbys ", p.bold()));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let lines: Vec<Line> = lines
        .iter()
        .map(|l| {
            if l.contains(" ROOT ") {
                Line::styled(l.clone(), p.red())
            } else {
                Line::raw(l.clone())
            }
        })
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

/// One row of the tree. Most telling first, since narrow terminals cut the
/// end: pid, table, the lock wanted or held, how long, how many behind; then
/// who; then the query.
fn tree_line(
    snap: &locksmith_pg::snapshot::Snapshot,
    report: &locksmith_pg::blockers::BlockerReport,
    p: Palette,
    row: &TreeRow,
) -> Line<'static> {
    let line = row.line;
    if line.pid == locksmith_pg::prepared::NO_BACKEND && line.depth == 0 {
        // Prepared transactions: no session, no pid; named by gid, finished by SQL only.
        let names: Vec<String> = report
            .blockers
            .iter()
            .filter_map(|b| b.prepared.as_ref())
            .map(|x| x.label())
            .collect();
        return Line::from(vec![
            Span::styled("ROOT ", p.red().add_modifier(Modifier::BOLD)),
            Span::raw(format!(
                "{} (no session: COMMIT PREPARED or ROLLBACK PREPARED releases it)",
                names.join("; ")
            )),
        ]);
    }
    let Some(s) = snap.session(line.pid) else {
        return Line::raw(format!("pid {} (gone)", line.pid));
    };
    let mut spans = Vec::new();
    let indent = "   ".repeat(line.depth.saturating_sub(1));
    if line.depth == 0 {
        spans.push(Span::styled("ROOT ", p.red().add_modifier(Modifier::BOLD)));
    } else if line.soft {
        spans.push(Span::raw(format!("{indent}└┄ ")));
    } else {
        spans.push(Span::raw(format!("{indent}└─ ")));
    }
    spans.push(Span::styled(format!("{} ", s.pid), p.bold()));
    if let Some(w) = report.waiting.iter().find(|w| w.pid == s.pid) {
        // The lock it wants right after the table: at 80 columns the line is
        // cut at the end, and the mode the queued DDL wants is what matters.
        if let Some(l) = &w.wants {
            spans.push(Span::styled(format!("{} ", l.relation), p.bold()));
            spans.push(Span::styled(format!("wants {} ", l.mode), p.yellow()));
        }
        spans.push(Span::styled(
            format!("wait {} ", age(w.waiting_ms)),
            p.yellow(),
        ));
        if !w.queued_behind.is_empty() {
            spans.push(Span::styled(
                format!("({} queued behind) ", w.queued_behind.len()),
                p.red(),
            ));
        }
        if row.folded > 0 {
            spans.push(Span::styled(
                format!("+{} more like it ", row.folded),
                p.bold(),
            ));
        }
        spans.push(Span::raw(format!("{} ", s.label())));
        spans.push(Span::raw(format!("tx {} ", age(s.xact_age_ms))));
    } else {
        // A root: who it is matters more than the (weak) lock it holds.
        let held = held_locks(&snap.locks, s.pid);
        if let Some(l) = held.first() {
            spans.push(Span::styled(format!("{} ", l.relation), p.bold()));
        }
        spans.push(Span::styled(
            format!("{} {} ", short_state(s), age(s.state_age_ms)),
            p.idle_age(s),
        ));
        spans.push(Span::raw(format!("{} ", s.label())));
        spans.push(Span::raw(format!("tx {} ", age(s.xact_age_ms))));
        if let Some(l) = held.first() {
            spans.push(Span::raw(format!("holds {} ", l.mode)));
        }
    }
    spans.push(Span::styled(one_line(&s.query, 200), p.dim()));
    Line::from(spans)
}

fn short_state(s: &Session) -> String {
    let state = s.state.as_deref().unwrap_or("-");
    let short = state
        .replace("idle in transaction (aborted)", "idle in tx (aborted)")
        .replace("idle in transaction", "idle in tx");
    if s.is_waiting_on_lock() {
        format!("{short}, waiting")
    } else {
        short
    }
}

fn render_sessions(app: &App, p: Palette, frame: &mut Frame, area: Rect) {
    let sessions = app.sessions();
    let mut title = format!(
        " Sessions ({}), longest {} first ",
        sessions.len(),
        app.sort.label()
    );
    if !app.filter.is_empty() {
        title.push_str(&format!("· filter \"{}\" ", app.filter));
    }
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(p.dim())
        .title(Span::styled(title, p.bold()));
    let wide = area.width >= 110;
    let mut header = vec!["PID", "APPLICATION"];
    let mut widths = vec![
        Constraint::Length(7),
        Constraint::Length(if wide { 22 } else { 14 }),
    ];
    if wide {
        header.push("CLIENT");
        widths.push(Constraint::Length(15));
    }
    header.extend(["STATE", "TX AGE", "IN STATE", "WAIT", "QUERY"]);
    widths.extend([
        Constraint::Length(if wide { 20 } else { 10 }),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Fill(1),
    ]);
    let rows: Vec<Row> = sessions
        .iter()
        .map(|s| {
            let mut cells = vec![Cell::from(s.pid.to_string()), Cell::from(s.name())];
            if wide {
                cells.push(Cell::from(s.client()));
            }
            let state = if wide {
                short_state(s)
            } else {
                short_state(s).replace(", waiting", "*")
            };
            let wait = app.waiting_ms(s.pid);
            cells.extend([
                Cell::from(state).style(p.idle_age(s)),
                Cell::from(age(s.xact_age_ms)),
                Cell::from(age(s.state_age_ms)),
                Cell::from(if wait.is_some() {
                    age(wait)
                } else {
                    String::new()
                })
                .style(p.yellow()),
                Cell::from(one_line(&s.query, 300)).style(p.dim()),
            ]);
            Row::new(cells)
        })
        .collect();
    let tree_rows = app.tree().len();
    let selected = app
        .rows()
        .get(app.cursor)
        .filter(|(s, _)| *s == Section::Sessions)
        .map(|_| app.cursor - tree_rows);
    let table = Table::new(rows, widths)
        .header(Row::new(header).style(p.bold()))
        .block(block)
        .column_spacing(1)
        .row_highlight_style(p.selected());
    let mut state = TableState::default().with_selected(selected);
    frame.render_stateful_widget(table, area, &mut state);
}

fn render_status(app: &App, p: Palette, frame: &mut Frame, status: Rect, keys: Rect) {
    let line = match (&app.mode, &app.status) {
        (Mode::Filter, _) => Line::from(vec![
            Span::styled("filter: ", p.bold()),
            Span::raw(format!("{}▏", app.filter)),
            Span::styled("  (Enter keeps it, Esc clears it)", p.dim()),
        ]),
        (_, Some(s)) if s.error => {
            Line::styled(s.text.clone(), p.red().add_modifier(Modifier::BOLD))
        }
        (_, Some(s)) => Line::styled(s.text.clone(), p.green()),
        (_, None) => Line::raw(""),
    };
    frame.render_widget(Paragraph::new(line), status);
    let hint = "q quit ↑↓ select ⏎ details c cancel k terminate / filter s sort p pause ? help";
    frame.render_widget(Paragraph::new(Line::styled(hint, p.dim())), keys);
}

fn details(app: &App, p: Palette, pid: i32) -> Vec<Line<'static>> {
    let Some((snap, report)) = &app.snapshot else {
        return vec![];
    };
    let Some(s) = snap.session(pid) else {
        return vec![Line::raw(format!("pid {pid} has ended."))];
    };
    let field = |k: &str, v: String| {
        Line::from(vec![
            Span::styled(format!("{k:<18}"), p.bold()),
            Span::raw(v),
        ])
    };
    let mut lines = vec![
        field("pid", s.pid.to_string()),
        field("application", s.application_name.clone()),
        field(
            "client",
            match &s.client_addr {
                Some(_) => s.client(),
                None => "local socket".into(),
            },
        ),
        field(
            "user / db",
            format!(
                "{} / {}",
                s.usename.as_deref().unwrap_or("-"),
                s.datname.as_deref().unwrap_or("-")
            ),
        ),
        field("state", s.state.clone().unwrap_or_else(|| "-".into())),
        field(
            "ages",
            format!(
                "transaction {}, in state {}, query {}",
                age(s.xact_age_ms),
                age(s.state_age_ms),
                age(s.query_age_ms)
            ),
        ),
    ];
    if let Some(w) = report.waiting.iter().find(|w| w.pid == pid) {
        let wants = wanted_lock(&snap.locks, pid)
            .map(|l| {
                format!(
                    "{} on {}",
                    l.mode,
                    l.relation.clone().unwrap_or_else(|| l.locktype.clone())
                )
            })
            .unwrap_or_else(|| "a lock".into());
        lines.push(field(
            "wants",
            format!("{wants}, for {}", age(w.waiting_ms)),
        ));
        lines.push(field("blocked by", pids(&w.blocked_by)));
        lines.push(field("queued behind it", pids(&w.queued_behind)));
    }
    let held: Vec<String> = snap
        .locks
        .iter()
        .filter(|l| l.pid == pid && l.granted)
        .map(|l| {
            format!(
                "{} on {}",
                l.mode,
                l.relation.clone().unwrap_or_else(|| l.locktype.clone())
            )
        })
        .collect();
    lines.push(field(
        "holds",
        if held.is_empty() {
            "no relation locks".into()
        } else {
            held.join(", ")
        },
    ));
    lines.push(Line::raw(""));
    lines.push(Line::styled("query", p.bold()));
    lines.extend(s.query.lines().map(|l| Line::raw(l.to_string())));
    lines
}

fn pids(list: &[i32]) -> String {
    if list.is_empty() {
        return "-".into();
    }
    list.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn help(p: Palette) -> Vec<Line<'static>> {
    [
        ("q  Ctrl-C", "quit"),
        ("Esc", "close this popup, clear the filter (never quits)"),
        (
            "↑ ↓ PgUp PgDn",
            "select a session (tree first, then the list)",
        ),
        ("Enter", "details: full query, locks held and wanted"),
        ("c", "cancel the selected session's statement (asks [y/N])"),
        ("k", "terminate the selected session (asks [y/N])"),
        ("/", "filter the session list (pid, app, client, query…)"),
        ("s", "sort by transaction age, state age, lock wait"),
        ("p", "pause / resume refreshing"),
        ("r", "refresh now"),
        ("?", "this help"),
    ]
    .iter()
    .map(|(k, v)| {
        Line::from(vec![
            Span::styled(format!("{k:<15}"), p.bold()),
            Span::raw(v.to_string()),
        ])
    })
    .chain([
        Line::raw(""),
        Line::styled(
            "ROOT: blocks others, waits for no one (all roots come first).",
            p.dim(),
        ),
        Line::styled(
            "└┄ queued behind: waits only because a request is queued ahead.",
            p.dim(),
        ),
        Line::styled(
            "A cancel does nothing to an idle session: terminate it (k).",
            p.dim(),
        ),
    ])
    .collect()
}

fn popup(
    frame: &mut Frame,
    p: Palette,
    title: &str,
    text: Vec<Line<'static>>,
    width: u16,
    height: u16,
) {
    let area = frame.area();
    let w = width.min(area.width.saturating_sub(2)).max(10);
    let h = height.min(area.height.saturating_sub(2)).max(3);
    let rect = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    frame.render_widget(Clear, rect);
    let block = Block::bordered().title(Span::styled(format!(" {title} "), p.bold()));
    frame.render_widget(
        Paragraph::new(text).block(block).wrap(Wrap { trim: false }),
        rect,
    );
}
