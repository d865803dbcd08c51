//! The agent: binds its listeners, starts gossip and the HTTP API, joins, and shuts down.
//!
//! Start-up order matters for operators: the configuration was validated before this runs; every
//! socket is bound ([`Listeners::bind`]) *before* anything starts or joins, so a port clash fails
//! fast with the address named, and `-join` failures end the process (exit 1) before it pretends
//! to be a member. [`Agent::start`] takes the listeners already bound, so a test can start an
//! agent in-process on port 0 or on an address of its own ([`Listeners::bind_addrs`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

use crate::client::Client;
use crate::config::RuntimeConfig;
use crate::gossip::{Gossip, GossipConfig, NodeIdentity, Tags, Timings, Verify};
use crate::join::{self, backoff::Schedule};
use crate::node_id::NodeIdError;
use crate::server::autopilot::AutopilotConfig;

mod reload;
use crate::server::rpc::RpcClient;
use crate::server::{Server, ServerConfig};
pub use reload::{LogLevelHook, ReloadReport};

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
    /// The data directory cannot be created (permissions, a full disk, a file in the way).
    /// The operator must fix the path or its permissions. Exit 2.
    #[error("cannot create data_dir {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The node id kept in data_dir is unusable, or `-node-id` contradicts it: the variant
    /// says which ([`NodeIdError::Mismatch`] is a configuration mistake, exit 1; a storage
    /// failure is exit 2).
    #[error(transparent)]
    NodeId(#[from] NodeIdError),
    /// The server part could not start: its Raft store, a pending outage recovery, or Raft
    /// itself failed (the message says which). Retrying does not help; the operator must fix
    /// what is named. Exit 2.
    #[error(transparent)]
    Server(#[from] crate::server::StartError),
    /// The keyring file (`<data_dir>/serf/local.keyring`) cannot be read, parsed or written;
    /// the message names the file and the fix. The agent never starts without the keys the
    /// file holds. Exit 1.
    #[error(transparent)]
    Keyring(#[from] crate::gossip::keyring::KeyringFileError),
    /// `-join` reached no one; nothing was joined. Exit 1, like Consul.
    #[error("could not join any of the -join addresses: {0}")]
    StartJoin(String),
    /// `-retry-join` ran out of attempts (`-retry-max`). Exit 1.
    #[error("retry join gave up after {attempts} attempts: {errors}")]
    RetryJoinExhausted { attempts: u32, errors: String },
    /// The TLS files named in the configuration do not load (checked with the configuration
    /// too, so only a file changed in between gets here). Exit 1: the operator fixes the file.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
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
    /// Raft stopped on a storage failure (or another fatal error): the agent left the
    /// cluster and exits non-zero. The text is the line already logged.
    ServerFailed(String),
}

/// The agent's sockets, bound before anything starts. The binary binds them from the
/// configuration ([`Listeners::bind`]); a test binds its own ([`Listeners::bind_addrs`]), on
/// port 0 if it likes, and the agent then advertises the ports actually bound.
pub struct Listeners {
    /// Gossip datagrams (probes, acks, broadcasts).
    gossip_udp: UdpSocket,
    /// Gossip streams (joins and state syncs), on the same address and port as `gossip_udp`.
    gossip_tcp: TcpListener,
    /// The server RPC port; `None` for a client agent.
    rpc: Option<TcpListener>,
    /// The HTTP API; `None` with `ports.http = -1`.
    http: Option<TcpListener>,
    /// The HTTPS API; `None` unless `ports.https` is set.
    https: Option<TcpListener>,
    /// The addresses as asked for, with the ports the system chose where 0 was asked.
    gossip_addr: SocketAddr,
    rpc_addr: Option<SocketAddr>,
    http_addr: Option<SocketAddr>,
    https_addr: Option<SocketAddr>,
}

impl Listeners {
    /// Binds every listener the configuration asks for: gossip UDP and TCP on
    /// `bind_addr:serf_lan`, the server RPC port (server mode only) and the HTTP and HTTPS
    /// APIs on `client_addr:http` and `client_addr:https` (each unless off). A failure names
    /// the listener and the address.
    pub async fn bind(config: &RuntimeConfig) -> Result<Self, AgentError> {
        let rpc = config
            .server
            .then(|| SocketAddr::new(config.bind_addr, config.ports.server));
        let api = |port: Option<u16>| port.map(|p| SocketAddr::new(config.client_addr, p));
        Self::bind_addrs(
            SocketAddr::new(config.bind_addr, config.ports.serf_lan),
            rpc,
            api(config.ports.http),
            api(config.ports.https),
        )
        .await
    }

    /// Binds the given addresses, in the order [`Listeners::bind`] does. Port 0 takes a free
    /// port; for gossip, TCP then binds the port UDP was given (the two share one port).
    pub async fn bind_addrs(
        gossip: SocketAddr,
        rpc: Option<SocketAddr>,
        http: Option<SocketAddr>,
        https: Option<SocketAddr>,
    ) -> Result<Self, AgentError> {
        let gossip_udp = UdpSocket::bind(gossip)
            .await
            .map_err(bind_failed("gossip UDP", gossip))?;
        let gossip_addr = with_bound_port(gossip, gossip_udp.local_addr())
            .map_err(bind_failed("gossip UDP", gossip))?;
        let gossip_tcp = TcpListener::bind(gossip_addr)
            .await
            .map_err(bind_failed("gossip TCP", gossip_addr))?;
        let (rpc, rpc_addr) = bind_tcp("server RPC", rpc).await?;
        let (http, http_addr) = bind_tcp("HTTP API", http).await?;
        let (https, https_addr) = bind_tcp("HTTPS API", https).await?;
        Ok(Self {
            gossip_udp,
            gossip_tcp,
            rpc,
            http,
            https,
            gossip_addr,
            rpc_addr,
            http_addr,
            https_addr,
        })
    }
}

/// Binds `addr` if there is one: the listener and the address with the port bound.
async fn bind_tcp(
    what: &'static str,
    addr: Option<SocketAddr>,
) -> Result<(Option<TcpListener>, Option<SocketAddr>), AgentError> {
    let Some(addr) = addr else {
        return Ok((None, None));
    };
    let l = TcpListener::bind(addr)
        .await
        .map_err(bind_failed(what, addr))?;
    let bound = with_bound_port(addr, l.local_addr()).map_err(bind_failed(what, addr))?;
    Ok((Some(l), Some(bound)))
}

/// A data dir that other local users may enter or read holds the Raft state, the keyring
/// and the node id for them to copy: one warning with the fix. (A dir the agent creates is
/// 0700 already: `muster agent` runs with umask 077.)
fn warn_if_open_to_others(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(dir) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "data dir {} is open to other local users (mode {mode:o}): chmod 700 {}",
                dir.display(),
                dir.display()
            );
        }
    }
}

