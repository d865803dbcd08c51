//! When KV tombstones are collected: the tombstone clock, which maps applied indexes to the
//! instants they were applied here, and the leader's reap through Raft. Tombstones carry an
//! index, not a time; the decision is the leader's and is replicated as an entry, so that
//! every replica drops the same ones (docs/state.md, "Tombstones and their collection").

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::state::StateCommand;
use super::types::Command;
use super::Server;

/// The finest sampling granularity (a short TTL, in tests).
const MIN_GRANULARITY: Duration = Duration::from_millis(100);
/// The coarsest sampling granularity: Consul's `TombstoneTTLGranularity`.
const MAX_GRANULARITY: Duration = Duration::from_secs(30);

/// Samples (applied index, instant) taken on this server, and how far the leader has reaped.
///
/// A sample (i, t) means that every entry up to i had been applied here by t, so that every
/// tombstone at or below i is older than `now - t`: true on any server, leader or not (an
/// applied entry is committed), which is why every server samples and a new leader uses what
/// it sampled as a follower. Samples are taken at most once per granularity; an entry applied
/// between two samples is attributed to the later one, so a tombstone is kept at least the TTL
/// and at most about a granularity more.
#[derive(Debug)]
pub struct TombstoneClock {
    ttl: Duration,
    granularity: Duration,
    /// Oldest first; indexes and instants both increasing.
    samples: VecDeque<(u64, Instant)>,
    /// The highest index whose tombstones are all older than the TTL (0: none yet).
    expired: u64,
    /// The highest `upto` already reaped, or found with nothing to reap.
    done: u64,
}

impl TombstoneClock {
    pub fn new(ttl: Duration) -> Self {
        TombstoneClock {
            ttl,
            granularity: (ttl / 30).clamp(MIN_GRANULARITY, MAX_GRANULARITY),
            samples: VecDeque::new(),
            expired: 0,
            done: 0,
        }
    }

    /// Records that every entry up to `applied` had been applied here by `now`: a new sample
    /// if the index moved and a granularity has passed since the last one.
    pub fn observe(&mut self, applied: u64, now: Instant) {
        if let Some(&(index, at)) = self.samples.back() {
            if applied <= index || now.saturating_duration_since(at) < self.granularity {
                return;
            }
        } else if applied <= self.expired {
            return;
        }
        self.samples.push_back((applied, now));
    }

    /// The index up to which tombstones may be reaped now, if it is beyond what was already
    /// done: the newest sample at least one TTL old. Older samples are dropped.
    pub fn due(&mut self, now: Instant) -> Option<u64> {
        while let Some(&(index, at)) = self.samples.front() {
            if now.saturating_duration_since(at) < self.ttl {
                break;
            }
            self.expired = self.expired.max(index);
            self.samples.pop_front();
        }
        (self.expired > self.done).then_some(self.expired)
    }

    /// Tombstones up to `upto` are reaped, or there were none: [`Self::due`] waits for more.
    pub fn done(&mut self, upto: u64) {
        self.done = self.done.max(upto);
    }
}

impl Server {
    /// The leader's reap of the tombstones that have outlived the TTL by `clock` (which the
    /// duty loop feeds on every server): one entry (`KvReapTombstones`), when there are any.
    pub(super) async fn reap_tombstones(&self, clock: &mut TombstoneClock) {
        let Some(upto) = clock.due(Instant::now()) else {
            return;
        };
        let count = self
            .sm
            .state
            .read()
            .expect("sm lock")
            .data
            .tombstones_upto(upto);
        if count == 0 {
            clock.done(upto);
            return;
        }
        let cmd = Command::State(StateCommand::KvReapTombstones { upto });
        match self.duty_write(cmd).await {
            Ok(()) => {
                tracing::debug!(upto, count, "collected KV tombstones");
                clock.done(upto);
            }
            Err(e) => tracing::debug!(error = %e, "collecting KV tombstones failed; will retry"),
        }
    }

    /// The `kv` section of `muster info`: keys, tombstones held, the reaped index, the KV index.
    pub fn kv_info(&self) -> BTreeMap<String, String> {
        let s = self.sm.state.read().expect("sm lock");
        let d = &s.data;
        BTreeMap::from([
            ("keys".to_string(), d.kv.len().to_string()),
            ("tombstones".to_string(), d.tombstones.len().to_string()),
            ("reaped_index".to_string(), d.reaped_index.to_string()),
            ("index".to_string(), d.kv_index.to_string()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    /// Nothing is due before the oldest sample is a TTL old; then the newest such sample's
    /// index, once; an entry applied between samples waits for the later one.
    #[test]
    fn reaps_up_to_the_newest_sample_a_ttl_old() {
        let t0 = Instant::now();
        let g = TTL / 30;
        let mut c = TombstoneClock::new(TTL);
        c.observe(10, t0);
        c.observe(12, t0 + g / 2); // within the granularity: not sampled
        c.observe(20, t0 + g);
        c.observe(30, t0 + 3 * g);
        assert_eq!(c.due(t0 + TTL - Duration::from_millis(1)), None);
        assert_eq!(
            c.due(t0 + TTL),
            Some(10),
            "12 is attributed to the sample at 20"
        );
        assert_eq!(c.due(t0 + TTL + g), Some(20));
        c.done(20);
        assert_eq!(c.due(t0 + TTL + 2 * g), None);
        assert_eq!(c.due(t0 + TTL + 3 * g), Some(30));
        c.done(30);
        assert_eq!(c.due(t0 + 10 * TTL), None);
    }

    /// A failed reap is offered again; a new clock (a restarted server) waits a full TTL.
    #[test]
    fn a_failed_reap_is_retried_and_a_new_clock_waits_a_full_ttl() {
        let t0 = Instant::now();
        let mut c = TombstoneClock::new(TTL);
        c.observe(5, t0);
        assert_eq!(c.due(t0 + TTL), Some(5));
        assert_eq!(c.due(t0 + TTL), Some(5), "not done: offered again");
        let mut fresh = TombstoneClock::new(TTL);
        fresh.observe(100, t0 + TTL);
        assert_eq!(fresh.due(t0 + 2 * TTL - Duration::from_millis(1)), None);
        assert_eq!(fresh.due(t0 + 2 * TTL), Some(100));
    }

    #[test]
    fn the_granularity_follows_the_ttl_within_bounds() {
        assert_eq!(
            TombstoneClock::new(Duration::from_secs(15 * 60)).granularity,
            MAX_GRANULARITY
        );
        assert_eq!(
            TombstoneClock::new(Duration::from_secs(1)).granularity,
            MIN_GRANULARITY
        );
        assert_eq!(
            TombstoneClock::new(Duration::from_secs(60)).granularity,
            Duration::from_secs(2)
        );
    }
}
