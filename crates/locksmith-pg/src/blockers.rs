//! The blocker graph: who waits for whom, built from one [`Snapshot`].
//!
//! PostgreSQL's lock queue is why a 250-row ALTER took production down: a
//! request waits for every *earlier* conflicting request, granted or not.
//! `pg_blocking_pids` reports both, and this module tells them apart:
//! a *hard* block is a conflicting lock that is held; a *soft* block is a
//! conflicting request queued ahead (the ALTER that every SELECT waits
//! behind). Root blockers are sessions that block others and wait for no one:
//! the ones to blame. This module is pure: it reads a snapshot, nothing else.
//!
//! Two kinds of root are not ordinary sessions. A prepared transaction holds
//! locks with no session (`pg_blocking_pids` says pid 0): it is a root with
//! `pid` null and a `prepared` object, one per prepared transaction holding
//! a conflicting lock. Another role's session that our role may not inspect
//! is a root like any other, named by what `pg_locks` shows (pid, locks);
//! what is hidden, and the grant that shows it, is in [`Hidden`], so a role
//! with too little privilege never reads an all-clear it cannot vouch for.

use std::collections::{BTreeMap, BTreeSet};

use locksmith_core::lock::LockMode;
use serde::Serialize;

use crate::prepared::{PreparedXact, NO_BACKEND};
use crate::snapshot::{LockRow, Session, SessionSummary, Snapshot};

/// A relation (or, for a lock on something else, its lock type, e.g.
/// `transactionid`) and a lock mode on it: the analysis' own type, so lint,
/// the guard and this report speak of locks the same way.
pub use locksmith_core::analysis::RelationLock;

/// A session that blocks others and waits for no one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Blocker {
    /// Who it is and what it is doing.
    #[serde(flatten)]
    pub session: SessionSummary,
    /// Relation locks it holds.
    pub holds: Vec<RelationLock>,
    /// Sessions that wait directly for it.
    pub blocking: Vec<i32>,
    /// Its `client_addr` is the connection pooler's: the application behind it is not known here.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub via_pooler: bool,
    /// A prepared transaction, not a session (`pid` is null): who prepared
    /// it, where and when, and the statements that finish it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prepared: Option<PreparedXact>,
}

/// A session waiting for a lock.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Waiting {
    /// Backend pid.
    pub pid: i32,
    /// The client's `application_name`.
    pub application_name: String,
    /// The statement that waits.
    pub query: String,
    /// The lock it waits for.
    pub wants: Option<RelationLock>,
    /// How long it has waited (from `waitstart` on 14+, else since the statement began).
    pub waiting_ms: Option<i64>,
    /// `pg_blocking_pids`: holders of conflicting locks and conflicting requests queued ahead.
    pub blocked_by: Vec<i32>,
    /// The subset of `blocked_by` that waits in the queue ahead of it (soft blocks).
    pub queued_after: Vec<i32>,
    /// Every session that waits because of this one, directly or through the queue.
    pub queued_behind: Vec<i32>,
    /// A hot standby's startup process replaying a lock the primary took:
    /// all replay stops while it waits.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

/// A session idle inside an open transaction: the story's leak.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleInTransaction {
    /// Who it is and how long it has been idle.
    #[serde(flatten)]
    pub session: SessionSummary,
    /// Relation locks it holds.
    pub holds: Vec<RelationLock>,
    /// Its `client_addr` is the connection pooler's: the application behind it is not known here.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub via_pooler: bool,
}

/// Connection headroom.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Connections {
    /// Client connections in use.
    pub used: usize,
    /// `max_connections`.
    pub max: i32,
    /// Slots reserved for superusers (and `pg_use_reserved_connections` on 16+).
    pub reserved: i32,
}

/// The whole diagnosis, serialised as the `blockers --format json` contract.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BlockerReport {
    /// Root blockers, most-blocking first.
    pub blockers: Vec<Blocker>,
    /// Sessions waiting on locks, longest wait first.
    pub waiting: Vec<Waiting>,
    /// Sessions idle in transaction, oldest transaction first.
    pub idle_in_transaction: Vec<IdleInTransaction>,
    /// Connections used and available.
    pub connections: Connections,
    /// Prepared transactions (any database), oldest first, with the
    /// relation locks they hold until someone commits or rolls them back.
    pub prepared_transactions: Vec<PreparedEntry>,
    /// Other roles' sessions that hold or wait for locks but whose state
    /// our role may not see; absent when nothing is hidden.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hidden: Option<Hidden>,
}

