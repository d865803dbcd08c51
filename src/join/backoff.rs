//! The retry-join backoff schedule: exponential with full jitter, capped.
//!
//! Before attempt `k + 1` (k ≥ 1 failed attempts so far) the loop sleeps a uniformly random time in
//! `[first/2, min(cap, first × 2^(k-1))]`:
//!
//! | failed attempts | upper bound with the defaults (first = 500ms, cap = retry_interval = 30s) |
//! |---|---|
//! | 1 | 500ms |
//! | 2 | 1s |
//! | 3 | 2s |
//! | 4 | 4s |
//! | 7 and more | 30s |
//!
//! Unlike Consul's fixed 30 s sleep, an agent that boots a little before its peers retries within
//! a second, and a fleet that boots at the same second spreads its retries instead of striking
//! in step. The floor of `first/2` keeps a retry storm from a zero sleep.

use std::time::Duration;

use rand::RngExt;

/// Parameters of the schedule.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Upper bound of the first wait.
    pub first: Duration,
    /// Upper bound of every wait (retry_interval).
    pub cap: Duration,
}

impl Schedule {
    pub fn new(cap: Duration) -> Self {
        Self {
            first: Duration::from_millis(500).min(cap),
            cap,
        }
    }

    /// The upper bound of the wait after `failed` attempts (≥ 1).
    pub fn ceiling(&self, failed: u32) -> Duration {
        let doublings = failed.saturating_sub(1).min(30);
        self.first.saturating_mul(1u32 << doublings).min(self.cap)
    }

    /// A random wait after `failed` attempts.
    pub fn delay(&self, failed: u32, rng: &mut impl rand::Rng) -> Duration {
        let hi = self.ceiling(failed);
        let lo = (self.first / 2).min(hi);
        if hi <= lo {
            return hi;
        }
        let span = (hi - lo).as_micros() as u64;
        lo + Duration::from_micros(rng.random_range(0..=span))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_stays_within_bounds() {
        let s = Schedule::new(Duration::from_secs(30));
        let ceilings: Vec<u64> = (1..=8).map(|k| s.ceiling(k).as_millis() as u64).collect();
        assert_eq!(ceilings, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
        let mut rng = rand::rng();
        for k in 1..40 {
            for _ in 0..50 {
                let d = s.delay(k, &mut rng);
                assert!(
                    d >= Duration::from_millis(250) && d <= s.ceiling(k),
                    "{k}: {d:?}"
                );
            }
        }
    }

    #[test]
    fn short_interval_caps_the_first_wait() {
        let s = Schedule::new(Duration::from_millis(200));
        assert_eq!(s.ceiling(1), Duration::from_millis(200));
        assert!(s.delay(5, &mut rand::rng()) <= Duration::from_millis(200));
    }
}
