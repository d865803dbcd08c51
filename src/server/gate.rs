//! The bootstrap gate: decides, from what gossip and the peers say, whether and how this server
//! may form a new cluster. Pure: no I/O, no clock reads (time comes in as arguments), so every
//! rule is tested on its own. The protocol is described in docs/servers.md.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::protocol::{PeerStatus, ServerView};
use super::types::{NodeId, ServerNode};

/// How long a promise held under the old rule ([`LapsingPromise`]) lasted if the proposer went
/// quiet.
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

/// Where the bootstrap gate is, in one word (the metric `muster.bootstrap.gate`; the
/// sentence is `muster info`'s `bootstrap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatePhase {
    /// Counting servers (or waiting for a claim to be confirmed).
    Waiting,
    /// Something forbids bootstrapping (another cluster, a conflicting expect): the operator
    /// must look.
    Conflict,
    /// An attempt failed and is retried.
    Retrying,
    /// The gate has nothing left to decide: bootstrapped, joined, or the server had state.
    Done,
    /// No `-bootstrap-expect`: the server waits to be added by a leader.
    Manual,
}

impl GatePhase {
    pub const ALL: [GatePhase; 5] = [
        GatePhase::Waiting,
        GatePhase::Conflict,
        GatePhase::Retrying,
        GatePhase::Done,
        GatePhase::Manual,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GatePhase::Waiting => "waiting",
            GatePhase::Conflict => "conflict",
            GatePhase::Retrying => "retrying",
            GatePhase::Done => "done",
            GatePhase::Manual => "manual",
        }
    }
}

/// What a server waiting for peers with no join configured is told: gossip alone never finds
/// them, so it waits until someone joins it (docs/servers.md).
pub const NO_JOIN_HINT: &str = "no -join or -retry-join is configured, so this server finds no peers by itself: start it with -retry-join ADDR (or retry_join in a file), or run `muster join ADDR` against it";

