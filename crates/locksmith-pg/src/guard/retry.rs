//! The retry policy that the guard (`apply`) and `locksmith run` both
//! follow, as a state machine without I/O: after each look, [`Retry::next`]
//! says whether to make an attempt, wait without queueing (how long, never
//! past the deadline) or give up (why); after a lost attempt,
//! [`Retry::lost`] says how long to back off.
//!
//! [`drive`] is the one loop around it: look → attempt, wait or give up →
//! back off → look again. A [`Unit`] (a guarded transaction or statement, a
//! wrapped command's run) says what looking, attempting and pausing mean
//! for it; it must not loop on its own.

use std::ops::ControlFlow::{self, Break, Continue};
use std::time::{Duration, Instant};

use super::backoff::Backoff;
use super::look::{self, Holder};
use super::replica;
use super::GuardPolicy;

/// What to do after a look.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Make attempt `number` (1-based).
    Attempt(u32),
    /// Long-lived holders are in the way: look again after this long, without queueing.
    Wait(Duration),
    /// Stop, still blocked, for this reason.
    GiveUp(String),
}

/// One unit of work's retries, under one deadline.
#[derive(Debug, Clone)]
pub struct Retry {
    max_attempts: u32,
    deadline: Duration,
    terminate_idle_after: Option<Duration>,
    started: Instant,
    backoff: Backoff,
    attempts: u32,
}

impl Retry {
    /// Retries under `policy`, its deadline counted from `started`.
    pub fn new(policy: &GuardPolicy, started: Instant) -> Retry {
        Retry {
            max_attempts: policy.max_attempts,
            deadline: policy.deadline,
            terminate_idle_after: policy.terminate_idle_after,
            started,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(5)),
            attempts: 0,
        }
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_sub(self.started.elapsed())
    }

    /// Attempts made so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// What to do, given the long-lived holders the look just found. Every
    /// unit gets one attempt, even with no time left, unless someone
    /// long-lived is in the way: only then is it "blocked".
    pub fn next(&mut self, long_lived: &[Holder]) -> Next {
        if self.attempts >= self.max_attempts {
            let n = self.attempts;
            return Next::GiveUp(format!(
                "lost the race for its locks {n} time{} (--max-attempts {})",
                if n == 1 { "" } else { "s" },
                self.max_attempts
            ));
        }
        if self.remaining().is_zero() && (self.attempts > 0 || !long_lived.is_empty()) {
            return Next::GiveUp(
                "the deadline passed while the migration was still blocked".into(),
            );
        }
        if !long_lived.is_empty() {
            let wait = look::next_look(
                long_lived,
                self.backoff.next_delay(),
                self.terminate_idle_after,
                self.remaining(),
            );
            return Next::Wait(match long_lived.iter().all(replica::comes_and_goes) {
                true => wait.min(replica::LOOK_AGAIN_WITHIN),
                false => wait,
            });
        }
        self.attempts += 1;
        Next::Attempt(self.attempts)
    }

    /// How long to back off after a lost attempt before looking again: a few
    /// milliseconds after a `NOWAIT` loss (`quick`), else the jittered
    /// backoff; nothing once the attempts are spent; never past the deadline.
    pub fn lost(&mut self, quick: bool) -> Duration {
        if self.attempts >= self.max_attempts {
            return Duration::ZERO;
        }
        let delay = if quick {
            Duration::from_millis(5 + fastrand::u64(0..20))
        } else {
            self.backoff.next_delay()
        };
        delay.min(self.remaining())
    }
}

/// An attempt that lost its lock race: the unit goes on after a back-off.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Lost {
    /// Lost to `NOWAIT`: nobody was made to wait, so look again at once.
    pub quick: bool,
}

/// What one retried piece of work does at each turn of [`drive`]. Each
/// method either goes on (`Continue`) or ends the unit with its `End`
/// (done, given up, failed or interrupted: `Break`).
pub(crate) trait Unit {
    /// How the unit ends.
    type End;
    /// Looks before an attempt: the long-lived sessions in the way now.
    async fn look(&mut self) -> ControlFlow<Self::End, Vec<Holder>>;
    /// Long-lived `holders` are in the way: about to wait `wait` without
    /// queueing (record them, say so).
    fn waiting(&mut self, holders: Vec<Holder>, wait: Duration);
    /// Makes attempt `number` with `remaining` time to the deadline.
    async fn attempt(&mut self, number: u32, remaining: Duration) -> ControlFlow<Self::End, Lost>;
    /// Still blocked for `reason`: the unit's end.
    fn give_up(&mut self, reason: String) -> Self::End;
    /// Sleeps `d` (an interrupt may end the unit).
    async fn pause(&mut self, d: Duration) -> ControlFlow<Self::End>;
}

