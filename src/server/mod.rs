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
pub mod gate;
pub mod network;
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
/// A learner is promoted once within this many entries of the leader…
const PROMOTE_LAG: u64 = 64;
/// …for this long.
const PROMOTE_STABLE: Duration = Duration::from_secs(2);
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
    /// Learners and since when they have been caught up.
    caught_up_since: Mutex<HashMap<NodeId, Instant>>,
    /// openraft allows one membership change at a time; the leader's duties and operator
    /// requests take turns through this lock.
    membership_lock: tokio::sync::Mutex<()>,
    /// Blocking queries waiting here now.
    pub(crate) blocking_queries: std::sync::atomic::AtomicU64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

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
        let (log, sm) = store::open(&cfg.data_dir.join("raft"))?;
        let id = node_id(cfg.node_id);
        let rpc = RpcClient::new(listener.local_addr().ok().map(|a| a.ip()));
        let raft_cfg = Arc::new(raft_config(cfg.raft_multiplier)?);
        let network = network::Network {
            rpc: rpc.clone(),
            local: id,
        };
        let raft = Raft::new(id, raft_cfg, network, log.clone(), sm.clone())
            .await
            .map_err(|e| format!("cannot start Raft: {e}"))?;
        let node = ServerNode {
            addr: cfg.rpc_advertise.to_string(),
            name: cfg.name.clone(),
        };
        let server = Arc::new(Server {
            raft,
            log,
            sm,
            rpc,
            id,
            node,
            cfg,
            gossip,
            base_tags,
            gate_status: Mutex::new(String::new()),
            promise: Mutex::new(gate::Promise::default()),
            last_contact: Mutex::new(None),
            caught_up_since: Mutex::new(HashMap::new()),
            membership_lock: tokio::sync::Mutex::new(()),
            blocking_queries: std::sync::atomic::AtomicU64::new(0),
            tasks: Mutex::new(Vec::new()),
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
            if m.state != ServerState::Leader {
                leader_logged = false;
                continue;
            }
            if !leader_logged {
                tracing::info!(term = m.current_term, "cluster leadership acquired");
                leader_logged = true;
            }
            if self.cluster_id().is_none() {
                if let Err(e) = self
                    .raft
                    .client_write(Command::SetClusterId(Uuid::new_v4()))
                    .await
                {
                    tracing::debug!(error = %e, "naming the cluster failed; will retry");
                }
            }
            let views = server_views(&members.borrow());
            self.reconcile(&m, &views).await;
            let all = members.borrow().clone();
            self.reconcile_catalog(&all).await;
        }
    }

    /// Adds new servers as learners, promotes caught-up learners, removes servers that left.
    async fn reconcile(&self, m: &openraft::RaftMetrics<NodeId, ServerNode>, views: &[ServerView]) {
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
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
        for v in views
            .iter()
            .filter(|v| v.alive && v.datacenter == self.cfg.datacenter)
        {
            if !known.contains_key(&v.id) {
                tracing::info!(server = %v.name, addr = %v.rpc_addr, "adding server as a non-voter");
                if let Err(e) = self.add_learner(v.id, v.node()).await {
                    tracing::warn!(server = %v.name, error = %e, "adding server failed");
                }
            }
        }
        let last = m.last_log_index.unwrap_or(0);
        let matched = matched_indexes(m);
        for (id, node) in &known {
            if voters.contains(id) || *id == self.id {
                continue;
            }
            let caught_up = matched.get(id).is_some_and(|i| i + PROMOTE_LAG >= last)
                && status_of(*id) == Some(MemberStatus::Alive);
            let promote = {
                let mut since = self.caught_up_since.lock().expect("promote lock");
                if !caught_up {
                    since.remove(id);
                    false
                } else if since.entry(*id).or_insert_with(Instant::now).elapsed() >= PROMOTE_STABLE
                {
                    since.remove(id);
                    true
                } else {
                    false
                }
            };
            if promote {
                tracing::info!(server = %node.name, "promoting server to voter");
                if let Err(e) = self
                    .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([*id])), true)
                    .await
                {
                    tracing::warn!(server = %node.name, error = %e, "promotion failed");
                }
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
    }

    /// One membership change at a time, retried while a previous change is still settling.
    async fn change_membership(
        &self,
        change: ChangeMembers<NodeId, ServerNode>,
        retain: bool,
    ) -> Result<(), String> {
        let _turn = self.membership_lock.lock().await;
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
    }

    async fn add_learner(&self, id: NodeId, node: ServerNode) -> Result<(), String> {
        let _turn = self.membership_lock.lock().await;
        self.raft
            .add_learner(id, node, false)
            .await
            .map(|_| ())
            .map_err(describe_write_error)
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
            if let Err(e) = self.raft.client_write(Command::State(w)).await {
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
                    .map(|n| n.addr.clone())
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

    /// The leader's RPC address, if there is a leader.
    pub fn leader_addr(&self) -> Option<String> {
        let m = self.raft.metrics().borrow().clone();
        let l = m.current_leader?;
        m.membership_config
            .membership()
            .get_node(&l)
            .map(|n| n.addr.clone())
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
        out
    }

    /// Before a graceful leave, this server leaves the Raft configuration while it can still
    /// vote on its own removal (Consul's server leave, consul-behaviour §4.4): a leader removes
    /// itself (the remaining voters elect a successor at once), a follower asks the leader.
    /// Waiting until gossip shows it `left` would be too late in a two-voter cluster, where the
    /// removal needs the leaving server's vote.
    pub async fn prepare_leave(&self) {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let is_member = membership.nodes().any(|(id, _)| *id == self.id);
        let sole_voter = membership.voter_ids().count() <= 1;
        if !is_member || sole_voter {
            return;
        }
        tracing::info!("server leaving: asking to be removed from the Raft configuration first");
        match tokio::time::timeout(Duration::from_secs(10), self.remove_peer(self.id)).await {
            Ok(Ok(())) => tracing::info!("removed from the Raft configuration"),
            Ok(Err(e)) => {
                tracing::warn!("could not leave the Raft configuration before leaving: {e}")
            }
            Err(_) => {
                tracing::warn!("could not leave the Raft configuration within 10 s; leaving anyway")
            }
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
