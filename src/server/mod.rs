//! Server mode: Raft (openraft) with durable storage, the server RPC port, the bootstrap gate
//! and the leader's duties. See docs/servers.md.
//!
//! # Layout
//! - [`types`]: the Raft type configuration; [`id`]: the Raft id ↔ node UUID (a leaf).
//! - [`protocol`]: what agents say to each other (requests, answers, read modes, `ServerView`),
//!   shared with the client layer.
//! - [`error`]: the typed errors, each saying what the caller should do.
//! - [`store`]: log and state machine in redb.
//! - [`state`]: the replicated state (KV store, catalog) and how commands change it.
//! - [`acl_state`]: its ACL part (policies, tokens, bootstrap), the checks, token resolution.
//! - [`rpc`]: framing, connection pool and listener of the server port.
//! - `rpc_guard`: what the port refuses (connection cap, frame limits by kind, higher terms
//!   from strangers); `snapshot_inbox`: snapshot chunks, bounded and decoded before install.
//! - [`network`]: openraft's network over [`rpc`].
//! - [`gate`]: the bootstrap gate, a pure state machine; `bootstrap` runs it.
//! - [`autopilot`]: autopilot's rules, pure; `health` tracks the servers and applies them.
//! - `election`: when to stand for election (a pre-vote round first; openraft's timer is off).
//! - `duties`: the duty loop (address book, advertisement, quorum log, the leader's round).
//! - `leave`: leaving the Raft configuration, removing a peer, handing over leadership.
//! - [`gauges`]: what the metrics endpoint reads of a server (docs/metrics.md).
//! - `status`: what a server reports (info, configuration, quorum, leader address).
//! - [`api`]: KV, catalog and snapshot requests with Consul's consistency modes.
//! - [`batch`]: the leader's group commit of concurrent writes.
//! - `tombstones`: when KV tombstones are reaped (the tombstone clock) and the `kv` info.
//! - [`recovery`]: outage recovery (`peers.json`, `muster operator raft recover`).
//! - this module: [`Server`] and the one constructor that wires the parts together.

pub mod acl_check;
mod acl_port;
pub mod acl_state;
pub mod api;
pub mod autopilot;
pub mod batch;
mod bootstrap;
mod confirm;
mod duties;
mod election;
pub mod error;
pub mod gate;
pub mod gauges;
mod health;
pub mod id;
mod leave;
pub mod network;
pub mod protocol;
pub mod recovery;
pub mod rpc;
mod rpc_guard;
mod snapshot_inbox;
pub mod state;
mod status;
pub mod store;
mod tombstones;
mod transfer;
pub mod types;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::raft::AppendEntriesResponse;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::gossip::{Gossip, Tags};
pub use acl_port::AclServerConfig;
pub use error::{ServerError, StartError};
pub use protocol::{server_view, server_views, ServerView};
use protocol::{Request, Response, Write};
use rpc::RpcClient;
pub use status::PeerInfo;
use store::{LogStore, StateMachineStore};
use types::{node_id, NodeId, Raft, ServerNode};

/// Deadline of muster's own server-to-server calls (status, bootstrap, operator).
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// What a server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub node_id: Uuid,
    pub name: String,
    pub datacenter: String,
    /// Address other servers reach this one's RPC port at.
    pub rpc_advertise: SocketAddr,
    pub bootstrap_expect: u32,
    pub bootstrap: bool,
    /// Scales every Raft timing (1 = LAN defaults).
    pub raft_multiplier: u32,
    pub data_dir: PathBuf,
    /// Autopilot settings from the configuration file; the first leader replicates them.
    pub autopilot: autopilot::AutopilotConfig,
    /// How long a KV tombstone is kept before the leader reaps it (`kv_tombstone_ttl`).
    pub tombstone_ttl: Duration,
    /// TLS on the RPC port, inbound and outbound (docs/security.md); `None`: plaintext.
    pub tls: Option<Arc<crate::tls::rpc::RpcTls>>,
    /// ACLs (docs/acl.md); `None`: off, every request allowed.
    pub acl: Option<AclServerConfig>,
    /// Whether the agent joins anyone by itself (`-join` or `-retry-join`); the gate's waiting
    /// line says what to run when it does not.
    pub join_configured: bool,
}

