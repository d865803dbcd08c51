//! What agents say to each other about the replicated state: how a server shows itself in
//! gossip, and the requests and answers of the server RPC port (docs/servers.md, docs/state.md).
//!
//! Both sides use this module: servers answer these requests, and clients (src/client) send
//! them without reaching into the server's internals. It holds data only; the transport is
//! [`super::rpc`], the handling [`super::Server`]. The state's own types that travel in it
//! (commands, catalog nodes, KV entries, autopilot's report) stay beside the code that applies
//! or builds them and are re-exported here, so a client names everything through this module.
//!
//! It lives under `server/` rather than at the top of the crate because every type it carries
//! is defined by the server (the Raft type configuration, the state machine's commands); a
//! top-level module would still import them from here, and the layering would read no truer.

use std::net::SocketAddr;

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The caller's token travels with every request a client agent or a follower forwards
/// (docs/acl.md, "On the server port").
pub use super::acl_check::{caller_token, with_caller, CALLER};
pub use super::autopilot::AutopilotReport;
use super::id::node_id;
pub use super::id::NodeId;
pub use super::state::{CatalogNode, KvEntry, RequestId, StateCommand, Write};
use super::types::{LogId, ServerNode, TypeConfig};
use crate::gossip::{Member, MemberStatus};

/// A server as gossip shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    pub id: NodeId,
    pub name: String,
    /// `ip:port` of its RPC listener.
    pub rpc_addr: String,
    pub alive: bool,
    pub datacenter: String,
    /// Its `expect` tag, if it has one.
    pub expect: Option<u32>,
    /// It runs with `-bootstrap`.
    pub bootstrap_mode: bool,
    /// Its `cluster` tag: it belongs to a formed cluster.
    pub cluster_id: Option<Uuid>,
}

impl ServerView {
    pub fn node(&self) -> ServerNode {
        ServerNode {
            addr: self.rpc_addr.clone(),
            name: self.name.clone(),
        }
    }
}

/// This member as a server, from its tags, Consul's names (docs/reference/consul.md): `role=consul`, an `id` and a
/// `port`; `None` when it is not a server. The `id` tag must be the member's own gossip node
/// id: a member advertising another node's id is not taken for that server (docs/security.md,
/// Identity).
pub fn server_view(m: &Member) -> Option<ServerView> {
    if m.tags.get("role").map(String::as_str) != Some("consul") {
        return None;
    }
    let id = Uuid::parse_str(m.tags.get("id")?).ok()?;
    if id != m.node_id {
        return None;
    }
    let port: u16 = m.tags.get("port")?.parse().ok()?;
    Some(ServerView {
        id: node_id(id),
        name: m.name.clone(),
        rpc_addr: SocketAddr::new(m.addr.ip(), port).to_string(),
        alive: m.status == MemberStatus::Alive,
        datacenter: m.tags.get("dc").cloned().unwrap_or_default(),
        expect: m.tags.get("expect").and_then(|e| e.parse().ok()),
        bootstrap_mode: m.tags.get("bootstrap").map(String::as_str) == Some("1"),
        cluster_id: m.tags.get("cluster").and_then(|c| Uuid::parse_str(c).ok()),
    })
}

/// The servers among `members`; anything else is skipped, and so is every member of a node id
/// that more than one member claims (by name): gossip alone cannot tell which is genuine, and
/// the Raft configuration keeps the address it had (docs/security.md, Identity).
pub fn server_views(members: &[Member]) -> Vec<ServerView> {
    let views: Vec<ServerView> = members.iter().filter_map(server_view).collect();
    let contested = contested_ids(members);
    views
        .into_iter()
        .filter(|v| !contested.iter().any(|(id, _)| *id == v.id))
        .collect()
}

/// Node ids that members of different names claim as servers, with those names (sorted): what
/// the leader logs (src/server/duties.rs) and [`server_views`] leaves out.
pub fn contested_ids(members: &[Member]) -> Vec<(NodeId, Vec<String>)> {
    let mut by_id: std::collections::BTreeMap<NodeId, Vec<String>> = Default::default();
    for m in members {
        let claimed = m.tags.get("role").map(String::as_str) == Some("consul");
        if let Some(id) = m.tags.get("id").and_then(|i| Uuid::parse_str(i).ok()) {
            if claimed || id == m.node_id {
                let names = by_id.entry(node_id(id)).or_default();
                if !names.contains(&m.name) {
                    names.push(m.name.clone());
                }
            }
        }
    }
    by_id
        .into_iter()
        .filter(|(_, names)| names.len() > 1)
        .map(|(id, mut names)| {
            names.sort();
            (id, names)
        })
        .collect()
}

