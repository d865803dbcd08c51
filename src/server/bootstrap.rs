//! The bootstrap gate's side effects: the loop that asks [`super::gate`] what to do, the
//! probes and proposals it sends, and Raft's initialisation (docs/servers.md).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{InitializeError, RaftError};
use rand::RngExt;

use super::confirm::{self, Claim, Identity};
use super::error::BootstrapError;
use super::gate::{self, Decision, GatePhase};
use super::protocol::{server_views, Request, ServerView};
use super::types::{NodeId, ServerNode};
use super::{Server, CALL_TIMEOUT};

/// How often the gate repeats an unchanged "why I wait" line.
const GATE_LOG_EVERY: Duration = Duration::from_secs(10);

/// The bootstrap promise's file in the data dir (docs/state.md, "The bootstrap promise").
pub(super) const PROMISE_FILE: &str = "bootstrap-promise";

/// `<data_dir>/bootstrap-promise` as written: JSON, the holder as its node UUID.
#[derive(serde::Serialize, serde::Deserialize)]
struct PromiseFile {
    /// The proposer promised, or `null`.
    proposer: Option<uuid::Uuid>,
    /// Which of its attempts (0 when none is promised).
    attempt: u64,
    /// This server's own last attempt as proposer.
    last_attempt: u64,
}

