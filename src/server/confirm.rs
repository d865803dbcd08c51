//! Asking a member's server port who it is before acting on what its gossip tags claim
//! (docs/security.md, "The server port has the last word"): the leader before it adds or
//! moves a server, the bootstrap gate before it trusts a `cluster` tag or counts a server in
//! a proposal. The judgements are pure ([`judge`], [`judge_claim`]); [`Server::identity_of`]
//! asks, and remembers what was not a confirmation for [`RECHECK_AFTER`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::protocol::{PeerStatus, Request, ServerView};
use super::types::NodeId;
use super::Server;

/// How long an answer that confirmed nothing is remembered before the port is asked again.
pub const RECHECK_AFTER: Duration = Duration::from_secs(5);

/// How long a member whose port answered as another server stays left out of the gate's
/// count before it is asked again.
pub const IMPOSTOR_HOLD: Duration = Duration::from_secs(300);

/// How long one question may take.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// What a member's server port said when asked who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// It answered with the member's own id.
    Confirmed(PeerStatus),
    /// It answered with another server's id: the member points at another server's port.
    Impostor { answered: NodeId },
    /// No answer (unreachable, TLS refused, a timeout): nothing is known either way.
    Unanswered(String),
}

/// Judges the answer of the port of a member that claims to be server `claimed`.
pub fn judge(claimed: NodeId, answer: Result<PeerStatus, String>) -> Identity {
    match answer {
        Ok(status) if status.node_id == claimed => Identity::Confirmed(status),
        Ok(status) => Identity::Impostor {
            answered: status.node_id,
        },
        Err(why) => Identity::Unanswered(why),
    }
}

/// What the bootstrap gate makes of a member's `cluster` tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The claimer's port confirms it: a formed cluster exists; this server must not form
    /// another.
    Confirmed,
    /// The claimer's port answers as that server, but belongs to no cluster and holds no
    /// state: the tag is wrong and is ignored (the server still counts).
    Ignored(String),
    /// The claimer's port answers as another server: leave the member out altogether.
    Impostor(String),
    /// No answer: the gate must wait, since an unreachable cluster and a forger look the same.
    Unconfirmed(String),
}

/// Judges a `cluster` claim of `claimer` from what its port said.
pub fn judge_claim(claimer: &ServerView, identity: &Identity) -> Claim {
    let claimed = claimer
        .cluster_id
        .map(|c| c.to_string())
        .unwrap_or_default();
    match identity {
        Identity::Confirmed(s) if s.cluster_id.is_some() || s.has_state => Claim::Confirmed,
        Identity::Confirmed(_) => Claim::Ignored(format!(
            "server {} advertises cluster {claimed}, but its server port says it belongs to \
             none and holds no Raft state; the tag is ignored",
            claimer.name
        )),
        Identity::Impostor { answered } => Claim::Impostor(impostor_line(claimer, *answered)),
        Identity::Unanswered(why) => Claim::Unconfirmed(format!(
            "server {} advertises cluster {claimed}, not confirmed by its server port {} ({why}); \
             not bootstrapping past it: asking again every {}s (if it is a forger, muster \
             force-leave {})",
            claimer.name,
            claimer.rpc_addr,
            RECHECK_AFTER.as_secs(),
            claimer.name
        )),
    }
}

/// The warning about a member whose advertised port answers as another server.
pub fn impostor_line(v: &ServerView, answered: NodeId) -> String {
    format!(
        "gossip member {} claims server id {} at {}, but that port answers as server {}: the \
         member is not taken for a server",
        v.name,
        super::id::node_uuid(v.id),
        v.rpc_addr,
        super::id::node_uuid(answered)
    )
}

/// Answers that confirmed nothing, by member id and address, and when each was had.
#[derive(Debug, Default)]
pub struct RecentAnswers {
    answers: Mutex<HashMap<(NodeId, String), (Identity, Instant)>>,
}

impl RecentAnswers {
    /// The remembered answer for `v`, if it is recent.
    fn fresh(&self, v: &ServerView) -> Option<Identity> {
        let answers = self.answers.lock().expect("answers lock");
        let (identity, at) = answers.get(&(v.id, v.rpc_addr.clone()))?;
        (at.elapsed() < RECHECK_AFTER).then(|| identity.clone())
    }

    /// Whether `v`'s port answered as another server within [`IMPOSTOR_HOLD`].
    pub(super) fn is_impostor(&self, v: &ServerView) -> bool {
        let answers = self.answers.lock().expect("answers lock");
        matches!(
            answers.get(&(v.id, v.rpc_addr.clone())),
            Some((Identity::Impostor { .. }, at)) if at.elapsed() < IMPOSTOR_HOLD
        )
    }

