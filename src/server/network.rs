//! openraft's network, over the server RPC port.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::EntryPayload;

use super::protocol::Request;
use super::rpc::{RpcClient, RpcError};
use super::types::{Command, Entry, NodeId, ServerNode, TypeConfig};

/// Most bytes of entries in one AppendEntries. openraft 0.9 gives an AppendEntries
/// `heartbeat_interval` (40 ms) to complete, the follower's fsync included, and sends the same
/// entries again when it runs out: a payload too big to make it in time (300 entries of
/// 512 KiB values, say) would be retried forever (docs/state.md).
pub(super) const MAX_APPEND_BYTES: usize = 1 << 20;

/// Bytes an entry carries, near enough for [`MAX_APPEND_BYTES`].
fn entry_weight(e: &Entry) -> usize {
    // Every variant that carries writes must be weighed here, or a follower that is behind
    // is sent more than it can take within a heartbeat, again and again.
    64 + match &e.payload {
        EntryPayload::Normal(Command::State(c)) => super::batch::weight(c),
        EntryPayload::Normal(Command::Batch(cs)) => cs.iter().map(super::batch::weight).sum(),
        // A request id is 17 bytes, a stamp at most 10: small beside the 64 of slack.
        EntryPayload::Normal(Command::Writes { writes, .. }) => writes
            .iter()
            .map(|w| 17 + super::batch::weight(&w.cmd))
            .sum(),
        _ => 0,
    }
}

/// How many of `entries` fit in one AppendEntries, if not all: at least one, since a single
/// entry cannot be split.
fn entries_that_fit(entries: &[Entry]) -> Option<usize> {
    let mut total = 0;
    for (i, e) in entries.iter().enumerate() {
        total += entry_weight(e);
        if total > MAX_APPEND_BYTES {
            return Some(i.max(1));
        }
    }
    None
}

/// The address each server is reached at now, by node id, as gossip last saw it.
///
/// Raft membership is keyed by node id (Consul keyed it by address, docs/reference/consul.md, and a server
/// back with a new IP became a phantom peer). The address stored in the membership is only a
/// hint written when the server was added: a server restarted with its data on a new IP, or a
/// whole cluster cold-started on new IPs, must be reachable before any leader exists to rewrite
/// the membership, so every call looks here first.
#[derive(Clone, Default)]
pub struct AddressBook(Arc<RwLock<HashMap<NodeId, String>>>);

impl AddressBook {
    /// Replaces the whole book (gossip's current view of alive servers).
    pub fn replace(&self, entries: HashMap<NodeId, String>) {
        *self.0.write().expect("address book lock") = entries;
    }

    /// The current address of `id`, if gossip knows it.
    pub fn get(&self, id: NodeId) -> Option<String> {
        self.0.read().expect("address book lock").get(&id).cloned()
    }
}

/// What the leader knows of each server's answers: when it last answered an AppendEntries
/// (autopilot's "last contact", which openraft 0.9 does not report per server), and the
/// newest AppendEntries it accepted, by term and by the instant it was *sent* (the lease,
/// [`Contacts::accepted_within`]).
#[derive(Clone, Default)]
pub struct Contacts(Arc<RwLock<ContactBook>>);

#[derive(Default)]
struct ContactBook {
    answered: HashMap<NodeId, Instant>,
    accepted: HashMap<NodeId, (u64, Instant)>,
}

impl Contacts {
    /// `id` answered an AppendEntries of `term` sent at `sent`; `accepted` unless it answered
    /// that its vote is higher (then this server is not its leader).
    fn record(&self, id: NodeId, term: u64, sent: Instant, accepted: bool) {
        let mut book = self.0.write().expect("contacts lock");
        book.answered.insert(id, Instant::now());
        if accepted {
            let newer = book
                .accepted
                .get(&id)
                .is_none_or(|&(t, at)| (t, at) < (term, sent));
            if newer {
                book.accepted.insert(id, (term, sent));
            }
        }
    }

    /// How long ago `id` last answered, if ever.
    pub fn since(&self, id: NodeId) -> Option<Duration> {
        self.0
            .read()
            .expect("contacts lock")
            .answered
            .get(&id)
            .map(|t| t.elapsed())
    }

    /// Whether `id` accepted an AppendEntries of `term` sent less than `lease` ago, read on
    /// the clock now: a follower that accepted it refuses every vote for a lease from its
    /// arrival, which is later than its sending.
    pub fn accepted_within(&self, id: NodeId, term: u64, lease: Duration) -> bool {
        self.0
            .read()
            .expect("contacts lock")
            .accepted
            .get(&id)
            .is_some_and(|&(t, sent)| t == term && sent.elapsed() < lease)
    }
}