/// A running server.
pub struct Server {
    /// The Raft node: every replicated change and every leadership question goes through it.
    pub raft: Raft,
    /// The log store, kept to ask whether this server holds Raft state (the gate must never
    /// bootstrap a server that does).
    log: LogStore,
    /// The state machine, read directly for KV, catalog and cluster-id answers.
    pub(crate) sm: StateMachineStore,
    /// Connections to the other servers: forwarding, probes, proposals, operator requests.
    pub(crate) rpc: Arc<RpcClient>,
    /// Where each server is now, from gossip (see [`network::AddressBook`]); openraft's
    /// network reads it too, so a server that moved is reached at its new address.
    book: network::AddressBook,
    /// This server's Raft id (its node UUID).
    pub id: NodeId,
    /// This server as the Raft configuration names it (RPC address, node name).
    pub node: ServerNode,
    /// The start-up settings, kept for the gate, the duties and the reports.
    cfg: ServerConfig,
    /// Gossip: which servers exist and whether they are alive; the cluster tag is set on it.
    gossip: Gossip,
    /// This server's gossip tags without `cluster`, which is added to a copy of them (a
    /// reload may change their `node_meta`).
    base_tags: Mutex<Tags>,
    /// The gate's latest explanation, for `muster info`.
    gate_status: Mutex<(gate::GatePhase, String)>,
    /// The bootstrap promise this server gave a proposer, if any, and its own last attempt:
    /// a copy of `<data_dir>/bootstrap-promise`, changed only after the file (docs/servers.md).
    promise: Mutex<gate::Promise>,
    /// When this server last heard from a leader (AppendEntries handled): `last_contact` in
    /// reads' metadata and `muster info`, and the wait before standing for election.
    pub(crate) last_contact: Mutex<Option<Instant>>,
    /// When this server last granted a vote: it waits an election timeout from then before
    /// standing itself, so that a candidate it voted for is not undercut (`election`).
    voted: Mutex<Option<Instant>>,
    /// The autopilot settings of this server's configuration (`cfg.autopilot` until a reload
    /// changes them): recorded by the first leader, and in force until the cluster has
    /// recorded any.
    configured_autopilot: Mutex<autopilot::AutopilotConfig>,
    /// Tokens resolved into authorizers, valid while the ACL state is unchanged (`acl_port`).
    acl_resolved: Mutex<acl_port::ResolvedCache>,
    /// openraft's leader lease (`election_timeout_max`): followers refuse votes while it runs,
    /// and a leader that has not heard from a quorum within one is no leader to report, read
    /// from or write to (`Server::leads_with_lease`).
    lease: Duration,
    /// When each server last acknowledged this one as leader (autopilot's health).
    contacts: network::Contacts,
    /// What autopilot remembers between rounds, as one value behind one lock.
    trackers: Mutex<health::Trackers>,
    /// openraft allows one membership change at a time; the leader's duties and operator
    /// requests take turns through this lock.
    membership_lock: tokio::sync::Mutex<()>,
    /// Blocking queries waiting here now.
    pub(crate) blocking_queries: std::sync::atomic::AtomicU64,
    /// The leader's write queue: concurrent writes share entries (docs/state.md).
    pub(crate) batcher: batch::WriteBatcher,
    /// The RPC listener, the gate, the duty loop and the batcher, aborted on shutdown.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Node ids more than one gossip member claims, as last logged (src/server/duties.rs).
    contested: Mutex<Vec<(NodeId, Vec<String>)>>,
    /// What servers' ports lately answered that confirmed nothing (`confirm`).
    recent_answers: confirm::RecentAnswers,
    /// Refuses Raft messages of a higher term from servers outside the configuration.
    term_guard: rpc_guard::TermGuard,
    /// The snapshot being received from the leader, bounded and checked before install.
    snapshot_inbox: snapshot_inbox::SnapshotInbox,
}

/// openraft timings for a LAN, scaled by the multiplier (docs/servers.md).
pub fn raft_config(multiplier: u32) -> Result<openraft::Config, StartError> {
    let m = multiplier.max(1) as u64;
    openraft::Config {
        cluster_name: "muster".into(),
        heartbeat_interval: 40 * m,
        election_timeout_min: 100 * m,
        election_timeout_max: 200 * m,
        install_snapshot_timeout: 2000 * m,
        // docs/state.md: a snapshot every 4,096 entries, 1,024 entries of log kept behind it.
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(4096),
        max_in_snapshot_log_to_keep: 1024,
        // openraft's default, named so that the InstallSnapshot frame limit follows it.
        snapshot_max_chunk_size: rpc_guard::SNAPSHOT_CHUNK as u64,
        // muster decides when to stand, after a pre-vote round (src/server/election.rs).
        enable_elect: false,
        ..Default::default()
    }
    .validate()
    .map_err(|e| StartError::Config(format!("invalid Raft timings: {e}")))
}

