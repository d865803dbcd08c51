//! The server RPC port as a hostile network (docs/servers.md, "A hostile network"): what the
//! listener refuses before a request reaches Raft or the state.
//!
//! - [`ConnCap`]: the total of inbound connections one server holds ([`max_inbound_conns`]),
//!   beside the per-client cap of [`super::rpc`].
//! - [`read_request`]: a frame's length prefix, then just its id and the request's variant
//!   number, then the rest only if the frame is within that kind's limit ([`limit`]).
//! - [`TermGuard`]: a Raft message from a server outside the configuration with a term above
//!   this server's is refused without reaching openraft.
//!
//! Snapshot chunks are bounded where they are received, `super::snapshot_inbox`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{Fatal, RaftError};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::network::AddressBook;
use super::types::{NodeId, Raft, Vote};
use crate::frame::{FrameError, LEN_PREFIX};

/// At most one line per this long about each kind of refusal, with the count since the last.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A refusal that is logged at most once per [`LOG_EVERY`], with the count of the ones not
/// logged: a flood of refusals must not become a flood of log lines.
#[derive(Default)]
struct LogEvery(Mutex<Option<(Instant, u64)>>);

impl LogEvery {
    /// Counts one refusal; `Some(earlier)` when it is to be logged now, with the number of
    /// refusals not logged since the last line.
    fn note(&self) -> Option<u64> {
        let mut last = self.0.lock().expect("log lock");
        match &mut *last {
            Some((at, count)) if at.elapsed() < LOG_EVERY => {
                *count += 1;
                None
            }
            other => {
                let earlier = other.map(|(_, c)| c).unwrap_or(0);
                *other = Some((Instant::now(), 0));
                Some(earlier)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The total connection cap

/// Inbound connections one server holds at most, when the open-file limit allows: twice a
/// pool of 4,000 client agents that all forward to this server (each holds one connection to
/// one server, and every client prefers the same one, the lowest node id: src/client/mod.rs).
pub const MAX_INBOUND_CONNS: usize = 8192;

/// Open files left for everything else the process holds (HTTP connections, outbound RPC,
/// gossip, the redb file), so that the cap refuses before `accept` fails with "too many open
/// files".
const FILES_FOR_THE_REST: usize = 1024;

/// The cap never goes below this, whatever the open-file limit says.
const MIN_INBOUND_CONNS: usize = 64;

/// The total cap of this process: [`MAX_INBOUND_CONNS`], or the open-file limit less
/// [`FILES_FOR_THE_REST`] if that is lower (at least [`MIN_INBOUND_CONNS`]).
pub fn max_inbound_conns() -> usize {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct it is given.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        usize::try_from(lim.rlim_cur).unwrap_or(usize::MAX)
    } else {
        usize::MAX
    };
    cap_for_files(soft)
}

/// The cap for a soft open-file limit of `files` (pure, for the tests).
fn cap_for_files(files: usize) -> usize {
    files
        .saturating_sub(FILES_FOR_THE_REST)
        .clamp(MIN_INBOUND_CONNS, MAX_INBOUND_CONNS)
}

/// How many inbound connections a listener holds, against its cap.
pub(crate) struct ConnCap {
    max: usize,
    open: Arc<AtomicUsize>,
    refusals: LogEvery,
}

/// One admitted connection: gives its place back when the connection ends, however it ends.
pub(crate) struct ConnTicket(Arc<AtomicUsize>);

impl Drop for ConnTicket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnCap {
    pub(crate) fn new(max: usize) -> ConnCap {
        ConnCap {
            max,
            open: Arc::new(AtomicUsize::new(0)),
            refusals: LogEvery::default(),
        }
    }

    /// Admits one more connection (from `peer`, named in the log) if fewer than the cap are
    /// open; a refusal is logged at most once per [`LOG_EVERY`].
    pub(crate) fn admit(&self, peer: IpAddr) -> Option<ConnTicket> {
        let admitted = self
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.max).then_some(n + 1)
            })
            .is_ok();
        if admitted {
            return Some(ConnTicket(self.open.clone()));
        }
        if let Some(earlier) = self.refusals.note() {
            tracing::warn!(
                client = %peer, earlier_refusals = earlier,
                "server RPC: refusing a connection from {peer}: this server already holds {}, \
                 its limit of inbound connections (raise the open-file limit if the pool of \
                 agents is really this large); further refusals are logged at most every {}s",
                self.max,
                LOG_EVERY.as_secs()
            );
        }
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Frame limits by request kind

/// Kinds whose requests carry a few ids and numbers.
const SMALL: usize = 4 << 10;
/// Kinds that carry a key (at most 1 KiB) or a list of servers.
const MEDIUM: usize = 64 << 10;
/// A forwarded write: the largest write ([`super::api::MAX_WRITE_BYTES`]) with its key and
/// framing.
pub const WRITE_FRAME: usize = super::api::MAX_WRITE_BYTES + MEDIUM;
/// An AppendEntries: at most [`super::network::MAX_APPEND_BYTES`] of entries by weight, or one
/// entry alone of at most 1 MiB of keys and values; four times that, for what the weight
/// leaves out.
pub const APPEND_FRAME: usize = 4 * super::network::MAX_APPEND_BYTES;
/// The snapshot chunk size openraft is configured with (`snapshot_max_chunk_size`, its own
/// default), set here so that the frame limit below follows it.
pub const SNAPSHOT_CHUNK: usize = 3 << 20;
/// An InstallSnapshot: one chunk and the snapshot's metadata (its membership).
pub const SNAPSHOT_FRAME: usize = SNAPSHOT_CHUNK + MEDIUM;

/// Every request kind by its postcard variant number (the order of `protocol::Request`'s
/// variants), with its frame limit. A test encodes every variant and checks its entry here.
const KINDS: [(&str, usize); 19] = [
    ("AppendEntries", APPEND_FRAME),
    ("Vote", SMALL),
    ("InstallSnapshot", SNAPSHOT_FRAME),
    ("PeerStatus", SMALL),
    ("BootstrapPropose", MEDIUM),
    ("RemovePeer", SMALL),
    ("KvRead", MEDIUM),
    ("Write", WRITE_FRAME),
    ("CatalogNodes", SMALL),
    ("SnapshotSave", SMALL),
    ("AutopilotState", SMALL),
    ("TimeoutNow", SMALL),
    ("BootstrapRelease", SMALL),
    ("PreVote", SMALL),
    ("WriteOnce", WRITE_FRAME),
    // The token and any request an agent sends: a write at most.
    ("WithToken", WRITE_FRAME),
    ("AclResolve", SMALL),
    ("AclRead", SMALL),
    ("TransferLeader", SMALL),
];

/// The name and frame limit of request kind `variant`; None for a kind this version does not
/// know.
pub fn limit(variant: u32) -> Option<(&'static str, usize)> {
    KINDS.get(variant as usize).copied()
}

/// What the first bytes of a frame's body say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    /// More bytes are needed to know.
    Incomplete,
    /// Not a request frame: a varint too long for its type.
    Malformed,
    /// The request's variant number, and how many bytes the header took.
    Kind(u32, usize),
}

/// Reads a postcard varint of at most `max_bytes` bytes from the start of `b`: the value and
/// its length, None if more bytes are needed, Err if it runs past `max_bytes`.
fn varint(b: &[u8], max_bytes: usize) -> Result<Option<(u64, usize)>, ()> {
    let mut v: u64 = 0;
    for (i, byte) in b.iter().enumerate() {
        if i >= max_bytes {
            return Err(());
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((v, i + 1)));
        }
    }
    if b.len() >= max_bytes {
        Err(())
    } else {
        Ok(None)
    }
}

