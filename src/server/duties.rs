//! The leader's duties, run by one loop on every server: the address book, the cluster
//! advertisement, quorum logging and, on the leader, naming the cluster, reconciling the Raft
//! configuration and the catalog with gossip, and the membership changes that requires.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use uuid::Uuid;

use super::confirm::Identity;
use super::error::ServerError;
use super::health::REMOVED_HOLD;
use super::protocol::{seen_as, server_views, SeenAs, ServerView};
use super::state;
use super::tombstones::TombstoneClock;
use super::types::{node_uuid, Command, NodeId, ServerNode};
use super::Server;
use crate::gossip::{Member, MemberStatus};

/// Longest wait for a membership change to commit.
const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(10);

impl Server {
    /// Leader duties and tag upkeep, every 500 ms and on gossip changes: one pass of named
    /// steps, the leader's round last.
    pub(super) async fn duty_loop(self: Arc<Self>) {
        let mut members = self.gossip.subscribe();
        let mut metrics = self.raft.metrics();
        let mut leader_logged = false;
        let mut advertised_cluster: Option<Uuid> = None;
        let mut quorum_log = QuorumLog::new();
        let mut last_shape = metrics_shape(&metrics.borrow());
        let mut tombstone_clock = TombstoneClock::new(self.cfg.tombstone_ttl);
        loop {
            tokio::select! {
                _ = members.changed() => {}
                _ = async {
                    loop {
                        if metrics.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                        let now = metrics_shape(&metrics.borrow());
                        if now != last_shape {
                            last_shape = now;
                            return;
                        }
                    }
                } => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            self.update_address_book(&members.borrow());
            self.advertise_cluster(&mut advertised_cluster).await;
            let m = self.raft.metrics().borrow().clone();
            if m.running_state.is_err() {
                // Nothing left to do; `Server::failed` tells the agent, which leaves and exits.
                return;
            }
            let quorum_ok = quorum_log.observe(self.quorum_problem());
            tombstone_clock.observe(*self.sm.applied.borrow(), Instant::now());
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
            self.leader_round(&m, &members).await;
            self.reap_tombstones(&mut tombstone_clock).await;
        }
    }

    /// Points the address book at where gossip shows each alive server now. A node id claimed
    /// by two members is left out (`server_views`) and logged once per change.
    fn update_address_book(&self, members: &[Member]) {
        let contested = super::protocol::contested_ids(members);
        let mut last = self.contested.lock().expect("contested lock");
        if *last != contested {
            for (id, names) in &contested {
                tracing::warn!(
                    node_id = %super::id::node_uuid(*id),
                    "gossip members {} all claim server id {}: none of them is trusted as that \
                     server (the Raft configuration keeps its address); find the impostor or the \
                     copied data dir (a cloned node-id file)",
                    names.join(", "),
                    super::id::node_uuid(*id)
                );
            }
            *last = contested;
        }
        drop(last);
        self.book.replace(
            server_views(members)
                .into_iter()
                .filter(|v| v.alive)
                .map(|v| (v.id, v.rpc_addr))
                .collect(),
        );
    }

    /// Once the cluster is named, says so in this server's gossip tags (`cluster`), which
    /// tells new servers not to bootstrap another one.
    async fn advertise_cluster(&self, advertised: &mut Option<Uuid>) {
        if let Some(c) = self.cluster_id() {
            if *advertised != Some(c) {
                let mut tags = self.base_tags.lock().expect("tags lock").clone();
                tags.insert("cluster".into(), c.to_string());
                self.gossip.set_tags(tags).await;
                *advertised = Some(c);
            }
        }
    }

    /// New gossip tags for this server (a reload's `node_meta`), with `cluster` kept once the
    /// cluster is named.
    pub async fn set_base_tags(&self, base: crate::gossip::Tags) {
        *self.base_tags.lock().expect("tags lock") = base.clone();
        let mut tags = base;
        if let Some(c) = self.cluster_id() {
            tags.insert("cluster".into(), c.to_string());
        }
        self.gossip.set_tags(tags).await;
    }

    /// The leader's round, with its quorum: names the cluster, records the configuration
    /// file's autopilot settings, reconciles the Raft configuration and the catalog.
    async fn leader_round(
        &self,
        m: &openraft::RaftMetrics<NodeId, ServerNode>,
        members: &tokio::sync::watch::Receiver<Arc<Vec<Member>>>,
    ) {
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
            let cmd = state::StateCommand::AutopilotSet(self.configured_autopilot());
            if let Err(e) = self.duty_write(Command::State(cmd)).await {
                tracing::debug!(error = %e, "recording the autopilot settings failed; will retry");
            }
        }
        self.acl_duties().await;
        let views = server_views(&members.borrow());
        self.reconcile(m, &views).await;
        let all = members.borrow().clone();
        self.reconcile_catalog(&all).await;
    }

