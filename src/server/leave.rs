//! A server leaving the Raft configuration: a graceful leave, a peer removed by an operator,
//! and the successor told to stand for election.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;

use super::error::ServerError;
use super::protocol::{server_views, Request};
use super::status::matched_indexes;
use super::types::{node_uuid, NodeId};
use super::{Server, CALL_TIMEOUT};

impl Server {
    /// Asked by a leaving leader: stand for election once its lease has run out on the others
    /// (openraft refuses votes while the leader lease, election_timeout_max, is valid).
    pub(super) fn stand_for_election(self: Arc<Self>) {
        tokio::spawn(async move {
            let lease = self.lease;
            let last = *self.last_contact.lock().expect("contact lock");
            let wait = last
                .map(|t| (lease + Duration::from_millis(20)).saturating_sub(t.elapsed()))
                .unwrap_or_default();
            tokio::time::sleep(wait).await;
            // If another server was elected meanwhile, its followers refuse this vote under
            // their fresh lease: standing costs nothing then.
            let _ = self.raft.trigger().elect().await;
        });
    }

    /// `RemovePeer` as the leader receives it.
    pub(super) async fn remove_peer_here(&self, id: NodeId) -> Result<(), ServerError> {
        if self.raft.metrics().borrow().state != ServerState::Leader {
            return Err(ServerError::NotLeader { leader: None });
        }
        self.remove_from_config(id).await
    }

    /// Removes a server from the Raft configuration, through the leader wherever it is.
    pub async fn remove_peer(&self, id: NodeId) -> Result<(), ServerError> {
        let leader = self.raft.metrics().borrow().current_leader;
        match leader {
            Some(l) if l == self.id => self.remove_from_config(id).await,
            Some(l) => {
                let addr = self
                    .membership()
                    .get_node(&l)
                    .map(|n| self.addr_of(l, n))
                    .ok_or(ServerError::LeaderAddressUnknown)?;
                let answer: Result<(), String> = self
                    .rpc
                    .ask(
                        &addr,
                        // This server's own removal (its leave) is its own request; an
                        // operator's removal of another goes with the operator's token.
                        if id == self.id {
                            self.own_request(Request::RemovePeer { id })
                        } else {
                            super::acl_check::with_caller(Request::RemovePeer { id })
                        },
                        CALL_TIMEOUT,
                    )
                    .await
                    .map_err(ServerError::Unreachable)?;
                answer.map_err(ServerError::Refused)
            }
            None => Err(ServerError::NoLeader {
                needs: "removing a peer needs one",
            }),
        }
    }

    /// A request this server sends on its own behalf, with a token when ACLs are on: the
    /// agent token (`acl.tokens.agent`, Consul's token for an agent's own calls), else the
    /// token of the caller this task serves (an operator's `muster leave`, already checked
    /// for `agent:write` on this agent), else none (anonymous). docs/acl.md, "The agent token".
    fn own_request(&self, req: Request) -> Request {
        let agent_token = self.cfg.acl.as_ref().and_then(|a| a.agent_token.clone());
        match agent_token {
            Some(secret) => Request::WithToken {
                secret,
                request: Box::new(req),
            },
            None => super::acl_check::with_caller(req),
        }
    }

    /// Before a graceful leave, this server leaves the Raft configuration while it can still
    /// vote on its own removal (as Consul's server leave does, docs/reference/consul.md): a leader removes
    /// itself (the remaining voters elect a successor at once), a follower asks the leader.
    /// Waiting until gossip shows it `left` would be too late in a two-voter cluster, where the
    /// removal needs the leaving server's vote.
    ///
    /// Returns the warnings the operator must see (also logged): a leave that costs quorum
    /// says so before it happens.
    pub async fn prepare_leave(&self) -> Vec<String> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let is_member = membership.nodes().any(|(id, _)| *id == self.id);
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        if !is_member || voters.len() <= 1 {
            return Vec::new();
        }
        let mut warnings = Vec::new();
        // The arithmetic, said out loud: removing this server first keeps
        // the others' quorum whenever that is possible at all.
        let views = server_views(&self.gossip.members());
        let alive = |id: NodeId| views.iter().any(|v| v.id == id && v.alive);
        let rest: Vec<NodeId> = voters.iter().copied().filter(|v| *v != self.id).collect();
        let rest_alive = rest.iter().filter(|v| alive(**v)).count();
        let quorum = rest.len() / 2 + 1;
        if voters.contains(&self.id) && rest_alive < quorum {
            let name = |id: NodeId| {
                membership
                    .get_node(&id)
                    .map(|n| n.name.clone())
                    .unwrap_or_else(|| node_uuid(id).to_string())
            };
            let dead: Vec<String> = rest
                .iter()
                .filter(|v| !alive(**v))
                .map(|v| name(*v))
                .collect();
            warnings.push(format!(
                "this leave costs the cluster its quorum: {rest_alive} of the {} other voters are alive \
                 (quorum {quorum}); unreachable: {}. Start a replacement first, or remove the dead \
                 voters (muster operator raft remove-peer) before leaving",
                rest.len(),
                dead.join(", ")
            ));
        }
        for w in &warnings {
            tracing::warn!("{w}");
        }
        let was_leader = m.state == ServerState::Leader;
        // The successor: the alive voter with the most of the log.
        let matched = matched_indexes(&m);
        let successor = rest
            .iter()
            .filter(|v| alive(**v))
            .max_by_key(|v| matched.get(v).copied().unwrap_or(0))
            .and_then(|v| membership.get_node(v).map(|n| (*v, n.clone())));
        tracing::info!("server leaving: asking to be removed from the Raft configuration first");
        match tokio::time::timeout(Duration::from_secs(10), self.remove_peer(self.id)).await {
            Ok(Ok(())) => tracing::info!("removed from the Raft configuration"),
            Ok(Err(e)) => {
                tracing::warn!("could not leave the Raft configuration before leaving: {e}");
                return warnings;
            }
            Err(_) => {
                tracing::warn!(
                    "could not leave the Raft configuration within 10 s; leaving anyway"
                );
                return warnings;
            }
        }
        // Leadership transfer: openraft 0.9 has none, so the leader removes itself (it leads
        // until that change commits, then steps down) and tells the most up-to-date voter to
        // stand for election as soon as the old lease runs out, instead of letting every
        // follower's timer race (measured in docs/performance.md).
        if let (true, Some((id, node))) = (was_leader, successor) {
            let addr = self.addr_of(id, &node);
            let handed: Result<Result<(), String>, _> =
                self.rpc.ask(&addr, Request::TimeoutNow, CALL_TIMEOUT).await;
            match handed {
                Ok(_) => tracing::info!(successor = %node.name, "leadership handed over"),
                Err(e) => {
                    tracing::debug!(error = %e, "handing over leadership failed; the followers' timers elect")
                }
            }
        }
        warnings
    }
}