/// How gossip shows the server the Raft configuration knows as `id` and `name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeenAs {
    /// The member that is that server, with its status.
    Member(MemberStatus),
    /// No member claims that server.
    Absent,
    /// Members of other names claim it and none has its name: gossip cannot tell which (if
    /// any) is that server, so nothing may be concluded from either (a forger's leave must
    /// not remove the real server from the configuration).
    Ambiguous,
}

/// The member that is server (`id`, `name`): the one with that id and that name; failing
/// that (a server renamed), the only member with that id; with several and none of that
/// name, [`SeenAs::Ambiguous`]. `name` may be empty when the caller knows none.
pub fn seen_as(members: &[Member], id: NodeId, name: &str) -> SeenAs {
    let claims: Vec<&Member> = members
        .iter()
        .filter(|m| server_view(m).is_some_and(|v| v.id == id))
        .collect();
    if let Some(m) = claims.iter().find(|m| m.name == name) {
        // A server renamed while its old member lingers: the old name left or failed, the
        // new one is alive. Neither may be concluded from.
        let another_alive = claims
            .iter()
            .any(|o| o.name != name && o.status == MemberStatus::Alive);
        if m.status != MemberStatus::Alive && another_alive {
            return SeenAs::Ambiguous;
        }
        return SeenAs::Member(m.status);
    }
    match claims.as_slice() {
        [] => SeenAs::Absent,
        [only] => SeenAs::Member(only.status),
        _ => SeenAs::Ambiguous,
    }
}

/// Consul's read modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    /// The leader answers from its state.
    Default,
    /// Any server answers from its own state.
    Stale,
    /// The leader answers after confirming its leadership with a quorum.
    Consistent,
}

/// What a KV read asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvQuery {
    Get(String),
    Recurse(String),
    Keys {
        prefix: String,
        separator: Option<String>,
    },
}

/// A KV read with its consistency and blocking parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReadRequest {
    pub query: KvQuery,
    pub consistency: Consistency,
    /// Block until the watched index passes this (0: answer at once).
    pub min_index: u64,
    /// Longest wait of a blocking query, jitter included.
    pub wait_ms: u64,
}

/// The data of a KV read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvAnswer {
    Entries(Vec<(String, KvEntry)>),
    Keys(Vec<String>),
}

/// Consul's read metadata, sent back as `X-Consul-*` headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadMeta {
    pub index: u64,
    pub known_leader: bool,
    pub last_contact_ms: u64,
}

/// The outcome of a write: whether it took effect (CAS), and its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteOutcome {
    pub ok: bool,
    pub index: u64,
}

/// An operator snapshot: the state machine at `index`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedSnapshot {
    pub index: u64,
    pub term: u64,
    pub cluster_id: Option<uuid::Uuid>,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Why a KV, catalog or snapshot request could not be served. Every one is worth retrying
/// for a while ([`crate::client::HOLD`] does); the HTTP API answers each with a 500.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApiFailure {
    /// No leader is known: an election is under way, or quorum is lost. Retry shortly.
    #[error("No cluster leader")]
    NoLeader,
    /// No server (or not the leader) answered: the text names the last one tried. Back off,
    /// then retry; another server may answer.
    #[error("{0}")]
    Unreachable(String),
    /// The leader could not confirm its leadership with a quorum in time (`?consistent`).
    /// Retry shortly; if it lasts, quorum is lost.
    #[error("{0}")]
    Unconfirmed(String),
    /// Raft refused or failed the write, in its words. Retry shortly; if it lasts, report it.
    #[error("{0}")]
    Unavailable(String),
    /// The write is larger than one entry may carry ([`super::api::MAX_WRITE_BYTES`]); nothing
    /// was proposed. Not retried: the same write fails the same way.
    #[error("{0}")]
    TooLarge(String),
    /// The caller's token may not do this, in Consul's words (`Permission denied: …`, `ACL
    /// not found`): a 403. Not retried. Kept last: postcard numbers variants.
    #[error("{0}")]
    Denied(String),
    /// The request is wrong (an ACL object the checks refuse), in one line naming the
    /// culprit and the fix: a 400. Not retried.
    #[error("{0}")]
    Refused(String),
}