/// A prepared transaction and what it holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreparedEntry {
    /// Which transaction.
    #[serde(flatten)]
    pub xact: PreparedXact,
    /// Relation locks it holds.
    pub holds: Vec<RelationLock>,
}

/// What the role that took the snapshot could not see, and how to see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hidden {
    /// The role (`current_user`).
    pub role: String,
    /// The statement that lets it see every session's state, query and ages.
    pub grant: String,
    /// What is missing for each session below.
    pub missing: Vec<&'static str>,
    /// The hidden sessions with locks, as `pg_locks` shows them.
    pub sessions: Vec<HiddenSession>,
}

/// Another role's session with locks, as far as our role can see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HiddenSession {
    /// Backend pid.
    pub pid: i32,
    /// Its role.
    pub usename: Option<String>,
    /// The client's `application_name`.
    pub application_name: String,
    /// Relation locks it holds.
    pub holds: Vec<RelationLock>,
    /// The lock it waits for, if it waits.
    pub wants: Option<RelationLock>,
}

impl BlockerReport {
    /// Sessions wait behind a root blocker (a session, a prepared
    /// transaction, or a session hidden from our role): `blockers` exits 3.
    pub fn is_blocked(&self) -> bool {
        !self.blockers.is_empty()
    }
}

/// The same diagnosis on a hot standby given with `--replica`, named by its
/// server: the `standbys` entries of `blockers --format json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StandbyReport {
    /// `host:port`.
    pub server: String,
    /// Its sessions, waits (the replay's among them) and roots.
    #[serde(flatten)]
    pub report: BlockerReport,
}

/// One line of the wait tree: a session at a depth under its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeLine {
    /// The session.
    pub pid: i32,
    /// 0 for a root blocker.
    pub depth: usize,
    /// Whether it waits behind its parent in the queue (a soft block) rather than for a held lock.
    pub soft: bool,
}

impl BlockerReport {
    /// Builds the diagnosis from a snapshot.
    /// The report for one database of the server (`blockers --targets`):
    /// its sessions and whom they wait for ([`Snapshot::of_database`]); the
    /// connection counts stay the server's, since they share its limit.
    pub fn for_database(snapshot: &Snapshot, name: &str) -> BlockerReport {
        let mut report = BlockerReport::from_snapshot(&snapshot.of_database(name));
        report.connections.used = snapshot.connections_used();
        report
    }

    /// The report for the whole server.
    pub fn from_snapshot(snapshot: &Snapshot) -> BlockerReport {
        let graph = Graph::new(snapshot);
        let holds = |pid: i32| held_locks(&snapshot.locks, pid);

        let mut waiting: Vec<Waiting> = snapshot
            .sessions
            .iter()
            .filter(|s| s.is_waiting_on_lock())
            .map(|s| {
                let wanted = wanted_lock(&snapshot.locks, s.pid);
                Waiting {
                    pid: s.pid,
                    application_name: s.application_name.clone(),
                    query: s.query.clone(),
                    wants: wanted.and_then(|l| {
                        Some(RelationLock {
                            relation: l.relation.clone().unwrap_or_else(|| l.locktype.clone()),
                            mode: LockMode::from_pg_name(&l.mode)?,
                        })
                    }),
                    waiting_ms: wanted.and_then(|l| l.waiting_ms).or(s.query_age_ms),
                    blocked_by: s.blocked_by.clone(),
                    queued_after: s
                        .blocked_by
                        .iter()
                        .copied()
                        .filter(|b| graph.is_soft(s.pid, *b))
                        .collect(),
                    queued_behind: graph.behind(s.pid),
                    replay: s.backend_type == "startup",
                }
            })
            .collect();
        waiting.sort_by_key(|w| std::cmp::Reverse(w.waiting_ms.unwrap_or(0)));

        let roots = graph.roots();
        let mut blockers: Vec<Blocker> = roots
            .iter()
            .filter_map(|pid| snapshot.session(*pid))
            .map(|s| Blocker {
                session: s.into(),
                holds: holds(s.pid),
                blocking: graph.direct_waiters(s.pid),
                via_pooler: s.via_pooler,
                prepared: None,
            })
            .collect();
        if roots.contains(&NO_BACKEND) {
            blockers.extend(prepared_blockers(
                snapshot,
                &graph.direct_waiters(NO_BACKEND),
            ));
        }
        // Cached: `behind` walks the graph, and a sort would call it O(n log n) times.
        blockers.sort_by_cached_key(|b| {
            (
                std::cmp::Reverse(graph.behind(b.session.pid).len()),
                b.session.pid,
            )
        });

        let idle_in_transaction = snapshot
            .sessions
            .iter()
            .filter(|s| s.is_idle_in_transaction())
            .map(|s| IdleInTransaction {
                session: s.into(),
                holds: holds(s.pid),
                via_pooler: s.via_pooler,
            })
            .collect();

        let prepared_transactions = snapshot
            .prepared
            .iter()
            .map(|p| PreparedEntry {
                xact: p.xact.clone(),
                holds: held_locks(&p.locks, NO_BACKEND),
            })
            .collect();

        BlockerReport {
            blockers,
            waiting,
            idle_in_transaction,
            connections: Connections {
                used: snapshot.connections_used(),
                max: snapshot.max_connections,
                reserved: snapshot.reserved_connections,
            },
            prepared_transactions,
            hidden: hidden(snapshot),
        }
    }