    /// Keeps `identity` for `v` (a confirmation clears it); true when the verdict changed.
    fn record(&self, v: &ServerView, identity: &Identity) -> bool {
        let mut answers = self.answers.lock().expect("answers lock");
        let key = (v.id, v.rpc_addr.clone());
        let kind = |i: &Identity| std::mem::discriminant(i);
        let changed = answers
            .get(&key)
            .is_none_or(|(old, _)| kind(old) != kind(identity));
        match identity {
            Identity::Confirmed(_) => {
                answers.remove(&key);
            }
            other => {
                answers.insert(key, (other.clone(), Instant::now()));
            }
        }
        // Bounded: members come and go; forget what is long past.
        answers.retain(|_, (_, at)| at.elapsed() < IMPOSTOR_HOLD);
        changed && !matches!(identity, Identity::Confirmed(_))
    }
}

impl Server {
    /// Asks `v`'s server port who it is (itself: its own status), unless an answer that
    /// confirmed nothing was had lately. An impostor is logged once per change of verdict.
    pub(super) async fn identity_of(&self, v: &ServerView) -> Identity {
        if let Some(recent) = self.recent_answers.fresh(v) {
            return recent;
        }
        self.ask_identity(v).await
    }

    /// Asks `v`'s port now, whatever was answered lately (the bootstrap probe: a proposal
    /// must not fail on a silence of seconds ago).
    pub(super) async fn ask_identity(&self, v: &ServerView) -> Identity {
        if v.id == self.id {
            return Identity::Confirmed(self.status());
        }
        let answer = self
            .rpc
            .ask(&v.rpc_addr, Request::PeerStatus, ASK_TIMEOUT)
            .await
            .map_err(|e| e.to_string());
        let identity = judge(v.id, answer);
        if self.recent_answers.record(v, &identity) {
            match &identity {
                Identity::Impostor { answered } => {
                    tracing::warn!("{}", impostor_line(v, *answered))
                }
                Identity::Unanswered(why) => tracing::debug!(
                    server = %v.name, addr = %v.rpc_addr, error = %why,
                    "a server's port did not answer who it is"
                ),
                Identity::Confirmed(_) => {}
            }
        }
        identity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn status(id: NodeId, cluster: Option<Uuid>, has_state: bool) -> PeerStatus {
        PeerStatus {
            node_id: id,
            name: "x".into(),
            has_state,
            cluster_id: cluster,
            leader: None,
            members: vec![],
        }
    }

    fn claimer() -> ServerView {
        ServerView {
            id: 7,
            name: "forger".into(),
            rpc_addr: "127.0.0.9:8300".into(),
            alive: true,
            datacenter: "dc1".into(),
            expect: None,
            bootstrap_mode: false,
            cluster_id: Some(Uuid::from_u128(1)),
        }
    }

    #[test]
    fn only_an_answer_with_the_members_own_id_confirms_it() {
        assert!(matches!(
            judge(7, Ok(status(7, None, false))),
            Identity::Confirmed(_)
        ));
        assert_eq!(
            judge(7, Ok(status(8, None, false))),
            Identity::Impostor { answered: 8 }
        );
        assert_eq!(
            judge(7, Err("connection refused".into())),
            Identity::Unanswered("connection refused".into())
        );
    }

    #[test]
    fn a_cluster_tag_counts_only_when_the_claimers_port_backs_it() {
        let c = claimer();
        let cluster = Some(Uuid::from_u128(1));
        assert_eq!(
            judge_claim(&c, &judge(7, Ok(status(7, cluster, true)))),
            Claim::Confirmed
        );
        // Raft state without a name yet (a member of a cluster whose leader has not named
        // it) is a cluster all the same.
        assert_eq!(
            judge_claim(&c, &judge(7, Ok(status(7, None, true)))),
            Claim::Confirmed
        );
        assert!(matches!(
            judge_claim(&c, &judge(7, Ok(status(7, None, false)))),
            Claim::Ignored(l) if l.contains("belongs to none")
        ));
        // Another server's port answering for the claimer, whatever it says of itself.
        assert!(matches!(
            judge_claim(&c, &judge(7, Ok(status(8, cluster, true)))),
            Claim::Impostor(l) if l.contains("forger") && l.contains("answers as server")
        ));
        // Silence holds the gate: never bootstrap past what cannot be ruled out.
        assert!(matches!(
            judge_claim(&c, &judge(7, Err("timed out".into()))),
            Claim::Unconfirmed(l) if l.contains("timed out") && l.contains("force-leave forger")
        ));
    }

    #[test]
    fn answers_that_confirm_nothing_are_kept_a_while_and_logged_once_per_change() {
        let recent = RecentAnswers::default();
        let c = claimer();
        let silent = Identity::Unanswered("timed out".into());
        assert!(recent.record(&c, &silent));
        assert!(
            !recent.record(&c, &silent),
            "the same verdict again is not news"
        );
        assert_eq!(recent.fresh(&c), Some(silent));
        let impostor = Identity::Impostor { answered: 8 };
        assert!(recent.record(&c, &impostor));
        assert!(!recent.record(&c, &Identity::Confirmed(status(7, None, false))));
        assert_eq!(recent.fresh(&c), None, "a confirmation is not remembered");
    }
}
