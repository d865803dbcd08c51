//! The leader's watch over the servers' health: the trackers autopilot's rules read, the
//! rounds that act on them, and autopilot's report (rules: [`super::autopilot`]).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use openraft::{ChangeMembers, ServerState};

use super::autopilot;
use super::error::ServerError;
use super::protocol::{seen_as, Request, SeenAs};
use super::status::matched_indexes;
use super::types::{node_uuid, NodeId, ServerNode};
use super::{Server, CALL_TIMEOUT};
use crate::gossip::MemberStatus;

/// Longest time a removed server that gossip still shows alive is kept out of the
/// configuration (see [`Trackers::removed_lately`]); after it, an alive server is added again,
/// as Consul re-adds a live server removed with `remove-peer` (docs/reference/consul.md).
pub(super) const REMOVED_HOLD: Duration = Duration::from_secs(30);

/// What the leader remembers between autopilot rounds. One value behind one lock: a removal
/// updates two of them at once, and a round reads them together.
#[derive(Debug, Default)]
pub(super) struct Trackers {
    /// Servers and since when they have been healthy without interruption: a newcomer is
    /// promoted once this is older than the stabilization time.
    pub(super) healthy_since: HashMap<NodeId, Instant>,
    /// Servers of the configuration and since when gossip has shown them dead: a server that
    /// reboots quickly keeps its seat.
    pub(super) dead_since: HashMap<NodeId, Instant>,
    /// Servers this leader removed from the configuration lately. A leaving server is still
    /// alive in gossip until its removal has committed, and must not be added back meanwhile
    /// (it would count as a voter that is about to vanish); held until gossip shows it not
    /// alive, or for [`REMOVED_HOLD`].
    pub(super) removed_lately: HashMap<NodeId, Instant>,
    /// Autopilot's last "keeping dead server" explanations, logged again only when they change.
    pub(super) kept_logged: Vec<String>,
}

impl Trackers {
    /// `id` is being removed from the configuration: hold it out, and forget its health.
    pub(super) fn removed(&mut self, id: NodeId) {
        self.removed_lately.insert(id, Instant::now());
        self.healthy_since.remove(&id);
    }
}

impl Server {
    /// The autopilot settings in force: replicated ones, else this server's configuration.
    pub fn autopilot_config(&self) -> (autopilot::AutopilotConfig, u64) {
        self.sm
            .state
            .read()
            .expect("sm lock")
            .data
            .autopilot
            .clone()
            .unwrap_or_else(|| (self.configured_autopilot(), 0))
    }

    /// The autopilot settings of this server's configuration (see `autopilot_config`).
    pub fn configured_autopilot(&self) -> autopilot::AutopilotConfig {
        self.configured_autopilot
            .lock()
            .expect("autopilot lock")
            .clone()
    }

    /// A reload's autopilot settings for this server's configuration; what the cluster has
    /// recorded is changed by a write (`AutopilotSet`), not here.
    pub fn set_configured_autopilot(&self, cfg: autopilot::AutopilotConfig) {
        *self.configured_autopilot.lock().expect("autopilot lock") = cfg;
    }

