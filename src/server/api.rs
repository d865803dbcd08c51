//! The requests a server answers for the HTTP API — KV reads and writes, catalog, operator
//! snapshots — with Consul's consistency modes and leader forwarding (docs/state.md).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::ServerState;
use rand::RngExt;
use serde::{Deserialize, Serialize};

use super::batch::BatchError;
use super::rpc::{Request, Response};
use super::state::{CatalogNode, KvEntry, KvScope, StateCommand};
use super::Server;

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

impl KvQuery {
    fn scope(&self) -> KvScope {
        match self {
            KvQuery::Get(k) => KvScope::Key(k.clone()),
            KvQuery::Recurse(p) | KvQuery::Keys { prefix: p, .. } => KvScope::Prefix(p.clone()),
        }
    }
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

/// Why a request could not be served. `NoLeader` and `Unavailable` are worth retrying later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApiFailure {
    #[error("No cluster leader")]
    NoLeader,
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
}

/// Longest blocking wait (Consul's max_query_time).
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// Blocking wait when none is given (Consul's default_query_time).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Deadline of a forwarded request beyond its own wait.
const FORWARD_SLACK: Duration = Duration::from_secs(5);

/// `wait` clamped to [`MAX_WAIT`], plus up to 1/16 of random jitter, as Consul does so that
/// many watchers do not all return in the same instant.
pub fn blocking_wait(wait: Option<Duration>) -> Duration {
    let w = wait.unwrap_or(DEFAULT_WAIT).min(MAX_WAIT);
    let jitter_ms = (w.as_millis() as u64) / 16;
    w + Duration::from_millis(if jitter_ms > 0 {
        rand::rng().random_range(0..=jitter_ms)
    } else {
        0
    })
}

/// Counts a blocking query for as long as it waits (`muster info`: consul.blocking_queries).
struct WaiterGuard<'a>(&'a AtomicU64);

