//! What the guard knows about one unit's blockers, and what it does about
//! them: the look before each attempt (every way [`look`] finds a holder,
//! merged), the terminate policy, and the report when it gives up.

use std::time::Duration;

use locksmith_core::lock::LockMode;

use super::backoff;
use super::look::{self, Holder, Resolved, WaitedFor};
use super::watcher::Watch;
use super::{Event, Guard, GuardError, RelationLock, Step};
use crate::prepared::NO_BACKEND;
use crate::{Connection, Error};

/// Before a concurrent build, a holder idle in transaction this long counts as
/// long-lived: the build waits for it within `lock_timeout` at most, and
/// losing costs the whole build and an INVALID index to clean up.
const CONCURRENT_IDLE_AFTER: Duration = Duration::from_millis(100);

/// One unit's targets and the sessions its attempts waited for so far.
pub(super) struct Plan {
    /// The relations the statements lock, and the mode of each.
    targets: Vec<RelationLock>,
    /// A concurrent index build: it waits for writers of its table and for
    /// old snapshots, not only for its own lock.
    builds_concurrently: bool,
    /// Sessions the server said an attempt waited for, while their
    /// transaction may still block the next one.
    waits: Vec<WaitedFor>,
    /// See [`look::long_lived_after`].
    long_lived_after: Duration,
}

impl Plan {
    pub(super) fn new(steps: &[Step], in_transaction: bool, lock_timeout: Duration) -> Plan {
        let builds_concurrently = !in_transaction && steps.iter().any(|s| s.builds_index.is_some());
        let targets = steps
            .iter()
            .flat_map(|s| s.locks.iter().cloned())
            .map(|mut t| {
                // The build waits for every transaction holding a lock that
                // conflicts with SHARE on its table (a writer), not just SHARE UPDATE EXCLUSIVE.
                if builds_concurrently {
                    t.mode = t.mode.max(LockMode::Share);
                }
                t
            })
            .collect();
        Plan {
            targets,
            builds_concurrently,
            waits: Vec::new(),
            long_lived_after: look::long_lived_after(lock_timeout),
        }
    }

    /// Whether `h` is to be waited out rather than raced.
    pub(super) fn is_long_lived(&self, h: &Holder) -> bool {
        h.is_long_lived(self.long_lived_after)
            || (self.builds_concurrently
                && h.session.is_idle_in_transaction()
                && h.session.idle_for() >= CONCURRENT_IDLE_AFTER)
            // A standby's replay cannot give up as NOWAIT does: it waits for
            // whatever holds the table there, however long, and a query that
            // just started may run for minutes. No standby session is raced.
            || super::replica::standby_waits_out(h)
    }

    /// Remembers whom a lost attempt waited for.
    pub(super) fn waited_for(&mut self, watch: &Watch) {
        for w in &watch.waited_for {
            if !self.waits.iter().any(|k| k.pid == w.pid) {
                self.waits.push(w.clone());
            }
        }
    }
}

impl Guard {
    /// The look before an attempt: the plan's relations as they exist now,
    /// and every session in the way after the terminate policy had its say.
    pub(super) async fn look(
        &mut self,
        plan: &mut Plan,
    ) -> Result<(Vec<Resolved>, Vec<Holder>), GuardError> {
        let resolved = look::resolve(&self.sidecar, &plan.targets).await?;
        let mut holders = look::conflicting_holders(&self.sidecar, &resolved).await?;
        if plan.builds_concurrently {
            let old = look::snapshot_holders(&self.sidecar, self.outside_pid()).await?;
            merge(&mut holders, old);
        }
        let waited = look::waited_for(&self.sidecar, &plan.waits).await?;
        let prepared = look::prepared_holders(&self.sidecar, &resolved, &plan.waits).await?;
        // A session whose blocking transaction ended never blocks us again;
        // nor does "pid 0" once no prepared transaction holds that kind of lock.
        plan.waits.retain(|w| {
            waited.iter().any(|h| h.session.pid == w.pid)
                || (w.pid == NO_BACKEND && prepared.iter().any(|h| h.lock_type == w.lock_type))
        });
        merge(&mut holders, waited);
        merge(&mut holders, prepared);
        self.apply_terminate_policy(&mut holders).await?;
        // The standbys' own sessions, after the primary's: their pids are another server's.
        holders.extend(self.replica_holders(&resolved).await?);
        Ok((resolved, holders))
    }

