//! `operator raft transfer-leader`: the leader hands its leadership to a named voter, or to
//! the most up-to-date one. openraft 0.9 has no transfer of its own; this one is built on the
//! hand-over of a leaving leader (`TimeoutNow`), and its limits are in docs/servers.md
//! ("Transferring leadership").

use std::time::{Duration, Instant};

use openraft::ServerState;

use super::error::ServerError;
use super::protocol::{server_views, Request};
use super::status::matched_indexes;
use super::types::{node_uuid, NodeId};
use super::{Server, CALL_TIMEOUT};

/// How long the target may take to catch up with the leader's log before the transfer is
/// refused: a voter further behind than that is not one to lead.
const CATCH_UP: Duration = Duration::from_secs(3);

impl Server {
    /// Moves leadership to `to` (or to the most up-to-date other voter), through the leader
    /// wherever it is; returns once the new leader is known here.
    pub async fn transfer_leader(&self, to: Option<NodeId>) -> Result<(), ServerError> {
        let leader = self.raft.metrics().borrow().current_leader;
        match leader {
            Some(l) if l == self.id => self.transfer_here(to).await,
            Some(l) => {
                let addr = self
                    .membership()
                    .get_node(&l)
                    .map(|n| self.addr_of(l, n))
                    .ok_or(ServerError::LeaderAddressUnknown)?;
                // The operator's token goes along: the leader checks operator:write again.
                let req = super::acl_check::with_caller(Request::TransferLeader { to });
                let answer: Result<(), String> = self
                    .rpc
                    .ask(
                        &addr,
                        req,
                        CATCH_UP + self.transfer_deadline() + CALL_TIMEOUT,
                    )
                    .await
                    .map_err(ServerError::Unreachable)?;
                answer.map_err(ServerError::Refused)
            }
            None => Err(ServerError::NoLeader {
                needs: "transferring leadership needs one",
            }),
        }
    }

    /// How long the old leader waits to see another one: the target stands once the lease has
    /// run out on it, and its election takes a round trip; ten leases leave room for a
    /// loaded machine.
    fn transfer_deadline(&self) -> Duration {
        self.lease * 10
    }

