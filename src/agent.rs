//! The agent: binds its listeners, starts gossip and the HTTP API, joins, and shuts down.
//!
//! Start-up order matters for operators: the configuration was validated before this runs; here
//! every socket is bound *before* anything joins, so a port clash fails fast with the address
//! named, and `-join` failures end the process (exit 1) before it pretends to be a member.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use crate::client::Client;
use crate::config::RuntimeConfig;
use crate::gossip::{Gossip, GossipConfig, NodeIdentity, Tags, Timings};
use crate::join::{self, backoff::Schedule};
use crate::server::rpc::RpcClient;
use crate::server::{Server, ServerConfig};

/// Why the agent could not start or had to stop. The CLI maps each to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A listener could not be bound: another process holds the port, or the address is not
    /// this host's. The operator must change the address or port. Exit 2.
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// The data directory or node id is unusable. Exit 2.
    #[error("{0}")]
    DataDir(String),
    /// `-node-id` contradicts the id kept in data_dir. Exit 1.
    #[error("{0}")]
    NodeIdMismatch(String),
    /// `-join` reached no one; nothing was joined. Exit 1, like Consul.
    #[error("could not join any of the -join addresses: {0}")]
    StartJoin(String),
    /// `-retry-join` ran out of attempts (`-retry-max`). Exit 1.
    #[error("retry join gave up after {attempts} attempts: {errors}")]
    RetryJoinExhausted { attempts: u32, errors: String },
}

/// Why the agent stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Not stopped.
    Running,
    /// A leave (HTTP or signal) completed.
    Left,
    /// Shut down without leaving.
    Stopped,
    /// The retry-join loop gave up.
    RetryJoinFailed(String),
}

