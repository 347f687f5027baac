//! Requests served against requests offered, from a run's samples: the
//! figure an average rate hides. Traffic offered at 40/s averages about
//! 40/s served over a run even when nothing was answered for ten seconds in
//! its middle; the worst second shows those ten seconds as "0 of 40".
//! `demo` and `rehearse` print it.

use std::time::Duration;

use serde::Serialize;

use crate::traffic::Sample;

/// Requests answered in time against requests offered, in one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WorstSecond {
    /// Answered within the gateway timeout, in that second.
    pub served: usize,
    /// Arrived in that second.
    pub offered: usize,
}

/// How much of the offered traffic was served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Served {
    /// Requests answered within the gateway timeout (of all offered).
    pub in_time: usize,
    /// The whole second in which the fewest were.
    pub worst_second: WorstSecond,
}

/// Of `samples` (traffic that ran `traffic_ms`): the requests answered
/// within `timeout`, and the whole second in which the fewest were (ties:
/// the one in which the most arrived).
pub fn served(samples: &[Sample], traffic_ms: u64, timeout: Duration) -> Served {
    let timeout_ms = timeout.as_millis() as u64;
    let in_time = |s: &&Sample| !s.failed && s.latency_ms <= timeout_ms;
    let worst_second = (0..traffic_ms / 1000)
        .map(|second| {
            let window = second * 1000..(second + 1) * 1000;
            WorstSecond {
                served: samples
                    .iter()
                    .filter(in_time)
                    .filter(|s| window.contains(&(s.at_ms + s.latency_ms)))
                    .count(),
                offered: samples.iter().filter(|s| window.contains(&s.at_ms)).count(),
            }
        })
        .min_by_key(|w| (w.served, std::cmp::Reverse(w.offered)))
        .unwrap_or_default();
    Served {
        in_time: samples.iter().filter(in_time).count(),
        worst_second,
    }
}

/// How long traffic ran, from its samples: until the last answer.
pub fn traffic_ms(samples: &[Sample]) -> u64 {
    samples
        .iter()
        .map(|s| s.at_ms + s.latency_ms)
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_stretch_is_a_second_with_nothing_served() {
        // 40 requests a second; those arriving between 1s and 4s wait until 4s.
        let samples: Vec<Sample> = (0..200)
            .map(|i| {
                let at_ms = i * 25;
                let latency_ms = if (1000..4000).contains(&at_ms) {
                    4000 - at_ms
                } else {
                    3
                };
                Sample {
                    at_ms,
                    latency_ms,
                    failed: false,
                }
            })
            .collect();
        let s = served(&samples, traffic_ms(&samples), Duration::from_secs(5));
        assert_eq!(s.in_time, 200);
        assert_eq!(
            s.worst_second,
            WorstSecond {
                served: 0,
                offered: 40
            }
        );
        // A 2 s gateway timeout: those that waited longer were not served in time.
        let s = served(&samples, traffic_ms(&samples), Duration::from_secs(2));
        assert_eq!(s.in_time, 200 - 40);
    }
}
