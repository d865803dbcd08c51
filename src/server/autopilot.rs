//! Autopilot: the leader's rules for promoting new servers and removing dead ones, as a pure
//! function of what the leader sees (no I/O, tested on its own). See docs/operations.md.
//!
//! The rules follow Consul's autopilot (docs/reference/consul.md) with the changes users asked
//! for:
//! - `min_quorum` defaults to `bootstrap_expect`, not 0, so cleanup never shrinks the voter count
//!   below the size the cluster was built for. With three voters and one dead, the dead one stays
//!   until a replacement has been promoted (four voters), and is removed in the next round: the
//!   removal is tied to a replacement having joined and stabilised.
//! - At most `(voters − 1) / 2` voters are removed per round, stale ones (in the Raft
//!   configuration but unknown to gossip) before failed ones.
//! - When a dead server cannot be removed, the reason names the voters, the dead servers,
//!   `min_quorum` and what would unblock it.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::id::NodeId;

/// Autopilot settings, replicated through Raft once an operator sets them
/// (`muster operator autopilot set-config`); until then every server uses its own
/// configuration file's values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutopilotConfig {
    /// Remove dead servers from the Raft configuration automatically.
    pub cleanup_dead_servers: bool,
    /// A server whose last contact with the leader is older than this is unhealthy.
    pub last_contact_threshold: Duration,
    /// A server more than this many entries behind the leader is unhealthy.
    pub max_trailing_logs: u64,
    /// Never remove voters below this count (0: no floor beyond the per-round cap).
    pub min_quorum: u32,
    /// How long a non-voter must be healthy before it is promoted.
    pub server_stabilization_time: Duration,
}

impl AutopilotConfig {
    /// muster's defaults. Consul's, except `min_quorum` (= `bootstrap_expect`)
    /// and `server_stabilization_time`: 2 s × `raft_multiplier` rather than 10 s, because
    /// muster's heartbeat is 40 ms (Consul's LAN default is 1 s × multiplier 5), so 2 s is still
    /// fifty consecutive healthy heartbeats, and a replacement regains redundancy sooner.
    pub fn defaults(bootstrap_expect: u32, raft_multiplier: u32) -> Self {
        AutopilotConfig {
            cleanup_dead_servers: true,
            last_contact_threshold: Duration::from_millis(200),
            max_trailing_logs: 250,
            min_quorum: bootstrap_expect,
            server_stabilization_time: Duration::from_secs(2) * raft_multiplier.max(1),
        }
    }
}

/// Why a server counts as dead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dead {
    /// In the Raft configuration but not in gossip at all.
    Stale,
    /// Gossip marks it failed.
    Failed,
}

/// One server of the Raft configuration as the leader sees it.
#[derive(Debug, Clone)]
pub struct ServerHealth {
    pub id: NodeId,
    pub name: String,
    pub voter: bool,
    pub leader: bool,
    pub dead: Option<Dead>,
    /// Alive in gossip, recent contact, not trailing (always true for the leader itself).
    pub healthy: bool,
    /// Since when it has been healthy without interruption.
    pub healthy_since: Option<Instant>,
}

/// What the leader does this round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub promote: Vec<NodeId>,
    pub remove: Vec<NodeId>,
    /// Dead servers kept, each with the reason and what would unblock it.
    pub kept: Vec<String>,
}

/// Decides one round. Promotions and removals never happen in the same round, so that a
/// removal is computed against a configuration that already includes the promoted servers.
pub fn plan(cfg: &AutopilotConfig, servers: &[ServerHealth], now: Instant) -> Plan {
    let mut out = Plan::default();
    for s in servers.iter().filter(|s| !s.voter && s.dead.is_none()) {
        let stable = s
            .healthy_since
            .is_some_and(|t| now.saturating_duration_since(t) >= cfg.server_stabilization_time);
        if s.healthy && stable {
            out.promote.push(s.id);
        }
    }
    if !out.promote.is_empty() {
        return out;
    }
    if !cfg.cleanup_dead_servers {
        return out;
    }
    // Non-voters cost no quorum: remove every dead one.
    out.remove.extend(
        servers
            .iter()
            .filter(|s| !s.voter && s.dead.is_some())
            .map(|s| s.id),
    );
    let voters: Vec<&ServerHealth> = servers.iter().filter(|s| s.voter).collect();
    let mut dead: Vec<&&ServerHealth> = voters
        .iter()
        .filter(|s| s.dead.is_some() && !s.leader)
        .collect();
    dead.sort_by_key(|s| (s.dead != Some(Dead::Stale), s.name.clone()));
    let cap = (voters.len().saturating_sub(1)) / 2;
    let mut left = voters.len();
    let mut removed = 0;
    for s in dead {
        if removed < cap && left > cfg.min_quorum as usize {
            out.remove.push(s.id);
            removed += 1;
            left -= 1;
            continue;
        }
        let alive: Vec<&str> = voters
            .iter()
            .filter(|v| v.dead.is_none())
            .map(|v| v.name.as_str())
            .collect();
        let why = if left - 1 < cfg.min_quorum as usize {
            format!(
                "removing it would leave {} voters, below min_quorum {}",
                left - 1,
                cfg.min_quorum
            )
        } else {
            format!("at most {cap} voters are removed per round")
        };
        out.kept.push(format!(
            "keeping dead server {} ({}) as a voter: {why} (voters: {} of which alive: {}); \
             start a replacement server: it is promoted once healthy for {:?}, then {} is removed{}",
            s.name,
            if s.dead == Some(Dead::Stale) {
                "unknown to gossip"
            } else {
                "failed"
            },
            voters.len(),
            if alive.is_empty() {
                "none".to_string()
            } else {
                alive.join(", ")
            },
            cfg.server_stabilization_time,
            s.name,
            if cfg.min_quorum > 0 {
                format!(
                    "; or lower min_quorum (muster operator autopilot set-config -min-quorum {})",
                    left - 1
                )
            } else {
                String::new()
            }
        ));
    }
    out
}

