//! Full-state exchange over TCP: the join handshake and periodic anti-entropy (Serf's push/pull,
//! docs/reference/consul.md).
//!
//! A joiner connects to a member's gossip port, sends its [`SyncState`] and receives the member's
//! in return; both merge. This is where a join is *accepted or refused* — a duplicate node name,
//! another datacenter, a key mismatch — with a reason both sides log, before any SWIM packet is
//! trusted. Frames are a 4-byte big-endian length and an [envelope](super::envelope).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use foca::Member as SwimMember;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::driver::Command;
use super::envelope::{Kind, OpenError, Sealer};
use super::identity::NodeIdentity;
use super::meta::MemberMeta;
use super::stats::Stats;
use crate::frame::{read_frame, write_frame};

/// Largest frame accepted: a full state of a few thousand members fits with room to spare.
pub const MAX_FRAME: usize = 4 << 20;

/// Everything one agent knows: SWIM states and the newest metadata of each member.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncState {
    pub from: NodeIdentity,
    pub members: Vec<SwimMember<NodeIdentity>>,
    pub metas: Vec<MemberMeta>,
}

/// Why joining one address failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    /// Nothing listens there (yet): retry later, the retry-join loop backs off.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The peer did not answer in time: retry later.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection broke mid-exchange: retry later.
    #[error("connection failed: {0}")]
    Io(String),
    /// The peer (or this agent, reading the peer's state) refused the join, with the reason.
    /// Retrying does not help: the operator must fix names, keys or datacenters.
    #[error("refused: {0}")]
    Refused(String),
    /// The peer's answer could not be opened (key or datacenter mismatch): fix the settings.
    #[error("{0}")]
    Open(OpenError),
    /// The peer answered something that is not a sync reply: it is not a muster agent of
    /// this version. Do not retry.
    #[error("bad answer: {0}")]
    Protocol(String),
    /// This agent is shutting down: stop.
    #[error("this agent is shutting down")]
    Closed,
}

/// Why this agent refused a peer's state. The text is what both sides log, and what the
/// refused joiner prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Our own name is claimed by another live node.
    #[error("node name {name:?} is claimed by two live nodes: {} at {} and {} at {}; give one of them another -node name", .ours.0, .ours.1, .theirs.0, .theirs.1)]
    NameClaimedTwice {
        name: String,
        ours: (Uuid, SocketAddr),
        theirs: (Uuid, SocketAddr),
    },
    /// Our node id is used under another name (a copied data_dir).
    #[error("node id {node_id} is already in use by the live node {holder:?}; a copied data_dir? remove its node-id file")]
    NodeIdInUse { node_id: Uuid, holder: String },
    /// The name belongs to another live member.
    #[error("node name {name:?} is already in use by the live node {} at {}; give the joining agent another -node name", .holder.0, .holder.1)]
    NameInUse {
        name: String,
        holder: (Uuid, SocketAddr),
    },
    /// The joiner's envelope could not be opened: keys or datacenters differ.
    #[error("{}", envelope_reason(.0))]
    Envelope(OpenError),
    /// The request opened but its state did not decode.
    #[error("malformed join state: {0}")]
    MalformedState(String),
    /// A message that does not belong on the sync port.
    #[error("unexpected {0:?} message on the sync port")]
    UnexpectedKind(Kind),
}

fn envelope_reason(e: &OpenError) -> String {
    match e {
        OpenError::Unencrypted => "the agent at this address requires gossip encryption; start with the cluster's -encrypt key".to_string(),
        OpenError::UnexpectedEncrypted => "the agent at this address has no gossip key but the joiner encrypts; the -encrypt settings differ".to_string(),
        OpenError::Decrypt => "the agent at this address could not decrypt the join: the -encrypt keys differ".to_string(),
        OpenError::WrongDatacenter(dc) => format!("the joiner is in datacenter {dc:?}, the agent at this address in another; datacenters never share a LAN pool"),
        OpenError::Malformed => "malformed join message".to_string(),
    }
}

impl Refusal {
    /// Whether an operator must act (keys, datacenter, names): logged as a warning. Garbage on
    /// the port is only counted and logged at debug level.
    fn operator_must_act(&self) -> bool {
        !matches!(
            self,
            Refusal::Envelope(OpenError::Malformed)
                | Refusal::MalformedState(_)
                | Refusal::UnexpectedKind(_)
        )
    }
}

/// Seals our state as the request of a sync.
pub(super) fn request_frame(sealer: &Sealer, ours: &SyncState) -> Result<Vec<u8>, SyncError> {
    let payload = postcard::to_allocvec(ours).map_err(|e| SyncError::Protocol(e.to_string()))?;
    Ok(sealer.seal(Kind::SyncRequest, &payload))
}

/// Opens a peer's sync request. A refusal here is counted in `stats` like a dropped datagram.
pub(super) fn open_request(
    sealer: &Sealer,
    stats: &Stats,
    frame: &[u8],
) -> Result<SyncState, Refusal> {
    match sealer.open(frame) {
        Err(e) => {
            stats.count_drop(&e);
            Err(Refusal::Envelope(e))
        }
        Ok((Kind::SyncRequest, body)) => postcard::from_bytes::<SyncState>(&body)
            .map_err(|e| Refusal::MalformedState(e.to_string())),
        Ok((kind, _)) => Err(Refusal::UnexpectedKind(kind)),
    }
}

