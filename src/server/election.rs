//! When a server stands for election: a pre-vote round first, so that a server cut off from
//! the others does not raise its term and, on healing, depose a leader that a quorum follows.
//! openraft's own election timer is off (`enable_elect = false` in [`super::raft_config`]);
//! this loop replaces it. The rules are in docs/servers.md ("Elections: a pre-vote first").
//!
//! The decisions are pure functions ([`due`], [`grants`], [`won`]) tested on their own; the
//! loop only feeds them metrics, clocks and answers.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ServerState;
use rand::RngExt;

use super::protocol::{PreVote, PreVoteAnswer, Request};
use super::types::{LogId, NodeId};
use super::Server;

/// Whether a server that is not leader should ask for pre-votes now: it has heard from no
/// leader for `timeout` (counted from `since`, its last contact or its start), and its last
/// round, if any, is `timeout` ago too.
pub fn due(now: Instant, since: Instant, last_round: Option<Instant>, timeout: Duration) -> bool {
    now.duration_since(since) >= timeout
        && last_round.is_none_or(|r| now.duration_since(r) >= timeout)
}

/// Whether a voter grants a pre-vote: it would vote itself (no leader heard within `lease`, and
/// not a leader with a confirmed lease), and the asker's log is at least as long as its own.
pub fn grants(
    heard_leader_ago: Option<Duration>,
    lease: Duration,
    leads_with_lease: bool,
    asker_last_log: Option<LogId>,
    own_last_log: Option<LogId>,
) -> bool {
    !leads_with_lease
        && heard_leader_ago.is_none_or(|ago| ago > lease)
        && asker_last_log >= own_last_log
}

/// Whether `granted` (the asker included) is a majority of every configuration of `joint`
/// (one configuration, or the old and new ones of a joint change).
pub fn won(joint: &[BTreeSet<NodeId>], granted: &BTreeSet<NodeId>) -> bool {
    !joint.is_empty()
        && joint
            .iter()
            .all(|c| c.intersection(granted).count() * 2 > c.len())
}

impl Server {
    /// `PreVote` as a voter receives it.
    pub(super) async fn answer_pre_vote(&self, p: PreVote) -> PreVoteAnswer {
        let heard = self
            .last_contact
            .lock()
            .expect("contact lock")
            .map(|t| t.elapsed());
        let own = self.last_log_id().await;
        // A server whose Raft has stopped (a fatal storage error) cannot vote: it must not
        // grant what it could not back with a real vote.
        let running = self.raft.metrics().borrow().running_state.is_ok();
        let granted = running
            && grants(
                heard,
                self.lease,
                self.leads_with_lease(),
                p.last_log_id,
                own,
            );
        tracing::debug!(candidate = %p.candidate, granted, "pre-vote");
        PreVoteAnswer { granted }
    }

    /// The last log id of this server's log (None while it is empty or unreadable: a server
    /// that cannot read its log should not win grants with it either).
    async fn last_log_id(&self) -> Option<LogId> {
        use openraft::storage::RaftLogStorage;
        let mut log = self.log.clone();
        log.get_log_state().await.ok()?.last_log_id
    }

    /// The election loop: every tick, stand if a pre-vote round says a majority would vote.
    pub(super) async fn election_loop(self: Arc<Self>) {
        let m = u64::from(self.cfg.raft_multiplier.max(1));
        let tick = Duration::from_millis(20 * m);
        let (min, max) = (100 * m, 200 * m);
        let fresh_timeout =
            || self.lease + Duration::from_millis(rand::rng().random_range(min..max));
        let started = Instant::now();
        let mut timeout = fresh_timeout();
        let mut last_round: Option<Instant> = None;
        loop {
            tokio::time::sleep(tick).await;
            let metrics = self.raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership();
            if metrics.state == ServerState::Leader || !membership.voter_ids().any(|v| v == self.id)
            {
                last_round = None;
                continue;
            }
            let joint: Vec<BTreeSet<NodeId>> = membership.get_joint_config().clone();
            if joint.iter().all(|c| c.len() == 1 && c.contains(&self.id)) {
                // The sole voter: its own vote is a majority.
                let _ = self.raft.trigger().elect().await;
                continue;
            }
            // Quiet since the last word from a leader, the last vote granted, or the start.
            let contact = *self.last_contact.lock().expect("contact lock");
            let voted = *self.voted.lock().expect("vote lock");
            let since = [contact, voted]
                .into_iter()
                .flatten()
                .fold(started, Instant::max);
            let now = Instant::now();
            if !due(now, since, last_round, timeout) {
                continue;
            }
            last_round = Some(now);
            timeout = fresh_timeout();
            if self
                .pre_vote_round(&joint, Duration::from_millis(min))
                .await
            {
                tracing::info!(
                    term = metrics.current_term,
                    "no leader heard for {:?}, and a majority would vote: standing for election",
                    now.duration_since(since)
                );
                let _ = self.raft.trigger().elect().await;
            }
        }
    }