/// The promise kept in `data_dir` (none yet: the default). A file that cannot be read is an
/// error: treating it as "no promise" could break a promise given before.
pub(super) fn read_promise(data_dir: &Path) -> std::io::Result<gate::Promise> {
    let path = data_dir.join(PROMISE_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(gate::Promise::default()),
        Err(e) => return Err(e),
    };
    let f: PromiseFile = serde_json::from_slice(&bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    Ok(gate::Promise {
        held: f.proposer.map(|p| (super::id::node_id(p), f.attempt)),
        last_attempt: f.last_attempt,
    })
}

/// Replaces the promise file atomically and durably: a temporary file, fsynced, renamed over
/// the old one, then the directory fsynced, so after a crash the file is the old promise or
/// the new one, never neither.
fn write_promise(data_dir: &Path, p: &gate::Promise) -> std::io::Result<()> {
    let f = PromiseFile {
        proposer: p.held.map(|(id, _)| super::id::node_uuid(id)),
        attempt: p.held.map_or(0, |(_, a)| a),
        last_attempt: p.last_attempt,
    };
    let tmp = data_dir.join(format!("{PROMISE_FILE}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec(&f).map_err(std::io::Error::other)?)?;
    file.write_all(b"\n")?;
    file.sync_all()?;
    std::fs::rename(&tmp, data_dir.join(PROMISE_FILE))?;
    std::fs::File::open(data_dir)?.sync_all()
}

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
            self.set_gate_status(GatePhase::Done, "bootstrapped alone (-bootstrap)".into());
        } else if self.cfg.bootstrap && has_state {
            self.set_gate_status(
                GatePhase::Done,
                "Raft data found, disabling bootstrap mode".into(),
            );
        }
    }

    pub(super) fn has_state(&self) -> bool {
        self.log.has_state().unwrap_or(true)
    }

    pub(super) fn set_gate_status(&self, phase: GatePhase, s: String) {
        *self.gate_status.lock().expect("gate lock") = (phase, s);
    }

    /// Where the gate is (`muster.bootstrap.gate` in docs/metrics.md).
    pub fn gate_phase(&self) -> GatePhase {
        self.gate_status.lock().expect("gate lock").0
    }

    /// The gate's latest explanation.
    pub fn gate_status(&self) -> String {
        self.gate_status.lock().expect("gate lock").1.clone()
    }

    /// The acceptor side of a proposal ([`gate::accept`]): the promise is on disk before the
    /// answer leaves, so a crash cannot take a given promise back.
    pub(super) fn accept_proposal(
        &self,
        proposer: NodeId,
        attempt: u64,
        servers: &[(NodeId, ServerNode)],
    ) -> Result<(), String> {
        let mut promise = self.promise.lock().expect("promise lock");
        let next = gate::accept(
            self.id,
            &self.cfg.name,
            self.has_state(),
            &promise,
            proposer,
            attempt,
            servers,
        )
        .map_err(|e| e.to_string())?;
        self.keep_promise(&mut promise, next)
    }

    /// `proposer` abandoned its attempts up to `up_to` ([`gate::Promise::release`]).
    pub(super) fn release_promise(&self, proposer: NodeId, up_to: u64) -> Result<(), String> {
        let mut promise = self.promise.lock().expect("promise lock");
        let next = promise.release(proposer, up_to);
        self.keep_promise(&mut promise, next)
    }

    /// Writes `next` to `<data_dir>/bootstrap-promise` (fsynced) and only then adopts it.
    fn keep_promise(&self, promise: &mut gate::Promise, next: gate::Promise) -> Result<(), String> {
        if next != *promise {
            write_promise(&self.cfg.data_dir, &next).map_err(|e| {
                format!(
                    "{}: cannot record the bootstrap promise in {}: {e}",
                    self.cfg.name,
                    self.cfg.data_dir.join(PROMISE_FILE).display()
                )
            })?;
            *promise = next;
        }
        Ok(())
    }

    /// Releases this server's own abandoned attempts at every server of `servers` that has not
    /// confirmed it yet (`released`). Called only between attempts, so no promise to a live
    /// attempt is ever released; repeated by the gate loop until every server confirms,
    /// because a lost release would bind its receiver until this server proposes again.
    ///
    /// Never once this server holds Raft state: an `initialize` that failed half-way may have
    /// written the membership, and the promises behind it must then stand (the model checker
    /// of tests/gate_model.rs finds two clusters without this check).
    async fn release_own(&self, servers: &[ServerView], released: &mut BTreeSet<NodeId>) {
        let up_to = self.promise.lock().expect("promise lock").last_attempt;
        if up_to == 0 || self.has_state() {
            return;
        }
        let pending: Vec<&ServerView> = servers
            .iter()
            .filter(|s| !released.contains(&s.id))
            .collect();
        let calls = pending.iter().map(|s| async move {
            let done = if s.id == self.id {
                self.release_promise(self.id, up_to)
            } else {
                let req = Request::BootstrapRelease {
                    proposer: self.id,
                    up_to,
                };
                match self.rpc.ask(&s.rpc_addr, req, CALL_TIMEOUT).await {
                    Ok(done) => done,
                    Err(e) => Err(e.to_string()),
                }
            };
            (s.id, done)
        });
        for (id, done) in futures::future::join_all(calls).await {
            match done {
                Ok(()) => {
                    released.insert(id);
                }
                Err(e) => tracing::debug!("bootstrap: release not confirmed yet: {e}"),
            }
        }
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
                    GatePhase::Manual,
                    "not in -bootstrap-expect mode; waiting to be added by a leader".into(),
                );
            }
            return;
        }
        let mut members = self.gossip.subscribe();
        let mut last_log: Option<(String, Instant)> = None;
        // Servers that confirmed the release of this server's abandoned attempts (in memory:
        // after a restart every server is told again, which is harmless).
        let mut released = BTreeSet::new();
        // `cluster` tags already reported as contradicted by their member's port.
        let mut ignored = BTreeSet::new();
        loop {
            let views = server_views(&members.borrow_and_update());
            // A server with Raft state is done whatever gossip claims (evaluate says so).
            let screened = if self.has_state() {
                Ok(views.clone())
            } else {
                self.screen_claims(views.clone(), &mut ignored).await
            };
            let line = match screened {
                // A claim neither confirmed nor refuted: wait, and ask again.
                Err(unconfirmed) => unconfirmed,
                Ok(screened) => {
                    let decision = gate::evaluate(
                        self.id,
                        self.cfg.bootstrap_expect,
                        &self.cfg.datacenter,
                        self.has_state(),
                        &screened,
                    );
                    match &decision {
                        Decision::Done(reason) => {
                            tracing::info!("bootstrap: {reason}");
                            self.set_gate_status(GatePhase::Done, reason.clone());
                            return;
                        }
                        Decision::Propose(servers) => match self.try_bootstrap(servers).await {
                            Ok(msg) => {
                                self.set_gate_status(GatePhase::Done, msg);
                                return;
                            }
                            Err(e) => {
                                tracing::warn!("bootstrap: attempt failed, will retry: {e}");
                                self.set_gate_status(
                                    GatePhase::Retrying,
                                    format!("bootstrap attempt failed, retrying: {e}"),
                                );
                                released.clear();
                                self.release_own(servers, &mut released).await;
                                let pause = rand::rng().random_range(300..1200);
                                tokio::time::sleep(Duration::from_millis(pause)).await;
                                continue;
                            }
                        },
                        Decision::Conflict(why) => {
                            self.release_alive(&views, &mut released).await;
                            self.gate_log(why, true, &mut last_log);
                            let _ = tokio::time::timeout(Duration::from_secs(1), members.changed())
                                .await;
                            continue;
                        }
                        waiting => {
                            self.release_alive(&views, &mut released).await;
                            gate::explain_wait(
                                waiting,
                                self.cfg.bootstrap_expect,
                                self.cfg.join_configured,
                            )
                        }
                    }
                }
            };
            self.gate_log(&line, false, &mut last_log);
            let _ = tokio::time::timeout(Duration::from_secs(1), members.changed()).await;
        }
    }

    /// Tells the alive servers among `views` that this server's abandoned attempts are over.
    async fn release_alive(&self, views: &[ServerView], released: &mut BTreeSet<NodeId>) {
        let alive: Vec<ServerView> = views.iter().filter(|v| v.alive).cloned().collect();
        self.release_own(&alive, released).await;
    }

    /// Shows `line` as the gate's status, and logs it unless it was logged within
    /// [`GATE_LOG_EVERY`]; an error line for a conflict.
    fn gate_log(&self, line: &str, conflict: bool, last_log: &mut Option<(String, Instant)>) {
        let repeat = last_log
            .as_ref()
            .is_some_and(|(l, t)| l == line && t.elapsed() < GATE_LOG_EVERY);
        if !repeat {
            if conflict {
                tracing::error!("bootstrap: {line}");
            } else {
                tracing::info!("bootstrap: {line}");
            }
            *last_log = Some((line.to_string(), Instant::now()));
        }
        let phase = if conflict {
            GatePhase::Conflict
        } else {
            GatePhase::Waiting
        };
        self.set_gate_status(phase, line.to_string());
    }

    /// The servers the gate may count (docs/security.md, "The server port has the last
    /// word"): a member whose port lately answered as another server is left out, and each
    /// `cluster` tag is put to its member's port. A confirmed claim stays (the gate then ends);
    /// a contradicted one is cleared (logged once, in `ignored`); `Err` is the line to wait
    /// with while a claim is neither, unless another is confirmed.
    async fn screen_claims(
        &self,
        views: Vec<ServerView>,
        ignored: &mut BTreeSet<(NodeId, uuid::Uuid)>,
    ) -> Result<Vec<ServerView>, String> {
        let mut screened = Vec::new();
        let (mut confirmed, mut unconfirmed) = (false, None);
        for mut v in views {
            if self.recent_answers.is_impostor(&v) {
                continue;
            }
            let counted = v.alive && v.datacenter == self.cfg.datacenter && v.id != self.id;
            if let (true, Some(cluster)) = (counted, v.cluster_id) {
                match confirm::judge_claim(&v, &self.identity_of(&v).await) {
                    Claim::Confirmed => confirmed = true,
                    Claim::Ignored(line) => {
                        if ignored.insert((v.id, cluster)) {
                            tracing::warn!("bootstrap: {line}");
                        }
                        v.cluster_id = None;
                    }
                    // identity_of has logged it.
                    Claim::Impostor(_) => continue,
                    Claim::Unconfirmed(line) => {
                        unconfirmed.get_or_insert(line);
                    }
                }
            }
            screened.push(v);
        }
        match unconfirmed {
            Some(line) if !confirmed => Err(line),
            _ => Ok(screened),
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
            // The answer must come as the proposed server: a member whose port answers as
            // another is an impostor, left out of the next attempt.
            let st = match self.ask_identity(s).await {
                Identity::Confirmed(st) => st,
                Identity::Impostor { answered } => {
                    return Err(BootstrapError::Impostor(confirm::impostor_line(
                        s, answered,
                    )))
                }
                Identity::Unanswered(reason) => {
                    return Err(BootstrapError::Probe {
                        name: s.name.clone(),
                        reason,
                    })
                }
            };
            statuses.push((s.name.clone(), st));
        }
        if let Some(why) = gate::veto(&statuses) {
            tracing::error!("bootstrap: {why}");
            return Ok(why);
        }
        // 2. Propose: every server promises not to bootstrap with anyone else until this
        //    server releases it. The attempt's number is on disk before any proposal leaves.
        let number = {
            let mut promise = self.promise.lock().expect("promise lock");
            let (number, next) = promise.next_attempt();
            self.keep_promise(&mut promise, next)
                .map_err(BootstrapError::Refused)?;
            number
        };
        let mut attempt = gate::Attempt::new(number, servers);
        let membership = attempt.membership.clone();
        let calls = servers.iter().map(|s| async {
            if s.id == self.id {
                return (s.id, self.accept_proposal(self.id, number, &membership));
            }
            let req = Request::BootstrapPropose {
                proposer: self.id,
                attempt: number,
                servers: membership.clone(),
            };
            let answer: Result<Result<(), String>, _> =
                self.rpc.ask(&s.rpc_addr, req, CALL_TIMEOUT).await;
            (s.id, answer.unwrap_or_else(|e| Err(e.to_string())))
        });
        let mut progress = gate::Progress::Pending;
        for (id, answer) in futures::future::join_all(calls).await {
            progress = attempt.answer(id, answer);
            if let gate::Progress::Refused(why) = progress {
                return Err(BootstrapError::Refused(why));
            }
        }
        if progress != gate::Progress::Complete {
            return Err(BootstrapError::Refused(
                "not every proposed server answered".into(),
            ));
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