    /// `TransferLeader` as the leader carries it out.
    pub(super) async fn transfer_here(&self, to: Option<NodeId>) -> Result<(), ServerError> {
        let m = self.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return Err(ServerError::NotLeader { leader: None });
        }
        let membership = m.membership_config.membership().clone();
        let name = |id: NodeId| {
            membership
                .get_node(&id)
                .map(|n| n.name.clone())
                .unwrap_or_else(|| node_uuid(id).to_string())
        };
        let views = server_views(&self.gossip.members());
        let alive = |id: NodeId| views.iter().any(|v| v.id == id && v.alive);
        let is_voter = |id: NodeId| membership.voter_ids().any(|v| v == id);
        let refuse = |text: String| Err(ServerError::Transfer(text));
        let target = match to {
            Some(id) if membership.get_node(&id).is_none() => {
                return Err(ServerError::NotInConfiguration { id: node_uuid(id) })
            }
            Some(id) if id == self.id => {
                return refuse(format!("{} already leads; nothing to transfer", name(id)))
            }
            Some(id) if !is_voter(id) => {
                return refuse(format!(
                    "{} is not a voter, and only a voter can lead: wait until autopilot promotes \
                     it (muster operator autopilot state), or name a voter from muster operator \
                     raft list-peers",
                    name(id)
                ))
            }
            Some(id) if !alive(id) => {
                return refuse(format!(
                    "{} is not alive in gossip: start it, or name another voter \
                     (muster members, muster operator raft list-peers)",
                    name(id)
                ))
            }
            Some(id) => id,
            None => {
                let matched = matched_indexes(&m);
                match membership
                    .voter_ids()
                    .filter(|v| *v != self.id && alive(*v))
                    .max_by_key(|v| matched.get(v).copied().unwrap_or(0))
                {
                    Some(id) => id,
                    None => {
                        return refuse(
                            "no other voter is alive to take over: start or add servers first \
                             (muster members)"
                                .into(),
                        )
                    }
                }
            }
        };
        self.wait_caught_up(target, &name(target)).await?;
        let node =
            membership
                .get_node(&target)
                .cloned()
                .ok_or(ServerError::NotInConfiguration {
                    id: node_uuid(target),
                })?;
        let addr = self.addr_of(target, &node);
        // The followers' lease runs out only if the leader falls silent: no heartbeats until
        // the target is elected (writes still replicate, and keep the lease fresh).
        // Turned back on when this future ends in any way, dropped included (an HTTP caller
        // that hangs up): a leader left without heartbeats would have its followers call
        // elections for as long as it leads, in every later term too.
        struct HeartbeatsOff<'a>(&'a super::types::Raft);
        impl Drop for HeartbeatsOff<'_> {
            fn drop(&mut self) {
                self.0.runtime_config().heartbeat(true);
            }
        }
        self.raft.runtime_config().heartbeat(false);
        let _on_again = HeartbeatsOff(&self.raft);
        self.hand_over(target, &node.name, &addr, to.is_some())
            .await
    }

    /// Waits until the leader has replicated its whole log to `target`, within [`CATCH_UP`]:
    /// a candidate behind the others would have its votes refused.
    async fn wait_caught_up(&self, target: NodeId, name: &str) -> Result<(), ServerError> {
        let deadline = Instant::now() + CATCH_UP;
        loop {
            let m = self.raft.metrics().borrow().clone();
            let last = m.last_log_index.unwrap_or(0);
            let has = matched_indexes(&m).get(&target).copied().unwrap_or(0);
            if has >= last {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ServerError::Transfer(format!(
                    "{name} is behind: it holds the log up to index {has} of {last} after \
                     {CATCH_UP:?}; wait until it catches up (LastIndex in muster operator raft \
                     list-peers) and try again, or name another voter"
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Tells `target` to stand, then waits until some other server leads. With `named`, a
    /// leader other than the target is an error; without, any other leader will do.
    async fn hand_over(
        &self,
        target: NodeId,
        name: &str,
        addr: &str,
        named: bool,
    ) -> Result<(), ServerError> {
        let told: Result<Result<(), String>, _> =
            self.rpc.ask(addr, Request::TimeoutNow, CALL_TIMEOUT).await;
        match told {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(ServerError::Transfer(format!(
                    "{name} refused to stand for election: {e}"
                )))
            }
            Err(e) => {
                return Err(ServerError::Transfer(format!(
                    "cannot reach {name} at {addr}: {e}; check that it runs and that its server \
                     port is reachable from this server, then try again"
                )))
            }
        }
        let deadline = Instant::now() + self.transfer_deadline();
        loop {
            let m = self.raft.metrics().borrow().clone();
            match m.current_leader {
                Some(l) if l == target => {
                    tracing::info!(successor = %name, "leadership transferred");
                    return Ok(());
                }
                Some(l) if l != self.id && !named => {
                    tracing::info!(successor = %node_uuid(l), "leadership transferred");
                    return Ok(());
                }
                Some(l) if l != self.id => {
                    let other = m
                        .membership_config
                        .membership()
                        .get_node(&l)
                        .map(|n| n.name.clone())
                        .unwrap_or_else(|| node_uuid(l).to_string());
                    return Err(ServerError::Transfer(format!(
                        "{other} was elected instead of {name} (its election timer ran out \
                         first); try again"
                    )));
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                let still = if m.state == ServerState::Leader {
                    "this server still leads"
                } else {
                    "no leader yet; an election is under way"
                };
                return Err(ServerError::Transfer(format!(
                    "leadership did not move to {name} within {:?} ({still}): a steady stream of \
                     writes keeps the followers' lease fresh, or {name}'s votes were refused; \
                     try again (docs/servers.md, \"Transferring leadership\")",
                    self.transfer_deadline()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