/// A running agent, shared with the HTTP handlers.
pub struct Agent {
    pub config: RuntimeConfig,
    pub gossip: Gossip,
    /// Raft and the bootstrap gate, in server mode.
    pub server: Option<Arc<Server>>,
    /// The way to the replicated state: through this agent's server, or a live one.
    pub client: Client,
    pub node_id: uuid::Uuid,
    pub data_dir: PathBuf,
    pub started: Instant,
    /// The HTTP API's bound address.
    pub http_addr: SocketAddr,
    stop_tx: watch::Sender<StopReason>,
    /// A dev-mode temp dir, removed on drop.
    dev_dir: Option<PathBuf>,
    leave_lock: tokio::sync::Mutex<bool>,
    /// The retry-join loop's status, once it runs (`retry_join` in `muster info`).
    pub join_status: std::sync::Mutex<Option<Arc<std::sync::Mutex<join::JoinStatus>>>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(d) = &self.dev_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The tags every agent advertises (consul-behaviour §3.1 names).
pub fn tags_for(config: &RuntimeConfig, node_id: uuid::Uuid) -> Tags {
    let mut t = Tags::new();
    t.insert(
        "role".into(),
        if config.server { "consul" } else { "node" }.into(),
    );
    t.insert("dc".into(), config.datacenter.clone());
    t.insert("id".into(), node_id.to_string());
    t.insert("build".into(), crate::VERSION.into());
    t.insert("vsn".into(), "1".into());
    if config.server {
        t.insert("port".into(), config.ports.server.to_string());
        if config.bootstrap_expect > 0 {
            t.insert("expect".into(), config.bootstrap_expect.to_string());
        }
        if config.bootstrap {
            t.insert("bootstrap".into(), "1".into());
        }
    }
    t
}

impl Agent {
    /// Binds, starts gossip and the HTTP API, runs `-join`, and spawns `-retry-join`.
    pub async fn start(config: RuntimeConfig) -> Result<Arc<Agent>, AgentError> {
        let (data_dir, dev_dir) = match (&config.data_dir, config.dev) {
            (Some(d), _) => (d.clone(), None),
            (None, _) => {
                let d = std::env::temp_dir().join(format!(
                    "muster-dev-{}-{}",
                    std::process::id(),
                    uuid::Uuid::new_v4().simple()
                ));
                (d.clone(), Some(d))
            }
        };
        std::fs::create_dir_all(&data_dir).map_err(|e| {
            AgentError::DataDir(format!(
                "cannot create data_dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let node_id =
            crate::node_id::load_or_create(&data_dir, config.node_id).map_err(|e| match e {
                crate::node_id::NodeIdError::Mismatch(m) => AgentError::NodeIdMismatch(m),
                crate::node_id::NodeIdError::Storage(m) => AgentError::DataDir(m),
            })?;

        let gossip_bind = SocketAddr::new(config.bind_addr, config.ports.serf_lan);
        let udp = UdpSocket::bind(gossip_bind)
            .await
            .map_err(|source| AgentError::Bind {
                what: "gossip UDP",
                addr: gossip_bind,
                source,
            })?;
        let tcp = TcpListener::bind(gossip_bind)
            .await
            .map_err(|source| AgentError::Bind {
                what: "gossip TCP",
                addr: gossip_bind,
                source,
            })?;
        let rpc_bind = SocketAddr::new(config.bind_addr, config.ports.server);
        let rpc_listener = if config.server {
            Some(
                TcpListener::bind(rpc_bind)
                    .await
                    .map_err(|source| AgentError::Bind {
                        what: "server RPC",
                        addr: rpc_bind,
                        source,
                    })?,
            )
        } else {
            None
        };
        let http_bind = SocketAddr::new(config.client_addr, config.ports.http);
        let http = TcpListener::bind(http_bind)
            .await
            .map_err(|source| AgentError::Bind {
                what: "HTTP API",
                addr: http_bind,
                source,
            })?;

        let advertise = SocketAddr::new(config.advertise_addr, config.ports.serf_lan);
        let identity = NodeIdentity::new(config.node_name.clone(), node_id, advertise);
        let tags = tags_for(&config, node_id);
        let gossip = Gossip::start(
            GossipConfig {
                identity,
                datacenter: config.datacenter.clone(),
                key: config.encrypt.clone(),
                tags: tags.clone(),
                timings: Timings::default(),
            },
            udp,
            tcp,
        );
        let server = match rpc_listener {
            None => None,
            Some(listener) => {
                let cfg = ServerConfig {
                    node_id,
                    name: config.node_name.clone(),
                    datacenter: config.datacenter.clone(),
                    rpc_advertise: SocketAddr::new(config.advertise_addr, config.ports.server),
                    bootstrap_expect: config.bootstrap_expect,
                    bootstrap: config.bootstrap,
                    raft_multiplier: config.raft_multiplier,
                    data_dir: data_dir.clone(),
                    autopilot: config.autopilot.clone(),
                };
                match Server::start(cfg, gossip.clone(), listener, tags).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        gossip.shutdown().await;
                        return Err(AgentError::DataDir(e.to_string()));
                    }
                }
            }
        };
        let rpc_source = if config.bind_addr.is_unspecified() {
            None
        } else {
            Some(config.bind_addr)
        };
        let client = Client::new(gossip.clone(), server.clone(), RpcClient::new(rpc_source));
        let (stop_tx, _) = watch::channel(StopReason::Running);
        let agent = Arc::new(Agent {
            config,
            gossip,
            server,
            client,
            node_id,
            data_dir,
            started: Instant::now(),
            http_addr: http_bind,
            stop_tx,
            dev_dir,
            leave_lock: tokio::sync::Mutex::new(false),
            join_status: std::sync::Mutex::new(None),
        });
        tracing::info!(
            node = %agent.config.node_name, node_id = %node_id, datacenter = %agent.config.datacenter,
            server = agent.config.server, gossip = %advertise, http = %http_bind,
            encrypted = agent.gossip.encrypted(), "muster agent started"
        );
        crate::http::serve(agent.clone(), http);

        if !agent.config.start_join.is_empty() {
            let report = join::join_entries(
                &agent.gossip,
                &agent.config.start_join,
                agent.config.ports.serf_lan,
            )
            .await;
            for (entry, why) in &report.failed {
                tracing::warn!(address = %entry, error = %why, "-join: could not join");
            }
            if report.joined.is_empty() && !report.failed.is_empty() {
                agent.gossip.shutdown().await;
                return Err(AgentError::StartJoin(report.failures()));
            }
            tracing::info!(joined = ?report.joined, "-join: joined cluster");
        }
        if !agent.config.retry_join.is_empty() {
            tokio::spawn(agent.clone().retry_join_forever());
        }
        Ok(agent)
    }

    /// Runs `-retry-join` until it succeeds; then, whenever this agent has lost every server it
    /// knew (all failed or left) for 5 s, discovers and joins again (user-pains A8). While it
    /// knows a live server through gossip it never asks a provider.
    async fn retry_join_forever(self: Arc<Self>) {
        let mut discovery = match join::Discovery::new(&join::registry(), &self.config.retry_join) {
            Ok(d) => d,
            Err(e) => {
                self.stop(StopReason::RetryJoinFailed(e));
                return;
            }
        };
        *self.join_status.lock().expect("join status lock") = Some(discovery.status());
        let schedule = Schedule::new(self.config.retry_interval);
        let port = self.config.ports.serf_lan;
        loop {
            if let Err(report) = join::retry_join(
                &self.gossip,
                &mut discovery,
                port,
                schedule,
                self.config.retry_max,
            )
            .await
            {
                let msg = AgentError::RetryJoinExhausted {
                    attempts: self.config.retry_max,
                    errors: report.failures(),
                };
                self.stop(StopReason::RetryJoinFailed(msg.to_string()));
                return;
            }
            self.wait_until_every_server_is_lost().await;
            tracing::warn!(
                "lost every known server (all failed or left); discovering servers again"
            );
        }
    }

    /// Returns once this agent has known at least one other live server and then has seen none
    /// alive for 5 s.
    async fn wait_until_every_server_is_lost(&self) {
        let mut members = self.gossip.subscribe();
        let mut knew_one = false;
        let mut none_since: Option<Instant> = None;
        loop {
            let alive = crate::server::server_views(&members.borrow_and_update())
                .iter()
                .filter(|s| s.alive && s.name != self.config.node_name)
                .count();
            if alive > 0 {
                knew_one = true;
                none_since = None;
            } else if knew_one {
                let since = *none_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= Duration::from_secs(5) {
                    return;
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), members.changed()).await;
        }
    }

    /// Leaves the cluster gracefully (once; later calls wait for the first), then asks the
    /// process to stop. Returns what the operator must be told (a leave that cost quorum).
    pub async fn leave(&self) -> Vec<String> {
        let mut done = self.leave_lock.lock().await;
        let mut warnings = Vec::new();
        if !*done {
            tracing::info!("gracefully leaving the cluster");
            if let Some(s) = &self.server {
                warnings = s.prepare_leave().await;
            }
            self.gossip.leave().await;
            *done = true;
            tracing::info!("graceful leave complete");
        }
        drop(done);
        self.stop(StopReason::Left);
        warnings
    }

    /// Asks the process to stop (the HTTP server drains, `run` returns).
    pub fn stop(&self, why: StopReason) {
        self.stop_tx.send_if_modified(|cur| {
            if *cur == StopReason::Running {
                *cur = why;
                true
            } else {
                false
            }
        });
    }

    /// Resolves when the agent has been asked to stop, with the reason.
    pub async fn stopped(&self) -> StopReason {
        let mut rx = self.stop_tx.subscribe();
        loop {
            let cur = rx.borrow_and_update().clone();
            if cur != StopReason::Running {
                return cur;
            }
            if rx.changed().await.is_err() {
                return StopReason::Stopped;
            }
        }
    }

    /// Stops gossip tasks (no announcement).
    pub async fn shutdown(&self) {
        if let Some(s) = &self.server {
            s.shutdown().await;
        }
        self.gossip.shutdown().await;
    }
}
