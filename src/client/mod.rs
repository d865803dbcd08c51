//! Reaching the cluster from any agent: a server answers through its own Raft state, a client
//! forwards to a live server learned from gossip and fails over to the next one.
//!
//! Both retry for up to [`HOLD`] (Consul's `rpc_hold_timeout`, 7 s, docs/reference/consul.md)
//! while there is no leader or no reachable server, so an election or one dead server is
//! invisible to callers beyond a short delay. A write gets its request id here, once, before
//! its first attempt: every retry and forward carries the same id, and the leader applies it
//! once (docs/state.md, "Request ids").
//!
//! [`Client`] holds only the handles this needs (gossip, the agent's own server if it is one,
//! the RPC connections), not the agent, and speaks [`crate::server::protocol`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::gossip::Gossip;
use crate::server::protocol::{
    server_views, AclAnswer, AclQuery, Answer, ApiFailure, CatalogNode, Consistency, KvAnswer,
    NodeId, PeerStatus, ReadMeta, ReadRequest, Request, ResolvedToken, SavedSnapshot, StateCommand,
    Write, WriteOutcome,
};
use crate::server::rpc::RpcClient;
use crate::server::Server;

/// How long a request keeps retrying while the cluster has no leader or no server answers.
pub const HOLD: Duration = Duration::from_secs(7);

/// No attempt of a write starts later than this after its first: a client agent's failover
/// after a timeout of one server (10 s) may otherwise run past [`HOLD`] by one timeout per
/// server. The leader remembers request ids for longer than this window and a connect
/// timeout (docs/state.md, "Why the bound is safe").
pub const RETRY_WINDOW: Duration = Duration::from_secs(20);

/// Which server a client tried last; it starts there next time.
static NEXT_SERVER: AtomicUsize = AtomicUsize::new(0);

/// An agent's way to the replicated state: through its own server, or through any live one.
#[derive(Clone)]
pub struct Client {
    /// Which servers exist and are alive (their `role=consul` tags).
    gossip: Gossip,
    /// This agent's own server, in server mode: requests go to it directly.
    server: Option<Arc<Server>>,
    /// Connections to servers' RPC ports, for a client agent's requests.
    rpc: Arc<RpcClient>,
}

impl Client {
    pub fn new(gossip: Gossip, server: Option<Arc<Server>>, rpc: Arc<RpcClient>) -> Self {
        Client {
            gossip,
            server,
            rpc,
        }
    }