/// Makes one [`PeerClient`] per target; they share the connection pool.
#[derive(Clone)]
pub struct Network {
    pub rpc: Arc<RpcClient>,
    pub local: NodeId,
    pub book: AddressBook,
    pub contacts: Contacts,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &ServerNode) -> PeerClient {
        PeerClient {
            rpc: self.rpc.clone(),
            local: self.local,
            target,
            addr: node.addr.clone(),
            book: self.book.clone(),
            contacts: self.contacts.clone(),
        }
    }
}

pub struct PeerClient {
    rpc: Arc<RpcClient>,
    local: NodeId,
    target: NodeId,
    /// The address in the membership, used when gossip does not know the target.
    addr: String,
    book: AddressBook,
    contacts: Contacts,
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, ServerNode, RaftError<NodeId, E>>>;

impl PeerClient {
    fn addr(&self) -> String {
        self.book
            .get(self.target)
            .unwrap_or_else(|| self.addr.clone())
    }

    fn failure<E: std::error::Error>(
        &self,
        e: RpcError,
        action: RPCTypes,
    ) -> RPCError<NodeId, ServerNode, E> {
        match e {
            RpcError::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&e)),
            RpcError::Timeout { timeout, .. } => RPCError::Timeout(Timeout {
                action,
                id: self.local,
                target: self.target,
                timeout,
            }),
            RpcError::Closed { .. } | RpcError::UnexpectedAnswer { .. } => {
                RPCError::Network(NetworkError::new(&e))
            }
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        if let Some(fit) = entries_that_fit(&rpc.entries).filter(|n| *n < rpc.entries.len()) {
            // openraft retries at once with this many entries.
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fit as u64),
            ));
        }
        let (term, sent) = (rpc.vote.leader_id().term, Instant::now());
        let answer: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> = self
            .rpc
            .ask(&self.addr(), Request::AppendEntries(rpc), option.hard_ttl())
            .await
            .map_err(|e| self.failure(e, RPCTypes::AppendEntries))?;
        let r = answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))?;
        let accepted = !matches!(r, AppendEntriesResponse::HigherVote(_));
        self.contacts.record(self.target, term, sent, accepted);
        Ok(r)
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let answer: Result<
            InstallSnapshotResponse<NodeId>,
            RaftError<NodeId, InstallSnapshotError>,
        > = self
            .rpc
            .ask(
                &self.addr(),
                Request::InstallSnapshot(rpc),
                option.hard_ttl(),
            )
            .await
            .map_err(|e| self.failure(e, RPCTypes::InstallSnapshot))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let answer: Result<VoteResponse<NodeId>, RaftError<NodeId>> = self
            .rpc
            .ask(&self.addr(), Request::Vote(rpc), option.hard_ttl())
            .await
            .map_err(|e| self.failure(e, RPCTypes::Vote))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::state::StateCommand;

    fn set(bytes: usize) -> Entry {
        Entry {
            log_id: Default::default(),
            payload: EntryPayload::Normal(Command::State(StateCommand::KvSet {
                key: "k".into(),
                value: vec![0; bytes],
                flags: 0,
                cas: None,
            })),
        }
    }

    #[test]
    fn append_entries_are_cut_at_a_mebibyte_but_never_below_one_entry() {
        assert_eq!(entries_that_fit(&[set(100), set(100), set(100)]), None);
        assert_eq!(
            entries_that_fit(&[set(400 << 10), set(400 << 10), set(400 << 10)]),
            Some(2)
        );
        // A single entry over the limit still goes, alone.
        assert_eq!(entries_that_fit(&[set(3 << 20), set(10)]), Some(1));
        let batch = Entry {
            log_id: Default::default(),
            payload: EntryPayload::Normal(Command::Batch(vec![
                StateCommand::KvDelete {
                    key: "a".into(),
                    recurse: false,
                    cas: None,
                };
                3
            ])),
        };
        assert_eq!(entry_weight(&batch), 64 + 3);
        // The batcher's entries (request ids) are weighed too: 3 of 400 KiB do not fit.
        let writes = |bytes: usize| Entry {
            log_id: Default::default(),
            payload: EntryPayload::Normal(Command::Writes {
                stamp_ms: 1,
                writes: vec![crate::server::state::Write {
                    id: Some(uuid::Uuid::from_u128(1)),
                    cmd: StateCommand::KvSet {
                        key: "k".into(),
                        value: vec![0; bytes],
                        flags: 0,
                        cas: None,
                    },
                }],
            }),
        };
        assert_eq!(entry_weight(&writes(100)), 64 + 17 + 101);
        assert_eq!(
            entries_that_fit(&[writes(400 << 10), writes(400 << 10), writes(400 << 10)]),
            Some(2)
        );
    }
}