/// Longest header there is: a u64 varint (10 bytes) and a u32 varint (5 bytes).
const MAX_HEADER: usize = 15;

/// The header of a frame's body `b` (`Frame { id: u64, body: Request }` in postcard: the id's
/// varint, then the variant number's varint).
fn header(b: &[u8]) -> Header {
    let id_len = match varint(b, 10) {
        Err(()) => return Header::Malformed,
        Ok(None) => return Header::Incomplete,
        Ok(Some((_, n))) => n,
    };
    match varint(&b[id_len..], 5) {
        Err(()) => Header::Malformed,
        Ok(None) => Header::Incomplete,
        Ok(Some((v, n))) => match u32::try_from(v) {
            Ok(v) => Header::Kind(v, id_len + n),
            Err(_) => Header::Malformed,
        },
    }
}

/// Why a request frame was not read. Every one closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum RequestFrameError {
    /// The framing itself failed (a close, a truncation, a frame over the port's limit).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The frame is longer than its kind may be: a broken or hostile peer.
    #[error("a {kind} request frame of {len} bytes exceeds the {max}-byte limit of its kind")]
    OverKind {
        kind: &'static str,
        len: usize,
        max: usize,
    },
    /// The frame names a request kind this version does not know (a newer server, or noise).
    #[error("a request frame of {len} bytes names the unknown request kind {variant}")]
    UnknownKind { variant: u32, len: usize },
    /// The frame's first bytes are no request header.
    #[error("a frame of {len} bytes has no valid request header")]
    Malformed { len: usize },
}