impl Server {
    /// Opens the store, starts Raft and the RPC listener, and spawns the gate and leader loops.
    pub async fn start(
        cfg: ServerConfig,
        gossip: Gossip,
        listener: TcpListener,
        base_tags: Tags,
    ) -> Result<Arc<Server>, StartError> {
        if let Some(summary) = recovery::recover_at_start(&cfg.data_dir)? {
            tracing::warn!("{summary}");
        }
        let (log, sm) = store::open(&cfg.data_dir.join("raft"))?;
        let promise =
            bootstrap::read_promise(&cfg.data_dir).map_err(|source| StartError::Promise {
                path: cfg
                    .data_dir
                    .join(bootstrap::PROMISE_FILE)
                    .display()
                    .to_string(),
                source,
            })?;
        let id = node_id(cfg.node_id);
        let rpc = RpcClient::new(listener.local_addr().ok().map(|a| a.ip()), cfg.tls.clone());
        let raft_cfg = Arc::new(raft_config(cfg.raft_multiplier)?);
        let lease = Duration::from_millis(raft_cfg.election_timeout_max);
        let book = network::AddressBook::default();
        let contacts = network::Contacts::default();
        let network = network::Network {
            rpc: rpc.clone(),
            local: id,
            book: book.clone(),
            contacts: contacts.clone(),
        };
        let raft = Raft::new(id, raft_cfg, network, log.clone(), sm.clone())
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let node = ServerNode {
            addr: cfg.rpc_advertise.to_string(),
            name: cfg.name.clone(),
        };
        let (batcher, batching) = batch::WriteBatcher::start(raft.clone());
        let configured_autopilot = Mutex::new(cfg.autopilot.clone());
        let server = Arc::new(Server {
            raft,
            log,
            sm,
            rpc,
            book,
            id,
            node,
            cfg,
            gossip,
            base_tags: Mutex::new(base_tags),
            gate_status: Mutex::new((gate::GatePhase::Waiting, String::new())),
            promise: Mutex::new(promise),
            last_contact: Mutex::new(None),
            voted: Mutex::new(None),
            acl_resolved: Mutex::new(acl_port::ResolvedCache::default()),
            configured_autopilot,
            lease,
            contacts,
            trackers: Mutex::new(health::Trackers::default()),
            membership_lock: tokio::sync::Mutex::new(()),
            blocking_queries: std::sync::atomic::AtomicU64::new(0),
            batcher,
            tasks: Mutex::new(vec![batching]),
            contested: Mutex::new(Vec::new()),
            recent_answers: Default::default(),
            term_guard: Default::default(),
            snapshot_inbox: Default::default(),
        });
        let s = server.clone();
        let serve = tokio::spawn(rpc::serve(listener, server.cfg.tls.clone(), move |req| {
            let s = s.clone();
            async move { s.handle(req).await }
        }));
        server.bootstrap_alone_if_asked().await;
        let gate = tokio::spawn(server.clone().gate_loop());
        let duties = tokio::spawn(server.clone().duty_loop());
        let elections = tokio::spawn(server.clone().election_loop());
        server
            .tasks
            .lock()
            .expect("tasks lock")
            .extend([serve, gate, duties, elections]);
        Ok(server)
    }

    /// What the RPC port answers, counted and timed.
    async fn handle(self: Arc<Self>, req: Request) -> Response {
        // docs/metrics.md: `muster.rpc.request` and its latency, by request kind.
        let kind = req.kind();
        let started = Instant::now();
        let answer = self.handle_with_token(req).await;
        metrics::counter!("muster.rpc.request", "type" => kind).increment(1);
        metrics::histogram!("muster.rpc.request_time", "type" => kind)
            .record(started.elapsed().as_secs_f64() * 1000.0);
        answer
    }

    /// A request with its caller's token is served as that caller (`acl_port`), any other as
    /// an anonymous one.
    async fn handle_with_token(self: Arc<Self>, req: Request) -> Response {
        match req {
            Request::WithToken { secret, request } => {
                if matches!(*request, Request::WithToken { .. }) {
                    return acl_port::denied(
                        &request,
                        "a WithToken request inside a WithToken request is refused".into(),
                    );
                }
                self.handle_as(Some(secret), *request).await
            }
            other => self.handle_as(None, other).await,
        }
    }