    /// The wait tree in display order: each root blocker, then depth-first the
    /// sessions waiting for it. A session reachable twice is drawn once, under
    /// its first parent.
    pub fn tree(&self) -> Vec<TreeLine> {
        let mut children: BTreeMap<i32, Vec<(i32, bool)>> = BTreeMap::new();
        for w in &self.waiting {
            for b in &w.blocked_by {
                children
                    .entry(*b)
                    .or_default()
                    .push((w.pid, w.queued_after.contains(b)));
            }
        }
        let mut lines = Vec::new();
        let mut seen = BTreeSet::new();
        fn visit(
            pid: i32,
            depth: usize,
            soft: bool,
            children: &BTreeMap<i32, Vec<(i32, bool)>>,
            seen: &mut BTreeSet<i32>,
            lines: &mut Vec<TreeLine>,
        ) {
            if !seen.insert(pid) {
                return;
            }
            lines.push(TreeLine { pid, depth, soft });
            for (child, soft) in children.get(&pid).into_iter().flatten() {
                visit(*child, depth + 1, *soft, children, seen, lines);
            }
        }
        for b in &self.blockers {
            visit(b.session.pid, 0, false, &children, &mut seen, &mut lines);
        }
        lines
    }
}

/// The prepared transactions that `waiters` (blocked by pid 0) wait for:
/// each one holding a lock that conflicts with what a waiter wants (when
/// none does, e.g. a wait on a row it changed, every prepared transaction
/// could be the one), as roots with their own waiters.
fn prepared_blockers(snapshot: &Snapshot, waiters: &[i32]) -> Vec<Blocker> {
    let blocks = |p: &crate::prepared::PreparedLocks, waiter: i32| {
        let Some(wanted) = wanted_lock(&snapshot.locks, waiter) else {
            return false;
        };
        p.locks
            .iter()
            .any(|l| l.relation == wanted.relation && conflicts(&wanted.mode, &l.mode))
    };
    let mut found: Vec<Blocker> = Vec::new();
    for p in &snapshot.prepared {
        let blocking: Vec<i32> = waiters.iter().copied().filter(|w| blocks(p, *w)).collect();
        if !blocking.is_empty() {
            found.push(prepared_blocker(p, blocking));
        }
    }
    let unexplained: Vec<i32> = waiters
        .iter()
        .copied()
        .filter(|w| !found.iter().any(|b| b.blocking.contains(w)))
        .collect();
    if !unexplained.is_empty() {
        for p in &snapshot.prepared {
            match found
                .iter_mut()
                .find(|b| b.prepared.as_ref() == Some(&p.xact))
            {
                Some(b) => b.blocking.extend(&unexplained),
                None => found.push(prepared_blocker(p, unexplained.clone())),
            }
        }
    }
    found
}

