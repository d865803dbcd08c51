//! Server mode: Raft (openraft) with durable storage, the server RPC port, the bootstrap gate
//! and the leader's duties. See docs/servers.md.
//!
//! # Layout
//! - [`types`]: the Raft type configuration.
//! - [`store`]: log and state machine in redb.
//! - [`rpc`]: framing, connection pool and listener of the server port.
//! - [`network`]: openraft's network over [`rpc`].
//! - [`gate`]: the bootstrap gate, a pure state machine.
//! - this module: [`Server`], which wires them and runs the gate and the leader's duties.

pub mod api;
pub mod autopilot;
pub mod batch;
pub mod gate;
pub mod network;
pub mod recovery;
pub mod rpc;
pub mod state;
pub mod store;
pub mod types;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, ServerState};
use rand::RngExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::gossip::{Gossip, Member, MemberStatus, Tags};
use gate::{Decision, ServerView};
use rpc::{PeerStatus, Request, Response, RpcClient};
use store::{LogStore, StateMachineStore};
use types::{node_id, node_uuid, Command, NodeId, Raft, ServerNode};

/// Deadline of muster's own server-to-server calls (status, bootstrap, operator).
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the gate repeats an unchanged "why I wait" line.
const GATE_LOG_EVERY: Duration = Duration::from_secs(10);
/// Longest wait for a membership change to commit.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(10);

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
}

/// One server of the configuration, for `operator raft list-peers`.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PeerInfo {
    #[serde(rename = "ID")]
    pub id: String,
    pub node: String,
    pub address: String,
    pub leader: bool,
    pub voter: bool,
    pub protocol_version: String,
    pub last_index: u64,
}

/// A running server.
pub struct Server {
    pub raft: Raft,
    log: LogStore,
    pub(crate) sm: StateMachineStore,
    pub(crate) rpc: Arc<RpcClient>,
    /// Where each server is now, from gossip (see [`network::AddressBook`]).
    book: network::AddressBook,
    pub id: NodeId,
    pub node: ServerNode,
    cfg: ServerConfig,
    gossip: Gossip,
    base_tags: Tags,
    /// The gate's latest explanation, for `muster info`.
    gate_status: Mutex<String>,
    promise: Mutex<gate::Promise>,
    /// When this server last heard from a leader (AppendEntries handled).
    pub(crate) last_contact: Mutex<Option<Instant>>,
    /// When each server last acknowledged this one as leader.
    contacts: network::Contacts,
    /// Servers and since when they have been healthy without interruption (autopilot).
    healthy_since: Mutex<HashMap<NodeId, Instant>>,
    /// Servers this leader removed from the configuration lately. A leaving server is still
    /// alive in gossip until its removal has committed, and must not be added back meanwhile
    /// (it would count as a voter that is about to vanish); held until gossip shows it not
    /// alive, or for [`REMOVED_HOLD`].
    removed_lately: Mutex<HashMap<NodeId, Instant>>,
    /// Servers of the configuration and since when gossip has shown them dead.
    dead_since: Mutex<HashMap<NodeId, Instant>>,
    /// Autopilot's last "keeping dead server" explanations, logged when they change.
    kept_logged: Mutex<Vec<String>>,
    /// openraft allows one membership change at a time; the leader's duties and operator
    /// requests take turns through this lock.
    membership_lock: tokio::sync::Mutex<()>,
    /// Blocking queries waiting here now.
    pub(crate) blocking_queries: std::sync::atomic::AtomicU64,
    /// The leader's write queue: concurrent writes share entries (docs/state.md).
    pub(crate) batcher: batch::WriteBatcher,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Longest time a removed server that gossip still shows alive is kept out of the
/// configuration (see `Server::removed_lately`); after it, an alive server is added again, as
/// Consul re-adds a live server removed with `remove-peer`.
const REMOVED_HOLD: Duration = Duration::from_secs(30);

/// openraft timings for a LAN, scaled by the multiplier (docs/servers.md).
pub fn raft_config(multiplier: u32) -> Result<openraft::Config, String> {
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
        ..Default::default()
    }
    .validate()
    .map_err(|e| format!("invalid Raft timings: {e}"))
}

/// Servers as gossip shows them, from their tags (consul-behaviour §3.1): `role=consul`, an
/// `id` and a `port`; anything else is not a server and is skipped.
pub fn server_views(members: &[Member]) -> Vec<ServerView> {
    members
        .iter()
        .filter(|m| m.tags.get("role").map(String::as_str) == Some("consul"))
        .filter_map(|m| {
            let id = Uuid::parse_str(m.tags.get("id")?).ok()?;
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
        })
        .collect()
}

