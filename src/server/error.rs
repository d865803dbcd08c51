//! Why a server could not start, or could not carry out an operation, and what the caller
//! should do about it. The HTTP layer turns these into status codes and one line of text.

use std::path::PathBuf;
use std::time::Duration;

use uuid::Uuid;

use super::rpc::RpcError;

/// Why a server could not start. Each of these stops the agent.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A `peers.json` in the data directory could not be applied; the variant says why.
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    /// The Raft store could not be opened; the variant says why and what to fix.
    #[error(transparent)]
    Store(#[from] super::store::OpenError),
    /// The Raft timings derived from `raft_multiplier` are invalid. Fix the configuration.
    #[error("{0}")]
    Config(String),
    /// openraft refused to start on the stored state. Report it; restarting will not help.
    #[error("cannot start Raft: {0}")]
    Raft(String),
    /// The bootstrap promise file cannot be read. Starting without it could break a promise
    /// this server gave (docs/state.md): fix or remove the file (see docs/servers.md).
    #[error("cannot read the bootstrap promise {path}: {source}")]
    Promise {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why a recovery from a peers file could not be applied (docs/operations.md). The operator
/// fixes what the variant names and runs it again.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    /// The peers file is not valid: the text names the entry and what is wrong. Fix the file.
    #[error("{0}")]
    PeersFile(String),
    /// The directory is not a stopped muster server's data directory (no node id, no Raft
    /// state, or an agent still holds it). Point at the right one, or stop the agent first.
    #[error("{0}")]
    DataDir(String),
    /// `raft.redb` could not be read or written, or is damaged. Check the disk.
    #[error("{0}")]
    Storage(String),
    /// `peers.json` exists but could not be read. Check its permissions.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The recovery was applied, but `peers.json` could not be deleted: delete it by hand
    /// before the next start, or it is applied again.
    #[error("recovered, but cannot delete {}: {source}; delete it before the next start", .path.display())]
    NotDeleted {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why a bootstrap attempt failed. The gate pauses for a random moment and tries again.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// A server's status could not be confirmed: it may hold Raft state. Retry.
    #[error("cannot confirm the status of {name}: {reason}")]
    Probe { name: String, reason: String },
    /// A proposed member's port answered as another server: it is left out from now on
    /// (docs/security.md, "The server port has the last word"). Retry without it.
    #[error("{0}")]
    Impostor(String),
    /// A server refused the proposal or did not answer it (which, and why). Retry.
    #[error("proposal refused: {0}")]
    Refused(String),
    /// This server was initialised with another membership meanwhile. Retrying is harmless:
    /// the gate sees the state and stops.
    #[error("{name} is already initialised with another membership")]
    OtherMembership { name: String },
    /// openraft refused to initialise, in its words. Retry.
    #[error("initialise failed on {name}: {reason}")]
    Initialise { name: String, reason: String },
}

/// Why a membership change, an operator request or a request for the leader failed.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// This server is not (or no longer) the leader. Send the request to `leader` (its RPC
    /// address) when known; otherwise retry shortly, once a leader is elected.
    #[error("this server is not the leader{}", leader_suffix(.leader))]
    NotLeader { leader: Option<String> },
    /// No leader is known now: an election is under way, or quorum is lost. Retry after a
    /// short wait. `needs` says what needed a leader.
    #[error("there is no leader; {needs}")]
    NoLeader { needs: &'static str },
    /// A leader is known but not its address. Retry shortly: gossip catches up.
    #[error("the leader's address is unknown")]
    LeaderAddressUnknown,
    /// The leader could not be reached, or did not answer in time. Back off, then retry.
    #[error("cannot reach the leader: {0}")]
    Unreachable(#[source] RpcError),
    /// A membership change did not commit in time because too many voters are unreachable.
    /// Do not retry in a loop: the operator brings voters back, or recovers (docs/servers.md).
    #[error(
        "the change did not commit within {after:?}: the Raft configuration has lost its quorum \
         (too many voters unreachable); see docs/servers.md"
    )]
    QuorumLost { after: Duration },
    /// The change did not commit within `after`. Retry later (the leader's next round does).
    #[error("not committed within {after:?}")]
    Timeout { after: Duration },
    /// The server named is not in the Raft configuration. Stop: check the id or address.
    #[error("id {:?} was not found in the Raft configuration", .id.to_string())]
    NotInConfiguration { id: Uuid },
    /// Raft refused or failed the change for another reason, in its words. Report it.
    #[error("{0}")]
    Raft(String),
    /// A leadership transfer was refused or did not happen: the text names the server and
    /// what to do (docs/servers.md, "Transferring leadership").
    #[error("{0}")]
    Transfer(String),
    /// The leader refused the request, in its words (the text crossed the RPC port). Report it.
    #[error("{0}")]
    Refused(String),
}

fn leader_suffix(leader: &Option<String>) -> String {
    leader
        .as_ref()
        .map(|l| format!(" (leader: {l})"))
        .unwrap_or_default()
}
