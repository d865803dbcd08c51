//! What a server says about itself and its cluster: its peer status, `muster info`'s raft
//! section, the Raft configuration, the leader's address, and whether quorum is lost.

use std::collections::{BTreeMap, BTreeSet};

use openraft::ServerState;
use uuid::Uuid;

use super::protocol::{server_views, PeerStatus};
use super::types::{node_uuid, NodeId, ServerNode};
use super::Server;

/// One server of the configuration, for `operator raft list-peers`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PeerInfo {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub leader: bool,
    pub voter: bool,
    pub protocol_version: String,
    pub last_index: u64,
}

impl Server {
    /// The cluster id, once the first leader has named the cluster.
    pub fn cluster_id(&self) -> Option<Uuid> {
        self.sm.state.read().expect("sm lock").cluster_id
    }

    /// This server's answer to `PeerStatus`.
    pub fn status(&self) -> PeerStatus {
        let m = self.raft.metrics().borrow().clone();
        PeerStatus {
            node_id: self.id,
            name: self.cfg.name.clone(),
            has_state: self.has_state(),
            cluster_id: self.cluster_id(),
            leader: self.known_leader(&m),
            members: m
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect(),
        }
    }

    /// Whether this server's Raft configuration has lost its quorum, as far as gossip and
    /// the leader's acknowledgements show: what is wrong and what the operator can do.
    pub fn quorum_problem(&self) -> Option<String> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        if voters.len() <= 1 || !voters.contains(&self.id) {
            return None;
        }
        let views = server_views(&self.gossip.members());
        let reachable = |id: NodeId| id == self.id || views.iter().any(|v| v.id == id && v.alive);
        let quorum = voters.len() / 2 + 1;
        let up = voters.iter().filter(|v| reachable(**v)).count();
        if up >= quorum {
            if m.state == ServerState::Leader && self.leads_without_quorum(&m) {
                return Some(format!(
                    "this leader has had no acknowledgement from a quorum for {} ms",
                    m.millis_since_quorum_ack.unwrap_or(0)
                ));
            }
            return None;
        }
        let down: Vec<String> = voters
            .iter()
            .filter(|v| !reachable(**v))
            .map(|v| {
                membership
                    .get_node(v)
                    .map(|n| n.name.clone())
                    .unwrap_or_else(|| node_uuid(*v).to_string())
            })
            .collect();
        Some(format!(
            "quorum lost: {up} of {} voters reachable (quorum {quorum}); unreachable: {}. \
             No leader can be elected and no write commits until enough of them return. If they \
             are gone for good: stop the surviving servers, run `muster operator raft recover \
             -data-dir DIR -peers-file FILE` on each with the same list of survivors, then start \
             them (docs/operations.md)",
            voters.len(),
            down.join(", ")
        ))
    }

    /// The current Raft configuration: its servers, voters and learners.
    pub fn membership(&self) -> openraft::Membership<NodeId, ServerNode> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone()
    }

    /// The log index of the current Raft configuration (`Index` of its HTTP answer).
    pub fn membership_index(&self) -> u64 {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .log_id()
            .map(|l| l.index)
            .unwrap_or(0)
    }

    /// Whether this server leads, but has not heard from a quorum for five leases: what
    /// `quorum_problem` reports to the operator. Not a leadership test (that is
    /// [`Self::leads_with_lease`]); the wider margin keeps a passing stall out of the logs.
    fn leads_without_quorum(&self, m: &openraft::RaftMetrics<NodeId, ServerNode>) -> bool {
        m.millis_since_quorum_ack
            .is_some_and(|ms| u128::from(ms) > self.lease.as_millis() * 5)
    }

    /// Whether this server is a leader whose lease is confirmed: the one test of "this server
    /// may answer as the leader" (`/v1/status/leader`, default-mode reads, writes,
    /// `X-Consul-KnownLeader`; docs/servers.md, "Leadership under a lost quorum").
    ///
    /// It is Leader, it has applied an entry of its own term, and either it is the only voter
    /// (its own acknowledgement is a quorum: `-dev`, `-bootstrap`), or a majority of every
    /// configuration accepted an AppendEntries of its term **sent less than one lease ago**
    /// (`election_timeout_max`, 200 ms × raft_multiplier), read on the clock now.
    ///
    /// Why the send time, and why now: a follower refuses every vote for a lease after it
    /// accepts an AppendEntries, so no other leader can be elected before `sent + lease`
    /// by a majority that accepted it. openraft's own `millis_since_quorum_ack` is a figure
    /// computed when its core last reported, which goes stale while the process is paused or
    /// starved: a leader resumed after SIGSTOP answered default reads from before the pause.
    /// Why its own term: entries the previous leader committed are known committed here only
    /// once an entry of this term commits; until it is applied, local state may lack an
    /// acknowledged write. Right after an election both take a round trip: the callers' retry
    /// ([`crate::client::HOLD`]) covers it. A leader restored from disk alone (openraft makes
    /// it leader at once, its vote being committed) never passes: no follower confirms it.
    pub fn leads_with_lease(&self) -> bool {
        self.lease_confirmed(&self.raft.metrics().borrow())
    }

    /// [`Self::leads_with_lease`] on metrics the caller already holds.
    pub(crate) fn lease_confirmed(&self, m: &openraft::RaftMetrics<NodeId, ServerNode>) -> bool {
        if m.state != ServerState::Leader {
            return false;
        }
        let term = m.current_term;
        if m.last_applied.is_none_or(|l| l.leader_id.term != term) {
            return false;
        }
        let joint = m.membership_config.membership().get_joint_config();
        !joint.is_empty()
            && joint.iter().all(|config| {
                let confirmed = config
                    .iter()
                    .filter(|&&v| {
                        v == self.id || self.contacts.accepted_within(v, term, self.lease)
                    })
                    .count();
                confirmed * 2 > config.len()
            })
    }

    /// The leader this server knows, by id: a follower's leader, or itself while its lease is
    /// confirmed ([`Self::leads_with_lease`]). openraft 0.9 keeps a leader without quorum in
    /// the Leader state (partitioned, or restarted alone); such a leader is no leader to
    /// report or forward to.
    pub(crate) fn known_leader(
        &self,
        m: &openraft::RaftMetrics<NodeId, ServerNode>,
    ) -> Option<NodeId> {
        let l = m.current_leader?;
        if l == self.id && !self.lease_confirmed(m) {
            return None;
        }
        Some(l)
    }

    /// The leader's RPC address, if there is a leader: a follower's leader, or this server while
    /// its lease is confirmed ([`Self::leads_with_lease`]). `""` in `/v1/status/leader`
    /// otherwise, as Consul answers without a leader.
    pub fn leader_addr(&self) -> Option<String> {
        let m = self.raft.metrics().borrow().clone();
        let l = self.known_leader(&m)?;
        m.membership_config
            .membership()
            .get_node(&l)
            .map(|n| self.addr_of(l, n))
    }

    /// Where server `id` is reached now: gossip's address, else the one in the membership.
    pub fn addr_of(&self, id: NodeId, node: &ServerNode) -> String {
        self.book.get(id).unwrap_or_else(|| node.addr.clone())
    }

    /// Every server of the Raft configuration.
    pub fn configuration(&self) -> Vec<PeerInfo> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let matched = matched_indexes(&m);
        membership
            .nodes()
            .map(|(id, n)| PeerInfo {
                id: node_uuid(*id).to_string(),
                node: n.name.clone(),
                address: n.addr.clone(),
                leader: m.current_leader == Some(*id),
                voter: voters.contains(id),
                protocol_version: "3".into(),
                last_index: if *id == self.id {
                    m.last_log_index.unwrap_or(0)
                } else {
                    matched.get(id).copied().unwrap_or(0)
                },
            })
            .collect()
    }

    /// The `raft` section of `muster info`.
    pub fn info(&self) -> BTreeMap<String, String> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let is_voter = voters.contains(&self.id);
        let state = match m.state {
            ServerState::Leader => "Leader",
            ServerState::Follower => "Follower",
            ServerState::Candidate => "Candidate",
            // openraft's Learner is a server outside the voters: not yet in a cluster, or a
            // nonvoter. Consul's Raft has no such state and shows both as Follower.
            ServerState::Learner => "Follower",
            ServerState::Shutdown => "Shutdown",
        };
        let last_contact = match (m.state, *self.last_contact.lock().expect("contact lock")) {
            (ServerState::Leader, _) if self.lease_confirmed(&m) => "0".to_string(),
            // A leader without a confirmed lease: how long since a quorum last answered it.
            (ServerState::Leader, _) => m
                .millis_since_quorum_ack
                .map(|ms| format!("{ms}ms"))
                .unwrap_or_else(|| "never".into()),
            (_, Some(t)) => format!("{:.1}ms", t.elapsed().as_secs_f64() * 1000.0),
            (_, None) => "never".to_string(),
        };
        let config: Vec<String> = membership
            .nodes()
            .map(|(id, n)| {
                let suffrage = if voters.contains(id) {
                    "Voter"
                } else {
                    "Nonvoter"
                };
                format!(
                    "{{Suffrage:{suffrage} ID:{} Address:{}}}",
                    node_uuid(*id),
                    n.addr
                )
            })
            .collect();
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        let mut out = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            out.insert(k.to_string(), v);
        };
        put("state", state.into());
        put("term", m.current_term.to_string());
        put("last_log_index", m.last_log_index.unwrap_or(0).to_string());
        put("last_log_term", m.vote.leader_id().term.to_string());
        // openraft 0.9 exposes the applied index, not the commit index: applied ≤ committed, and
        // entries are applied as soon as they commit, so this is the commit index give or take
        // the entries being applied at this instant.
        put("commit_index", applied.to_string());
        put("applied_index", applied.to_string());
        put(
            "last_snapshot_index",
            m.snapshot.map(|l| l.index).unwrap_or(0).to_string(),
        );
        put(
            "num_peers",
            if is_voter {
                (voters.len() - 1).to_string()
            } else {
                "0".into()
            },
        );
        put("last_contact", last_contact);
        put("leader", self.leader_addr().unwrap_or_default());
        put(
            "leader_id",
            self.known_leader(&m)
                .map(|l| node_uuid(l).to_string())
                .unwrap_or_default(),
        );
        put("latest_configuration", format!("[{}]", config.join(" ")));
        put("protocol_version", "3".into());
        put(
            "cluster_id",
            self.cluster_id().map(|c| c.to_string()).unwrap_or_default(),
        );
        // The gate's progress (docs/servers.md); `consul.bootstrap` is the -bootstrap flag.
        put("formation", self.gate_status());
        let member = membership.nodes().any(|(id, _)| *id == self.id);
        put(
            "quorum",
            match self.quorum_problem() {
                Some(problem) => problem,
                None if member => "ok".into(),
                // In no cluster yet (or removed from it): no quorum to speak of.
                None => "n/a".into(),
            },
        );
        out
    }
}

/// The leader's view of each server's replicated log index (empty on a follower).
pub(super) fn matched_indexes(
    m: &openraft::RaftMetrics<NodeId, ServerNode>,
) -> BTreeMap<NodeId, u64> {
    m.replication
        .as_ref()
        .map(|r| {
            r.iter()
                .map(|(id, l)| (*id, l.map(|l| l.index).unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}