    async fn apply_terminate_policy(
        &mut self,
        holders: &mut Vec<Holder>,
    ) -> Result<(), GuardError> {
        let Some(threshold) = self.policy.terminate_idle_after else {
            return Ok(());
        };
        if let Some(hidden) = holders.iter().find(|h| !h.session.is_visible()) {
            return Err(GuardError::Failed(hidden_from_policy(hidden)));
        }
        let policed = terminate_idle(&self.sidecar, std::mem::take(holders), threshold).await;
        for h in policed.terminated {
            (self.on_event)(Event::Terminated(&h));
            self.report.terminated.push(h);
        }
        *holders = policed.kept;
        match policed.failed {
            Some(e) => Err(GuardError::Failed(e)),
            None => Ok(()),
        }
    }

    /// Gives up, naming who is in the way now: the long-lived holders, else
    /// anyone holding a conflicting lock, else whoever was seen last.
    pub(super) fn give_up(
        &mut self,
        holders: Vec<Holder>,
        long_lived: Vec<Holder>,
        reason: &str,
    ) -> GuardError {
        if !long_lived.is_empty() {
            self.report.blockers = long_lived;
        } else if !holders.is_empty() {
            self.report.blockers = holders;
        }
        GuardError::Blocked {
            reason: reason.to_string(),
            holders: self.report.blockers.clone(),
        }
    }
}

/// What the terminate policy did to a list of holders.
#[derive(Default)]
pub(crate) struct Policed {
    /// Those left in place.
    pub kept: Vec<Holder>,
    /// Those terminated.
    pub terminated: Vec<Holder>,
    /// Why the rest were not tried: the first termination that failed (the
    /// others would fail alike, e.g. without `pg_signal_backend`).
    pub failed: Option<Error>,
}

/// The terminate policy, for the guard's look and the session watch alike:
/// each of `holders` that is a client backend idle in transaction (or
/// aborted) at least `threshold` is terminated, re-checked in the
/// terminating statement. One whose state this role may not see is never
/// terminated on a guess: left, with [`hidden_from_policy`] as the failure
/// (the guard refuses before, the watch reports it).
pub(super) async fn terminate_idle(
    client: &Connection,
    holders: Vec<Holder>,
    threshold: Duration,
) -> Policed {
    let mut policed = Policed {
        kept: Vec::with_capacity(holders.len()),
        terminated: Vec::new(),
        failed: None,
    };
    for h in holders {
        if policed.failed.is_some() {
            policed.kept.push(h);
            continue;
        }
        if !h.session.is_visible() {
            policed.failed = Some(hidden_from_policy(&h));
            policed.kept.push(h);
            continue;
        }
        if !h.may_terminate(threshold) {
            policed.kept.push(h);
            continue;
        }
        match look::terminate_if_still_idle(client, h.session.pid, threshold, h.other_database)
            .await
        {
            Ok(true) => policed.terminated.push(h),
            Ok(false) => policed.kept.push(h),
            Err(e) => {
                policed.failed = Some(e);
                policed.kept.push(h);
            }
        }
    }
    policed
}

/// The terminate policy depends on idle time, which this role cannot see
/// for `hidden`: what it takes to see it. The guard fails with it; the
/// session watch reports it and leaves the session alone.
pub(super) fn hidden_from_policy(hidden: &Holder) -> Error {
    Error::Permission {
        action: format!(
            "see whether blocking session {} is idle in transaction (needed by --terminate-idle-after)",
            hidden.session.pid
        ),
        needs: "pg_read_all_stats".into(),
    }
}

/// How long the `n`th (0-based) attempt that queues with `LOCK` (after the
/// NOWAIT ones lost) may wait: briefly, growing towards the budget, but not
/// while only sessions idle in transaction are in the way
/// ([`backoff::lock_wait`]).
pub(super) fn fallback_lock_wait(n: u32, holders: &[Holder], budget: Duration) -> Duration {
    backoff::lock_wait(backoff::FIRST_LOCK_WAIT, n, holders, budget)
}

/// Adds the holders of `more` not already in `holders` (one entry per
/// session or prepared transaction).
fn merge(holders: &mut Vec<Holder>, more: Vec<Holder>) {
    for h in more {
        if !holders.iter().any(|k| k.same_as(&h)) {
            holders.push(h);
        }
    }
}
