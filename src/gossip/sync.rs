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
use super::keyring::KeyringStore;
use super::meta::MemberMeta;
use super::stats::Stats;
use crate::frame::{read_frame, write_frame};

/// Largest frame accepted: one page of a state ([`PAGE_MEMBERS`] members and metadata
/// records of at most one UDP packet each) fits with room to spare.
pub const MAX_FRAME: usize = 4 << 20;
/// Most members, and most metadata records, in one page of a state (docs/gossip.md, "A state
/// travels in pages").
pub const PAGE_MEMBERS: usize = 2_000;
/// Most bytes of pages in one state: about 500,000 client members.
pub const MAX_SYNC_BYTES: usize = 64 << 20;

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

/// One page of a state as sent: the [`SyncState`] fields over a slice of it, then whether
/// more pages follow. A last page is thus a whole old-format `SyncState` and one byte.
#[derive(Serialize)]
struct PageRef<'a> {
    from: &'a NodeIdentity,
    members: &'a [SwimMember<NodeIdentity>],
    metas: &'a [MemberMeta],
    more: bool,
}

/// One page of a state as read.
#[derive(Deserialize)]
struct Page {
    from: NodeIdentity,
    members: Vec<SwimMember<NodeIdentity>>,
    metas: Vec<MemberMeta>,
    more: bool,
}

impl Page {
    /// A page, or a whole state from an agent of an earlier version (no `more`: the last).
    fn decode(body: &[u8]) -> Result<Page, postcard::Error> {
        postcard::from_bytes::<Page>(body).or_else(|e| {
            let old: SyncState = postcard::from_bytes(body).map_err(|_| e)?;
            Ok(Page {
                from: old.from,
                members: old.members,
                metas: old.metas,
                more: false,
            })
        })
    }
}

/// `state` sealed as `kind` in pages of at most [`PAGE_MEMBERS`] members and metadata records;
/// always at least one page.
fn seal_pages(sealer: &Sealer, kind: Kind, state: &SyncState) -> Result<Vec<Vec<u8>>, String> {
    let n = state
        .members
        .len()
        .div_ceil(PAGE_MEMBERS)
        .max(state.metas.len().div_ceil(PAGE_MEMBERS))
        .max(1);
    let slice =
        |i: usize, len: usize| (i * PAGE_MEMBERS).min(len)..((i + 1) * PAGE_MEMBERS).min(len);
    (0..n)
        .map(|i| {
            let page = PageRef {
                from: &state.from,
                members: &state.members[slice(i, state.members.len())],
                metas: &state.metas[slice(i, state.metas.len())],
                more: i + 1 < n,
            };
            let body = postcard::to_allocvec(&page).map_err(|e| e.to_string())?;
            Ok(sealer.seal(kind, &body))
        })
        .collect()
}

/// Seals our state as the request of a sync, in pages.
pub(super) fn request_frames(sealer: &Sealer, ours: &SyncState) -> Result<Vec<Vec<u8>>, SyncError> {
    seal_pages(sealer, Kind::SyncRequest, ours).map_err(SyncError::Protocol)
}

/// The answer to a sync request: our state in pages, or the refusal (readable by any peer,
/// whatever its key, when its envelope was the problem). Empty if our state cannot be encoded.
pub(super) fn answer_frames(sealer: &Sealer, answer: &Result<SyncState, Refusal>) -> Vec<Vec<u8>> {
    match answer {
        Ok(ours) => seal_pages(sealer, Kind::SyncReply, ours).unwrap_or_default(),
        Err(reason @ Refusal::Envelope(_)) => vec![Sealer::seal_plain_refusal(&reason.to_string())],
        Err(reason) => vec![sealer.seal(Kind::Refused, reason.to_string().as_bytes())],
    }
}

/// The pages of one state as they arrive, joined into the state when the last one has.
#[derive(Default)]
pub(super) struct Pages {
    state: Option<SyncState>,
    bytes: usize,
}

impl Pages {
    /// Adds one decoded page of `len` bytes; the whole state once it was the last.
    fn add(&mut self, page: Page, len: usize) -> Result<Option<SyncState>, String> {
        self.bytes += len;
        if self.bytes > MAX_SYNC_BYTES {
            return Err(format!(
                "a state of more than {MAX_SYNC_BYTES} bytes of pages"
            ));
        }
        match &mut self.state {
            None => {
                self.state = Some(SyncState {
                    from: page.from,
                    members: page.members,
                    metas: page.metas,
                })
            }
            Some(s) if s.from == page.from => {
                s.members.extend(page.members);
                s.metas.extend(page.metas);
            }
            Some(s) => {
                return Err(format!(
                    "pages of one state from two senders ({} and {})",
                    s.from.name, page.from.name
                ))
            }
        }
        Ok(if page.more { None } else { self.state.take() })
    }