/// Runs `unit` under `retry` until it ends: the one retry loop.
pub(crate) async fn drive<U: Unit>(retry: &mut Retry, unit: &mut U) -> U::End {
    loop {
        let holders = match unit.look().await {
            Continue(holders) => holders,
            Break(end) => return end,
        };
        let pause = match retry.next(&holders) {
            Next::GiveUp(reason) => return unit.give_up(reason),
            Next::Wait(wait) => {
                unit.waiting(holders, wait);
                wait
            }
            Next::Attempt(number) => match unit.attempt(number, retry.remaining()).await {
                Continue(lost) => retry.lost(lost.quick),
                Break(end) => return end,
            },
        };
        if let Break(end) = unit.pause(pause).await {
            return end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::SessionSummary;

    fn policy(max_attempts: u32, deadline: Duration) -> GuardPolicy {
        GuardPolicy {
            max_attempts,
            deadline,
            ..GuardPolicy::default()
        }
    }

    fn idle_holder() -> Holder {
        Holder {
            session: SessionSummary {
                pid: 42,
                state: Some("idle in transaction".into()),
                application_name: "leaky".into(),
                client_addr: None,
                usename: None,
                xact_age_ms: Some(60_000),
                state_age_ms: Some(60_000),
                query: String::new(),
                via_pooler: false,
            },
            relation: Some("t".into()),
            lock_type: "relation".into(),
            mode: "AccessShareLock".into(),
            backend_type: "client backend".into(),
            other_database: false,
            server: None,
            prepared: None,
        }
    }

    #[test]
    fn one_attempt_even_without_time_then_gives_up() {
        let mut r = Retry::new(&policy(10, Duration::ZERO), Instant::now());
        assert_eq!(r.next(&[]), Next::Attempt(1));
        assert_eq!(r.lost(false), Duration::ZERO);
        assert!(matches!(r.next(&[]), Next::GiveUp(why) if why.contains("deadline")));
    }

    #[test]
    fn long_lived_holders_are_waited_for_within_the_deadline() {
        let mut r = Retry::new(&policy(10, Duration::from_millis(300)), Instant::now());
        match r.next(&[idle_holder()]) {
            Next::Wait(d) => assert!(d <= Duration::from_millis(300), "{d:?}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(r.attempts(), 0);
        let mut r = Retry::new(&policy(10, Duration::ZERO), Instant::now());
        assert!(matches!(r.next(&[idle_holder()]), Next::GiveUp(_)));
    }

    #[test]
    fn queries_on_a_standby_are_looked_at_again_soon_to_find_a_gap() {
        let on_standby = |state: &str| {
            let mut h = idle_holder();
            h.session.state = Some(state.into());
            h.server = Some("10.0.0.7:5432".into());
            h
        };
        let waits = |holder: Holder| {
            let mut r = Retry::new(&policy(10, Duration::from_secs(600)), Instant::now());
            (0..8)
                .map(|_| match r.next(std::slice::from_ref(&holder)) {
                    Next::Wait(d) => d,
                    other => panic!("{other:?}"),
                })
                .max()
                .unwrap()
        };
        // A report that comes and goes: every gap between two counts.
        assert!(waits(on_standby("active")) <= replica::LOOK_AGAIN_WITHIN);
        // A session left idle in its transaction: the backoff grows as on the primary.
        assert!(waits(on_standby("idle in transaction")) > Duration::from_secs(1));
        assert!(waits(idle_holder()) > Duration::from_secs(1));
    }

    #[test]
    fn spent_attempts_give_up_at_once_naming_the_limit() {
        let mut r = Retry::new(&policy(1, Duration::from_secs(60)), Instant::now());
        assert_eq!(r.next(&[]), Next::Attempt(1));
        assert_eq!(r.lost(false), Duration::ZERO);
        assert_eq!(
            r.next(&[idle_holder()]),
            Next::GiveUp("lost the race for its locks 1 time (--max-attempts 1)".into())
        );
    }

    #[test]
    fn backoff_never_passes_the_deadline() {
        let mut r = Retry::new(&policy(100, Duration::from_millis(50)), Instant::now());
        for _ in 0..10 {
            assert!(matches!(r.next(&[]), Next::Attempt(_)));
            assert!(r.lost(false) <= Duration::from_millis(50));
        }
    }
}
