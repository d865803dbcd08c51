//! Full-state exchange over TCP: the join handshake and periodic anti-entropy (Serf's push/pull).
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

use super::envelope::{Kind, OpenError, Sealer};
use super::identity::NodeIdentity;
use super::meta::MemberMeta;
use super::stats::Stats;
use super::{Command, Input};
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
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Io(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Open(OpenError),
    #[error("bad answer: {0}")]
    Protocol(String),
    #[error("this agent is shutting down")]
    Closed,
}

/// The part of the gossip layer that talks TCP; cheap to clone.
#[derive(Clone)]
pub struct Syncer {
    pub(super) input: mpsc::Sender<Input>,
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
        self.input
            .send(Input::Cmd(Command::Snapshot(tx)))
            .await
            .map_err(|_| SyncError::Closed)?;
        let ours = rx.await.map_err(|_| SyncError::Closed)?;
        let exchange = async {
            let mut stream = self
                .connect(addr)
                .await
                .map_err(|e| SyncError::Connect(e.to_string()))?;
            let payload =
                postcard::to_allocvec(&ours).map_err(|e| SyncError::Protocol(e.to_string()))?;
            let frame = self.sealer.seal(Kind::SyncRequest, &payload);
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
        let (kind, body) = self.sealer.open(&reply).map_err(SyncError::Open)?;
        match kind {
            Kind::SyncReply => {
                let theirs: SyncState =
                    postcard::from_bytes(&body).map_err(|e| SyncError::Protocol(e.to_string()))?;
                let (tx, rx) = oneshot::channel();
                self.input
                    .send(Input::Cmd(Command::MergeReply {
                        state: theirs,
                        reply: tx,
                    }))
                    .await
                    .map_err(|_| SyncError::Closed)?;
                rx.await
                    .map_err(|_| SyncError::Closed)?
                    .map_err(SyncError::Refused)
            }
            Kind::Refused => Err(SyncError::Refused(
                String::from_utf8_lossy(&body).into_owned(),
            )),
            other => Err(SyncError::Protocol(format!("unexpected {other:?} message"))),
        }
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
        // A refusal an operator must act on (keys, datacenter, names) is a warning; garbage on
        // the port is only counted and logged at debug level.
        let refuse = |reason: String| async move {
            self.stats.syncs_refused.fetch_add(1, Ordering::Relaxed);
            if reason.starts_with("malformed") || reason.starts_with("unexpected") {
                tracing::debug!(%peer, %reason, "refused gossip join");
            } else {
                tracing::warn!(%peer, %reason, "refused gossip join");
            }
            reason
        };
        let answer = match self.sealer.open(&frame) {
            Err(e) => {
                self.stats.count_drop(&e);
                let reason = match &e {
                    OpenError::Unencrypted => "the agent at this address requires gossip encryption; start with the cluster's -encrypt key".to_string(),
                    OpenError::UnexpectedEncrypted => "the agent at this address has no gossip key but the joiner encrypts; the -encrypt settings differ".to_string(),
                    OpenError::Decrypt => "the agent at this address could not decrypt the join: the -encrypt keys differ".to_string(),
                    OpenError::WrongDatacenter(dc) => format!("the joiner is in datacenter {dc:?}, the agent at this address in another; datacenters never share a LAN pool"),
                    OpenError::Malformed => "malformed join message".to_string(),
                };
                let reason = refuse(reason).await;
                Sealer::seal_plain_refusal(&reason)
            }
            Ok((Kind::SyncRequest, body)) => match postcard::from_bytes::<SyncState>(&body) {
                Err(e) => {
                    let reason = refuse(format!("malformed join state: {e}")).await;
                    self.sealer.seal(Kind::Refused, reason.as_bytes())
                }
                Ok(theirs) => {
                    let (tx, rx) = oneshot::channel();
                    if self
                        .input
                        .send(Input::Cmd(Command::MergeRequest {
                            state: theirs,
                            reply: tx,
                        }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    match rx.await {
                        Err(_) => return,
                        Ok(Ok(ours)) => match postcard::to_allocvec(&ours) {
                            Ok(bytes) => self.sealer.seal(Kind::SyncReply, &bytes),
                            Err(_) => return,
                        },
                        Ok(Err(reason)) => {
                            let reason = refuse(reason).await;
                            self.sealer.seal(Kind::Refused, reason.as_bytes())
                        }
                    }
                }
            },
            Ok((kind, _)) => {
                let reason = refuse(format!("unexpected {kind:?} message on the sync port")).await;
                self.sealer.seal(Kind::Refused, reason.as_bytes())
            }
        };
        let _ = write_frame(&mut stream, &answer).await;
    }
}