    /// Opens one frame of a peer's sync request; the whole request once it was the last page.
    /// A refusal here is counted in `stats` like a dropped datagram. (The syncer opens the frame
    /// first, to tell a keyring request apart, and calls `add_opened`.)
    #[cfg(test)]
    pub(super) fn add_request(
        &mut self,
        sealer: &Sealer,
        stats: &Stats,
        frame: &[u8],
    ) -> Result<Option<SyncState>, Refusal> {
        self.add_opened(sealer.open(frame), stats, frame.len())
    }

    /// Adds one already opened frame (`len` bytes) of a peer's sync request; the whole request
    /// once it was the last page. A refusal here is counted in `stats` like a dropped datagram.
    fn add_opened(
        &mut self,
        opened: Result<(Kind, Vec<u8>), OpenError>,
        stats: &Stats,
        len: usize,
    ) -> Result<Option<SyncState>, Refusal> {
        match opened {
            Err(e) => {
                stats.count_drop(&e);
                Err(Refusal::Envelope(e))
            }
            Ok((Kind::SyncRequest, body)) => {
                let page =
                    Page::decode(&body).map_err(|e| Refusal::MalformedState(e.to_string()))?;
                self.add(page, len).map_err(Refusal::MalformedState)
            }
            Ok((kind, _)) => Err(Refusal::UnexpectedKind(kind)),
        }
    }

