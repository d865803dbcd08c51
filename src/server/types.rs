//! The Raft type configuration, declared once: what an entry carries, who a node is.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use super::id::{node_id, node_uuid, NodeId};

/// A server as Raft knows it: where its RPC port is, and its node name for display.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ServerNode {
    /// `ip:port` of the server RPC listener.
    pub addr: String,
    /// Node name, as in gossip.
    pub name: String,
}

impl fmt::Display for ServerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

/// A command replicated through the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Does nothing; used to check that the cluster commits.
    Noop,
    /// Names the cluster. Proposed by the first leader; only the first one applied counts, so
    /// every server ends with the same id.
    SetClusterId(Uuid),
    /// A change to the KV store or the catalog.
    State(super::state::StateCommand),
    /// Concurrent writes the leader grouped into one entry, applied in order at its index
    /// (docs/state.md, "Batched writes"). Read from logs written before [`Command::Writes`].
    Batch(Vec<super::state::StateCommand>),
    /// The leader's batch of writes, each with its request id, so that a retried request is
    /// applied once (docs/state.md, "Request ids"); `stamp_ms` is the leader's wall clock
    /// when the newest of them arrived, which ages the table of ids alike on every replica.
    /// Keep this variant last: postcard numbers variants.
    Writes {
        stamp_ms: u64,
        writes: Vec<super::state::Write>,
    },
}

/// What applying a command returns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The cluster id after the command.
    pub cluster_id: Option<Uuid>,
    /// Whether the command took effect (false: a failed CAS).
    pub ok: bool,
    /// The log index of the entry.
    pub index: u64,
    /// For a `Batch`: whether each of its commands took effect, in order.
    #[serde(default)]
    pub oks: Vec<bool>,
    /// For `Writes`: each write's outcome, in order (a retried request's is its first).
    #[serde(default)]
    pub outcomes: Vec<super::state::Outcome>,
}

openraft::declare_raft_types!(
    /// muster's Raft types.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = ServerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StoredMembership = openraft::StoredMembership<NodeId, ServerNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, ServerNode>;
pub type StorageError = openraft::StorageError<NodeId>;