/// The line the gate logs and `muster info` shows while it waits: why, and for whom.
/// `Done` and `Propose` end the wait; their text is the reason itself, or the proposal's outcome.
/// `join_configured` is false when the agent has neither `-join` nor `-retry-join`: a server
/// still short of peers then says so and what to run ([`NO_JOIN_HINT`]).
pub fn explain_wait(decision: &Decision, expect: u32, join_configured: bool) -> String {
    match decision {
        Decision::Wait { need, seen } => format!(
            "waiting for {need} more server{} (expect={expect}, seen: {}){}",
            if *need == 1 { "" } else { "s" },
            seen.join(", "),
            if join_configured {
                String::new()
            } else {
                format!("; {NO_JOIN_HINT}")
            }
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
    /// It promised another proposer, which has not released it. Retry later: the holder
    /// releases its promises when its attempt fails (docs/servers.md).
    #[error("already promised to bootstrap with server {holder}; retry later")]
    Promised { holder: uuid::Uuid },
    /// The proposal is older than the attempt of the same proposer this server promised: a
    /// delayed message. Ignored by the proposer, which has moved on.
    #[error("attempt {attempt} is older than attempt {promised} already promised")]
    Stale { attempt: u64, promised: u64 },
}

/// The checks every acceptor makes before looking at its promise, under either rule: a
/// server with Raft state never bootstraps again, and a proposal that leaves this server out
/// was made from a view of gossip that is behind.
pub fn admit(
    local: NodeId,
    name: &str,
    has_state: bool,
    servers: &[(NodeId, ServerNode)],
) -> Result<(), Refusal> {
    if has_state {
        return Err(Refusal::HasState { name: name.into() });
    }
    if !servers.iter().any(|(id, _)| *id == local) {
        return Err(Refusal::NotIncluded { name: name.into() });
    }
    Ok(())
}

/// A server's bootstrap promise, as kept in `<data_dir>/bootstrap-promise` (docs/state.md).
///
/// The rule (docs/servers.md, "Why at most one cluster"): a promise, once written, binds this
/// server to its holder for the life of the data dir. It is never lapsed by time or by gossip
/// (either can be wrong during a partition, and that is how two clusters formed before); it
/// ends only when the holder itself releases it, which the holder does only for attempts it has
/// abandoned, or when this server receives Raft state and the question is moot.
///
/// Pure: each method returns the value to persist; the caller writes it (fsync) *before*
/// answering, so no answer is ever sent that a crash could take back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Promise {
    /// The proposer this server promised, and which of its attempts.
    pub held: Option<(NodeId, u64)>,
    /// The number of this server's own last attempt as proposer (0: none yet). Attempts are
    /// numbered so that a release cannot reach a later attempt than the ones it abandons.
    pub last_attempt: u64,
}

impl Promise {
    /// Accepts attempt `attempt` of `proposer` unless this server is bound to another
    /// proposer, or already promised a later attempt of the same one. Returns the promise to
    /// persist before answering yes.
    pub fn offer(&self, proposer: NodeId, attempt: u64) -> Result<Promise, Refusal> {
        match self.held {
            Some((holder, _)) if holder != proposer => Err(Refusal::Promised {
                holder: super::types::node_uuid(holder),
            }),
            Some((_, promised)) if promised > attempt => Err(Refusal::Stale { attempt, promised }),
            _ => Ok(Promise {
                held: Some((proposer, attempt)),
                ..*self
            }),
        }
    }

    /// The holder `proposer` abandoned every attempt up to `up_to`: a promise to one of them
    /// ends. A promise to a later attempt is kept (the release is a delayed message).
    pub fn release(&self, proposer: NodeId, up_to: u64) -> Promise {
        match self.held {
            Some((holder, attempt)) if holder == proposer && attempt <= up_to => Promise {
                held: None,
                ..*self
            },
            _ => *self,
        }
    }

    /// This server starts an attempt of its own as proposer: its number, and the promise to
    /// persist before any proposal is sent (so that a restarted server never reuses a number).
    pub fn next_attempt(&self) -> (u64, Promise) {
        let n = self.last_attempt + 1;
        (
            n,
            Promise {
                last_attempt: n,
                ..*self
            },
        )
    }
}

/// The acceptor side of a proposal under the durable rule: [`admit`], then [`Promise::offer`].
/// Returns the promise to persist before answering yes.
pub fn accept(
    local: NodeId,
    name: &str,
    has_state: bool,
    promise: &Promise,
    proposer: NodeId,
    attempt: u64,
    servers: &[(NodeId, ServerNode)],
) -> Result<Promise, Refusal> {
    admit(local, name, has_state, servers)?;
    promise.offer(proposer, attempt)
}

/// The rule before issue 10, kept only so that `tests/gate_model.rs` can show the model
/// checker finding the double initialisation it allows (docs/servers.md): a promise held in
/// memory that lapses after [`PROMISE_TTL`] or as soon as gossip shows the holder dead, and is
/// forgotten on restart. The agent no longer uses it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct LapsingPromise {
    held: Option<(NodeId, Instant)>,
}

impl LapsingPromise {
    /// Accepts `proposer` unless a promise to another live proposer holds.
    /// `holder_alive` says whether the current holder is still alive in gossip.
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

/// Where one attempt of the proposer stands: what it proposed, and who has promised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attempt {
    /// Its number ([`Promise::next_attempt`]); every proposal and release carries it.
    pub number: u64,
    /// The canonical membership proposed, and initialised if every member promises.
    pub membership: Vec<(NodeId, ServerNode)>,
    promised: BTreeSet<NodeId>,
}

/// What an answer to a proposal leaves the proposer to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Answers are still missing.
    Pending,
    /// Every member promised: initialise Raft with [`Attempt::membership`].
    Complete,
    /// A member refused or could not be reached: abandon the attempt (release its promises,
    /// back off, re-evaluate). The text says who and why.
    Refused(String),
}