/// The answer to a sync request: our state, or the refusal (readable by any peer, whatever its
/// key, when its envelope was the problem). `None` if our state cannot be encoded.
pub(super) fn answer_frame(
    sealer: &Sealer,
    answer: &Result<SyncState, Refusal>,
) -> Option<Vec<u8>> {
    match answer {
        Ok(ours) => postcard::to_allocvec(ours)
            .ok()
            .map(|bytes| sealer.seal(Kind::SyncReply, &bytes)),
        Err(reason @ Refusal::Envelope(_)) => Some(Sealer::seal_plain_refusal(&reason.to_string())),
        Err(reason) => Some(sealer.seal(Kind::Refused, reason.to_string().as_bytes())),
    }
}

/// Opens the answer to our sync request: the peer's state, or why it refused.
pub(super) fn open_reply(sealer: &Sealer, frame: &[u8]) -> Result<SyncState, SyncError> {
    let (kind, body) = sealer.open(frame).map_err(SyncError::Open)?;
    match kind {
        Kind::SyncReply => {
            postcard::from_bytes(&body).map_err(|e| SyncError::Protocol(e.to_string()))
        }
        Kind::Refused => Err(SyncError::Refused(
            String::from_utf8_lossy(&body).into_owned(),
        )),
        other => Err(SyncError::Protocol(format!("unexpected {other:?} message"))),
    }
}

/// Counts and logs a refusal this agent makes.
fn log_refusal(stats: &Stats, peer: SocketAddr, reason: &Refusal) {
    stats.syncs_refused.fetch_add(1, Ordering::Relaxed);
    if reason.operator_must_act() {
        tracing::warn!(%peer, %reason, "refused gossip join");
    } else {
        tracing::debug!(%peer, %reason, "refused gossip join");
    }
}

/// The part of the gossip layer that talks TCP; cheap to clone. Sync states are merged by the
/// core, reached through the driver's command channel.
#[derive(Clone)]
pub struct Syncer {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) sealer: Arc<Sealer>,
    pub(super) stats: Arc<Stats>,
    pub(super) timeout: Duration,
    /// Source address of outgoing connections: the agent's bind address, so that traffic leaves
    /// from the interface the operator chose (and tests stay on their own 127.0.0.x).
    pub(super) bind_ip: Option<std::net::IpAddr>,
}

impl Syncer {
    /// Exchanges full state with the agent at `addr`. Returns how many members it knew.
    pub async fn sync_with(&self, addr: SocketAddr) -> Result<usize, SyncError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Snapshot(tx))
            .await
            .map_err(|_| SyncError::Closed)?;
        let ours = rx.await.map_err(|_| SyncError::Closed)?;
        let exchange = async {
            let mut stream = self
                .connect(addr)
                .await
                .map_err(|e| SyncError::Connect(e.to_string()))?;
            let frame = request_frame(&self.sealer, &ours)?;
            write_frame(&mut stream, &frame)
                .await
                .map_err(|e| SyncError::Io(e.to_string()))?;
            read_frame(&mut stream, MAX_FRAME)
                .await
                .map_err(|e| SyncError::Io(e.to_string()))
        };
        let reply = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| SyncError::Timeout(self.timeout))??;
        self.stats.syncs_out.fetch_add(1, Ordering::Relaxed);
        let theirs = open_reply(&self.sealer, &reply)?;
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::SyncReply {
                state: theirs,
                reply: tx,
            })
            .await
            .map_err(|_| SyncError::Closed)?;
        rx.await
            .map_err(|_| SyncError::Closed)?
            .map_err(|r| SyncError::Refused(r.to_string()))
    }

    async fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let socket = if addr.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        if let Some(ip) = self
            .bind_ip
            .filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == addr.is_ipv4())
        {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        socket.connect(addr).await
    }

    /// Accepts sync connections until the listener fails.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    let me = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) =
                            tokio::time::timeout(me.timeout, me.answer(stream, peer)).await
                        {
                            tracing::debug!(%peer, error = %e, "gossip sync from peer timed out");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "gossip TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    async fn answer(&self, mut stream: TcpStream, peer: SocketAddr) {
        let frame = match read_frame(&mut stream, MAX_FRAME).await {
            Ok(f) => f,
            Err(e) => {
                self.stats.dropped_malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, error = %e, "dropped gossip TCP connection");
                return;
            }
        };
        self.stats.syncs_in.fetch_add(1, Ordering::Relaxed);
        let answer = match open_request(&self.sealer, &self.stats, &frame) {
            Err(reason) => Err(reason),
            Ok(theirs) => {
                let (tx, rx) = oneshot::channel();
                let merge = Command::SyncRequest {
                    state: theirs,
                    reply: tx,
                };
                if self.commands.send(merge).await.is_err() {
                    return;
                }
                match rx.await {
                    Ok(answer) => answer,
                    Err(_) => return,
                }
            }
        };
        if let Err(reason) = &answer {
            log_refusal(&self.stats, peer, reason);
        }
        if let Some(bytes) = answer_frame(&self.sealer, &answer) {
            let _ = write_frame(&mut stream, &bytes).await;
        }
    }
}