/// A prepared transaction as a root blocker: no pid, its owner as the
/// role, its age as the transaction's, `prepared` naming it.
fn prepared_blocker(p: &crate::prepared::PreparedLocks, blocking: Vec<i32>) -> Blocker {
    Blocker {
        session: p.xact.summary(),
        holds: held_locks(&p.locks, NO_BACKEND),
        blocking,
        via_pooler: false,
        prepared: Some(p.xact.clone()),
    }
}

/// Whether a request for `wanted` conflicts with a granted `held` (`pg_locks`
/// spelling); a mode we do not know is taken to conflict.
fn conflicts(wanted: &str, held: &str) -> bool {
    match (LockMode::from_pg_name(wanted), LockMode::from_pg_name(held)) {
        (Some(w), Some(h)) => w.conflicts_with(h),
        _ => true,
    }
}

/// What our role could not see: the hidden sessions that hold a relation
/// lock (outside the system catalogs) or wait for one. `None` when there is
/// none, or the role sees everything.
fn hidden(snapshot: &Snapshot) -> Option<Hidden> {
    if snapshot.sees_all_sessions {
        return None;
    }
    let sessions: Vec<HiddenSession> = snapshot
        .sessions
        .iter()
        .filter(|s| s.is_hidden())
        .map(|s| HiddenSession {
            pid: s.pid,
            usename: s.usename.clone(),
            application_name: s.application_name.clone(),
            holds: held_locks(&snapshot.locks, s.pid),
            wants: wanted_lock(&snapshot.locks, s.pid).and_then(|l| {
                Some(RelationLock {
                    relation: l.relation.clone().unwrap_or_else(|| l.locktype.clone()),
                    mode: LockMode::from_pg_name(&l.mode)?,
                })
            }),
        })
        .filter(|h| !h.holds.is_empty() || h.wants.is_some())
        .collect();
    if sessions.is_empty() {
        return None;
    }
    Some(Hidden {
        grant: format!(
            "GRANT pg_read_all_stats TO {};",
            locksmith_core::analysis::quote_ident(&snapshot.role)
        ),
        role: snapshot.role.clone(),
        missing: vec![
            "state",
            "query",
            "transaction and idle ages",
            "client address",
            "wait events",
        ],
        sessions,
    })
}

/// Locks a session holds on relations, strongest first, system catalogs left out.
pub fn held_locks(locks: &[LockRow], pid: i32) -> Vec<RelationLock> {
    let mut held: Vec<&LockRow> = locks
        .iter()
        .filter(|l| l.pid == pid && l.granted && l.locktype == "relation")
        .filter(|l| l.relation.as_deref().is_some_and(|r| !r.starts_with("pg_")))
        .collect();
    // Strongest first, then by name: the same session always reads the same way.
    held.sort_by(|a, b| {
        LockMode::from_pg_name(&b.mode)
            .cmp(&LockMode::from_pg_name(&a.mode))
            .then_with(|| a.relation.cmp(&b.relation))
    });
    // Predicate locks (`SIReadLock`) block no one and have no table lock mode: left out.
    held.into_iter()
        .filter_map(|l| {
            Some(RelationLock {
                relation: l.relation.clone().unwrap_or_default(),
                mode: LockMode::from_pg_name(&l.mode)?,
            })
        })
        .collect()
}

/// The lock a session waits for.
pub fn wanted_lock(locks: &[LockRow], pid: i32) -> Option<&LockRow> {
    locks.iter().find(|l| l.pid == pid && !l.granted)
}

/// Edges `waiter → blocker` from `pg_blocking_pids`, with the lock rows to tell hard from soft.
struct Graph<'a> {
    sessions: &'a [Session],
    locks: &'a [LockRow],
    /// blocker → the sessions that list it in `pg_blocking_pids`, built once:
    /// with hundreds of sessions, scanning them per lookup made a refresh slow.
    waiters: BTreeMap<i32, Vec<i32>>,
}

impl<'a> Graph<'a> {
    fn new(snapshot: &'a Snapshot) -> Self {
        let mut waiters: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for s in &snapshot.sessions {
            for b in &s.blocked_by {
                waiters.entry(*b).or_default().push(s.pid);
            }
        }
        Graph {
            sessions: &snapshot.sessions,
            locks: &snapshot.locks,
            waiters,
        }
    }

