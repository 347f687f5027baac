//! Exponential backoff with jitter, each delay capped. Pure: the caller
//! sleeps, and bounds the total by its own deadline. Jitter matters because several deploys retrying in lock-step
//! would keep colliding with each other and with the same traffic burst.

use std::time::Duration;

use super::look::Holder;

/// Delays `base · 2ⁿ`, capped, each scaled by a random factor in [0.5, 1.5).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    step: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never longer than `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff { base, cap, step: 0 }
    }

    /// The next delay, with jitter from `unit` (a number in [0, 1)).
    pub fn next_with(&mut self, unit: f64) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.step.min(20));
        self.step += 1;
        let capped = exp.min(self.cap);
        capped.mul_f64(0.5 + unit.clamp(0.0, 1.0))
    }

    /// The next delay with random jitter.
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(fastrand::f64())
    }
}

/// The first lock wait an attempt that must queue gets. Against a stream of
/// short transactions a few tens of milliseconds usually win, and that is
/// all traffic then waits behind us.
pub const FIRST_LOCK_WAIT: Duration = Duration::from_millis(25);

/// How long the `n`th (0-based) queueing attempt may wait for its locks:
/// `first`, doubling each time, never more than `budget`.
pub fn growing_lock_wait(first: Duration, n: u32, budget: Duration) -> Duration {
    first.saturating_mul(1u32 << n.min(20)).min(budget)
}

/// [`growing_lock_wait`], unless every session in the way now is idle in
/// its transaction: such a holder ends it within milliseconds once its
/// client wakes, or never, so a longer wait would only make traffic wait
/// longer behind us; the wait then stays at `first`. The one rule for the
/// guard's attempts and a wrapped tool's.
pub fn lock_wait(first: Duration, n: u32, in_the_way: &[Holder], budget: Duration) -> Duration {
    let all_idle = !in_the_way.is_empty()
        && in_the_way
            .iter()
            .all(|h| h.session.is_idle_in_transaction());
    growing_lock_wait(first, if all_idle { 0 } else { n }, budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_with_bounded_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mids: Vec<u128> = (0..6).map(|_| b.next_with(0.5).as_millis()).collect();
        assert_eq!(mids, vec![100, 200, 400, 800, 1000, 1000]);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        assert_eq!(b.next_with(0.0), Duration::from_millis(50));
        assert!(b.next_with(0.999) < Duration::from_millis(300));
    }

    #[test]
    fn lock_waits_double_up_to_the_budget() {
        let budget = Duration::from_millis(200);
        let waits: Vec<u128> = (0..6)
            .map(|n| growing_lock_wait(FIRST_LOCK_WAIT, n, budget).as_millis())
            .collect();
        assert_eq!(waits, vec![25, 50, 100, 200, 200, 200]);
        assert_eq!(growing_lock_wait(FIRST_LOCK_WAIT, u32::MAX, budget), budget);
    }
}
