//! Reaching the cluster from any agent: a server answers through its own Raft state, a client
//! forwards to a live server learned from gossip and fails over to the next one.
//!
//! Both retry for up to [`HOLD`] (Consul's `rpc_hold_timeout`, 7 s) while there is no leader
//! or no reachable server, so an election or one dead server is invisible to callers beyond a
//! short delay.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::agent::Agent;
use crate::server::api::{
    ApiFailure, Consistency, KvAnswer, ReadMeta, ReadRequest, SavedSnapshot, WriteOutcome,
};
use crate::server::rpc::{Request, Response};
use crate::server::server_views;
use crate::server::state::{CatalogNode, StateCommand};

/// How long a request keeps retrying while the cluster has no leader or no server answers.
pub const HOLD: Duration = Duration::from_secs(7);

/// Which server a client tried last; it starts there next time.
static NEXT_SERVER: AtomicUsize = AtomicUsize::new(0);

/// Sends `req` (made fresh for each attempt) to a live server, failing over between them.
async fn forward(
    agent: &Agent,
    timeout: Duration,
    req: impl Fn() -> Request,
) -> Result<Response, ApiFailure> {
    let deadline = Instant::now() + HOLD;
    let mut last = ApiFailure::Unavailable(
        "No known Consul servers: this agent has not joined any server yet".into(),
    );
    loop {
        let mut servers: Vec<_> = server_views(&agent.gossip.members())
            .into_iter()
            .filter(|s| s.alive)
            .collect();
        servers.sort_by_key(|s| s.id);
        let start = NEXT_SERVER.load(Ordering::Relaxed);
        for k in 0..servers.len() {
            let s = &servers[(start + k) % servers.len()];
            match agent.rpc.call(&s.rpc_addr, req(), timeout).await {
                Ok(resp) => {
                    NEXT_SERVER.store((start + k) % servers.len(), Ordering::Relaxed);
                    return Ok(resp);
                }
                Err(e) => {
                    tracing::debug!(server = %s.name, error = %e, "server unreachable; trying the next one");
                    last = ApiFailure::Unavailable(format!(
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

/// Retries `op` while it fails for want of a leader, up to [`HOLD`].
async fn hold<T, F, Fut>(op: F) -> Result<T, ApiFailure>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiFailure>>,
{
    let deadline = Instant::now() + HOLD;
    loop {
        match op().await {
            Err(ApiFailure::NoLeader) | Err(ApiFailure::Unavailable(_))
                if Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

fn unexpected<T>() -> Result<T, ApiFailure> {
    Err(ApiFailure::Unavailable(
        "unexpected answer from the server".into(),
    ))
}

impl Agent {
    /// A KV read, from this server or through one.
    pub async fn kv_read(&self, req: ReadRequest) -> Result<(KvAnswer, ReadMeta), ApiFailure> {
        let timeout = Duration::from_millis(req.wait_ms) + Duration::from_secs(10);
        hold(|| async {
            match &self.server {
                Some(s) => s.kv_read(req.clone()).await,
                None => match forward(self, timeout, || Request::KvRead(req.clone())).await? {
                    Response::KvRead(r) => r,
                    _ => unexpected(),
                },
            }
        })
        .await
    }

    /// A change to the replicated state, acknowledged once committed by a quorum.
    pub async fn write(&self, cmd: StateCommand) -> Result<WriteOutcome, ApiFailure> {
        hold(|| async {
            match &self.server {
                Some(s) => s.write(cmd.clone()).await,
                None => match forward(self, Duration::from_secs(10), || {
                    Request::Write(cmd.clone())
                })
                .await?
                {
                    Response::Write(r) => r,
                    _ => unexpected(),
                },
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
                Some(s) => s.catalog_nodes(c).await,
                None => match forward(self, Duration::from_secs(10), || Request::CatalogNodes(c))
                    .await?
                {
                    Response::CatalogNodes(r) => r,
                    _ => unexpected(),
                },
            }
        })
        .await
    }

    /// An operator snapshot, taken by the leader.
    pub async fn snapshot_save(&self) -> Result<SavedSnapshot, ApiFailure> {
        hold(|| async {
            match &self.server {
                Some(s) => s.snapshot_save().await,
                None => {
                    match forward(self, Duration::from_secs(30), || Request::SnapshotSave).await? {
                        Response::SnapshotSave(r) => r,
                        _ => unexpected(),
                    }
                }
            }
        })
        .await
    }
}