    fn blocked_by(&self, pid: i32) -> &[i32] {
        self.sessions
            .iter()
            .find(|s| s.pid == pid)
            .map(|s| s.blocked_by.as_slice())
            .unwrap_or(&[])
    }

    /// `waiter` waits for `blocker` only because `blocker` is queued ahead of
    /// it for the same object, not because `blocker` holds a conflicting lock.
    fn is_soft(&self, waiter: i32, blocker: i32) -> bool {
        let Some(wanted) = wanted_lock(self.locks, waiter) else {
            return false;
        };
        let want_mode = LockMode::from_pg_name(&wanted.mode);
        let holds_conflicting = self.locks.iter().any(|l| {
            l.pid == blocker
                && l.granted
                && l.locktype == wanted.locktype
                && l.relation == wanted.relation
                && match (want_mode, LockMode::from_pg_name(&l.mode)) {
                    (Some(w), Some(h)) => w.conflicts_with(h),
                    _ => true,
                }
        });
        !holds_conflicting && wanted_lock(self.locks, blocker).is_some()
    }

    fn direct_waiters(&self, pid: i32) -> Vec<i32> {
        self.waiters.get(&pid).cloned().unwrap_or_default()
    }

    /// Everyone who waits because of `pid`, transitively.
    fn behind(&self, pid: i32) -> Vec<i32> {
        let mut found = BTreeSet::new();
        let mut stack = vec![pid];
        while let Some(p) = stack.pop() {
            for w in self.direct_waiters(p) {
                if w != pid && found.insert(w) {
                    stack.push(w);
                }
            }
        }
        found.into_iter().collect()
    }