    /// Opens one frame of the answer to our sync request: the peer's whole state once it was
    /// the last page, or why it refused.
    pub(super) fn add_reply(
        &mut self,
        sealer: &Sealer,
        frame: &[u8],
    ) -> Result<Option<SyncState>, SyncError> {
        let (kind, body) = sealer.open(frame).map_err(SyncError::Open)?;
        match kind {
            Kind::SyncReply => {
                let page = Page::decode(&body).map_err(|e| SyncError::Protocol(e.to_string()))?;
                self.add(page, frame.len()).map_err(SyncError::Protocol)
            }
            Kind::Refused => Err(SyncError::Refused(
                String::from_utf8_lossy(&body).into_owned(),
            )),
            other => Err(SyncError::Protocol(format!("unexpected {other:?} message"))),
        }
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
    /// Where keyring requests arriving on the sync port are applied (docs/gossip.md, Keyring).
    pub(super) keyring: Arc<KeyringStore>,
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
            for frame in request_frames(&self.sealer, &ours)? {
                write_frame(&mut stream, &frame)
                    .await
                    .map_err(|e| SyncError::Io(e.to_string()))?;
            }
            let mut pages = Pages::default();
            loop {
                let frame = read_frame(&mut stream, MAX_FRAME)
                    .await
                    .map_err(|e| SyncError::Io(e.to_string()))?;
                if let Some(theirs) = pages.add_reply(&self.sealer, &frame)? {
                    return Ok(theirs);
                }
            }
        };
        let theirs = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| SyncError::Timeout(self.timeout))??;
        self.stats.syncs_out.fetch_add(1, Ordering::Relaxed);
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

    pub(super) async fn connect(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
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
        let mut pages = Pages::default();
        // The first frame says what the connection is for: a sync, or a keyring operation.
        let mut first = true;
        let opened = loop {
            let frame = match read_frame(&mut stream, MAX_FRAME).await {
                Ok(f) => f,
                Err(e) => {
                    self.stats.dropped_malformed.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%peer, error = %e, "dropped gossip TCP connection");
                    return;
                }
            };
            let opened = self.sealer.open(&frame);
            if first {
                first = false;
                if let Ok((Kind::KeyringRequest, body)) = &opened {
                    self.stats.syncs_in.fetch_add(1, Ordering::Relaxed);
                    self.answer_keyring(&mut stream, peer, body).await;
                    return;
                }
            }
            match pages.add_opened(opened, &self.stats, frame.len()) {
                Ok(None) => continue,
                Ok(Some(theirs)) => break Ok(theirs),
                Err(reason) => break Err(reason),
            }
        };
        self.stats.syncs_in.fetch_add(1, Ordering::Relaxed);
        let answer = match opened {
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
        for frame in answer_frames(&self.sealer, &answer) {
            if write_frame(&mut stream, &frame).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state of `n` members as a client agent's would be: a name, an address and the tags a
    /// client carries.
    fn state(from: &str, n: usize) -> SyncState {
        let id = |name: String, i: usize| NodeIdentity {
            name,
            node_id: Uuid::from_u128(i as u128 + 1),
            addr: SocketAddr::from(([127, 0, (i >> 8) as u8, i as u8], 8301)),
            generation: 1_764_000_000_000 + i as u64,
        };
        let tags: super::super::meta::Tags = [
            ("role", "node"),
            ("dc", "dc1"),
            ("build", "0.1.0"),
            ("vsn", "2"),
            ("segment", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let names: Vec<String> = (0..n).map(|i| format!("{from}-client-{i:05}")).collect();
        SyncState {
            from: id(from.to_string(), 0),
            members: names
                .iter()
                .enumerate()
                .map(|(i, name)| SwimMember::alive(id(name.clone(), i)))
                .collect(),
            metas: names
                .iter()
                .enumerate()
                .map(|(i, name)| MemberMeta {
                    name: name.clone(),
                    node_id: Uuid::from_u128(i as u128 + 1),
                    generation: 1_764_000_000_000 + i as u64,
                    version: 1,
                    tags: tags.clone(),
                    leaving: false,
                })
                .collect(),
        }
    }

    /// Answers a syncer's commands as the core would: `ours` as this agent's state, and the
    /// peer's state (request or reply) sent back on `got`.
    fn fake_core(ours: SyncState, got: mpsc::UnboundedSender<SyncState>) -> mpsc::Sender<Command> {
        let (tx, mut rx) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(c) = rx.recv().await {
                match c {
                    Command::Snapshot(reply) => drop(reply.send(ours.clone())),
                    Command::SyncRequest { state, reply } => {
                        let _ = got.send(state);
                        let _ = reply.send(Ok(ours.clone()));
                    }
                    Command::SyncReply { state, reply } => {
                        let n = state.members.len();
                        let _ = got.send(state);
                        let _ = reply.send(Ok(n));
                    }
                    _ => {}
                }
            }
        });
        tx
    }

    fn syncer(commands: mpsc::Sender<Command>) -> Syncer {
        Syncer {
            commands,
            sealer: Arc::new(Sealer::new("dc1", None)),
            stats: Arc::new(Stats::default()),
            timeout: Duration::from_secs(10),
            bind_ip: None,
            keyring: Arc::new(KeyringStore {
                sealer: Arc::new(Sealer::new("dc1", None)),
                file: None,
                lock: Default::default(),
            }),
        }
    }

    /// 70,000 client members (about 9 MiB of state, over twice the 4 MiB frame) cross a real TCP
    /// exchange both ways, in pages. As one frame (before), the responder refused the
    /// oversized frame and every join and anti-entropy sync of such a pool failed.
    #[tokio::test]
    async fn a_state_larger_than_a_frame_crosses_in_pages() {
        let (big_a, big_b) = (state("a", 70_000), state("b", 70_000));
        let one_frame = postcard::to_allocvec(&big_a).unwrap().len();
        assert!(one_frame > 2 * MAX_FRAME, "{one_frame} bytes");
        let (got_b_tx, mut got_b) = mpsc::unbounded_channel();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(syncer(fake_core(big_b.clone(), got_b_tx)).serve(listener));
        let (got_a_tx, mut got_a) = mpsc::unbounded_channel();
        let a = syncer(fake_core(big_a.clone(), got_a_tx));

        assert_eq!(a.sync_with(addr).await.unwrap(), 70_000);
        let at_b = got_b.recv().await.unwrap();
        assert_eq!(at_b.from, big_a.from);
        assert_eq!(at_b.members.len(), 70_000);
        assert_eq!(at_b.metas, big_a.metas);
        let at_a = got_a.recv().await.unwrap();
        assert_eq!(at_a.from, big_b.from);
        assert_eq!(at_a.metas, big_b.metas);
        assert_eq!(
            at_a.members.iter().map(|m| m.id()).collect::<Vec<_>>(),
            big_b.members.iter().map(|m| m.id()).collect::<Vec<_>>()
        );
    }

    /// A small state is one frame that an agent of an earlier version reads as its whole
    /// `SyncState` (the trailing `more` ignored), and a body from such an agent reads here.
    #[test]
    fn a_one_page_state_reads_as_before_both_ways() {
        let sealer = Sealer::new("dc1", None);
        let small = state("a", 10);
        let frames = request_frames(&sealer, &small).unwrap();
        assert_eq!(frames.len(), 1);
        let (_, body) = sealer.open(&frames[0]).unwrap();
        let old: SyncState = postcard::from_bytes(&body).unwrap();
        assert_eq!(old.metas, small.metas);

        let old_frame = sealer.seal(Kind::SyncReply, &postcard::to_allocvec(&small).unwrap());
        let mut pages = Pages::default();
        let read = pages.add_reply(&sealer, &old_frame).unwrap().unwrap();
        assert_eq!(read.metas, small.metas);
    }

    /// Pages that name two senders, or add up past the cap, are refused with the reason.
    #[test]
    fn inconsistent_or_oversized_pages_are_refused() {
        let sealer = Sealer::new("dc1", None);
        let stats = Stats::default();
        let a = request_frames(&sealer, &state("a", 3_000)).unwrap();
        let b = request_frames(&sealer, &state("b", 3_000)).unwrap();
        let mut pages = Pages::default();
        assert!(pages.add_request(&sealer, &stats, &a[0]).unwrap().is_none());
        let e = pages.add_request(&sealer, &stats, &b[1]).unwrap_err();
        assert!(e.to_string().contains("two senders"), "{e}");

        let mut pages = Pages::default();
        let mut refused = None;
        for _ in 0..(MAX_SYNC_BYTES / a[0].len() + 2) {
            if let Err(e) = pages.add_request(&sealer, &stats, &a[0]) {
                refused = Some(e);
                break;
            }
        }
        assert!(refused.expect("a cap").to_string().contains("more than"));
    }
}