/// A request on the server port.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// What the bootstrap gate asks every server before forming a cluster.
    PeerStatus,
    /// Bootstrap: promise not to bootstrap with anyone else until `proposer` releases this
    /// server (the promise is kept on disk; docs/servers.md).
    BootstrapPropose {
        proposer: NodeId,
        /// Which of the proposer's attempts this is; a release names the attempts it ends.
        attempt: u64,
        servers: Vec<(NodeId, ServerNode)>,
    },
    /// Remove a server from the Raft configuration (sent to the leader).
    RemovePeer {
        id: NodeId,
    },
    /// A KV read, answered by this server or forwarded to the leader (docs/state.md).
    KvRead(ReadRequest),
    /// A change to the replicated state, carried out by the leader, from an agent of a version
    /// before request ids: applied as often as it arrives.
    Write(StateCommand),
    /// The catalog's nodes.
    CatalogNodes(Consistency),
    /// An operator snapshot of the state machine (leader).
    SnapshotSave,
    /// Autopilot's view of every server (leader).
    AutopilotState,
    /// The leader is leaving: stand for election as soon as its lease has run out.
    TimeoutNow,
    /// Bootstrap: `proposer` abandoned its attempts up to `up_to`; a promise to one of them
    /// ends. Last, so that the variants before it keep their postcard numbers.
    BootstrapRelease {
        proposer: NodeId,
        up_to: u64,
    },
    /// Would you vote for me? Asked before standing for election (docs/servers.md, "Elections:
    /// a pre-vote first"). Keep new variants last: postcard numbers variants.
    PreVote(PreVote),
    /// A change to the replicated state with its request id, carried out by the leader at
    /// most once per id (docs/state.md, "Request ids"). Answered with `Response::Write`.
    /// Kept after every older variant: postcard numbers variants.
    WriteOnce(Write),
    /// Any request with its caller's ACL token (docs/acl.md, "On the server port"). A server
    /// without ACLs unwraps it; one with ACLs checks the inner request against the token.
    WithToken {
        secret: String,
        request: Box<Request>,
    },
    /// A client agent resolving a token it was given: answered with the token's accessor id
    /// and its policies' rules, never the secret.
    AclResolve {
        secret: String,
    },
    /// A read of the ACL objects, answered by the leader (docs/acl.md).
    AclRead(AclQuery),
    /// `operator raft transfer-leader`: hand leadership to `to`, or to the most up-to-date
    /// other voter (sent to the leader; docs/servers.md, "Transferring leadership").
    TransferLeader {
        to: Option<NodeId>,
    },
}

/// What an `AclRead` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclQuery {
    Policies,
    Policy(Uuid),
    PolicyByName(String),
    Tokens,
    Token(Uuid),
    /// The token of the caller's own secret (`/v1/acl/token/self`).
    TokenSelf,
}

/// The ACL objects an `AclRead` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclAnswer {
    Policies(Vec<super::acl_state::AclPolicy>),
    Policy(Option<super::acl_state::AclPolicy>),
    Tokens(Vec<super::acl_state::AclToken>),
    Token(Option<super::acl_state::AclToken>),
}

impl Request {
    /// Whether only a server sends this: Raft's requests and the bootstrap gate's promises.
    /// With `verify_incoming` and `verify_server_hostname` they are served only to callers
    /// with a server certificate (docs/security.md, Roles).
    pub fn server_only(&self) -> bool {
        match self {
            Self::AppendEntries(_)
            | Self::Vote(_)
            | Self::InstallSnapshot(_)
            | Self::BootstrapPropose { .. }
            | Self::BootstrapRelease { .. }
            | Self::TimeoutNow
            | Self::PreVote(_) => true,
            Self::PeerStatus
            | Self::RemovePeer { .. }
            | Self::KvRead(_)
            | Self::Write(_)
            | Self::CatalogNodes(_)
            | Self::SnapshotSave
            | Self::AutopilotState
            | Self::WriteOnce(_)
            | Self::AclResolve { .. }
            | Self::AclRead(_)
            | Self::TransferLeader { .. } => false,
            // What is wrapped decides.
            Self::WithToken { request, .. } => request.server_only(),
        }
    }