    /// With ACLs, the leader creates the built-ins (global-management, anonymous) once, and
    /// the `acl.tokens.initial_management` token if no token has its secret yet (Consul's
    /// leader does both when it takes office). Each is one idempotent write, retried by the
    /// next round if it fails.
    async fn acl_duties(&self) {
        let Some(acl) = &self.cfg.acl else {
            return;
        };
        let (builtins, initial) = {
            let state = self.sm.state.read().expect("sm lock");
            let a = &state.data.acl;
            (
                a.has_builtins(),
                acl.initial_management
                    .as_deref()
                    .is_none_or(|secret| a.has_secret(secret)),
            )
        };
        if !builtins {
            if let Err(e) = self
                .duty_write(Command::State(state::StateCommand::AclInit))
                .await
            {
                tracing::debug!(error = %e, "creating the ACL built-ins failed; will retry");
            }
        }
        if let (false, Some(secret)) = (initial, &acl.initial_management) {
            let token = super::acl_state::AclToken {
                accessor_id: Uuid::new_v4(),
                secret_id: secret.clone(),
                description: "Initial Management Token".into(),
                policies: vec![super::acl_state::GLOBAL_MANAGEMENT_ID],
                create_time_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
                create_index: 0,
                modify_index: 0,
            };
            let cmd = state::StateCommand::AclTokenSet(token);
            if let Err(e) = self.duty_write(Command::State(cmd)).await {
                tracing::debug!(error = %e, "creating the initial management token failed; will retry");
            }
        }
    }

    /// A write of the leader's own duties, bounded in time: a leader that has lost its quorum
    /// must not block its duty loop on a write that cannot commit.
    pub(super) async fn duty_write(&self, cmd: Command) -> Result<(), ServerError> {
        let limit = self.lease * 10;
        match tokio::time::timeout(limit, self.raft.client_write(cmd)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(ServerError::Raft(e.to_string())),
            Err(_) => Err(ServerError::Timeout { after: limit }),
        }
    }

