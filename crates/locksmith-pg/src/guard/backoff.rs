//! Exponential backoff with jitter, each delay capped. Pure: the caller
//! sleeps, and bounds the total by its own deadline. Jitter matters because several deploys retrying in lock-step
//! would keep colliding with each other and with the same traffic burst.

use std::time::Duration;

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
}