    /// The request's name, for log lines.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AppendEntries(_) => "AppendEntries",
            Self::Vote(_) => "Vote",
            Self::InstallSnapshot(_) => "InstallSnapshot",
            Self::PeerStatus => "PeerStatus",
            Self::BootstrapPropose { .. } => "BootstrapPropose",
            Self::RemovePeer { .. } => "RemovePeer",
            Self::KvRead(_) => "KvRead",
            Self::Write(_) => "Write",
            Self::CatalogNodes(_) => "CatalogNodes",
            Self::SnapshotSave => "SnapshotSave",
            Self::AutopilotState => "AutopilotState",
            Self::TimeoutNow => "TimeoutNow",
            Self::BootstrapRelease { .. } => "BootstrapRelease",
            Self::PreVote(_) => "PreVote",
            Self::WriteOnce(_) => "WriteOnce",
            Self::WithToken { request, .. } => request.kind(),
            Self::AclResolve { .. } => "AclResolve",
            Self::AclRead(_) => "AclRead",
            Self::TransferLeader { .. } => "TransferLeader",
        }
    }
}

/// A pre-vote: "would you vote for me if I stood now?" Changes nothing on either side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVote {
    pub candidate: NodeId,
    /// The asker's last log id: a voter refuses an asker whose log is behind its own.
    pub last_log_id: Option<LogId>,
}

/// A voter's answer to a [`PreVote`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreVoteAnswer {
    pub granted: bool,
}

/// A server's answer to `PeerStatus`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub node_id: NodeId,
    pub name: String,
    /// It holds a vote or log entries: it belongs (or belonged) to a cluster.
    pub has_state: bool,
    pub cluster_id: Option<Uuid>,
    /// The leader it knows, if any.
    pub leader: Option<NodeId>,
    /// Servers of its current Raft configuration.
    pub members: Vec<NodeId>,
}

/// An answer on the server port.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    PeerStatus(PeerStatus),
    /// Answer to the bootstrap and operator requests: done, or why not.
    Done(Result<(), String>),
    KvRead(Result<(KvAnswer, ReadMeta), ApiFailure>),
    Write(Result<WriteOutcome, ApiFailure>),
    CatalogNodes(Result<(Vec<CatalogNode>, ReadMeta), ApiFailure>),
    SnapshotSave(Result<SavedSnapshot, ApiFailure>),
    AutopilotState(Result<AutopilotReport, String>),
    PreVote(PreVoteAnswer),
    /// Answer to `AclResolve`: the token, or why not (`ACL not found`, ACLs off).
    AclResolved(Result<ResolvedToken, String>),
    AclRead(Result<AclAnswer, ApiFailure>),
}

/// A token as a server resolved it for a client agent: enough to build its authorizer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedToken {
    pub accessor_id: String,
    /// It holds global-management: everything is allowed.
    pub management: bool,
    /// The rules of each of its (existing) policies.
    pub rules: Vec<String>,
}

/// A kind of answer on the server port: the payload of one [`Response`] variant. A caller
/// names the answer it expects ([`super::rpc::RpcClient::ask`]) and gets it, or an error; no
/// caller matches on variants it did not ask for.
pub trait Answer: Sized {
    /// The payload of `r` if `r` is this kind of answer.
    fn from_response(r: Response) -> Option<Self>;
}

/// One [`Answer`] impl per [`Response`] variant (every variant carries a distinct type).
macro_rules! answers {
    ($($variant:ident => $ty:ty),* $(,)?) => {
        $(impl Answer for $ty {
            fn from_response(r: Response) -> Option<Self> {
                match r {
                    Response::$variant(a) => Some(a),
                    _ => None,
                }
            }
        })*
    };
}