/// One server in `muster operator autopilot state` (Consul's `/v1/operator/autopilot/health`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerReport {
    pub id: String,
    pub name: String,
    pub address: String,
    /// Gossip status: alive, failed, left, or "unknown" when gossip does not know it.
    pub serf_status: String,
    pub leader: bool,
    pub voter: bool,
    pub healthy: bool,
    /// Milliseconds since its last contact with the leader (0 for the leader).
    pub last_contact_ms: Option<u64>,
    pub last_index: u64,
    /// Milliseconds it has been healthy without interruption.
    pub stable_for_ms: Option<u64>,
}

/// Autopilot's view of the cluster, computed by the leader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AutopilotReport {
    pub healthy: bool,
    pub failure_tolerance: usize,
    pub leader: String,
    pub voters: Vec<String>,
    pub servers: Vec<ServerReport>,
    /// Dead servers autopilot keeps, with why and what would unblock them.
    pub kept: Vec<String>,
}

/// Failure tolerance of a configuration: how many more voters may fail before quorum is lost.
pub fn failure_tolerance(servers: &[ServerHealth]) -> usize {
    let voters = servers.iter().filter(|s| s.voter).count();
    let healthy = servers.iter().filter(|s| s.voter && s.healthy).count();
    let quorum = voters / 2 + 1;
    healthy.saturating_sub(quorum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(id: NodeId, voter: bool, dead: Option<Dead>) -> ServerHealth {
        ServerHealth {
            id,
            name: format!("s{id}"),
            voter,
            leader: id == 1,
            dead,
            healthy: dead.is_none(),
            healthy_since: dead
                .is_none()
                .then(|| Instant::now() - Duration::from_secs(60)),
        }
    }

    fn cfg(min_quorum: u32) -> AutopilotConfig {
        AutopilotConfig::defaults(min_quorum, 1)
    }

    #[test]
    fn a_dead_voter_of_three_waits_for_a_replacement_then_goes() {
        let now = Instant::now();
        let mut s = vec![
            srv(1, true, None),
            srv(2, true, None),
            srv(3, true, Some(Dead::Failed)),
        ];
        let p = plan(&cfg(3), &s, now);
        assert!(p.remove.is_empty());
        assert!(p.kept[0].contains("below min_quorum 3"), "{:?}", p.kept);
        assert!(p.kept[0].contains("start a replacement"));
        // The replacement joins as a non-voter: promoted first, nothing removed that round.
        s.push(srv(4, false, None));
        let p = plan(&cfg(3), &s, now);
        assert_eq!(p.promote, vec![4]);
        assert!(p.remove.is_empty());
        s[3].voter = true;
        let p = plan(&cfg(3), &s, now);
        assert_eq!(p.remove, vec![3]);
    }

    #[test]
    fn a_replacement_is_promoted_only_after_the_stabilization_time() {
        let now = Instant::now();
        let mut s = vec![srv(1, true, None), srv(2, false, None)];
        s[1].healthy_since = Some(now - Duration::from_millis(500));
        assert!(plan(&cfg(3), &s, now).promote.is_empty());
        s[1].healthy_since = Some(now - Duration::from_secs(3));
        assert_eq!(plan(&cfg(3), &s, now).promote, vec![2]);
        s[1].healthy = false;
        assert!(plan(&cfg(3), &s, now).promote.is_empty());
    }

    #[test]
    fn at_most_a_minority_is_removed_per_round_and_never_below_the_floor() {
        let now = Instant::now();
        // 5 voters, 3 dead (quorum already lost): at most 2 per round, and min_quorum 3 allows 2.
        let s = vec![
            srv(1, true, None),
            srv(2, true, None),
            srv(3, true, Some(Dead::Failed)),
            srv(4, true, Some(Dead::Stale)),
            srv(5, true, Some(Dead::Failed)),
        ];
        let p = plan(&cfg(3), &s, now);
        assert_eq!(p.remove, vec![4, 3], "stale first, then by name");
        assert_eq!(p.kept.len(), 1);
        // Floor 5: nothing goes.
        assert!(plan(&cfg(5), &s, now).remove.is_empty());
        // Two voters, one dead: (2-1)/2 = 0 per round, never auto-pruned (as Consul).
        let two = vec![srv(1, true, None), srv(2, true, Some(Dead::Failed))];
        assert!(plan(&cfg(0), &two, now).remove.is_empty());
    }

    #[test]
    fn dead_non_voters_always_go_and_cleanup_can_be_turned_off() {
        let now = Instant::now();
        let s = vec![
            srv(1, true, None),
            srv(2, true, None),
            srv(3, true, None),
            srv(4, false, Some(Dead::Failed)),
        ];
        assert_eq!(plan(&cfg(3), &s, now).remove, vec![4]);
        let mut off = cfg(3);
        off.cleanup_dead_servers = false;
        assert!(plan(&off, &s, now).remove.is_empty());
    }

    #[test]
    fn failure_tolerance_counts_healthy_voters_over_the_quorum() {
        let s = vec![
            srv(1, true, None),
            srv(2, true, None),
            srv(3, true, None),
            srv(4, true, None),
            srv(5, true, Some(Dead::Failed)),
        ];
        assert_eq!(failure_tolerance(&s), 1);
        assert_eq!(failure_tolerance(&s[..3]), 1);
        assert_eq!(failure_tolerance(&s[..2]), 0);
    }
}