    /// Each request goes to the room that owns it (the caller already checked).
    async fn dispatch(self: Arc<Self>, req: Request) -> Response {
        match req {
            Request::AppendEntries(r) => {
                if self.refuses("AppendEntries", &r.vote) {
                    return Response::AppendEntries(Err(rpc_guard::refusal()));
                }
                let res = self.raft.append_entries(r).await;
                // Any answer but "my vote is higher" means the sender is this server's leader,
                // a log conflict included (a new leader's first rounds find where logs part).
                let from_leader = res
                    .as_ref()
                    .is_ok_and(|r| !matches!(r, AppendEntriesResponse::HigherVote(_)));
                if from_leader {
                    *self.last_contact.lock().expect("contact lock") = Some(Instant::now());
                }
                Response::AppendEntries(res)
            }
            Request::Vote(r) => {
                if self.refuses("Vote", &r.vote) {
                    return Response::Vote(Err(rpc_guard::refusal()));
                }
                let res = self.raft.vote(r).await;
                if res.as_ref().is_ok_and(|r| r.vote_granted) {
                    *self.voted.lock().expect("vote lock") = Some(Instant::now());
                }
                Response::Vote(res)
            }
            Request::InstallSnapshot(r) => {
                if self.refuses("InstallSnapshot", &r.vote) {
                    return Response::InstallSnapshot(Err(rpc_guard::refusal()));
                }
                let res = self.snapshot_inbox.receive(&self.raft, r).await;
                *self.last_contact.lock().expect("contact lock") = Some(Instant::now());
                Response::InstallSnapshot(res)
            }
            Request::PeerStatus => Response::PeerStatus(self.status()),
            Request::BootstrapPropose {
                proposer,
                attempt,
                servers,
            } => Response::Done(self.accept_proposal(proposer, attempt, &servers)),
            Request::BootstrapRelease { proposer, up_to } => {
                Response::Done(self.release_promise(proposer, up_to))
            }
            Request::RemovePeer { id } => {
                Response::Done(self.remove_peer_here(id).await.map_err(|e| e.to_string()))
            }
            Request::KvRead(r) => Response::KvRead(self.kv_read(r).await),
            Request::Write(cmd) => Response::Write(self.write(Write { id: None, cmd }).await),
            Request::WriteOnce(w) => Response::Write(self.write(w).await),
            Request::CatalogNodes(c) => Response::CatalogNodes(self.catalog_nodes(c).await),
            Request::SnapshotSave => Response::SnapshotSave(self.snapshot_save().await),
            Request::AutopilotState => {
                Response::AutopilotState(self.autopilot_state().await.map_err(|e| e.to_string()))
            }
            Request::TimeoutNow => {
                self.clone().stand_for_election();
                Response::Done(Ok(()))
            }
            Request::TransferLeader { to } => {
                Response::Done(self.transfer_here(to).await.map_err(|e| e.to_string()))
            }
            Request::PreVote(p) => Response::PreVote(self.answer_pre_vote(p).await),
            Request::AclResolve { secret } => Response::AclResolved(self.acl_resolve(&secret)),
            Request::AclRead(q) => Response::AclRead(self.acl_read(q).await),
            Request::WithToken { request, .. } => acl_port::denied(
                &request,
                "a WithToken request inside a WithToken request is refused".into(),
            ),
        }
    }

    /// Whether the Raft message `kind` carrying `vote` is refused before openraft sees it
    /// ([`rpc_guard::TermGuard`]).
    fn refuses(&self, kind: &str, vote: &types::Vote) -> bool {
        self.term_guard.refuses(&self.raft, &self.book, kind, vote)
    }

    /// Resolves if Raft stops on an error it cannot recover from, with one line for the
    /// operator: what failed, where, and what to do. openraft reports such an error (a log
    /// append or vote that could not be written: a full disk, an I/O error) as
    /// `Fatal::StorageError` in its metrics' `running_state` and stops the Raft core, while
    /// gossip, the RPC port and the HTTP API would carry on: a server alive to every other
    /// agent that can no longer take part. The agent leaves and exits on it, so that the
    /// leader removes it and autopilot can replace it. Never resolves on a normal shutdown.
    pub async fn failed(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow_and_update().running_state {
                if let Some(line) = self.fatal_line(fatal) {
                    return line;
                }
            }
            if metrics.changed().await.is_err() {
                // Raft is gone and said nothing more: a normal shutdown.
                std::future::pending::<()>().await;
            }
        }
    }

    /// The operator's line for a fatal Raft stop; None for a normal one.
    fn fatal_line(&self, fatal: &openraft::error::Fatal<NodeId>) -> Option<String> {
        use openraft::error::Fatal;
        let store = self.cfg.data_dir.join("raft");
        match fatal {
            Fatal::Stopped => None,
            Fatal::StorageError(e) => Some(format!(
                "the Raft store in {} failed: {e}; Raft has stopped on this server, so it leaves \
                 the cluster and exits. Free space on that disk or fix the I/O error (see the \
                 system log), then start the agent again: it rejoins with the data it has",
                store.display()
            )),
            Fatal::Panicked => Some(format!(
                "Raft stopped after an internal error (a bug: please report it with this log); \
                 this server leaves the cluster and exits; start the agent again (its data is \
                 in {}) to rejoin",
                store.display()
            )),
        }
    }

    /// Stops Raft and the server's tasks.
    pub async fn shutdown(&self) {
        for t in self.tasks.lock().expect("tasks lock").drain(..) {
            t.abort();
        }
        let _ = self.raft.shutdown().await;
    }
}