    /// Adds new servers as learners, updates moved addresses, removes servers that left, then
    /// runs an autopilot round.
    pub(super) async fn reconcile(
        &self,
        m: &openraft::RaftMetrics<NodeId, ServerNode>,
        views: &[ServerView],
    ) {
        let membership = m.membership_config.membership().clone();
        let known: BTreeMap<NodeId, ServerNode> =
            membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
        // By id and the configuration's name (docs/security.md, Identity): a second member
        // claiming a server's id can neither leave nor fail in its place.
        let members = self.gossip.members();
        let status_of = |id: NodeId| {
            let name = known.get(&id).map(|n| n.name.as_str()).unwrap_or("");
            match seen_as(&members, id, name) {
                SeenAs::Member(s) => Some(s),
                SeenAs::Absent => None,
                // Nothing to conclude: as if it were still there.
                SeenAs::Ambiguous => Some(MemberStatus::Alive),
            }
        };
        let held: BTreeSet<NodeId> = {
            let mut trackers = self.trackers.lock().expect("trackers lock");
            let removed = &mut trackers.removed_lately;
            removed.retain(|id, at| {
                at.elapsed() < REMOVED_HOLD && status_of(*id) == Some(MemberStatus::Alive)
            });
            removed.keys().copied().collect()
        };
        // A new server, or a known one at a new address, is taken only once the port at that
        // address answers with its id (docs/security.md, "The server port has the last word").
        // A server back with its data on a new IP keeps its seat; only its address changes
        // (as Consul does: same ID, new address → re-add keeping voter status;
        // docs/reference/consul.md). New and moved servers are asked at once, so a silent
        // port costs one round at most one ASK_TIMEOUT.
        let candidates: Vec<&ServerView> = views
            .iter()
            .filter(|v| v.alive)
            .filter(|v| match known.get(&v.id) {
                None => v.datacenter == self.cfg.datacenter && !held.contains(&v.id),
                Some(have) => have.addr != v.rpc_addr,
            })
            .collect();
        let (moving, new): (Vec<&ServerView>, Vec<&ServerView>) = self
            .confirmed(&candidates)
            .await
            .into_iter()
            .partition(|v| known.contains_key(&v.id));
        for v in new {
            tracing::info!(server = %v.name, addr = %v.rpc_addr, "adding server as a non-voter");
            if let Err(e) = self.add_learner(v.id, v.node()).await {
                tracing::warn!(server = %v.name, error = %e, "adding server failed");
            }
        }
        let moved: BTreeMap<NodeId, ServerNode> = moving
            .into_iter()
            .map(|v| {
                let from = known.get(&v.id).map(|n| n.addr.as_str()).unwrap_or("");
                tracing::info!(server = %v.name, from = %from, to = %v.rpc_addr,
                    "server moved: updating its address in the Raft configuration");
                (v.id, v.node())
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

    /// Those of `views` whose server port answers with their own id, asked all at once (a
    /// silent port costs one `ASK_TIMEOUT` per round at most, and is asked again only after
    /// `RECHECK_AFTER`: src/server/confirm.rs).
    async fn confirmed<'a>(&self, views: &[&'a ServerView]) -> Vec<&'a ServerView> {
        let asked = views.iter().map(|v| async move {
            match self.identity_of(v).await {
                Identity::Confirmed(_) => Some(*v),
                // identity_of logged an impostor; silence is retried.
                Identity::Impostor { .. } | Identity::Unanswered(_) => None,
            }
        });
        futures::future::join_all(asked)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// One membership change at a time, retried while a previous change is still settling.
    pub(super) async fn change_membership(
        &self,
        change: ChangeMembers<NodeId, ServerNode>,
        retain: bool,
    ) -> Result<(), ServerError> {
        let _turn = self.membership_lock.lock().await;
        let attempt = async {
            loop {
                match self.raft.change_membership(change.clone(), retain).await {
                    Ok(_) => return Ok(()),
                    Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                        ChangeMembershipError::InProgress(_),
                    ))) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(e) => return Err(describe_write_error(e)),
                }
            }
        };
        tokio::time::timeout(MEMBERSHIP_TIMEOUT, attempt)
            .await
            .unwrap_or(Err(ServerError::Timeout {
                after: MEMBERSHIP_TIMEOUT,
            }))
    }

    pub(super) async fn add_learner(
        &self,
        id: NodeId,
        node: ServerNode,
    ) -> Result<(), ServerError> {
        let _turn = self.membership_lock.lock().await;
        match tokio::time::timeout(MEMBERSHIP_TIMEOUT, self.raft.add_learner(id, node, false)).await
        {
            Ok(r) => r.map(|_| ()).map_err(describe_write_error),
            Err(_) => Err(ServerError::Timeout {
                after: MEMBERSHIP_TIMEOUT,
            }),
        }
    }

    /// Brings the catalog in line with gossip: every member registered with its address,
    /// tags and status (a failed member stays, marked failed); members that left, and members
    /// gossip has reaped or pruned, deregistered, as Consul's leader does
    /// (docs/reference/consul.md).
    pub(super) async fn reconcile_catalog(&self, members: &[Member]) {
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
        // A member gossip no longer lists was reaped (failed past `reconnect_timeout`, left past
        // `tombstone_timeout`) or pruned: deregistered, as Consul's leader does on a reap
        // (docs/reference/consul.md §4.2, docs/gossip.md, Reaping).
        for name in current.keys() {
            if !members.iter().any(|m| &m.name == name) {
                tracing::info!(node = %name, "deregistering a node gossip no longer lists (reaped)");
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

    pub(super) async fn remove_from_config(&self, id: NodeId) -> Result<(), ServerError> {
        let membership = self.membership();
        if !membership.nodes().any(|(n, _)| *n == id) {
            return Err(ServerError::NotInConfiguration { id: node_uuid(id) });
        }
        // Before the change commits, so that no reconcile round in between adds it back.
        self.trackers.lock().expect("trackers lock").removed(id);
        let change = if membership.voter_ids().any(|v| v == id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        // A change needs a quorum of the old configuration: say so instead of hanging.
        // `change_membership` gives up after MEMBERSHIP_TIMEOUT; for a removal that means the
        // old configuration has no quorum.
        let commit = |change| async move {
            match self.change_membership(change, false).await {
                Err(ServerError::Timeout { after }) => Err(ServerError::QuorumLost { after }),
                r => r,
            }
        };
        commit(change).await?;
        if id == self.id {
            // This server removed itself and stepped down (or will): nothing is left to do.
            return Ok(());
        }
        // A removed voter stays a learner; drop it entirely.
        let still = self.membership().nodes().any(|(n, _)| *n == id);
        if still {
            commit(ChangeMembers::RemoveNodes(BTreeSet::from([id]))).await?;
        }
        Ok(())
    }
}

fn describe_write_error(e: RaftError<NodeId, ClientWriteError<NodeId, ServerNode>>) -> ServerError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => ServerError::NotLeader {
            leader: Some(
                f.leader_node
                    .map(|n| n.addr)
                    .unwrap_or_else(|| "unknown".into()),
            ),
        },
        other => ServerError::Raft(other.to_string()),
    }
}

/// What of Raft's metrics is news to the duty loop. Metrics change with every committed entry;
/// only a change of role, leader or membership counts (reacting to every write would cost CPU
/// per write).
fn metrics_shape(
    m: &openraft::RaftMetrics<NodeId, ServerNode>,
) -> (ServerState, Option<NodeId>, Option<u64>) {
    (
        m.state,
        m.current_leader,
        m.membership_config.log_id().map(|l| l.index),
    )
}

/// The log of quorum problems: one is said once it has lasted 5 s (a cold start, gossip still
/// joining, is not news), then every 30 s while it lasts, and its end is said once.
struct QuorumLog {
    /// The problem last logged (`None`: quorum was fine), and when.
    logged: (Option<String>, Instant),
    /// Since when the current problem has lasted.
    problem_since: Option<Instant>,
}

impl QuorumLog {
    fn new() -> Self {
        QuorumLog {
            logged: (None, Instant::now()),
            problem_since: None,
        }
    }

    /// Takes this pass's problem (if any), logs what is due; returns whether quorum is fine.
    fn observe(&mut self, problem: Option<String>) -> bool {
        let quorum_ok = problem.is_none();
        let since = match problem {
            Some(_) => *self.problem_since.get_or_insert_with(Instant::now),
            None => {
                self.problem_since = None;
                Instant::now()
            }
        };
        let problem = problem.filter(|_| since.elapsed() >= Duration::from_secs(5));
        let changed = problem.is_some() != self.logged.0.is_some();
        let due = problem.is_some() && self.logged.1.elapsed() >= Duration::from_secs(30);
        if changed || due {
            match &problem {
                Some(p) => tracing::warn!("{p}"),
                None if self.logged.0.is_some() => tracing::info!("quorum regained"),
                None => {}
            }
            self.logged = (problem, Instant::now());
        }
        quorum_ok
    }
}
