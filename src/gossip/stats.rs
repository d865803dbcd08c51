//! Counters of the gossip layer, shown in `muster info` (serf_lan) and used by the benchmark.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::envelope::OpenError;

/// Monotonic counters; read with [`Stats::snapshot`].
#[derive(Debug, Default)]
pub struct Stats {
    pub packets_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub packets_received: AtomicU64,
    pub bytes_received: AtomicU64,
    pub dropped_malformed: AtomicU64,
    pub dropped_oversized: AtomicU64,
    pub dropped_unencrypted: AtomicU64,
    pub dropped_unexpected_encrypted: AtomicU64,
    pub dropped_decrypt: AtomicU64,
    pub dropped_wrong_datacenter: AtomicU64,
    pub dropped_swim_rejected: AtomicU64,
    pub syncs_in: AtomicU64,
    pub syncs_out: AtomicU64,
    pub syncs_refused: AtomicU64,
    /// Probe rounds (foca's `ProbeRandomMember` timer).
    pub probes: AtomicU64,
    /// Members that became suspect in this agent's view, by its own probe or by gossip (foca
    /// schedules `ChangeSuspectToDown` for each).
    pub suspicions: AtomicU64,
    last_key_warning: Mutex<Option<Instant>>,
}

/// How often a key mismatch seen on UDP is logged at warn level (each drop is still counted).
const KEY_WARNING_EVERY: Duration = Duration::from_secs(10);

impl Stats {
    pub fn count_drop(&self, e: &OpenError) {
        let c = match e {
            OpenError::Malformed => &self.dropped_malformed,
            OpenError::Unencrypted => &self.dropped_unencrypted,
            OpenError::UnexpectedEncrypted => &self.dropped_unexpected_encrypted,
            OpenError::Decrypt => &self.dropped_decrypt,
            OpenError::WrongDatacenter(_) => &self.dropped_wrong_datacenter,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// True at most once per `KEY_WARNING_EVERY` (10 s): a key mismatch floods, its log must not.
    pub fn should_warn_key(&self) -> bool {
        let mut last = self.last_key_warning.lock().expect("stats lock");
        let now = Instant::now();
        match *last {
            Some(t) if now.duration_since(t) < KEY_WARNING_EVERY => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }

    /// Name → value, for `muster info`.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("packets_sent", g(&self.packets_sent)),
            ("bytes_sent", g(&self.bytes_sent)),
            ("packets_received", g(&self.packets_received)),
            ("bytes_received", g(&self.bytes_received)),
            ("dropped_malformed", g(&self.dropped_malformed)),
            ("dropped_oversized", g(&self.dropped_oversized)),
            ("dropped_unencrypted", g(&self.dropped_unencrypted)),
            (
                "dropped_wrong_key",
                g(&self.dropped_decrypt) + g(&self.dropped_unexpected_encrypted),
            ),
            (
                "dropped_wrong_datacenter",
                g(&self.dropped_wrong_datacenter),
            ),
            ("dropped_rejected", g(&self.dropped_swim_rejected)),
            ("syncs_in", g(&self.syncs_in)),
            ("syncs_out", g(&self.syncs_out)),
            ("syncs_refused", g(&self.syncs_refused)),
            ("probes", g(&self.probes)),
            ("suspicions", g(&self.suspicions)),
        ]
    }
}