impl RequestFrameError {
    /// Whether the frame was refused for what it said (worth a debug line), rather than the
    /// stream ending or failing.
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            RequestFrameError::Frame(FrameError::Closed)
                | RequestFrameError::Frame(FrameError::Truncated)
                | RequestFrameError::Frame(FrameError::Io(_))
        )
    }
}

/// Reads one request frame of at most `max` bytes, and at most its kind's limit: the length
/// prefix, then the header one byte at a time (`r` is buffered), then the rest. Nothing of
/// the body beyond the header is allocated before the limit is checked.
pub async fn read_request<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Vec<u8>, RequestFrameError> {
    let mut len = [0u8; LEN_PREFIX];
    // The first byte tells a clean close (no frame started) from a truncated frame.
    if r.read(&mut len[..1]).await.map_err(FrameError::Io)? == 0 {
        return Err(FrameError::Closed.into());
    }
    read_exact(r, &mut len[1..]).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::Oversize { len, max }.into());
    }
    let mut body = Vec::with_capacity(len.min(MAX_HEADER));
    let variant = loop {
        match header(&body) {
            Header::Kind(v, _) => break v,
            Header::Malformed => return Err(RequestFrameError::Malformed { len }),
            Header::Incomplete if body.len() == len => {
                return Err(RequestFrameError::Malformed { len })
            }
            Header::Incomplete => {
                let mut b = [0u8; 1];
                read_exact(r, &mut b).await?;
                body.push(b[0]);
            }
        }
    };
    let (kind, limit) = limit(variant).ok_or(RequestFrameError::UnknownKind { variant, len })?;
    if len > limit {
        return Err(RequestFrameError::OverKind {
            kind,
            len,
            max: limit,
        });
    }
    let have = body.len();
    body.resize(len, 0);
    read_exact(r, &mut body[have..]).await?;
    Ok(body)
}