    /// Sessions that block someone and wait for no one.
    fn roots(&self) -> Vec<i32> {
        let mut roots = BTreeSet::new();
        for s in self.sessions {
            for b in &s.blocked_by {
                if self.blocked_by(*b).is_empty() {
                    roots.insert(*b);
                }
            }
        }
        roots.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(pid: i32, state: &str, query: &str, blocked_by: &[i32]) -> Session {
        Session {
            pid,
            datname: Some("app".into()),
            usename: Some("web".into()),
            application_name: format!("app-{pid}"),
            client_addr: Some("10.0.0.5".into()),
            backend_type: "client backend".into(),
            state: Some(state.into()),
            xact_age_ms: Some(41_000 - pid as i64),
            state_age_ms: Some(40_000),
            query_age_ms: Some(1000),
            query: query.into(),
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
            waiting_ms: (!granted).then_some(5000),
        }
    }

    /// The incident: two leakers, the ALTER queued behind them, two SELECTs behind the ALTER.
    fn incident() -> Snapshot {
        Snapshot {
            max_connections: 100,
            reserved_connections: 3,
            own_pid: 1,
            pooler_addr: None,
            prepared: Vec::new(),
            role: "web".into(),
            sees_all_sessions: true,
            sessions: vec![
                session(
                    10,
                    "idle in transaction",
                    "SELECT * FROM academic_partners",
                    &[],
                ),
                session(
                    11,
                    "idle in transaction",
                    "SELECT * FROM academic_partners",
                    &[],
                ),
                session(
                    20,
                    "active",
                    "ALTER TABLE academic_partners ADD CONSTRAINT u UNIQUE (informal_name)",
                    &[10, 11],
                ),
                session(30, "active", "SELECT * FROM academic_partners", &[20]),
                session(31, "active", "SELECT * FROM academic_partners", &[20]),
                session(40, "idle", "SELECT 1", &[]),
            ],
            locks: vec![
                lock(10, "AccessShareLock", true),
                lock(11, "AccessShareLock", true),
                lock(20, "AccessExclusiveLock", false),
                lock(30, "AccessShareLock", false),
                lock(31, "AccessShareLock", false),
            ],
        }
    }

    #[test]
    fn incident_roots_waiters_and_queue() {
        let report = BlockerReport::from_snapshot(&incident());
        assert_eq!(
            report
                .blockers
                .iter()
                .map(|b| b.session.pid)
                .collect::<Vec<_>>(),
            vec![10, 11]
        );
        assert_eq!(report.blockers[0].blocking, vec![20]);
        let alter = report.waiting.iter().find(|w| w.pid == 20).unwrap();
        assert_eq!(alter.queued_behind, vec![30, 31]);
        assert_eq!(alter.queued_after, Vec::<i32>::new());
        assert_eq!(
            alter.wants.as_ref().unwrap().mode,
            LockMode::AccessExclusive
        );
        let select = report.waiting.iter().find(|w| w.pid == 30).unwrap();
        assert_eq!(
            select.queued_after,
            vec![20],
            "the SELECT waits behind the queued ALTER: a soft block"
        );
        assert!(select.queued_behind.is_empty());
        assert_eq!(report.idle_in_transaction.len(), 2);
        assert_eq!(report.connections.used, 7);
        // Both leakers reach the SELECTs through the ALTER.
        let tree: Vec<(i32, usize, bool)> = report
            .tree()
            .iter()
            .map(|l| (l.pid, l.depth, l.soft))
            .collect();
        assert_eq!(
            tree,
            vec![
                (10, 0, false),
                (20, 1, false),
                (30, 2, true),
                (31, 2, true),
                (11, 0, false)
            ]
        );
    }

    #[test]
    fn a_database_sees_its_own_queue_and_whom_it_waits_for_elsewhere() {
        let mut snap = incident();
        // Another database of the server, with its own leaker and waiter;
        // its waiter also waits for a session of `app` (a shared catalog).
        for (pid, state, blocked_by) in [
            (50, "idle in transaction", vec![]),
            (51, "active", vec![50, 40]),
        ] {
            let mut s = session(pid, state, "SELECT 1", &blocked_by);
            s.datname = Some("billing".into());
            snap.sessions.push(s);
        }
        snap.locks.push(lock(50, "AccessShareLock", true));
        snap.locks.push(lock(51, "AccessExclusiveLock", false));

        let app = BlockerReport::for_database(&snap, "app");
        let roots: Vec<i32> = app.blockers.iter().map(|b| b.session.pid).collect();
        assert_eq!(roots, [10, 11], "billing's queue is not app's");
        assert_eq!(app.idle_in_transaction.len(), 2);
        assert_eq!(
            app.connections.used, 9,
            "the server's connections, all of them"
        );

        let billing = BlockerReport::for_database(&snap, "billing");
        let roots: Vec<i32> = billing.blockers.iter().map(|b| b.session.pid).collect();
        assert_eq!(roots, [40, 50], "whom billing waits for, wherever it is");
        assert_eq!(billing.waiting.len(), 1);
    }

    /// On a standby: the startup process waits to replay the primary's lock
    /// behind a report; `pg_blocking_pids` of it came back empty.
    #[test]
    fn a_stalled_replay_is_the_queued_ddl() {
        let mut startup = session(5, "", "", &[]);
        startup.backend_type = "startup".into();
        startup.state = None;
        startup.wait_event_type = Some("Lock".into());
        let mut snap = Snapshot {
            max_connections: 100,
            reserved_connections: 3,
            own_pid: 1,
            pooler_addr: None,
            prepared: Vec::new(),
            role: "web".into(),
            sees_all_sessions: true,
            sessions: vec![
                session(
                    10,
                    "idle in transaction",
                    "SELECT * FROM academic_partners",
                    &[],
                ),
                startup,
                session(30, "active", "SELECT * FROM academic_partners", &[5]),
            ],
            locks: vec![
                lock(10, "AccessShareLock", true),
                lock(5, "AccessExclusiveLock", false),
                lock(30, "AccessShareLock", false),
            ],
        };
        snap.find_replay_blockers();
        let report = BlockerReport::from_snapshot(&snap);
        assert_eq!(report.blockers.len(), 1);
        assert_eq!(report.blockers[0].session.pid, 10);
        let replay = report.waiting.iter().find(|w| w.pid == 5).unwrap();
        assert!(replay.replay);
        assert_eq!(replay.blocked_by, vec![10]);
        assert_eq!(replay.queued_behind, vec![30]);
        assert!(!report.waiting.iter().find(|w| w.pid == 30).unwrap().replay);
    }

    #[test]
    fn no_waits_means_no_blockers() {
        let mut snap = incident();
        snap.sessions.retain(|s| s.blocked_by.is_empty());
        let report = BlockerReport::from_snapshot(&snap);
        assert!(report.blockers.is_empty());
        assert!(report.waiting.is_empty());
        assert_eq!(report.idle_in_transaction.len(), 2);
    }
}
