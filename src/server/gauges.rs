//! What a server's gauges read when `/v1/agent/metrics` is asked (docs/metrics.md): Raft's
//! metrics, the bootstrap gate and, on the leader, autopilot's verdict. Read at scrape time
//! from what the server already keeps, so nothing is recorded on the hot paths for them.

use openraft::ServerState;

use super::gate::GatePhase;
use super::Server;

/// One reading of a server's gauges.
#[derive(Debug, Clone)]
pub struct ServerGauges {
    /// Raft's state: `leader`, `follower`, `candidate`, `shutdown` (openraft's learner is a
    /// follower here, as in `muster info`: Consul's Raft has no learner state).
    pub state: &'static str,
    /// Whether this leader's lease is confirmed (docs/servers.md): it may answer as leader.
    pub lease: bool,
    pub term: u64,
    pub last_log_index: u64,
    /// Applied index (openraft 0.9 does not expose the commit index; status.rs says why the
    /// two are the same give or take the entries being applied).
    pub applied_index: u64,
    pub last_snapshot_index: u64,
    /// Voters in the configuration.
    pub voters: usize,
    /// Follower: ms since the leader's last AppendEntries; leader: 0 with a confirmed lease,
    /// else ms since a quorum last answered. `None`: never.
    pub last_contact_ms: Option<f64>,
    pub gate: GatePhase,
    /// Autopilot's verdict, on the leader only (as Consul reports it).
    pub autopilot: Option<AutopilotGauges>,
}

/// Autopilot's health, as `/v1/operator/autopilot/health` shows it.
#[derive(Debug, Clone, Copy)]
pub struct AutopilotGauges {
    pub healthy: bool,
    pub failure_tolerance: usize,
}

/// Every state [`ServerGauges::state`] may take, for a 0/1 gauge per state.
pub const RAFT_STATES: [&str; 4] = ["leader", "follower", "candidate", "shutdown"];

impl Server {
    /// Reads the gauges now.
    pub fn gauges(&self) -> ServerGauges {
        let m = self.raft.metrics().borrow().clone();
        let state = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower | ServerState::Learner => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Shutdown => "shutdown",
        };
        let lease = self.lease_confirmed(&m);
        let last_contact_ms = match (m.state, *self.last_contact.lock().expect("contact lock")) {
            (ServerState::Leader, _) if lease => Some(0.0),
            (ServerState::Leader, _) => m.millis_since_quorum_ack.map(|ms| ms as f64),
            (_, Some(t)) => Some(t.elapsed().as_secs_f64() * 1000.0),
            (_, None) => None,
        };
        let autopilot = (m.state == ServerState::Leader).then(|| {
            let (cfg, _) = self.autopilot_config();
            let (health, _) = self.assess(&m, &cfg);
            AutopilotGauges {
                healthy: health.iter().all(|h| h.healthy),
                failure_tolerance: super::autopilot::failure_tolerance(&health),
            }
        });
        ServerGauges {
            state,
            lease,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            voters: m.membership_config.membership().voter_ids().count(),
            last_contact_ms,
            gate: self.gate_phase(),
            autopilot,
        }
    }
}