impl Server {
    /// Opens the store, starts Raft and the RPC listener, and spawns the gate and leader loops.
    pub async fn start(
        cfg: ServerConfig,
        gossip: Gossip,
        listener: TcpListener,
        base_tags: Tags,
    ) -> Result<Arc<Server>, String> {
        if let Some(summary) = recovery::recover_at_start(&cfg.data_dir)? {
            tracing::warn!("{summary}");
        }
        let (log, sm) = store::open(&cfg.data_dir.join("raft"))?;
        let id = node_id(cfg.node_id);
        let rpc = RpcClient::new(listener.local_addr().ok().map(|a| a.ip()));
        let raft_cfg = Arc::new(raft_config(cfg.raft_multiplier)?);
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
            .map_err(|e| format!("cannot start Raft: {e}"))?;
        let node = ServerNode {
            addr: cfg.rpc_advertise.to_string(),
            name: cfg.name.clone(),
        };
        let (batcher, batching) = batch::WriteBatcher::start(raft.clone());
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
            base_tags,
            gate_status: Mutex::new(String::new()),
            promise: Mutex::new(gate::Promise::default()),
            last_contact: Mutex::new(None),
            contacts,
            healthy_since: Mutex::new(HashMap::new()),
            removed_lately: Mutex::new(HashMap::new()),
            dead_since: Mutex::new(HashMap::new()),
            kept_logged: Mutex::new(Vec::new()),
            membership_lock: tokio::sync::Mutex::new(()),
            blocking_queries: std::sync::atomic::AtomicU64::new(0),
            batcher,
            tasks: Mutex::new(vec![batching]),
        });
        let s = server.clone();
        let serve = tokio::spawn(rpc::serve(listener, move |req| {
            let s = s.clone();
            async move { s.handle(req).await }
        }));
        let has_state = server.has_state();
        if server.cfg.bootstrap && !has_state {
            tracing::warn!(
                "bootstrap mode: electing this server as a cluster of one; other servers join it"
            );
            let members = BTreeMap::from([(server.id, server.node.clone())]);
            if let Err(e) = server.raft.initialize(members).await {
                tracing::error!(error = %e, "bootstrap failed");
            }
            let _ = server.raft.trigger().elect().await;
            server.set_gate_status("bootstrapped alone (-bootstrap)".into());
        } else if server.cfg.bootstrap && has_state {
            server.set_gate_status("Raft data found, disabling bootstrap mode".into());
        }
        let gate = tokio::spawn(server.clone().gate_loop());
        let duties = tokio::spawn(server.clone().duty_loop());
        server
            .tasks
            .lock()
            .expect("tasks lock")
            .extend([serve, gate, duties]);
        Ok(server)
    }

    fn has_state(&self) -> bool {
        self.log.has_state().unwrap_or(true)
    }

    fn set_gate_status(&self, s: String) {
        *self.gate_status.lock().expect("gate lock") = s;
    }

    /// The gate's latest explanation.
    pub fn gate_status(&self) -> String {
        self.gate_status.lock().expect("gate lock").clone()
    }

    /// The cluster id, once the first leader has named the cluster.
    pub fn cluster_id(&self) -> Option<Uuid> {
        self.sm.state.read().expect("sm lock").cluster_id
    }

    /// This server's answer to `PeerStatus`.
    pub fn status(&self) -> PeerStatus {
        let m = self.raft.metrics().borrow().clone();
        PeerStatus {
            node_id: self.id,
            name: self.cfg.name.clone(),
            has_state: self.has_state(),
            cluster_id: self.cluster_id(),
            leader: m.current_leader,
            members: m
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect(),
        }
    }

    async fn handle(self: Arc<Self>, req: Request) -> Response {
        match req {
            Request::AppendEntries(r) => {
                let res = self.raft.append_entries(r).await;
                if res.as_ref().is_ok_and(|r| r.is_success()) {
                    *self.last_contact.lock().expect("contact lock") = Some(Instant::now());
                }
                Response::AppendEntries(res)
            }
            Request::Vote(r) => Response::Vote(self.raft.vote(r).await),
            Request::InstallSnapshot(r) => {
                let res = self.raft.install_snapshot(r).await;
                *self.last_contact.lock().expect("contact lock") = Some(Instant::now());
                Response::InstallSnapshot(res)
            }
            Request::PeerStatus => Response::PeerStatus(self.status()),
            Request::BootstrapPropose { proposer, servers } => {
                Response::Done(self.accept_proposal(proposer, &servers))
            }
            Request::RemovePeer { id } => Response::Done(self.remove_peer_here(id).await),
            Request::KvRead(r) => Response::KvRead(self.kv_read(r).await),
            Request::Write(c) => Response::Write(self.write(c).await),
            Request::CatalogNodes(c) => Response::CatalogNodes(self.catalog_nodes(c).await),
            Request::SnapshotSave => Response::SnapshotSave(self.snapshot_save().await),
            Request::AutopilotState => Response::AutopilotState(self.autopilot_state().await),
            Request::TimeoutNow => {
                self.clone().stand_for_election();
                Response::Done(Ok(()))
            }
        }
    }

    fn accept_proposal(
        &self,
        proposer: NodeId,
        servers: &[(NodeId, ServerNode)],
    ) -> Result<(), String> {
        if self.has_state() {
            return Err(format!(
                "{} holds Raft state and will not bootstrap again",
                self.cfg.name
            ));
        }
        if !servers.iter().any(|(id, _)| *id == self.id) {
            return Err(format!("the proposal does not include {}", self.cfg.name));
        }
        let views = server_views(&self.gossip.members());
        self.promise
            .lock()
            .expect("promise lock")
            .offer(proposer, Instant::now(), |holder| {
                views.iter().any(|v| v.id == holder && v.alive)
            })
    }

    /// Initialises Raft with exactly `servers` (idempotent for the same membership).
    async fn initialize(&self, servers: Vec<(NodeId, ServerNode)>) -> Result<(), String> {
        let members: BTreeMap<NodeId, ServerNode> = servers.into_iter().collect();
        match self.raft.initialize(members.clone()).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                let current: BTreeMap<NodeId, ServerNode> = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .nodes()
                    .map(|(id, n)| (*id, n.clone()))
                    .collect();
                // Already initialised identically, or already reached by the new leader (which
                // replicates the same membership): both are the outcome asked for.
                if current == members || current.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} is already initialised with another membership",
                        self.cfg.name
                    ))
                }
            }
            Err(e) => Err(format!("initialise failed on {}: {e}", self.cfg.name)),
        }
    }

    /// Runs the bootstrap gate until it has nothing left to decide.
    async fn gate_loop(self: Arc<Self>) {
        if self.cfg.bootstrap_expect == 0 {
            if !self.cfg.bootstrap {
                self.set_gate_status(
                    "not in -bootstrap-expect mode; waiting to be added by a leader".into(),
                );
            }
            return;
        }
        let mut members = self.gossip.subscribe();
        let mut last_log: Option<(String, Instant)> = None;
        loop {
            let views = server_views(&members.borrow_and_update());
            let decision = gate::evaluate(
                self.id,
                self.cfg.bootstrap_expect,
                &self.cfg.datacenter,
                self.has_state(),
                &views,
            );
            let line = match &decision {
                Decision::Done(reason) => {
                    tracing::info!("bootstrap: {reason}");
                    self.set_gate_status(reason.clone());
                    return;
                }
                Decision::Wait { need, seen } => format!(
                    "waiting for {need} more server{} (expect={}, seen: {})",
                    if *need == 1 { "" } else { "s" },
                    self.cfg.bootstrap_expect,
                    seen.join(", ")
                ),
                Decision::WaitForProposer { proposer, seen } => format!(
                    "{} servers seen ({}); waiting for {proposer} (lowest node id) to propose the bootstrap",
                    seen.len(),
                    seen.join(", ")
                ),
                Decision::Conflict(why) => why.clone(),
                Decision::Propose(servers) => {
                    match self.try_bootstrap(servers).await {
                        Ok(msg) => {
                            self.set_gate_status(msg);
                            return;
                        }
                        Err(e) => {
                            tracing::warn!("bootstrap: attempt failed, will retry: {e}");
                            self.set_gate_status(format!("bootstrap attempt failed, retrying: {e}"));
                            let pause = rand::rng().random_range(300..1200);
                            tokio::time::sleep(Duration::from_millis(pause)).await;
                            continue;
                        }
                    }
                }
            };
            let repeat = last_log
                .as_ref()
                .is_some_and(|(l, t)| *l == line && t.elapsed() < GATE_LOG_EVERY);
            if !repeat {
                if matches!(decision, Decision::Conflict(_)) {
                    tracing::error!("bootstrap: {line}");
                } else {
                    tracing::info!("bootstrap: {line}");
                }
                last_log = Some((line.clone(), Instant::now()));
            }
            self.set_gate_status(line);
            let _ = tokio::time::timeout(Duration::from_secs(1), members.changed()).await;
        }
    }

    /// Probe, propose, commit (docs/servers.md). `Ok` ends the gate, with its final status.
    async fn try_bootstrap(&self, servers: &[ServerView]) -> Result<String, String> {
        // 1. Probe: does any of them hold Raft state or belong to a cluster?
        let mut statuses = Vec::new();
        for s in servers {
            let st = if s.id == self.id {
                self.status()
            } else {
                match self
                    .rpc
                    .call(&s.rpc_addr, Request::PeerStatus, CALL_TIMEOUT)
                    .await
                {
                    Ok(Response::PeerStatus(st)) => st,
                    Ok(_) => {
                        return Err(format!(
                            "{} gave an unexpected answer to a status request",
                            s.name
                        ))
                    }
                    Err(e) => return Err(format!("cannot confirm the status of {}: {e}", s.name)),
                }
            };
            statuses.push((s.name.clone(), st));
        }
        if let Some(why) = gate::veto(&statuses) {
            tracing::error!("bootstrap: {why}");
            return Ok(why);
        }
        // 2. Propose: every server promises not to bootstrap with anyone else for now.
        let membership = gate::canonical_membership(servers);
        let calls = servers.iter().map(|s| async {
            if s.id == self.id {
                return self
                    .accept_proposal(self.id, &membership)
                    .map_err(|e| format!("{}: {e}", s.name));
            }
            let req = Request::BootstrapPropose {
                proposer: self.id,
                servers: membership.clone(),
            };
            match self.rpc.call(&s.rpc_addr, req, CALL_TIMEOUT).await {
                Ok(Response::Done(r)) => r.map_err(|e| format!("{}: {e}", s.name)),
                Ok(_) => Err(format!("{}: unexpected answer", s.name)),
                Err(e) => Err(format!("{}: {e}", s.name)),
            }
        });
        let results = futures::future::join_all(calls).await;
        if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
            return Err(format!("proposal refused: {e}"));
        }
        // 3. Initialise here with the canonical membership and stand for election at once. The
        //    others are bound by their promise and receive the same membership from the new
        //    leader's first AppendEntries; initialising them too would only split the first vote.
        let names: Vec<&str> = membership.iter().map(|(_, n)| n.name.as_str()).collect();
        tracing::info!(
            "Found expected number of peers, attempting bootstrap: {}",
            names.join(", ")
        );
        self.initialize(membership.clone()).await?;
        let _ = self.raft.trigger().elect().await;
        Ok(format!(
            "bootstrapped the cluster with {}",
            names.join(", ")
        ))
    }

    /// Leader duties and tag upkeep, every 500 ms and on gossip changes.
    async fn duty_loop(self: Arc<Self>) {
        let mut members = self.gossip.subscribe();
        let mut metrics = self.raft.metrics();
        let mut leader_logged = false;
        let mut advertised_cluster: Option<Uuid> = None;
        let mut quorum_logged: (Option<String>, Instant) = (None, Instant::now());
        let mut problem_since: Option<Instant> = None;
        // Metrics change with every committed entry; only a change of role, leader or
        // membership is news here (reacting to every write would cost CPU per write).
        let shape = |m: &openraft::RaftMetrics<NodeId, ServerNode>| {
            (
                m.state,
                m.current_leader,
                m.membership_config.log_id().map(|l| l.index),
            )
        };
        let mut last_shape = shape(&metrics.borrow());
        loop {
            tokio::select! {
                _ = members.changed() => {}
                _ = async {
                    loop {
                        if metrics.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                        let now = shape(&metrics.borrow());
                        if now != last_shape {
                            last_shape = now;
                            return;
                        }
                    }
                } => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            self.book.replace(
                server_views(&members.borrow())
                    .into_iter()
                    .filter(|v| v.alive)
                    .map(|v| (v.id, v.rpc_addr))
                    .collect(),
            );
            if let Some(c) = self.cluster_id() {
                if advertised_cluster != Some(c) {
                    let mut tags = self.base_tags.clone();
                    tags.insert("cluster".into(), c.to_string());
                    self.gossip.set_tags(tags).await;
                    advertised_cluster = Some(c);
                }
            }
            let m = self.raft.metrics().borrow().clone();
            if let Err(fatal) = &m.running_state {
                tracing::error!(
                    "Raft stopped: {fatal}; this server cannot take part until restarted"
                );
                return;
            }
            // Said once it has lasted 5 s (a cold start, gossip still joining, is not news),
            // then every 30 s while it lasts.
            let problem = self.quorum_problem();
            let quorum_ok = problem.is_none();
            let since = match problem {
                Some(_) => *problem_since.get_or_insert_with(Instant::now),
                None => {
                    problem_since = None;
                    Instant::now()
                }
            };
            let problem = problem.filter(|_| since.elapsed() >= Duration::from_secs(5));
            let changed = problem.is_some() != quorum_logged.0.is_some();
            let due = problem.is_some() && quorum_logged.1.elapsed() >= Duration::from_secs(30);
            if changed || due {
                match &problem {
                    Some(p) => tracing::warn!("{p}"),
                    None if quorum_logged.0.is_some() => tracing::info!("quorum regained"),
                    None => {}
                }
                quorum_logged = (problem, Instant::now());
            }
            if m.state != ServerState::Leader {
                leader_logged = false;
                continue;
            }
            if !leader_logged {
                tracing::info!(term = m.current_term, "cluster leadership acquired");
                leader_logged = true;
            }
            if !quorum_ok {
                // Nothing a leader does can commit now; the waits would only block this loop.
                continue;
            }
            if self.cluster_id().is_none() {
                if let Err(e) = self.duty_write(Command::SetClusterId(Uuid::new_v4())).await {
                    tracing::debug!(error = %e, "naming the cluster failed; will retry");
                }
            }
            // The configuration file's autopilot settings apply once, when the cluster is
            // new (as Consul's); afterwards `muster operator autopilot set-config` changes them.
            if self
                .sm
                .state
                .read()
                .expect("sm lock")
                .data
                .autopilot
                .is_none()
            {
                let cmd = state::StateCommand::AutopilotSet(self.cfg.autopilot.clone());
                if let Err(e) = self.duty_write(Command::State(cmd)).await {
                    tracing::debug!(error = %e, "recording the autopilot settings failed; will retry");
                }
            }
            let views = server_views(&members.borrow());
            self.reconcile(&m, &views).await;
            let all = members.borrow().clone();
            self.reconcile_catalog(&all).await;
        }
    }

    /// A write of the leader's own duties, bounded in time: a leader that has lost its quorum
    /// must not block its duty loop on a write that cannot commit.
    async fn duty_write(&self, cmd: Command) -> Result<(), String> {
        let limit = Duration::from_millis(self.lease_ms() * 10);
        match tokio::time::timeout(limit, self.raft.client_write(cmd)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("not committed within {limit:?}")),
        }
    }

    /// Adds new servers as learners, updates moved addresses, removes servers that left, then
    /// runs an autopilot round.
    async fn reconcile(&self, m: &openraft::RaftMetrics<NodeId, ServerNode>, views: &[ServerView]) {
        let membership = m.membership_config.membership().clone();
        let known: BTreeMap<NodeId, ServerNode> =
            membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
        let status_of = |id: NodeId| {
            self.gossip
                .members()
                .iter()
                .find(|mb| {
                    server_views(std::slice::from_ref(mb))
                        .first()
                        .is_some_and(|v| v.id == id)
                })
                .map(|mb| mb.status)
        };
        let held: BTreeSet<NodeId> = {
            let mut removed = self.removed_lately.lock().expect("removed lock");
            removed.retain(|id, at| {
                at.elapsed() < REMOVED_HOLD && status_of(*id) == Some(MemberStatus::Alive)
            });
            removed.keys().copied().collect()
        };
        for v in views
            .iter()
            .filter(|v| v.alive && v.datacenter == self.cfg.datacenter)
        {
            if !known.contains_key(&v.id) && !held.contains(&v.id) {
                tracing::info!(server = %v.name, addr = %v.rpc_addr, "adding server as a non-voter");
                if let Err(e) = self.add_learner(v.id, v.node()).await {
                    tracing::warn!(server = %v.name, error = %e, "adding server failed");
                }
            }
        }
        // A server back with its data on a new IP keeps its seat; only its address changes
        // (consul-behaviour §4.2: same ID, new address → re-add keeping voter status).
        let moved: BTreeMap<NodeId, ServerNode> = views
            .iter()
            .filter(|v| v.alive)
            .filter_map(|v| {
                let have = known.get(&v.id)?;
                (have.addr != v.rpc_addr).then(|| {
                    tracing::info!(server = %v.name, from = %have.addr, to = %v.rpc_addr,
                        "server moved: updating its address in the Raft configuration");
                    (v.id, v.node())
                })
            })
            .collect();
        if !moved.is_empty() {
            if let Err(e) = self
                .change_membership(ChangeMembers::SetNodes(moved), true)
                .await
            {
                tracing::warn!(error = %e, "updating server addresses failed; the next round retries");
            }
        }
        for (id, node) in &known {
            if *id != self.id && status_of(*id) == Some(MemberStatus::Left) {
                tracing::info!(server = %node.name, "removing server that left from the Raft configuration");
                if let Err(e) = self.remove_from_config(*id).await {
                    tracing::warn!(server = %node.name, error = %e, "removal failed");
                }
            }
        }
        self.autopilot_round().await;
    }

    /// The autopilot settings in force: replicated ones, else this server's configuration.
    pub fn autopilot_config(&self) -> (autopilot::AutopilotConfig, u64) {
        self.sm
            .state
            .read()
            .expect("sm lock")
            .data
            .autopilot
            .clone()
            .unwrap_or_else(|| (self.cfg.autopilot.clone(), 0))
    }

    /// The leader's assessment of every server of the configuration (docs/operations.md).
    fn assess(
        &self,
        m: &openraft::RaftMetrics<NodeId, ServerNode>,
        cfg: &autopilot::AutopilotConfig,
    ) -> (Vec<autopilot::ServerHealth>, Vec<autopilot::ServerReport>) {
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = self.gossip.members();
        let last = m.last_log_index.unwrap_or(0);
        let matched = matched_indexes(m);
        let now = Instant::now();
        let mut healthy_since = self.healthy_since.lock().expect("health lock");
        let mut dead_since = self.dead_since.lock().expect("dead lock");
        let mut health = Vec::new();
        let mut reports = Vec::new();
        for (id, node) in membership.nodes() {
            let member = members.iter().find(|mb| {
                server_views(std::slice::from_ref(mb))
                    .first()
                    .is_some_and(|v| v.id == *id)
            });
            let status = member.map(|mb| mb.status);
            let is_self = *id == self.id;
            let gone = match status {
                _ if is_self => None,
                None => Some(autopilot::Dead::Stale),
                Some(MemberStatus::Failed) | Some(MemberStatus::Left) => {
                    Some(autopilot::Dead::Failed)
                }
                Some(_) => None,
            };
            // Dead only after as long as a newcomer must be healthy: a server that reboots
            // quickly keeps its seat.
            let dead = match gone {
                Some(kind) => {
                    let since = *dead_since.entry(*id).or_insert(now);
                    (now.duration_since(since) >= cfg.server_stabilization_time).then_some(kind)
                }
                None => {
                    dead_since.remove(id);
                    None
                }
            };
            let contact = if is_self {
                Some(Duration::ZERO)
            } else {
                self.contacts.since(*id)
            };
            let index = if is_self {
                last
            } else {
                matched.get(id).copied().unwrap_or(0)
            };
            let healthy = is_self
                || (status == Some(MemberStatus::Alive)
                    && index + cfg.max_trailing_logs >= last
                    && contact.is_some_and(|c| c <= cfg.last_contact_threshold));
            let since = if healthy {
                Some(*healthy_since.entry(*id).or_insert(now))
            } else {
                healthy_since.remove(id);
                None
            };
            health.push(autopilot::ServerHealth {
                id: *id,
                name: node.name.clone(),
                voter: voters.contains(id),
                leader: is_self,
                dead,
                healthy,
                healthy_since: since,
            });
            reports.push(autopilot::ServerReport {
                id: node_uuid(*id).to_string(),
                name: node.name.clone(),
                address: self.addr_of(*id, node),
                serf_status: status
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_else(|| "unknown".into()),
                leader: is_self,
                voter: voters.contains(id),
                healthy,
                last_contact_ms: contact.map(|c| c.as_millis() as u64),
                last_index: index,
                stable_for_ms: since.map(|t| now.duration_since(t).as_millis() as u64),
            });
        }
        (health, reports)
    }

    /// One autopilot round on the leader: promote stable newcomers, remove dead servers.
    async fn autopilot_round(&self) {
        let m = self.raft.metrics().borrow().clone();
        let (cfg, _) = self.autopilot_config();
        let (health, _) = self.assess(&m, &cfg);
        let plan = autopilot::plan(&cfg, &health, Instant::now());
        {
            let mut logged = self.kept_logged.lock().expect("kept lock");
            if *logged != plan.kept {
                for k in &plan.kept {
                    tracing::warn!("autopilot: {k}");
                }
                *logged = plan.kept.clone();
            }
        }
        let name = |id: NodeId| {
            health
                .iter()
                .find(|h| h.id == id)
                .map(|h| h.name.clone())
                .unwrap_or_default()
        };
        if !plan.promote.is_empty() {
            let ids: BTreeSet<NodeId> = plan.promote.iter().copied().collect();
            let names: Vec<String> = plan.promote.iter().map(|i| name(*i)).collect();
            tracing::info!(servers = %names.join(", "), "autopilot: promoting to voter (healthy for {:?})", cfg.server_stabilization_time);
            if let Err(e) = self
                .change_membership(ChangeMembers::AddVoterIds(ids), true)
                .await
            {
                tracing::warn!(error = %e, "autopilot: promotion failed; the next round retries");
            }
        }
        for id in plan.remove {
            tracing::info!(server = %name(id), "autopilot: removing dead server from the Raft configuration");
            if let Err(e) = self.remove_from_config(id).await {
                tracing::warn!(server = %name(id), error = %e, "autopilot: removal failed; the next round retries");
            }
        }
    }

    /// Autopilot's report, from the leader.
    pub async fn autopilot_state(&self) -> Result<autopilot::AutopilotReport, String> {
        let m = self.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            let addr = self
                .leader_addr()
                .ok_or("there is no leader; autopilot runs on the leader")?;
            return match self
                .rpc
                .call(&addr, Request::AutopilotState, CALL_TIMEOUT)
                .await
            {
                Ok(Response::AutopilotState(r)) => r,
                Ok(_) => Err("unexpected answer from the leader".into()),
                Err(e) => Err(format!("cannot reach the leader: {e}")),
            };
        }
        let (cfg, _) = self.autopilot_config();
        let (health, servers) = self.assess(&m, &cfg);
        let plan = autopilot::plan(&cfg, &health, Instant::now());
        Ok(autopilot::AutopilotReport {
            healthy: health.iter().all(|h| h.healthy),
            failure_tolerance: autopilot::failure_tolerance(&health),
            leader: node_uuid(self.id).to_string(),
            voters: health
                .iter()
                .filter(|h| h.voter)
                .map(|h| node_uuid(h.id).to_string())
                .collect(),
            servers,
            kept: plan.kept,
        })
    }

    /// Asked by a leaving leader: stand for election once its lease has run out on the others
    /// (openraft refuses votes while the leader lease, election_timeout_max, is valid).
    fn stand_for_election(self: Arc<Self>) {
        tokio::spawn(async move {
            let lease = Duration::from_millis(200 * u64::from(self.cfg.raft_multiplier.max(1)));
            let last = *self.last_contact.lock().expect("contact lock");
            let wait = last
                .map(|t| (lease + Duration::from_millis(20)).saturating_sub(t.elapsed()))
                .unwrap_or_default();
            tokio::time::sleep(wait).await;
            // If another server was elected meanwhile, its followers refuse this vote under
            // their fresh lease: standing costs nothing then.
            let _ = self.raft.trigger().elect().await;
        });
    }

    /// One membership change at a time, retried while a previous change is still settling.
    async fn change_membership(
        &self,
        change: ChangeMembers<NodeId, ServerNode>,
        retain: bool,
    ) -> Result<(), String> {
        let _turn = self.membership_lock.lock().await;
        let attempt = async {
            loop {
                match self.raft.change_membership(change.clone(), retain).await {
                    Ok(_) => return Ok(()),
                    Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))
                        if e.to_string().contains("undergoing") =>
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => return Err(describe_write_error(e)),
                }
            }
        };
        tokio::time::timeout(MEMBERSHIP_TIMEOUT, attempt)
            .await
            .unwrap_or_else(|_| Err(format!("not committed within {MEMBERSHIP_TIMEOUT:?}")))
    }

    async fn add_learner(&self, id: NodeId, node: ServerNode) -> Result<(), String> {
        let _turn = self.membership_lock.lock().await;
        match tokio::time::timeout(MEMBERSHIP_TIMEOUT, self.raft.add_learner(id, node, false)).await
        {
            Ok(r) => r.map(|_| ()).map_err(describe_write_error),
            Err(_) => Err(format!("not committed within {MEMBERSHIP_TIMEOUT:?}")),
        }
    }

    /// Brings the catalog in line with gossip: every member registered with its address,
    /// tags and status; members that left (or were forgotten) deregistered, as Consul's leader
    /// does (consul-behaviour §4.2).
    async fn reconcile_catalog(&self, members: &[Member]) {
        let current = self.sm.state.read().expect("sm lock").data.catalog.clone();
        let mut writes = Vec::new();
        for m in members {
            if m.status == MemberStatus::Left {
                if current.contains_key(&m.name) {
                    writes.push(state::StateCommand::CatalogRemove(m.name.clone()));
                }
                continue;
            }
            let want = state::CatalogNode {
                name: m.name.clone(),
                id: m
                    .tags
                    .get("id")
                    .and_then(|i| Uuid::parse_str(i).ok())
                    .unwrap_or(m.node_id),
                address: m.addr.ip().to_string(),
                datacenter: m
                    .tags
                    .get("dc")
                    .cloned()
                    .unwrap_or_else(|| self.cfg.datacenter.clone()),
                status: m.status.as_str().to_string(),
                tags: m.tags.clone(),
                create_index: 0,
                modify_index: 0,
            };
            let same = current.get(&m.name).is_some_and(|have| {
                have.id == want.id
                    && have.address == want.address
                    && have.status == want.status
                    && have.tags == want.tags
            });
            if !same {
                writes.push(state::StateCommand::CatalogUpsert(want));
            }
        }
        for name in current.keys() {
            if !members.iter().any(|m| &m.name == name) {
                writes.push(state::StateCommand::CatalogRemove(name.clone()));
            }
        }
        for w in writes {
            if let Err(e) = self.duty_write(Command::State(w)).await {
                tracing::debug!(error = %e, "catalog update failed; the next round retries");
                return;
            }
        }
    }

    async fn remove_from_config(&self, id: NodeId) -> Result<(), String> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        if !membership.nodes().any(|(n, _)| *n == id) {
            return Err(format!(
                "id {:?} was not found in the Raft configuration",
                node_uuid(id).to_string()
            ));
        }
        // Before the change commits, so that no reconcile round in between adds it back.
        self.removed_lately
            .lock()
            .expect("removed lock")
            .insert(id, Instant::now());
        self.healthy_since.lock().expect("health lock").remove(&id);
        let change = if membership.voter_ids().any(|v| v == id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        // A change needs a quorum of the old configuration: say so instead of hanging.
        let commit = |change| async move {
            match tokio::time::timeout(MEMBERSHIP_TIMEOUT, self.change_membership(change, false)).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "the change did not commit within {MEMBERSHIP_TIMEOUT:?}: the Raft configuration has lost its quorum \
                     (too many voters unreachable); see docs/servers.md"
                )),
            }
        };
        commit(change).await?;
        if id == self.id {
            // This server removed itself and stepped down (or will): nothing is left to do.
            return Ok(());
        }
        // A removed voter stays a learner; drop it entirely.
        let still = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .any(|(n, _)| *n == id);
        if still {
            commit(ChangeMembers::RemoveNodes(BTreeSet::from([id]))).await?;
        }
        Ok(())
    }

    async fn remove_peer_here(&self, id: NodeId) -> Result<(), String> {
        if self.raft.metrics().borrow().state != ServerState::Leader {
            return Err("this server is not the leader".into());
        }
        self.remove_from_config(id).await
    }

    /// Removes a server from the Raft configuration, through the leader wherever it is.
    pub async fn remove_peer(&self, id: NodeId) -> Result<(), String> {
        let m = self.raft.metrics().borrow().clone();
        match m.current_leader {
            Some(l) if l == self.id => self.remove_from_config(id).await,
            Some(l) => {
                let addr = m
                    .membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| self.addr_of(l, n))
                    .ok_or("the leader's address is unknown")?;
                match self
                    .rpc
                    .call(&addr, Request::RemovePeer { id }, CALL_TIMEOUT)
                    .await
                {
                    Ok(Response::Done(r)) => r,
                    Ok(_) => Err("unexpected answer from the leader".into()),
                    Err(e) => Err(format!("cannot reach the leader: {e}")),
                }
            }
            None => Err("there is no leader; removing a peer needs one".into()),
        }
    }

    /// Whether this server's Raft configuration has lost its quorum, as far as gossip and
    /// the leader's acknowledgements show: what is wrong and what the operator can do.
    pub fn quorum_problem(&self) -> Option<String> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        if voters.len() <= 1 || !voters.contains(&self.id) {
            return None;
        }
        let views = server_views(&self.gossip.members());
        let reachable = |id: NodeId| id == self.id || views.iter().any(|v| v.id == id && v.alive);
        let quorum = voters.len() / 2 + 1;
        let up = voters.iter().filter(|v| reachable(**v)).count();
        if up >= quorum {
            if m.state == ServerState::Leader
                && m.millis_since_quorum_ack
                    .is_some_and(|ms| ms > self.lease_ms() * 5)
            {
                return Some(format!(
                    "this leader has had no acknowledgement from a quorum for {} ms",
                    m.millis_since_quorum_ack.unwrap_or(0)
                ));
            }
            return None;
        }
        let down: Vec<String> = voters
            .iter()
            .filter(|v| !reachable(**v))
            .map(|v| {
                membership
                    .get_node(v)
                    .map(|n| n.name.clone())
                    .unwrap_or_else(|| node_uuid(*v).to_string())
            })
            .collect();
        Some(format!(
            "quorum lost: {up} of {} voters reachable (quorum {quorum}); unreachable: {}. \
             No leader can be elected and no write commits until enough of them return. If they \
             are gone for good: stop the surviving servers, run `muster operator raft recover \
             -data-dir DIR -peers-file FILE` on each with the same list of survivors, then start \
             them (docs/operations.md)",
            voters.len(),
            down.join(", ")
        ))
    }

    /// openraft's leader lease (election_timeout_max) in milliseconds.
    fn lease_ms(&self) -> u64 {
        200 * u64::from(self.cfg.raft_multiplier.max(1))
    }

    /// The leader's RPC address, if there is a leader.
    pub fn leader_addr(&self) -> Option<String> {
        let m = self.raft.metrics().borrow().clone();
        let l = m.current_leader?;
        // openraft 0.9 keeps a partitioned leader in the Leader state; a leader that has not
        // heard from a quorum for five leases is no leader to report or forward to.
        if l == self.id
            && m.membership_config.membership().voter_ids().count() > 1
            && m.millis_since_quorum_ack
                .is_some_and(|ms| ms > self.lease_ms() * 5)
        {
            return None;
        }
        m.membership_config
            .membership()
            .get_node(&l)
            .map(|n| self.addr_of(l, n))
    }

    /// Where server `id` is reached now: gossip's address, else the one in the membership.
    pub fn addr_of(&self, id: NodeId, node: &ServerNode) -> String {
        self.book.get(id).unwrap_or_else(|| node.addr.clone())
    }

    /// Every server of the Raft configuration.
    pub fn configuration(&self) -> Vec<PeerInfo> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let matched = matched_indexes(&m);
        membership
            .nodes()
            .map(|(id, n)| PeerInfo {
                id: node_uuid(*id).to_string(),
                node: n.name.clone(),
                address: n.addr.clone(),
                leader: m.current_leader == Some(*id),
                voter: voters.contains(id),
                protocol_version: "3".into(),
                last_index: if *id == self.id {
                    m.last_log_index.unwrap_or(0)
                } else {
                    matched.get(id).copied().unwrap_or(0)
                },
            })
            .collect()
    }

    /// The `raft` section of `muster info`.
    pub fn info(&self) -> BTreeMap<String, String> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let is_voter = voters.contains(&self.id);
        let state = match m.state {
            ServerState::Leader => "Leader",
            ServerState::Follower => "Follower",
            ServerState::Candidate => "Candidate",
            ServerState::Learner => "Learner",
            ServerState::Shutdown => "Shutdown",
        };
        let last_contact = match (m.state, *self.last_contact.lock().expect("contact lock")) {
            (ServerState::Leader, _) => "0".to_string(),
            (_, Some(t)) => format!("{:.1}ms", t.elapsed().as_secs_f64() * 1000.0),
            (_, None) => "never".to_string(),
        };
        let config: Vec<String> = membership
            .nodes()
            .map(|(id, n)| {
                let suffrage = if voters.contains(id) {
                    "Voter"
                } else {
                    "Nonvoter"
                };
                format!(
                    "{{Suffrage:{suffrage} ID:{} Address:{}}}",
                    node_uuid(*id),
                    n.addr
                )
            })
            .collect();
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        let mut out = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            out.insert(k.to_string(), v);
        };
        put("state", state.into());
        put("term", m.current_term.to_string());
        put("last_log_index", m.last_log_index.unwrap_or(0).to_string());
        put("last_log_term", m.vote.leader_id().term.to_string());
        // openraft 0.9 exposes the applied index, not the commit index: applied ≤ committed, and
        // entries are applied as soon as they commit, so this is the commit index give or take
        // the entries being applied at this instant.
        put("commit_index", applied.to_string());
        put("applied_index", applied.to_string());
        put(
            "last_snapshot_index",
            m.snapshot.map(|l| l.index).unwrap_or(0).to_string(),
        );
        put(
            "num_peers",
            if is_voter {
                (voters.len() - 1).to_string()
            } else {
                "0".into()
            },
        );
        put("last_contact", last_contact);
        put("leader", self.leader_addr().unwrap_or_default());
        put(
            "leader_id",
            m.current_leader
                .map(|l| node_uuid(l).to_string())
                .unwrap_or_default(),
        );
        put("latest_configuration", format!("[{}]", config.join(" ")));
        put("protocol_version", "3".into());
        put(
            "cluster_id",
            self.cluster_id().map(|c| c.to_string()).unwrap_or_default(),
        );
        put("bootstrap", self.gate_status());
        put(
            "quorum",
            self.quorum_problem().unwrap_or_else(|| "ok".into()),
        );
        out
    }

    /// Before a graceful leave, this server leaves the Raft configuration while it can still
    /// vote on its own removal (Consul's server leave, consul-behaviour §4.4): a leader removes
    /// itself (the remaining voters elect a successor at once), a follower asks the leader.
    /// Waiting until gossip shows it `left` would be too late in a two-voter cluster, where the
    /// removal needs the leaving server's vote.
    ///
    /// Returns the warnings the operator must see (also logged): a leave that costs quorum
    /// says so before it happens.
    pub async fn prepare_leave(&self) -> Vec<String> {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let is_member = membership.nodes().any(|(id, _)| *id == self.id);
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        if !is_member || voters.len() <= 1 {
            return Vec::new();
        }
        let mut warnings = Vec::new();
        // The arithmetic, said out loud (user-pains A21): removing this server first keeps
        // the others' quorum whenever that is possible at all.
        let views = server_views(&self.gossip.members());
        let alive = |id: NodeId| views.iter().any(|v| v.id == id && v.alive);
        let rest: Vec<NodeId> = voters.iter().copied().filter(|v| *v != self.id).collect();
        let rest_alive = rest.iter().filter(|v| alive(**v)).count();
        let quorum = rest.len() / 2 + 1;
        if voters.contains(&self.id) && rest_alive < quorum {
            let name = |id: NodeId| {
                membership
                    .get_node(&id)
                    .map(|n| n.name.clone())
                    .unwrap_or_else(|| node_uuid(id).to_string())
            };
            let dead: Vec<String> = rest
                .iter()
                .filter(|v| !alive(**v))
                .map(|v| name(*v))
                .collect();
            warnings.push(format!(
                "this leave costs the cluster its quorum: {rest_alive} of the {} other voters are alive \
                 (quorum {quorum}); unreachable: {}. Start a replacement first, or remove the dead \
                 voters (muster operator raft remove-peer) before leaving",
                rest.len(),
                dead.join(", ")
            ));
        }
        for w in &warnings {
            tracing::warn!("{w}");
        }
        let was_leader = m.state == ServerState::Leader;
        // The successor: the alive voter with the most of the log.
        let matched = matched_indexes(&m);
        let successor = rest
            .iter()
            .filter(|v| alive(**v))
            .max_by_key(|v| matched.get(v).copied().unwrap_or(0))
            .and_then(|v| membership.get_node(v).map(|n| (*v, n.clone())));
        tracing::info!("server leaving: asking to be removed from the Raft configuration first");
        match tokio::time::timeout(Duration::from_secs(10), self.remove_peer(self.id)).await {
            Ok(Ok(())) => tracing::info!("removed from the Raft configuration"),
            Ok(Err(e)) => {
                tracing::warn!("could not leave the Raft configuration before leaving: {e}");
                return warnings;
            }
            Err(_) => {
                tracing::warn!(
                    "could not leave the Raft configuration within 10 s; leaving anyway"
                );
                return warnings;
            }
        }
        // Leadership transfer: openraft 0.9 has none, so the leader removes itself (it leads
        // until that change commits, then steps down) and tells the most up-to-date voter to
        // stand for election as soon as the old lease runs out, instead of letting every
        // follower's timer race (measured in docs/performance.md).
        if let (true, Some((id, node))) = (was_leader, successor) {
            let addr = self.addr_of(id, &node);
            match self
                .rpc
                .call(&addr, Request::TimeoutNow, CALL_TIMEOUT)
                .await
            {
                Ok(_) => tracing::info!(successor = %node.name, "leadership handed over"),
                Err(e) => {
                    tracing::debug!(error = %e, "handing over leadership failed; the followers' timers elect")
                }
            }
        }
        warnings
    }

    /// Stops Raft and the server's tasks.
    pub async fn shutdown(&self) {
        for t in self.tasks.lock().expect("tasks lock").drain(..) {
            t.abort();
        }
        let _ = self.raft.shutdown().await;
    }
}

/// The leader's view of each server's replicated log index (empty on a follower).
fn matched_indexes(m: &openraft::RaftMetrics<NodeId, ServerNode>) -> BTreeMap<NodeId, u64> {
    m.replication
        .as_ref()
        .map(|r| {
            r.iter()
                .map(|(id, l)| (*id, l.map(|l| l.index).unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

fn describe_write_error(e: RaftError<NodeId, ClientWriteError<NodeId, ServerNode>>) -> String {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => format!(
            "this server is not the leader (leader: {})",
            f.leader_node
                .map(|n| n.addr)
                .unwrap_or_else(|| "unknown".into())
        ),
        other => other.to_string(),
    }
}