answers! {
    AppendEntries => Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>,
    Vote => Result<VoteResponse<NodeId>, RaftError<NodeId>>,
    InstallSnapshot => Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    PeerStatus => PeerStatus,
    Done => Result<(), String>,
    KvRead => Result<(KvAnswer, ReadMeta), ApiFailure>,
    Write => Result<WriteOutcome, ApiFailure>,
    CatalogNodes => Result<(Vec<CatalogNode>, ReadMeta), ApiFailure>,
    SnapshotSave => Result<SavedSnapshot, ApiFailure>,
    AutopilotState => Result<AutopilotReport, String>,
    PreVote => PreVoteAnswer,
    AclResolved => Result<ResolvedToken, String>,
    AclRead => Result<AclAnswer, ApiFailure>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, node: u128, id_tag: u128) -> Member {
        let mut tags = crate::gossip::Tags::new();
        tags.insert("role".into(), "consul".into());
        tags.insert("id".into(), Uuid::from_u128(id_tag).to_string());
        tags.insert("port".into(), "8300".into());
        Member {
            name: name.into(),
            node_id: Uuid::from_u128(node),
            addr: "127.0.0.1:8301".parse().unwrap(),
            generation: 1,
            status: MemberStatus::Alive,
            tags,
        }
    }

    #[test]
    fn a_member_claiming_another_servers_id_is_no_server_and_leaves_the_id_contested() {
        let genuine = member("s1", 1, 1);
        let forger = member("evil", 2, 1);
        let other = member("s2", 3, 3);
        let views = server_views(&[genuine.clone(), forger.clone(), other.clone()]);
        assert_eq!(
            views.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
            ["s2"],
            "neither claim to id 1 is trusted"
        );
        assert_eq!(
            contested_ids(&[genuine.clone(), forger.clone()]),
            vec![(1, vec!["evil".to_string(), "s1".to_string()])]
        );
        // Alone, the forger is no server either: its id tag is not its own node id.
        assert!(server_view(&forger).is_none());
        assert!(server_view(&genuine).is_some());
        // The same node under one name (a restart) is no contest.
        assert!(contested_ids(&[genuine.clone(), genuine]).is_empty());
    }

    #[test]
    fn a_second_member_claiming_a_servers_id_cannot_speak_for_its_status() {
        let genuine = member("s1", 1, 1);
        let mut twin = member("evil", 1, 1);
        twin.status = MemberStatus::Left;
        let both = [genuine.clone(), twin.clone()];
        // By the name the configuration knows, the genuine member answers, whoever leaves.
        assert_eq!(seen_as(&both, 1, "s1"), SeenAs::Member(MemberStatus::Alive));
        // Under neither claimant's name (a renamed server), nothing is concluded.
        assert_eq!(seen_as(&both, 1, "s1-renamed"), SeenAs::Ambiguous);
        // The configuration's name left, another claimant of the id is alive (a rename with
        // the old member lingering): nothing is concluded.
        let mut old = member("s1", 1, 1);
        old.status = MemberStatus::Left;
        let renamed = member("s1-new", 1, 1);
        assert_eq!(seen_as(&[old, renamed], 1, "s1"), SeenAs::Ambiguous);
        // One claimant, whatever its name, is the server (a rename).
        assert_eq!(
            seen_as(&[twin], 1, "s1"),
            SeenAs::Member(MemberStatus::Left)
        );
        assert_eq!(seen_as(&[genuine], 2, "s2"), SeenAs::Absent);
    }

    /// The bytes of two requests as tests/tls.rs writes them by hand: if the encoding of
    /// `Request` changes, that test's frames (and every older agent) must change with it.
    #[test]
    fn hand_written_frames_of_tests_tls_match_the_encoding() {
        #[derive(Serialize)]
        struct Frame<T> {
            id: u64,
            body: T,
        }
        let status = postcard::to_allocvec(&Frame {
            id: 1,
            body: Request::PeerStatus,
        })
        .unwrap();
        assert_eq!(status, [1, 3]);
        let vote = Request::Vote(openraft::raft::VoteRequest {
            vote: openraft::Vote::new(0, 7),
            last_log_id: None,
        });
        let vote = postcard::to_allocvec(&Frame { id: 1, body: vote }).unwrap();
        assert_eq!(vote, [1, 1, 0, 7, 0, 0]);
    }
}