/// `read_exact`, with an early end of stream reported as [`FrameError::Truncated`].
async fn read_exact<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<(), FrameError> {
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Terms from strangers

/// Whether a Raft message of `term` from `from` is refused: its term is above this server's,
/// this server has a configuration, and `from` is in it neither as a voter nor as a learner,
/// nor an alive server in gossip (pure; docs/servers.md gives the reasons).
fn refused(term: u64, current_term: u64, configured: bool, member: bool, in_gossip: bool) -> bool {
    term > current_term && configured && !member && !in_gossip
}

/// Refuses Raft messages of a higher term from servers outside the configuration, and logs
/// the refusals at most once per [`LOG_EVERY`].
#[derive(Default)]
pub(crate) struct TermGuard {
    refusals: LogEvery,
}

impl TermGuard {
    /// Whether to refuse the Raft message `kind` whose vote is `vote` (its sender and term):
    /// then the caller answers [`refusal`] and does not pass it to openraft.
    pub(crate) fn refuses(&self, raft: &Raft, book: &AddressBook, kind: &str, vote: &Vote) -> bool {
        let (from, term) = (vote.leader_id().node_id, vote.leader_id().term);
        let (current_term, configured, member) = {
            let m = raft.metrics();
            let m = m.borrow();
            let membership = m.membership_config.membership();
            let configured = membership.nodes().next().is_some();
            (
                m.current_term,
                configured,
                membership.get_node(&from).is_some(),
            )
        };
        if !refused(
            term,
            current_term,
            configured,
            member,
            book.get(from).is_some(),
        ) {
            return false;
        }
        if let Some(earlier) = self.refusals.note() {
            tracing::warn!(
                from = %super::id::node_uuid(from), term, current_term, earlier_refusals = earlier,
                "server RPC: refusing {kind} of term {term} from {}: it is in this server's \
                 configuration neither as a voter nor as a learner, nor a server gossip shows, and \
                 its term is above this server's ({current_term}); a forged or misdirected \
                 message; further refusals are logged at most every {}s",
                super::id::node_uuid(from),
                LOG_EVERY.as_secs()
            );
        }
        true
    }
}

/// The answer to a refused Raft message: an error, so that the sender's term goes nowhere.
pub(crate) fn refusal<E: std::error::Error>() -> RaftError<NodeId, E> {
    RaftError::Fatal(Fatal::Stopped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::protocol::{KvQuery, PreVote, ReadRequest, Request};
    use crate::server::state::{StateCommand, Write};
    use crate::server::types::{ServerNode, TypeConfig};
    use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

    /// One request of every kind, in variant order; the match makes a new variant fail to
    /// compile here until it has its entry in [`KINDS`].
    fn every_request() -> Vec<Request> {
        let vote = Vote::new(7, 1);
        let set = StateCommand::KvSet {
            key: "k".into(),
            value: vec![1; 100],
            flags: 0,
            cas: None,
        };
        let all = vec![
            Request::AppendEntries(AppendEntriesRequest {
                vote,
                prev_log_id: None,
                entries: vec![],
                leader_commit: None,
            }),
            Request::Vote(VoteRequest::new(vote, None)),
            Request::InstallSnapshot(InstallSnapshotRequest::<TypeConfig> {
                vote,
                meta: Default::default(),
                offset: 0,
                data: vec![0; 10],
                done: false,
            }),
            Request::PeerStatus,
            Request::BootstrapPropose {
                proposer: 1,
                attempt: 2,
                servers: vec![(
                    1,
                    ServerNode {
                        addr: "127.0.0.1:8300".into(),
                        name: "s1".into(),
                    },
                )],
            },
            Request::RemovePeer { id: u128::MAX },
            Request::KvRead(ReadRequest {
                query: KvQuery::Get("k".into()),
                consistency: crate::server::protocol::Consistency::Default,
                min_index: 0,
                wait_ms: 0,
            }),
            Request::Write(set.clone()),
            Request::CatalogNodes(crate::server::protocol::Consistency::Stale),
            Request::SnapshotSave,
            Request::AutopilotState,
            Request::TimeoutNow,
            Request::BootstrapRelease {
                proposer: 1,
                up_to: 3,
            },
            Request::PreVote(PreVote {
                candidate: 1,
                last_log_id: None,
            }),
            Request::WriteOnce(Write {
                id: None,
                cmd: set.clone(),
            }),
            Request::WithToken {
                secret: "s".into(),
                request: Box::new(Request::Write(set)),
            },
            Request::AclResolve { secret: "s".into() },
            Request::AclRead(crate::server::protocol::AclQuery::Tokens),
            Request::TransferLeader {
                to: Some(u128::MAX),
            },
        ];
        for r in &all {
            match r {
                Request::AppendEntries(_)
                | Request::Vote(_)
                | Request::InstallSnapshot(_)
                | Request::PeerStatus
                | Request::BootstrapPropose { .. }
                | Request::RemovePeer { .. }
                | Request::KvRead(_)
                | Request::Write(_)
                | Request::CatalogNodes(_)
                | Request::SnapshotSave
                | Request::AutopilotState
                | Request::TimeoutNow
                | Request::BootstrapRelease { .. }
                | Request::PreVote(_)
                | Request::WriteOnce(_)
                | Request::WithToken { .. }
                | Request::AclResolve { .. }
                | Request::AclRead(_)
                | Request::TransferLeader { .. } => {}
            }
        }
        all
    }

    fn encode(id: u64, r: &Request) -> Vec<u8> {
        // `Frame { id, body }` in postcard is the id, then the body: a tuple encodes alike.
        postcard::to_allocvec(&(id, r)).unwrap()
    }

    #[test]
    fn every_request_kind_is_named_by_its_header() {
        let all = every_request();
        assert_eq!(all.len(), KINDS.len(), "one entry per request kind");
        for (i, r) in all.iter().enumerate() {
            let name = format!("{r:?}");
            let (kind, _) = limit(i as u32).unwrap();
            assert!(
                name.starts_with(kind),
                "variant {i} is {name}, but KINDS names it {kind}"
            );
            // Ids of every varint length: 1 byte to 10.
            for id in [0, 127, 128, 1 << 20, u64::MAX] {
                let b = encode(id, r);
                let Header::Kind(v, n) = header(&b) else {
                    panic!("{kind}, id {id}: {:?}", header(&b))
                };
                assert_eq!(v, i as u32, "{kind}, id {id}");
                // Every prefix shorter than the header needs more bytes.
                for cut in 0..n {
                    assert_eq!(header(&b[..cut]), Header::Incomplete, "{kind} cut at {cut}");
                }
            }
        }
        assert_eq!(limit(KINDS.len() as u32), None);
    }

    #[test]
    fn malformed_headers_are_told_apart() {
        // An id varint of 11 bytes, a variant varint of 6 or over u32.
        assert_eq!(header(&[0xff; 11]), Header::Malformed);
        assert_eq!(
            header(&[0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Header::Malformed
        );
        assert_eq!(
            header(&[0x01, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            Header::Malformed
        );
        assert_eq!(
            header(&[0x01, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            Header::Kind(u32::MAX, 6)
        );
    }

    async fn read(bytes: &[u8]) -> Result<Vec<u8>, RequestFrameError> {
        let mut r = tokio::io::BufReader::new(bytes);
        read_request(&mut r, 64 << 20).await
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        crate::frame::put_frame(&mut buf, body);
        buf
    }

    #[tokio::test]
    async fn frames_within_their_kinds_limit_are_read_whole() {
        for r in every_request() {
            let b = encode(42, &r);
            assert_eq!(read(&framed(&b)).await.unwrap(), b, "{r:?}");
        }
    }

    #[tokio::test]
    async fn a_frame_over_its_kinds_limit_is_refused_before_its_body() {
        // A vote's header, announcing 1 MiB: refused with nothing but the header sent.
        let vote = encode(1, &Request::Vote(VoteRequest::new(Vote::new(1, 1), None)));
        let mut buf = ((1u32 << 20).to_be_bytes()).to_vec();
        buf.extend_from_slice(&vote[..2]);
        match read(&buf).await {
            Err(RequestFrameError::OverKind { kind, len, max }) => {
                assert_eq!((kind, len, max), ("Vote", 1 << 20, SMALL));
            }
            other => panic!("{other:?}"),
        }
        // A write just within its limit is read; one byte more is refused.
        let mut body = vec![0x05, 7];
        body.resize(WRITE_FRAME, 0);
        assert_eq!(read(&framed(&body)).await.unwrap().len(), WRITE_FRAME);
        body.push(0);
        assert!(matches!(
            read(&framed(&body)).await,
            Err(RequestFrameError::OverKind { kind: "Write", .. })
        ));
        // Over the port's own limit: refused by the length alone.
        let huge = (u32::MAX).to_be_bytes();
        assert!(matches!(
            read(&huge).await,
            Err(RequestFrameError::Frame(FrameError::Oversize { .. }))
        ));
    }

    #[tokio::test]
    async fn unknown_kinds_short_and_malformed_headers_are_refused() {
        assert!(matches!(
            read(&framed(&[1, 19])).await,
            Err(RequestFrameError::UnknownKind { variant: 19, .. })
        ));
        // The frame ends inside its header.
        assert!(matches!(
            read(&framed(&[0x81])).await,
            Err(RequestFrameError::Malformed { len: 1 })
        ));
        assert!(matches!(
            read(&framed(&[])).await,
            Err(RequestFrameError::Malformed { len: 0 })
        ));
        assert!(matches!(
            read(&framed(&[0xff; 20])).await,
            Err(RequestFrameError::Malformed { len: 20 })
        ));
        // The stream ends inside the header or the body.
        let mut cut = framed(&[1, 3, 0, 0]);
        cut.truncate(5);
        assert!(matches!(
            read(&cut).await,
            Err(RequestFrameError::Frame(FrameError::Truncated))
        ));
        assert!(matches!(
            read(&[]).await,
            Err(RequestFrameError::Frame(FrameError::Closed))
        ));
    }

    #[test]
    fn the_connection_cap_follows_the_open_file_limit() {
        assert_eq!(cap_for_files(1 << 20), MAX_INBOUND_CONNS);
        assert_eq!(cap_for_files(4096), 3072);
        assert_eq!(cap_for_files(1024), MIN_INBOUND_CONNS);
        assert_eq!(cap_for_files(0), MIN_INBOUND_CONNS);
    }

    #[test]
    fn the_connection_cap_admits_up_to_its_number_and_frees_places() {
        let cap = ConnCap::new(2);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let a = cap.admit(ip).expect("first");
        let _b = cap.admit(ip).expect("second");
        assert!(cap.admit(ip).is_none(), "third over the cap");
        drop(a);
        assert!(cap.admit(ip).is_some(), "a place freed");
    }

    #[test]
    fn higher_terms_are_refused_only_from_strangers_once_configured() {
        // (term, current, configured, member, in gossip)
        assert!(refused(u64::MAX, 3, true, false, false));
        assert!(
            !refused(3, 3, true, false, false),
            "not above: openraft decides"
        );
        assert!(!refused(2, 3, true, false, false));
        assert!(
            !refused(9, 3, false, false, false),
            "before formation: bootstrap"
        );
        assert!(!refused(9, 3, true, true, false), "a voter or learner");
        assert!(!refused(9, 3, true, false, true), "a server gossip shows");
    }
}