    /// The leader's assessment of every server of the configuration (docs/operations.md).
    pub(super) fn assess(
        &self,
        m: &openraft::RaftMetrics<NodeId, ServerNode>,
        cfg: &autopilot::AutopilotConfig,
    ) -> (Vec<autopilot::ServerHealth>, Vec<autopilot::ServerReport>) {
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = self.gossip.members();
        let last = m.last_log_index.unwrap_or(0);
        let matched = matched_indexes(m);
        let now = Instant::now();
        let mut trackers = self.trackers.lock().expect("trackers lock");
        let Trackers {
            healthy_since,
            dead_since,
            ..
        } = &mut *trackers;
        let mut health = Vec::new();
        let mut reports = Vec::new();
        for (id, node) in membership.nodes() {
            // By id and the configuration's name: a second member claiming the id cannot
            // make the server look dead (or alive) to autopilot.
            let seen = seen_as(&members, *id, &node.name);
            let status = match seen {
                SeenAs::Member(s) => Some(s),
                SeenAs::Absent | SeenAs::Ambiguous => None,
            };
            let is_self = *id == self.id;
            let gone = match seen {
                _ if is_self => None,
                SeenAs::Absent => Some(autopilot::Dead::Stale),
                SeenAs::Member(MemberStatus::Failed) | SeenAs::Member(MemberStatus::Left) => {
                    Some(autopilot::Dead::Failed)
                }
                SeenAs::Member(_) | SeenAs::Ambiguous => None,
            };
            // Dead only after as long as a newcomer must be healthy: a server that reboots
            // quickly keeps its seat.
            let dead = match gone {
                Some(kind) => {
                    let since = *dead_since.entry(*id).or_insert(now);
                    (now.duration_since(since) >= cfg.server_stabilization_time).then_some(kind)
                }
                None => {
                    dead_since.remove(id);
                    None
                }
            };
            let contact = if is_self {
                Some(Duration::ZERO)
            } else {
                self.contacts.since(*id)
            };
            let index = if is_self {
                last
            } else {
                matched.get(id).copied().unwrap_or(0)
            };
            let healthy = is_self
                || (status == Some(MemberStatus::Alive)
                    && index + cfg.max_trailing_logs >= last
                    && contact.is_some_and(|c| c <= cfg.last_contact_threshold));
            let since = if healthy {
                Some(*healthy_since.entry(*id).or_insert(now))
            } else {
                healthy_since.remove(id);
                None
            };
            health.push(autopilot::ServerHealth {
                id: *id,
                name: node.name.clone(),
                voter: voters.contains(id),
                leader: is_self,
                dead,
                healthy,
                healthy_since: since,
            });
            reports.push(autopilot::ServerReport {
                id: node_uuid(*id).to_string(),
                name: node.name.clone(),
                address: self.addr_of(*id, node),
                serf_status: status
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|| "unknown".into()),
                leader: is_self,
                voter: voters.contains(id),
                healthy,
                last_contact_ms: contact.map(|c| c.as_millis() as u64),
                last_index: index,
                stable_for_ms: since.map(|t| now.duration_since(t).as_millis() as u64),
            });
        }
        (health, reports)
    }

    /// One autopilot round on the leader: promote stable newcomers, remove dead servers.
    pub(super) async fn autopilot_round(&self) {
        let m = self.raft.metrics().borrow().clone();
        let (cfg, _) = self.autopilot_config();
        let (health, _) = self.assess(&m, &cfg);
        let plan = autopilot::plan(&cfg, &health, Instant::now());
        {
            let logged = &mut self.trackers.lock().expect("trackers lock").kept_logged;
            if *logged != plan.kept {
                for k in &plan.kept {
                    tracing::warn!("autopilot: {k}");
                }
                *logged = plan.kept.clone();
            }
        }
        let name = |id: NodeId| {
            health
                .iter()
                .find(|h| h.id == id)
                .map(|h| h.name.clone())
                .unwrap_or_default()
        };
        if !plan.promote.is_empty() {
            let ids: BTreeSet<NodeId> = plan.promote.iter().copied().collect();
            let names: Vec<String> = plan.promote.iter().map(|i| name(*i)).collect();
            tracing::info!(servers = %names.join(", "), "autopilot: promoting to voter (healthy for {:?})", cfg.server_stabilization_time);
            if let Err(e) = self
                .change_membership(ChangeMembers::AddVoterIds(ids), true)
                .await
            {
                tracing::warn!(error = %e, "autopilot: promotion failed; the next round retries");
            }
        }
        for id in plan.remove {
            tracing::info!(server = %name(id), "autopilot: removing dead server from the Raft configuration");
            if let Err(e) = self.remove_from_config(id).await {
                tracing::warn!(server = %name(id), error = %e, "autopilot: removal failed; the next round retries");
            }
        }
    }

    /// Autopilot's report, from the leader.
    pub async fn autopilot_state(&self) -> Result<autopilot::AutopilotReport, ServerError> {
        let m = self.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            let answer: Result<autopilot::AutopilotReport, String> = self
                .on_leader(
                    "autopilot runs on the leader",
                    Request::AutopilotState,
                    CALL_TIMEOUT,
                )
                .await?;
            return answer.map_err(ServerError::Refused);
        }
        let (cfg, _) = self.autopilot_config();
        let (health, servers) = self.assess(&m, &cfg);
        let plan = autopilot::plan(&cfg, &health, Instant::now());
        Ok(autopilot::AutopilotReport {
            healthy: health.iter().all(|h| h.healthy),
            failure_tolerance: autopilot::failure_tolerance(&health),
            leader: node_uuid(self.id).to_string(),
            voters: health
                .iter()
                .filter(|h| h.voter)
                .map(|h| node_uuid(h.id).to_string())
                .collect(),
            servers,
            kept: plan.kept,
        })
    }
}
