//! The bootstrap gate: decides, from what gossip and the peers say, whether and how this server
//! may form a new cluster. Pure: no I/O, no clock reads (time comes in as arguments), so every
//! rule is tested on its own. The protocol is described in docs/servers.md.

use std::time::{Duration, Instant};

use super::protocol::{PeerStatus, ServerView};
use super::types::{NodeId, ServerNode};

/// How long a bootstrap promise holds if the proposer goes quiet.
pub const PROMISE_TTL: Duration = Duration::from_secs(10);

/// What the gate concludes from one look at gossip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing for the gate to do, ever again on this server: the reason.
    Done(String),
    /// Not enough servers yet.
    Wait { need: usize, seen: Vec<String> },
    /// Servers disagree on how to bootstrap; refuse until fixed.
    Conflict(String),
    /// Enough servers, but another one proposes (the lowest id).
    WaitForProposer { proposer: String, seen: Vec<String> },
    /// Enough servers and this one proposes: probe them, then propose.
    Propose(Vec<ServerView>),
}

/// The line the gate logs and `muster info` shows while it waits: why, and for whom.
/// `Done` and `Propose` end the wait; their text is the reason itself, or the proposal's outcome.
pub fn explain_wait(decision: &Decision, expect: u32) -> String {
    match decision {
        Decision::Wait { need, seen } => format!(
            "waiting for {need} more server{} (expect={expect}, seen: {})",
            if *need == 1 { "" } else { "s" },
            seen.join(", ")
        ),
        Decision::WaitForProposer { proposer, seen } => format!(
            "{} servers seen ({}); waiting for {proposer} (lowest node id) to propose the bootstrap",
            seen.len(),
            seen.join(", ")
        ),
        Decision::Conflict(why) | Decision::Done(why) => why.clone(),
        Decision::Propose(servers) => format!(
            "proposing the bootstrap to {}",
            servers.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Looks at the servers gossip shows and decides.
///
/// `servers` may include this server; only alive servers of `datacenter` count (Consul counts
/// failed and left ones too, which lets a dead server complete the count).
pub fn evaluate(
    local: NodeId,
    expect: u32,
    datacenter: &str,
    has_state: bool,
    servers: &[ServerView],
) -> Decision {
    if expect == 0 {
        return Decision::Done("not in -bootstrap-expect mode".into());
    }
    if has_state {
        return Decision::Done("Raft data found, disabling bootstrap mode".into());
    }
    let mut live: Vec<&ServerView> = servers
        .iter()
        .filter(|s| s.alive && s.datacenter == datacenter)
        .collect();
    live.sort_by_key(|s| s.id);
    live.dedup_by_key(|s| s.id);
    if let Some(s) = live.iter().find(|s| s.cluster_id.is_some()) {
        return Decision::Done(format!(
            "server {} already belongs to cluster {}; this server waits to be added by its leader",
            s.name,
            s.cluster_id.expect("checked")
        ));
    }
    let conflicts: Vec<String> = live
        .iter()
        .filter_map(|s| match (s.bootstrap_mode, s.expect) {
            (true, _) => Some(format!("{} runs with -bootstrap", s.name)),
            (false, Some(e)) if e != expect => Some(format!("{} expects {e}", s.name)),
            _ => None,
        })
        .collect();
    if !conflicts.is_empty() {
        return Decision::Conflict(format!(
            "servers disagree on how to bootstrap (this server expects {expect}): {}; all servers must use the same -bootstrap-expect and none -bootstrap",
            conflicts.join(", ")
        ));
    }
    let seen: Vec<String> = live.iter().map(|s| s.name.clone()).collect();
    if live.len() < expect as usize {
        return Decision::Wait {
            need: expect as usize - live.len(),
            seen,
        };
    }
    // The proposer is the lowest id among servers in expect mode (a plain `-server` without
    // `-bootstrap-expect` is counted and included, but never proposes: it would never act).
    let Some(proposer) = live
        .iter()
        .filter(|s| s.expect.is_some() || s.id == local)
        .min_by_key(|s| s.id)
    else {
        // Gossip does not show this server itself yet: look again shortly.
        return Decision::Wait { need: 0, seen };
    };
    if proposer.id != local {
        return Decision::WaitForProposer {
            proposer: proposer.name.clone(),
            seen,
        };
    }
    Decision::Propose(live.into_iter().cloned().collect())
}

/// After the probe: a server that holds Raft state or a cluster id vetoes the bootstrap.
pub fn veto(statuses: &[(String, PeerStatus)]) -> Option<String> {
    statuses
        .iter()
        .find(|(_, s)| s.has_state || s.cluster_id.is_some())
        .map(|(name, s)| {
            let what = match s.cluster_id {
                Some(c) => format!("belongs to cluster {c}"),
                None => "holds Raft data from an earlier cluster".to_string(),
            };
            let leader = if s.leader.is_some() {
                "it has a leader, which will add this server"
            } else {
                "it has no leader: its cluster has lost quorum; see docs/servers.md for recovery"
            };
            format!(
                "server {name} {what}; never bootstrapping a second cluster beside it ({leader})"
            )
        })
}

/// The membership every server initialises with: all proposed servers, sorted by id.
pub fn canonical_membership(servers: &[ServerView]) -> Vec<(NodeId, ServerNode)> {
    let mut m: Vec<(NodeId, ServerNode)> = servers.iter().map(|s| (s.id, s.node())).collect();
    m.sort_by_key(|(id, _)| *id);
    m.dedup_by_key(|(id, _)| *id);
    m
}

/// The acceptor side of phase 1: at most one proposer at a time.
/// Why a server refuses a bootstrap proposal. The proposer pauses and tries again; the text
/// crosses the RPC port as the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It holds Raft state: it belongs to a cluster and never bootstraps again. The proposer
    /// waits for that cluster's leader to add it.
    #[error("{name} holds Raft state and will not bootstrap again")]
    HasState { name: String },
    /// The proposal leaves it out: the proposer's view of gossip is behind. Retry.
    #[error("the proposal does not include {name}")]
    NotIncluded { name: String },
    /// It promised another live proposer. Retry once that promise lapses ([`PROMISE_TTL`]).
    #[error("already promised to bootstrap with server {holder}; retry later")]
    Promised { holder: uuid::Uuid },
}

#[derive(Debug, Default)]
pub struct Promise {
    held: Option<(NodeId, Instant)>,
}

impl Promise {
    /// Accepts `proposer` unless a promise to another live proposer holds.
    /// `proposer_alive` says whether the current holder is still alive in gossip.
    pub fn offer(
        &mut self,
        proposer: NodeId,
        now: Instant,
        holder_alive: impl Fn(NodeId) -> bool,
    ) -> Result<(), Refusal> {
        if let Some((holder, since)) = self.held {
            let lapsed = now.duration_since(since) > PROMISE_TTL || !holder_alive(holder);
            if holder != proposer && !lapsed {
                return Err(Refusal::Promised {
                    holder: super::types::node_uuid(holder),
                });
            }
        }
        self.held = Some((proposer, now));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn s(id: NodeId, expect: Option<u32>) -> ServerView {
        ServerView {
            id,
            name: format!("s{id}"),
            rpc_addr: format!("127.0.0.{id}:8300"),
            alive: true,
            datacenter: "dc1".into(),
            expect,
            bootstrap_mode: false,
            cluster_id: None,
        }
    }

    #[test]
    fn waits_until_expect_alive_servers_are_seen() {
        let mut v = vec![s(1, Some(3)), s(2, Some(3))];
        assert_eq!(
            evaluate(1, 3, "dc1", false, &v),
            Decision::Wait {
                need: 1,
                seen: vec!["s1".into(), "s2".into()]
            }
        );
        v.push(ServerView {
            alive: false,
            ..s(3, Some(3))
        });
        assert!(
            matches!(
                evaluate(1, 3, "dc1", false, &v),
                Decision::Wait { need: 1, .. }
            ),
            "a dead server does not count"
        );
        v.push(ServerView {
            datacenter: "dc2".into(),
            ..s(4, Some(3))
        });
        assert!(
            matches!(
                evaluate(1, 3, "dc1", false, &v),
                Decision::Wait { need: 1, .. }
            ),
            "nor one of another datacenter"
        );
        v.push(s(5, Some(3)));
        assert!(matches!(evaluate(1, 3, "dc1", false, &v), Decision::Propose(p) if p.len() == 3));
        assert_eq!(
            evaluate(2, 3, "dc1", false, &v),
            Decision::WaitForProposer {
                proposer: "s1".into(),
                seen: vec!["s1".into(), "s2".into(), "s5".into()]
            }
        );
    }

    #[test]
    fn state_or_an_existing_cluster_disables_bootstrap_for_good() {
        let v = vec![s(1, Some(3)), s(2, Some(3)), s(3, Some(3))];
        assert!(
            matches!(evaluate(1, 3, "dc1", true, &v), Decision::Done(r) if r.contains("Raft data found"))
        );
        let mut w = v.clone();
        w[2].cluster_id = Some(Uuid::nil());
        assert!(
            matches!(evaluate(1, 3, "dc1", false, &w), Decision::Done(r) if r.contains("already belongs"))
        );
        assert!(matches!(
            evaluate(1, 0, "dc1", false, &v),
            Decision::Done(_)
        ));
    }

    #[test]
    fn conflicting_expect_or_bootstrap_mode_is_refused_naming_the_servers() {
        let v = vec![
            s(1, Some(3)),
            s(2, Some(5)),
            ServerView {
                bootstrap_mode: true,
                ..s(3, None)
            },
        ];
        match evaluate(1, 3, "dc1", false, &v) {
            Decision::Conflict(m) => assert!(
                m.contains("s2 expects 5") && m.contains("s3 runs with -bootstrap"),
                "{m}"
            ),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn a_server_without_expect_counts_but_never_proposes() {
        let v = vec![s(1, None), s(2, Some(3)), s(3, Some(3))];
        assert!(matches!(evaluate(2, 3, "dc1", false, &v), Decision::Propose(p) if p.len() == 3));
        assert!(
            matches!(evaluate(3, 3, "dc1", false, &v), Decision::WaitForProposer { proposer, .. } if proposer == "s2")
        );
    }

    #[test]
    fn more_servers_than_expect_all_join_the_proposal() {
        let v: Vec<_> = (1..=5).map(|i| s(i, Some(3))).collect();
        match evaluate(1, 3, "dc1", false, &v) {
            Decision::Propose(p) => assert_eq!(canonical_membership(&p).len(), 5),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn canonical_membership_is_identical_whatever_the_order() {
        let a = vec![s(3, None), s(1, None), s(2, None)];
        let b = vec![s(2, None), s(3, None), s(1, None), s(2, None)];
        assert_eq!(canonical_membership(&a), canonical_membership(&b));
    }

    #[test]
    fn a_survivor_with_state_vetoes() {
        let clean = PeerStatus::default();
        let old = PeerStatus {
            has_state: true,
            ..Default::default()
        };
        assert!(veto(&[("a".into(), clean.clone())]).is_none());
        let v = veto(&[("a".into(), clean), ("c".into(), old)]).unwrap();
        assert!(
            v.contains("server c holds Raft data") && v.contains("no leader"),
            "{v}"
        );
    }

    #[test]
    fn one_promise_at_a_time_until_it_lapses() {
        let mut p = Promise::default();
        let t0 = Instant::now();
        assert!(p.offer(1, t0, |_| true).is_ok());
        assert!(
            p.offer(1, t0, |_| true).is_ok(),
            "the same proposer may renew"
        );
        assert!(p.offer(2, t0 + Duration::from_secs(1), |_| true).is_err());
        assert!(
            p.offer(2, t0 + Duration::from_secs(1), |_| false).is_ok(),
            "the holder left gossip"
        );
        assert!(p.offer(3, t0 + PROMISE_TTL * 3, |_| true).is_ok(), "lapsed");
    }
}
