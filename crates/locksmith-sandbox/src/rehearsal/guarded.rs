//! The guarded runs of a rehearsal: units under the [`Guard`] as `apply`
//! runs them, or the online plan as `apply --online` runs it
//! (`locksmith_pg::online::run`), with each unit's lock window taken from
//! the guard's attempt events.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use locksmith_core::online::Unit;
use locksmith_pg::guard::{ConnectError, Event, Guard, GuardError, Step};
use locksmith_pg::ConnectionSettings;
use tokio::sync::watch;

use super::runs::{Ending, Plan, Stop, Way, Windows};
use crate::Error;

/// Under the guard: `units` as written (guarded) or as the online plan.
pub(super) async fn guarded(
    settings: &ConnectionSettings,
    plan: &Plan,
    way: Way,
    units: &[Unit],
    origin: Instant,
) -> Result<Ending, Error> {
    let (_never, interrupt) = watch::channel(None);
    let mut guard = match Guard::connect(settings, plan.policy.clone(), interrupt).await {
        Ok(guard) => guard,
        Err(ConnectError::Failed(e)) => return Err(e.into()),
        // No pooler stands before a throwaway cluster; said as the outcome all the same.
        Err(refused) => {
            return Ok(Ending {
                stop: Some(Stop::Failed),
                outcome: format!("not run: {refused}"),
                windows: Windows::new(),
            })
        }
    };
    // A unit starts with its attempt 1; its locks are held from its last attempt on.
    let attempts: Arc<Mutex<Vec<(u32, u64)>>> = Arc::default();
    {
        let attempts = attempts.clone();
        guard.on_event(move |e| {
            if let Event::Attempt { number, .. } = e {
                let at = origin.elapsed().as_millis() as u64;
                attempts.lock().unwrap().push((number, at));
            }
        });
    }
    let started = Instant::now();
    let result = if way == Way::Online {
        let record = |_: u32, _: Duration| "SELECT 1".to_string();
        locksmith_pg::online::run(&mut guard, 1, units, &record)
            .await
            .map(|r| r.attempts)
            .map_err(|f| f.error)
    } else {
        let mut total = Ok(0);
        for unit in units {
            let steps: Vec<Step> = unit.statements.iter().map(Step::from).collect();
            let r = if unit.transactional {
                guard.run_transaction(&steps, None).await
            } else {
                guard.run_outside_transaction(&steps[0]).await
            };
            match r {
                Ok(n) => total = total.map(|t| t + n),
                Err(e) => {
                    total = Err(e);
                    break;
                }
            }
        }
        total
    };
    let ended = origin.elapsed().as_millis() as u64;
    // Given up while blocked: the last unit tried never won its locks, so it
    // did not run (nor hold anything); other failures ran until stopped.
    let stop = match &result {
        Ok(_) => None,
        Err(GuardError::Blocked { .. }) => Some(Stop::Blocked),
        Err(GuardError::HoldExceeded { .. }) => Some(Stop::HeldTooLong),
        Err(_) => Some(Stop::Failed),
    };
    let blocked = stop == Some(Stop::Blocked);
    let windows = unit_windows(&attempts.lock().unwrap(), units, ended, blocked);
    let took = locksmith_core::duration::human(started.elapsed());
    let report = &guard.report;
    let outcome = match result {
        Ok(attempts) => format!(
                "applied in {took}: {attempts} lock attempt{}, {} session{} terminated, at most {} queued behind it",
                if attempts == 1 { "" } else { "s" },
                report.terminated.len(),
                if report.terminated.len() == 1 { "" } else { "s" },
                report.max_queued_behind
            ),
        Err(GuardError::Blocked { reason, holders }) => format!(
                "gave up after {took} ({reason}) with nothing left queued; {} session{} held conflicting locks",
                holders.len(),
                if holders.len() == 1 { "" } else { "s" }
            ),
        Err(e) => format!("stopped after {took}: {e}"),
    };
    Ok(Ending {
        stop,
        outcome,
        windows,
    })
}

/// Each statement's lock window: its unit's last attempt to the next unit's
/// first; none for the last unit tried when it never won its locks (`blocked`).
fn unit_windows(attempts: &[(u32, u64)], units: &[Unit], ended: u64, blocked: bool) -> Windows {
    let mut groups: Vec<Vec<u64>> = Vec::new();
    for &(number, at) in attempts {
        if number == 1 || groups.is_empty() {
            groups.push(Vec::new());
        }
        if let Some(g) = groups.last_mut() {
            g.push(at);
        }
    }
    let mut out = Vec::new();
    let tried = groups.len();
    for (k, unit) in units.iter().enumerate() {
        let lost = blocked && k + 1 == tried;
        let window = groups
            .get(k)
            .filter(|_| !lost)
            .and_then(|g| g.last())
            .map(|&from| {
                let to = groups
                    .get(k + 1)
                    .and_then(|g| g.first())
                    .copied()
                    .unwrap_or(ended);
                (from, to.max(from))
            });
        out.extend(std::iter::repeat_n(window, unit.statements.len()));
    }
    out
}