impl<'a> WaiterGuard<'a> {
    fn enter(c: &'a AtomicU64) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        Self(c)
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Server {
    /// Blocking queries waiting on this server now.
    pub fn blocking_queries(&self) -> u64 {
        self.blocking_queries.load(Ordering::Relaxed)
    }

    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// `X-Consul-*` values of this server now.
    fn read_meta(&self, index: u64) -> ReadMeta {
        let m = self.raft.metrics().borrow().clone();
        let leader = m.state == ServerState::Leader;
        let last_contact_ms = if leader {
            0
        } else {
            self.last_contact
                .lock()
                .expect("contact lock")
                .map(|t| t.elapsed().as_millis() as u64)
                .unwrap_or(u64::MAX / 2)
        };
        ReadMeta {
            index: index.max(1),
            known_leader: m.current_leader.is_some(),
            last_contact_ms,
        }
    }

    /// Sends `req` to the leader and returns its answer.
    async fn to_leader(&self, req: Request, timeout: Duration) -> Result<Response, ApiFailure> {
        let addr = self.leader_addr().ok_or(ApiFailure::NoLeader)?;
        self.rpc
            .call(&addr, req, timeout)
            .await
            .map_err(|e| ApiFailure::Unavailable(format!("cannot reach the leader: {e}")))
    }

    /// A KV read under Consul's consistency modes, blocking if asked.
    pub async fn kv_read(&self, req: ReadRequest) -> Result<(KvAnswer, ReadMeta), ApiFailure> {
        if req.consistency != Consistency::Stale && !self.is_leader() {
            let timeout = Duration::from_millis(req.wait_ms) + FORWARD_SLACK;
            return match self.to_leader(Request::KvRead(req), timeout).await? {
                Response::KvRead(r) => r,
                _ => Err(ApiFailure::Unavailable(
                    "unexpected answer from the leader".into(),
                )),
            };
        }
        if req.consistency == Consistency::Consistent {
            self.confirm_leadership().await?;
        }
        let scope = req.query.scope();
        if req.min_index > 0 {
            let _waiting = WaiterGuard::enter(&self.blocking_queries);
            let deadline = Instant::now() + Duration::from_millis(req.wait_ms);
            let mut applied = self.sm.applied.subscribe();
            loop {
                let idx = self
                    .sm
                    .state
                    .read()
                    .expect("sm lock")
                    .data
                    .watch_index(&scope);
                if idx > req.min_index || Instant::now() >= deadline {
                    break;
                }
                let _ = tokio::time::timeout_at(deadline.into(), applied.changed()).await;
            }
        }
        let s = self.sm.state.read().expect("sm lock");
        let answer = match &req.query {
            KvQuery::Get(k) => KvAnswer::Entries(
                s.data
                    .kv
                    .get(k)
                    .map(|e| (k.clone(), e.clone()))
                    .into_iter()
                    .collect(),
            ),
            KvQuery::Recurse(p) => KvAnswer::Entries(s.data.list(p)),
            KvQuery::Keys { prefix, separator } => {
                KvAnswer::Keys(s.data.keys(prefix, separator.as_deref()))
            }
        };
        let index = s.data.kv_index;
        drop(s);
        Ok((answer, self.read_meta(index)))
    }

    async fn confirm_leadership(&self) -> Result<(), ApiFailure> {
        match tokio::time::timeout(Duration::from_secs(5), self.raft.ensure_linearizable()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ApiFailure::NoLeader),
            Err(_) => Err(ApiFailure::Unavailable(
                "leadership could not be confirmed with a quorum within 5 s".into(),
            )),
        }
    }

    /// Commits a change through the leader; acknowledged once a quorum has it.
    pub async fn write(&self, cmd: StateCommand) -> Result<WriteOutcome, ApiFailure> {
        // Leadership can move between the check and the write: retry once through the new one.
        for _ in 0..2 {
            if !self.is_leader() {
                return match self
                    .to_leader(Request::Write(cmd), Duration::from_secs(10))
                    .await?
                {
                    Response::Write(r) => r,
                    _ => Err(ApiFailure::Unavailable(
                        "unexpected answer from the leader".into(),
                    )),
                };
            }
            match self.batcher.write(cmd.clone()).await {
                Ok(outcome) => return Ok(outcome),
                Err(BatchError::NotLeader) => continue,
                Err(BatchError::Failed(e)) => return Err(ApiFailure::Unavailable(e)),
            }
        }
        Err(ApiFailure::NoLeader)
    }

    /// The catalog's nodes.
    pub async fn catalog_nodes(
        &self,
        consistency: Consistency,
    ) -> Result<(Vec<CatalogNode>, ReadMeta), ApiFailure> {
        if consistency != Consistency::Stale && !self.is_leader() {
            return match self
                .to_leader(Request::CatalogNodes(consistency), FORWARD_SLACK)
                .await?
            {
                Response::CatalogNodes(r) => r,
                _ => Err(ApiFailure::Unavailable(
                    "unexpected answer from the leader".into(),
                )),
            };
        }
        if consistency == Consistency::Consistent {
            self.confirm_leadership().await?;
        }
        let s = self.sm.state.read().expect("sm lock");
        let nodes = s.data.catalog.values().cloned().collect();
        let index = s.data.catalog_index;
        drop(s);
        Ok((nodes, self.read_meta(index)))
    }

    /// The state machine as the leader has applied it, for `muster snapshot save`.
    pub async fn snapshot_save(&self) -> Result<SavedSnapshot, ApiFailure> {
        if !self.is_leader() {
            return match self
                .to_leader(Request::SnapshotSave, Duration::from_secs(30))
                .await?
            {
                Response::SnapshotSave(r) => r,
                _ => Err(ApiFailure::Unavailable(
                    "unexpected answer from the leader".into(),
                )),
            };
        }
        let (last, data) = self.sm.snapshot_body();
        let cluster_id = self.cluster_id();
        Ok(SavedSnapshot {
            index: last.map(|l| l.index).unwrap_or(0),
            term: last.map(|l| l.leader_id.term).unwrap_or(0),
            cluster_id,
            data,
        })
    }
}