    /// Sends `req` (made fresh for each attempt) to a live server, failing over between them.
    /// No attempt starts after `last_start`, if given (writes: [`RETRY_WINDOW`]).
    async fn forward<A: Answer>(
        &self,
        timeout: Duration,
        last_start: Option<Instant>,
        req: impl Fn() -> Request,
    ) -> Result<A, ApiFailure> {
        let deadline = Instant::now() + HOLD;
        let mut last = ApiFailure::Unreachable(
            "No known Consul servers: this agent has not joined any server yet".into(),
        );
        loop {
            let mut servers: Vec<_> = server_views(&self.gossip.members())
                .into_iter()
                .filter(|s| s.alive)
                .collect();
            servers.sort_by_key(|s| s.id);
            let start = NEXT_SERVER.load(Ordering::Relaxed);
            for k in 0..servers.len() {
                let s = &servers[(start + k) % servers.len()];
                if last_start.is_some_and(|t| Instant::now() >= t) {
                    return Err(last);
                }
                // The server checks the caller's token (docs/acl.md, "On the server port").
                let request = crate::server::protocol::with_caller(req());
                match self.rpc.ask(&s.rpc_addr, request, timeout).await {
                    Ok(answer) => {
                        NEXT_SERVER.store((start + k) % servers.len(), Ordering::Relaxed);
                        return Ok(answer);
                    }
                    Err(e) => {
                        tracing::debug!(server = %s.name, error = %e, "server unreachable; trying the next one");
                        last = ApiFailure::Unreachable(format!(
                            "no server answered (last: {}: {e})",
                            s.name
                        ));
                    }
                }
            }
            NEXT_SERVER.store(start.wrapping_add(1), Ordering::Relaxed);
            if Instant::now() >= deadline {
                return Err(last);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A forwarded request whose answer carries its own [`ApiFailure`].
    async fn forward_api<T>(
        &self,
        timeout: Duration,
        last_start: Option<Instant>,
        req: impl Fn() -> Request,
    ) -> Result<T, ApiFailure>
    where
        Result<T, ApiFailure>: Answer,
    {
        self.forward(timeout, last_start, req).await?
    }

    /// A KV read, from this server or through one.
    pub async fn kv_read(&self, req: ReadRequest) -> Result<(KvAnswer, ReadMeta), ApiFailure> {
        let timeout = Duration::from_millis(req.wait_ms) + Duration::from_secs(10);
        hold(|| async {
            match &self.server {
                Some(s) => s.call_local(Request::KvRead(req.clone())).await?,
                None => {
                    self.forward_api(timeout, None, || Request::KvRead(req.clone()))
                        .await
                }
            }
        })
        .await
    }

    /// A change to the replicated state, acknowledged once committed by a quorum. Applied
    /// once however often it is retried: its request id is made here, once.
    pub async fn write(&self, cmd: StateCommand) -> Result<WriteOutcome, ApiFailure> {
        let w = Write {
            id: Some(uuid::Uuid::new_v4()),
            cmd,
        };
        let last_start = Instant::now() + RETRY_WINDOW;
        hold(|| async {
            match &self.server {
                Some(s) => s.call_local(Request::WriteOnce(w.clone())).await?,
                None => {
                    self.forward_api(Duration::from_secs(10), Some(last_start), || {
                        Request::WriteOnce(w.clone())
                    })
                    .await
                }
            }
        })
        .await
    }

    /// The catalog's nodes.
    pub async fn catalog_nodes(
        &self,
        c: Consistency,
    ) -> Result<(Vec<CatalogNode>, ReadMeta), ApiFailure> {
        hold(|| async {
            match &self.server {
                Some(s) => s.call_local(Request::CatalogNodes(c)).await?,
                None => {
                    self.forward_api(Duration::from_secs(10), None, || Request::CatalogNodes(c))
                        .await
                }
            }
        })
        .await
    }

    /// A read of the ACL policies and tokens, answered by the leader.
    pub async fn acl_read(&self, q: AclQuery) -> Result<AclAnswer, ApiFailure> {
        hold(|| async {
            match &self.server {
                Some(s) => s.call_local(Request::AclRead(q.clone())).await?,
                None => {
                    self.forward_api(Duration::from_secs(10), None, || {
                        Request::AclRead(q.clone())
                    })
                    .await
                }
            }
        })
        .await
    }

    /// A token resolved by a server, for a client agent's own endpoints: the server's answer
    /// (`Err` inside: `ACL not found` or ACLs off there), or why no server answered.
    pub async fn acl_resolve(
        &self,
        secret: &str,
    ) -> Result<Result<ResolvedToken, String>, ApiFailure> {
        let req = || Request::AclResolve {
            secret: secret.to_string(),
        };
        self.forward(Duration::from_secs(5), None, req).await
    }

    /// An operator snapshot, taken by the leader.
    pub async fn snapshot_save(&self) -> Result<SavedSnapshot, ApiFailure> {
        hold(|| async {
            match &self.server {
                Some(s) => s.call_local(Request::SnapshotSave).await?,
                None => {
                    self.forward_api(Duration::from_secs(30), None, || Request::SnapshotSave)
                        .await
                }
            }
        })
        .await
    }

    /// A client's view through a live server: its status, and the id → address map of the
    /// servers gossip shows. Asks each alive server once, in gossip's order.
    pub async fn server_status(&self) -> Result<(PeerStatus, HashMap<NodeId, String>), ApiFailure> {
        let views = server_views(&self.gossip.members());
        let addrs: HashMap<NodeId, String> =
            views.iter().map(|v| (v.id, v.rpc_addr.clone())).collect();
        let mut last_err = "no alive server is known to this agent (join one first)".to_string();
        for v in views.iter().filter(|v| v.alive) {
            match self
                .rpc
                .ask(&v.rpc_addr, Request::PeerStatus, Duration::from_secs(2))
                .await
            {
                Ok(st) => return Ok((st, addrs)),
                Err(e) => last_err = e.to_string(),
            }
        }
        Err(ApiFailure::Unreachable(format!(
            "No known Consul servers: {last_err}"
        )))
    }
}

/// Retries `op` while it fails for want of a leader, up to [`HOLD`].
async fn hold<T, F, Fut>(op: F) -> Result<T, ApiFailure>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiFailure>>,
{
    let deadline = Instant::now() + HOLD;
    loop {
        match op().await {
            // Every failure is one of these today; a refusal added later must not be retried.
            Err(
                ApiFailure::NoLeader
                | ApiFailure::Unreachable(_)
                | ApiFailure::Unconfirmed(_)
                | ApiFailure::Unavailable(_),
            ) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}