    /// Asks every other voter of `joint` for a pre-vote, `deadline` each, all at once; whether
    /// a majority of every configuration grants it (this server's own grant included). Decides
    /// as soon as the grants make a majority: waiting for an unreachable voter's deadline would
    /// line up every follower's round behind the same silence, and they would all stand at
    /// once and split the vote.
    async fn pre_vote_round(&self, joint: &[BTreeSet<NodeId>], deadline: Duration) -> bool {
        use futures::stream::{FuturesUnordered, StreamExt};
        let request = PreVote {
            candidate: self.id,
            last_log_id: self.last_log_id().await,
        };
        let membership = self.membership();
        let voters: BTreeSet<NodeId> = joint.iter().flatten().copied().collect();
        let mut asks: FuturesUnordered<_> = voters
            .iter()
            .filter(|&&v| v != self.id)
            .filter_map(|&v| {
                let node = membership.get_node(&v)?;
                let addr = self.addr_of(v, node);
                let req = Request::PreVote(request.clone());
                Some(async move {
                    let answer = self.rpc.ask::<PreVoteAnswer>(&addr, req, deadline).await;
                    (v, answer.is_ok_and(|a| a.granted))
                })
            })
            .collect();
        let mut granted = BTreeSet::from([self.id]);
        while !won(joint, &granted) {
            match asks.next().await {
                Some((v, true)) => {
                    granted.insert(v);
                }
                Some((_, false)) => {}
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    const LEASE: Duration = Duration::from_millis(200);

    fn log(term: u64, index: u64) -> Option<LogId> {
        Some(LogId::new(CommittedLeaderId::new(term, 0), index))
    }

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn a_voter_that_heard_its_leader_within_the_lease_refuses() {
        let recent = Some(Duration::from_millis(50));
        assert!(!grants(recent, LEASE, false, log(3, 10), log(3, 10)));
        let long_ago = Some(Duration::from_millis(500));
        assert!(grants(long_ago, LEASE, false, log(3, 10), log(3, 10)));
        assert!(
            grants(None, LEASE, false, None, None),
            "never heard a leader"
        );
    }

    #[test]
    fn a_leader_with_a_confirmed_lease_refuses() {
        assert!(!grants(None, LEASE, true, log(3, 10), log(3, 10)));
    }

    #[test]
    fn an_asker_whose_log_is_behind_is_refused() {
        let long_ago = Some(Duration::from_secs(1));
        assert!(!grants(long_ago, LEASE, false, log(3, 9), log(3, 10)));
        assert!(
            !grants(long_ago, LEASE, false, log(2, 50), log(3, 10)),
            "older term"
        );
        assert!(!grants(long_ago, LEASE, false, None, log(1, 1)));
        assert!(
            grants(long_ago, LEASE, false, log(4, 1), log(3, 10)),
            "newer term"
        );
    }

    #[test]
    fn a_round_is_due_only_after_the_timeout_since_contact_and_since_the_last_round() {
        let t0 = Instant::now();
        let timeout = Duration::from_millis(300);
        assert!(!due(t0 + Duration::from_millis(100), t0, None, timeout));
        assert!(due(t0 + timeout, t0, None, timeout));
        let round = t0 + timeout;
        assert!(!due(
            round + Duration::from_millis(10),
            t0,
            Some(round),
            timeout
        ));
        assert!(due(round + timeout, t0, Some(round), timeout));
    }

    #[test]
    fn standing_needs_a_majority_of_every_configuration() {
        let one = set(&[1, 2, 3]);
        assert!(won(std::slice::from_ref(&one), &set(&[1, 2])));
        assert!(!won(std::slice::from_ref(&one), &set(&[1])));
        let five = set(&[1, 2, 3, 4, 5]);
        assert!(
            !won(std::slice::from_ref(&five), &set(&[1, 2])),
            "two of five"
        );
        assert!(won(&[five], &set(&[1, 2, 3])));
        // A joint change from {1,2,3} to {3,4,5}: a majority of each.
        let new = set(&[3, 4, 5]);
        assert!(!won(&[one.clone(), new.clone()], &set(&[1, 2, 3])));
        assert!(won(&[one, new], &set(&[2, 3, 4])));
        assert!(!won(&[], &set(&[1])));
    }
}
