//! openraft's network, over the server RPC port.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::AnyError;

use super::rpc::{Request, Response, RpcClient, RpcError};
use super::types::{NodeId, ServerNode, TypeConfig};

/// The address each server is reached at now, by node id, as gossip last saw it.
///
/// Raft membership is keyed by node id (user-pains A1: Consul keyed it by address, and a server
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

/// When each server last acknowledged an AppendEntries from this one (the leader's view of
/// "last contact", which openraft 0.9 does not report per server).
#[derive(Clone, Default)]
pub struct Contacts(Arc<RwLock<HashMap<NodeId, std::time::Instant>>>);

impl Contacts {
    fn record(&self, id: NodeId) {
        self.0
            .write()
            .expect("contacts lock")
            .insert(id, std::time::Instant::now());
    }

    /// How long ago `id` last answered, if ever.
    pub fn since(&self, id: NodeId) -> Option<std::time::Duration> {
        self.0
            .read()
            .expect("contacts lock")
            .get(&id)
            .map(|t| t.elapsed())
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
            RpcError::Closed { .. } => RPCError::Network(NetworkError::new(&e)),
        }
    }

    fn unexpected<E: std::error::Error>(&self) -> RPCError<NodeId, ServerNode, E> {
        RPCError::Network(NetworkError::new(&AnyError::error(format!(
            "unexpected answer from {}",
            self.addr()
        ))))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        match self
            .rpc
            .call(&self.addr(), Request::AppendEntries(rpc), option.hard_ttl())
            .await
        {
            Ok(Response::AppendEntries(Ok(r))) => {
                self.contacts.record(self.target);
                Ok(r)
            }
            Ok(Response::AppendEntries(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.unexpected()),
            Err(e) => Err(self.failure(e, RPCTypes::AppendEntries)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self
            .rpc
            .call(
                &self.addr(),
                Request::InstallSnapshot(rpc),
                option.hard_ttl(),
            )
            .await
        {
            Ok(Response::InstallSnapshot(Ok(r))) => Ok(r),
            Ok(Response::InstallSnapshot(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.unexpected()),
            Err(e) => Err(self.failure(e, RPCTypes::InstallSnapshot)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        match self
            .rpc
            .call(&self.addr(), Request::Vote(rpc), option.hard_ttl())
            .await
        {
            Ok(Response::Vote(Ok(r))) => Ok(r),
            Ok(Response::Vote(Err(e))) => {
                Err(RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Ok(_) => Err(self.unexpected()),
            Err(e) => Err(self.failure(e, RPCTypes::Vote)),
        }
    }
}