/// An optional listener's address for a log line: the address, or `off`.
fn shown(addr: Option<SocketAddr>) -> String {
    addr.map_or_else(|| "off".to_string(), |a| a.to_string())
}

/// `asked` itself when it named a port, else `asked` with the port the system chose.
fn with_bound_port(
    asked: SocketAddr,
    bound: std::io::Result<SocketAddr>,
) -> std::io::Result<SocketAddr> {
    if asked.port() != 0 {
        return Ok(asked);
    }
    Ok(SocketAddr::new(asked.ip(), bound?.port()))
}

fn bind_failed(what: &'static str, addr: SocketAddr) -> impl Fn(std::io::Error) -> AgentError {
    move |source| AgentError::Bind { what, addr, source }
}

/// The server's autopilot settings: its defaults for this cluster size and Raft multiplier,
/// with every key the operator set on top.
fn autopilot_config(config: &RuntimeConfig) -> AutopilotConfig {
    let defaults = AutopilotConfig::defaults(config.bootstrap_expect, config.raft_multiplier);
    autopilot_overlay(defaults, &config.autopilot)
}

/// `base` with every key of `given` that is set.
fn autopilot_overlay(
    mut autopilot: AutopilotConfig,
    given: &crate::config::AutopilotSettings,
) -> AutopilotConfig {
    if let Some(b) = given.cleanup_dead_servers {
        autopilot.cleanup_dead_servers = b;
    }
    if let Some(d) = given.last_contact_threshold {
        autopilot.last_contact_threshold = d;
    }
    if let Some(n) = given.max_trailing_logs {
        autopilot.max_trailing_logs = n;
    }
    if let Some(n) = given.min_quorum {
        autopilot.min_quorum = n;
    }
    if let Some(d) = given.server_stabilization_time {
        autopilot.server_stabilization_time = d;
    }
    autopilot
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
    /// The HTTP API's bound address; `None` when it is off.
    pub http_addr: Option<SocketAddr>,
    /// The HTTPS API's bound address; `None` when it is off.
    pub https_addr: Option<SocketAddr>,
    stop_tx: watch::Sender<StopReason>,
    /// A dev-mode temp dir, removed on drop.
    dev_dir: Option<PathBuf>,
    leave_lock: tokio::sync::Mutex<bool>,
    /// The retry-join loop's status, once it runs (`retry_join` in `muster info`).
    pub join_status: std::sync::Mutex<Option<Arc<std::sync::Mutex<join::JoinStatus>>>>,
    /// TLS of the server port, in and out (docs/security.md); reloaded on SIGHUP.
    pub rpc_tls: Option<Arc<crate::tls::rpc::RpcTls>>,
    /// The HTTPS API's certificate and CA, when it listens; reloaded on SIGHUP.
    pub https_tls: Option<Arc<crate::tls::Reloadable>>,
    /// Tokens a server resolved for this agent's own endpoints (client agents; docs/acl.md).
    pub acl_cache: std::sync::Mutex<crate::acl::TokenCache>,
    /// What a reload may change, and where a reload reads its configuration from (`reload`).
    pub(crate) live: reload::Live,
    /// The process's metrics, for `/v1/agent/metrics` (docs/metrics.md).
    pub telemetry: Arc<crate::telemetry::Telemetry>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(d) = &self.dev_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The tags every agent advertises ([`RuntimeConfig::gossip_tags`]).
pub fn tags_for(config: &RuntimeConfig, node_id: uuid::Uuid) -> Tags {
    config.gossip_tags(node_id)
}

impl Agent {
    /// Starts gossip and the HTTP API on `listeners`, runs `-join`, and spawns `-retry-join`.
    /// The ports the listeners were bound to are the ones advertised (and kept in
    /// `config.ports`), so a test may bind port 0.
    pub async fn start(
        mut config: RuntimeConfig,
        listeners: Listeners,
    ) -> Result<Arc<Agent>, AgentError> {
        let Listeners {
            gossip_udp: udp,
            gossip_tcp: tcp,
            rpc: rpc_listener,
            http,
            https,
            gossip_addr,
            rpc_addr,
            http_addr: http_bind,
            https_addr: https_bind,
        } = listeners;
        // Before anything records: the layers' counters go to the process's recorder.
        let telemetry = crate::telemetry::Telemetry::install(
            config.telemetry.prometheus_retention_time,
            config.telemetry.disable_hostname,
        );
        config.ports.serf_lan = gossip_addr.port();
        if let Some(rpc) = rpc_addr {
            config.ports.server = rpc.port();
        }
        config.ports.http = http_bind.map(|a| a.port());
        config.ports.https = https_bind.map(|a| a.port());
        let https_tls = match (&https, &config.tls.https) {
            (Some(_), Some(settings)) => Some(Arc::new(crate::tls::Reloadable::load(
                settings.clone(),
                crate::tls::server_name(&config.datacenter, &config.domain),
            )?)),
            // Config refuses ports.https without a certificate; a listener handed in without
            // one (a test's) is refused here too: never HTTPS in plaintext.
            (Some(_), None) => {
                return Err(AgentError::Tls(crate::tls::TlsError::Refused(
                    "an HTTPS listener needs tls.https.cert_file and tls.https.key_file".into(),
                )))
            }
            (None, _) => None,
        };
        let rpc_tls = match &config.tls.rpc {
            Some(settings) => Some(Arc::new(crate::tls::rpc::RpcTls::new(
                crate::tls::Reloadable::load(
                    settings.clone(),
                    crate::tls::server_name(&config.datacenter, &config.domain),
                )?,
            ))),
            None => None,
        };
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
        std::fs::create_dir_all(&data_dir).map_err(|source| AgentError::DataDir {
            path: data_dir.clone(),
            source,
        })?;
        warn_if_open_to_others(&data_dir);
        let node_id = crate::node_id::load_or_create(&data_dir, config.node_id)?;
        let keyring = crate::gossip::keyring::load_or_create(&data_dir, config.encrypt.as_ref())?;
        if let Some(w) = &keyring.warning {
            tracing::warn!("{w}");
        }

        let advertise = SocketAddr::new(config.advertise_addr, config.ports.serf_lan);
        let identity = NodeIdentity::new(config.node_name.clone(), node_id, advertise);
        let tags = tags_for(&config, node_id);
        let gossip = Gossip::start(
            GossipConfig {
                identity,
                datacenter: config.datacenter.clone(),
                keyring: keyring.keyring,
                keyring_file: Some(keyring.file),
                verify: Verify {
                    incoming: config.encrypt_verify_incoming,
                    outgoing: config.encrypt_verify_outgoing,
                },
                tags: tags.clone(),
                timings: Timings {
                    reconnect_timeout: config.reconnect_timeout,
                    tombstone_timeout: config.tombstone_timeout,
                    ..Timings::default()
                },
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
                    autopilot: autopilot_config(&config),
                    tombstone_ttl: config.kv_tombstone_ttl,
                    join_configured: !(config.start_join.is_empty()
                        && config.retry_join.is_empty()),
                    tls: rpc_tls.clone(),
                    acl: config.acl.enabled.then(|| crate::server::AclServerConfig {
                        default_policy: config.acl.default_policy,
                        enable_key_list_policy: config.acl.enable_key_list_policy,
                        initial_management: config
                            .acl
                            .initial_management
                            .as_ref()
                            .map(|s| s.expose().to_string()),
                        agent_token: config
                            .acl
                            .agent_token
                            .as_ref()
                            .map(|s| s.expose().to_string()),
                    }),
                };
                match Server::start(cfg, gossip.clone(), listener, tags).await {
                    Ok(s) => Some(s),
                    Err(e) => {
                        gossip.shutdown().await;
                        return Err(AgentError::Server(e));
                    }
                }
            }
        };
        let rpc_source = if config.bind_addr.is_unspecified() {
            None
        } else {
            Some(config.bind_addr)
        };
        let client = Client::new(
            gossip.clone(),
            server.clone(),
            RpcClient::new(rpc_source, rpc_tls.clone()),
        );
        let (stop_tx, _) = watch::channel(StopReason::Running);
        let acl_ttl = config.acl.token_ttl;
        let config_for_live = config.clone();
        let agent = Arc::new(Agent {
            config,
            gossip,
            server,
            client,
            node_id,
            data_dir,
            started: Instant::now(),
            http_addr: http_bind,
            https_addr: https_bind,
            stop_tx,
            dev_dir,
            leave_lock: tokio::sync::Mutex::new(false),
            join_status: std::sync::Mutex::new(None),
            rpc_tls,
            https_tls,
            acl_cache: std::sync::Mutex::new(crate::acl::TokenCache::new(acl_ttl)),
            live: reload::Live::new(&config_for_live),
            telemetry: telemetry.clone(),
        });
        {
            // The summaries' samples move out of the recorder between scrapes (docs/metrics.md).
            let mut stop = agent.stop_tx.subscribe();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => telemetry.upkeep(),
                        changed = stop.changed() => {
                            if changed.is_err() || *stop.borrow() != StopReason::Running {
                                return;
                            }
                        }
                    }
                }
            });
        }
        tracing::info!(
            node = %agent.config.node_name, node_id = %node_id, datacenter = %agent.config.datacenter,
            server = agent.config.server, gossip = %advertise, http = %shown(http_bind),
            https = %shown(https_bind), encrypted = agent.gossip.encrypted(),
            "muster agent started"
        );
        if let Some(http) = http {
            crate::http::serve(agent.clone(), http);
        }
        if let (Some(https), Some(tls)) = (https, &agent.https_tls) {
            crate::http::https::serve(agent.clone(), https, tls.clone());
        }

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
        // Always running: a reload may give an agent started without retry_join a list.
        tokio::spawn(agent.clone().retry_join_forever());
        if let Some(server) = agent.server.clone() {
            tokio::spawn(agent.clone().leave_when_failed(server));
        }
        Ok(agent)
    }

    /// Waits for this agent's server to fail for good ([`Server::failed`]); then says so in one
    /// error line, leaves gossip gracefully (the others see it `left`, and the leader removes
    /// it from the Raft configuration at once, so autopilot can replace it) and stops the
    /// agent, which exits non-zero. The Raft part of a graceful leave is skipped: Raft has
    /// stopped here, and the leader's removal does it.
    async fn leave_when_failed(self: Arc<Self>, server: Arc<Server>) {
        let line = server.failed().await;
        tracing::error!("{line}");
        {
            let mut done = self.leave_lock.lock().await;
            if !*done {
                self.gossip.leave().await;
                *done = true;
            }
        }
        self.stop(StopReason::ServerFailed(line));
    }

    /// Runs `-retry-join` until it succeeds; then, whenever this agent has lost every server it
    /// knew (all failed or left) for 5 s, discovers and joins again. While it
    /// knows a live server through gossip it never asks a provider.
    ///
    /// A reload that changes `retry_join`, `retry_interval` or `retry_max` starts the loop
    /// again with the new settings at once (joining with the new entries, also when already
    /// joined); a list made empty stops it.
    async fn retry_join_forever(self: Arc<Self>) {
        let mut settings = self.live.retry_join.subscribe();
        let port = self.config.ports.serf_lan;
        // A pass started by a reload in an agent that has joined before: its exhaustion is
        // told, not fatal (a reload never stops the agent: docs/configuration.md, Reload).
        let (mut joined_once, mut by_reload) = (false, false);
        loop {
            let current = settings.borrow_and_update().clone();
            if current.entries.is_empty() {
                if settings.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let mut discovery = match join::Discovery::new(&join::registry(), &current.entries) {
                Ok(d) => d,
                Err(e) => {
                    self.stop(StopReason::RetryJoinFailed(e.to_string()));
                    return;
                }
            };
            *self.join_status.lock().expect("join status lock") = Some(discovery.status());
            let schedule = Schedule::new(current.interval);
            let joining =
                join::retry_join(&self.gossip, &mut discovery, port, schedule, current.max);
            tokio::select! {
                outcome = joining => match outcome {
                    Ok(_) => joined_once = true,
                    Err(report) => {
                        let msg = AgentError::RetryJoinExhausted {
                            attempts: current.max,
                            errors: report.failures(),
                        };
                        if !(joined_once && by_reload) {
                            self.stop(StopReason::RetryJoinFailed(msg.to_string()));
                            return;
                        }
                        tracing::warn!("{msg}; the reloaded retry_join joined nothing, the agent carries on");
                    }
                },
                _ = settings.changed() => {
                    tracing::info!("retry join: settings reloaded; joining with the new ones");
                    by_reload = true;
                    continue;
                }
            }
            by_reload = false;
            tokio::select! {
                _ = self.wait_until_every_server_is_lost() => tracing::warn!(
                    "lost every known server (all failed or left); discovering servers again"
                ),
                _ = settings.changed() => {
                    tracing::info!("retry join: settings reloaded; joining with the new ones");
                    by_reload = true;
                }
            }
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
                .filter(|s| s.alive && s.id != crate::server::id::node_id(self.node_id))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{finish, PartialConfig};
    use crate::http::agent::MemberJson;

    /// An agent started in-process on listeners the test bound itself (127.0.0.1, port 0): it
    /// advertises the ports it was given, answers on its HTTP API, and stops when asked.
    #[tokio::test]
    async fn starts_on_listeners_bound_to_port_zero_and_stops() {
        let dir = tempfile::tempdir().unwrap();
        let built = finish(
            PartialConfig {
                data_dir: Some(dir.path().into()),
                bind_addr: Some("127.0.0.1".into()),
                node_name: Some("in-process".into()),
                ..Default::default()
            },
            vec![],
            &muster_provider_core::Registry::new(),
        )
        .unwrap();
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        let listeners = Listeners::bind_addrs(any_port, None, Some(any_port), None)
            .await
            .unwrap();
        let agent = Agent::start(built.config, listeners).await.unwrap();
        let ports = agent.config.ports.clone();
        let http_port = ports.http.unwrap();
        assert!(ports.serf_lan != 0 && http_port != 0, "{ports:?}");
        assert_eq!(
            agent.http_addr,
            Some(SocketAddr::from(([127, 0, 0, 1], http_port)))
        );

        let url = format!("http://{}/v1/agent/members", agent.http_addr.unwrap());
        let members: Vec<MemberJson> = reqwest::get(url).await.unwrap().json().await.unwrap();
        assert_eq!(members.len(), 1, "{members:?}");
        assert_eq!(
            (members[0].name.as_str(), members[0].port),
            ("in-process", ports.serf_lan)
        );

        agent.stop(StopReason::Stopped);
        assert_eq!(agent.stopped().await, StopReason::Stopped);
        agent.shutdown().await;
    }
}
