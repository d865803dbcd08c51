//! The bootstrap gate's side effects: the loop that asks [`super::gate`] what to do, the
//! probes and proposals it sends, and Raft's initialisation (docs/servers.md).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{InitializeError, RaftError};
use rand::RngExt;

use super::error::BootstrapError;
use super::gate::{self, Decision, Refusal};
use super::protocol::{server_views, Request, ServerView};
use super::types::{NodeId, ServerNode};
use super::{Server, CALL_TIMEOUT};

/// How often the gate repeats an unchanged "why I wait" line.
const GATE_LOG_EVERY: Duration = Duration::from_secs(10);

impl Server {
    /// `-bootstrap`: elects this server as a cluster of one, unless it already holds state.
    pub(super) async fn bootstrap_alone_if_asked(&self) {
        let has_state = self.has_state();
        if self.cfg.bootstrap && !has_state {
            tracing::warn!(
                "bootstrap mode: electing this server as a cluster of one; other servers join it"
            );
            let members = BTreeMap::from([(self.id, self.node.clone())]);
            if let Err(e) = self.raft.initialize(members).await {
                tracing::error!(error = %e, "bootstrap failed");
            }
            let _ = self.raft.trigger().elect().await;
            self.set_gate_status("bootstrapped alone (-bootstrap)".into());
        } else if self.cfg.bootstrap && has_state {
            self.set_gate_status("Raft data found, disabling bootstrap mode".into());
        }
    }

    pub(super) fn has_state(&self) -> bool {
        self.log.has_state().unwrap_or(true)
    }

    pub(super) fn set_gate_status(&self, s: String) {
        *self.gate_status.lock().expect("gate lock") = s;
    }

    /// The gate's latest explanation.
    pub fn gate_status(&self) -> String {
        self.gate_status.lock().expect("gate lock").clone()
    }

    pub(super) fn accept_proposal(
        &self,
        proposer: NodeId,
        servers: &[(NodeId, ServerNode)],
    ) -> Result<(), Refusal> {
        let name = || self.cfg.name.clone();
        if self.has_state() {
            return Err(Refusal::HasState { name: name() });
        }
        if !servers.iter().any(|(id, _)| *id == self.id) {
            return Err(Refusal::NotIncluded { name: name() });
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
    pub(super) async fn initialize(
        &self,
        servers: Vec<(NodeId, ServerNode)>,
    ) -> Result<(), BootstrapError> {
        let members: BTreeMap<NodeId, ServerNode> = servers.into_iter().collect();
        match self.raft.initialize(members.clone()).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                let current: BTreeMap<NodeId, ServerNode> = self
                    .membership()
                    .nodes()
                    .map(|(id, n)| (*id, n.clone()))
                    .collect();
                // Already initialised identically, or already reached by the new leader (which
                // replicates the same membership): both are the outcome asked for.
                if current == members || current.is_empty() {
                    Ok(())
                } else {
                    Err(BootstrapError::OtherMembership {
                        name: self.cfg.name.clone(),
                    })
                }
            }
            Err(e) => Err(BootstrapError::Initialise {
                name: self.cfg.name.clone(),
                reason: e.to_string(),
            }),
        }
    }

    /// Runs the bootstrap gate until it has nothing left to decide.
    pub(super) async fn gate_loop(self: Arc<Self>) {
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
                Decision::Propose(servers) => match self.try_bootstrap(servers).await {
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
                },
                waiting => gate::explain_wait(waiting, self.cfg.bootstrap_expect),
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
    pub(super) async fn try_bootstrap(
        &self,
        servers: &[ServerView],
    ) -> Result<String, BootstrapError> {
        // 1. Probe: does any of them hold Raft state or belong to a cluster?
        let mut statuses = Vec::new();
        for s in servers {
            let st = if s.id == self.id {
                self.status()
            } else {
                self.rpc
                    .ask(&s.rpc_addr, Request::PeerStatus, CALL_TIMEOUT)
                    .await
                    .map_err(|source| BootstrapError::Probe {
                        name: s.name.clone(),
                        source,
                    })?
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
            let answer: Result<Result<(), String>, _> =
                self.rpc.ask(&s.rpc_addr, req, CALL_TIMEOUT).await;
            match answer {
                Ok(done) => done.map_err(|e| format!("{}: {e}", s.name)),
                Err(e) => Err(format!("{}: {e}", s.name)),
            }
        });
        let results = futures::future::join_all(calls).await;
        if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
            return Err(BootstrapError::Refused(e));
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
}