impl Attempt {
    /// Attempt `number` proposing every server of `servers` (the gate's [`Decision::Propose`]).
    pub fn new(number: u64, servers: &[ServerView]) -> Attempt {
        Attempt {
            number,
            membership: canonical_membership(servers),
            promised: BTreeSet::new(),
        }
    }

    /// Records `from`'s answer. Only a promise from every member completes the attempt; one
    /// refusal ends it, and an answer from outside the membership changes nothing.
    pub fn answer(&mut self, from: NodeId, answer: Result<(), String>) -> Progress {
        let Some((_, node)) = self.membership.iter().find(|(id, _)| *id == from) else {
            return self.progress();
        };
        match answer {
            Ok(()) => {
                self.promised.insert(from);
                self.progress()
            }
            Err(why) => Progress::Refused(format!("{}: {why}", node.name)),
        }
    }

    fn progress(&self) -> Progress {
        if self
            .membership
            .iter()
            .all(|(id, _)| self.promised.contains(id))
        {
            Progress::Complete
        } else {
            Progress::Pending
        }
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
    fn the_old_rule_lapsed_by_time_or_gossip() {
        let mut p = LapsingPromise::default();
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

    #[test]
    fn a_durable_promise_binds_until_its_holder_releases_it() {
        let p = Promise::default().offer(1, 4).unwrap();
        assert_eq!(p.held, Some((1, 4)));
        assert!(
            matches!(p.offer(2, 1), Err(Refusal::Promised { .. })),
            "bound to 1, whatever time or gossip say"
        );
        assert_eq!(p.offer(1, 5).unwrap().held, Some((1, 5)), "a later attempt");
        assert!(
            matches!(p.offer(1, 3), Err(Refusal::Stale { .. })),
            "a delayed proposal of an earlier attempt"
        );
        assert_eq!(p.release(2, 9), p, "only the holder releases");
        assert_eq!(p.release(1, 3), p, "a delayed release of earlier attempts");
        let free = p.release(1, 4);
        assert_eq!(free.held, None);
        assert!(free.offer(2, 1).is_ok());
    }

    #[test]
    fn attempts_are_numbered_and_the_number_is_kept() {
        let (n, p) = Promise::default().next_attempt();
        assert_eq!((n, p.last_attempt), (1, 1));
        let p = p.offer(7, 2).unwrap();
        let (n, q) = p.next_attempt();
        assert_eq!((n, q.held), (2, Some((7, 2))));
    }

    #[test]
    fn acceptance_needs_no_state_inclusion_and_a_free_promise() {
        let m = canonical_membership(&[s(1, Some(3)), s(2, Some(3))]);
        let p = Promise::default();
        assert!(matches!(
            accept(2, "s2", true, &p, 1, 1, &m),
            Err(Refusal::HasState { .. })
        ));
        assert!(matches!(
            accept(3, "s3", false, &p, 1, 1, &m),
            Err(Refusal::NotIncluded { .. })
        ));
        assert_eq!(
            accept(2, "s2", false, &p, 1, 1, &m).unwrap().held,
            Some((1, 1))
        );
    }

    #[test]
    fn an_attempt_completes_only_with_every_member_promised() {
        let v = [s(1, Some(3)), s(2, Some(3)), s(3, Some(3))];
        let mut a = Attempt::new(1, &v);
        assert_eq!(a.answer(1, Ok(())), Progress::Pending);
        assert_eq!(a.answer(9, Ok(())), Progress::Pending, "not a member");
        assert_eq!(a.answer(2, Ok(())), Progress::Pending);
        assert_eq!(a.answer(2, Ok(())), Progress::Pending, "a duplicate");
        let mut b = a.clone();
        assert_eq!(a.answer(3, Ok(())), Progress::Complete);
        assert!(matches!(b.answer(3, Err("no".into())), Progress::Refused(w) if w == "s3: no"));
    }
}
