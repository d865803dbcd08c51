//! Configuration: flags and files in, one validated [`RuntimeConfig`] out, before anything binds.
//!
//! Layers are applied in order — every `-config-file` in command-line order, then every
//! `-config-dir` in command-line order (files of a directory in lexical order), then the flags —
//! and a later layer wins for single values while
//! lists (`retry_join`, `start_join`) concatenate, as Consul does. Every problem is collected and
//! reported at once, one line each, so an operator fixes a file in one pass.

pub mod acl;
pub mod file;
mod finish;
pub mod flags;
pub mod legacy;
pub mod log_file;
pub mod netif;
pub mod node_meta;
mod partial;
mod redact;
pub mod reload;
pub mod tls;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use muster_provider_core::Registry;
use uuid::Uuid;

pub use crate::gossip::GossipKey;
pub use finish::finish;
pub use flags::AgentFlags;
pub use legacy::LegacyCloud;
pub use partial::{PartialConfig, Ports};

/// Default gossip (Serf LAN) port, as Consul.
pub const DEFAULT_SERF_LAN_PORT: u16 = 8301;
/// Default server RPC port, as Consul.
pub const DEFAULT_SERVER_PORT: u16 = 8300;
/// Default HTTP API port, as Consul.
pub const DEFAULT_HTTP_PORT: u16 = 8500;

/// The ports the agent listens on, checked. The API's two are `None` when off: `-1` turns
/// either off (Consul's meaning), HTTPS is off unless asked for, and at least one stays on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenPorts {
    pub http: Option<u16>,
    pub https: Option<u16>,
    pub serf_lan: u16,
    pub server: u16,
}
/// Default longest wait between retry-join attempts, as Consul.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(30);
/// Default `kv_tombstone_ttl`: Consul's (internal) `TombstoneTTL`.
pub const DEFAULT_KV_TOMBSTONE_TTL: Duration = Duration::from_secs(15 * 60);
/// Shortest `kv_tombstone_ttl` accepted.
pub const MIN_KV_TOMBSTONE_TTL: Duration = Duration::from_secs(1);

/// One problem with the configuration, worded for the operator: it names the file or flag and
/// the key, and says what to write instead. Retrying cannot help: the agent refuses to start
/// (exit 1) while any remains, and the operator fixes the named key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// Every problem found, each on its own line; the caller prints them all and stops (exit 1).
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Log verbosity, as `-log-level` names it (Consul's `err` is accepted for `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    fn parse(s: &str) -> Result<Self, ConfigError> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "trace" => Self::Trace,
            "debug" => Self::Debug,
            "info" => Self::Info,
            "warn" | "warning" => Self::Warn,
            "err" | "error" => Self::Error,
            other => {
                return Err(ConfigError::new(format!(
                    "log_level: {other:?} is not a level; use trace, debug, info, warn or error"
                )))
            }
        })
    }

    /// The `tracing` directive for this level.
    pub fn as_directive(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}
/// The validated configuration of one agent. Built before anything binds, and again at each
/// reload (`reload.rs` says what changes live). Its `Debug` hides secrets (`redact.rs`).
#[derive(Clone, PartialEq)]
pub struct RuntimeConfig {
    /// Server mode: takes part in Raft (later issue); advertised in gossip as `role=consul`.
    pub server: bool,
    /// Single-server bootstrap (discouraged).
    pub bootstrap: bool,
    /// Servers to wait for before forming a cluster; 0 = not in expect mode.
    pub bootstrap_expect: u32,
    /// Throwaway single server, data in a temp dir.
    pub dev: bool,
    pub datacenter: String,
    pub node_name: String,
    /// Operator-given node id; otherwise the one kept in data_dir (created on first start).
    pub node_id: Option<Uuid>,
    /// Where state lives. `None` only in dev mode, where the agent makes a temp dir.
    pub data_dir: Option<PathBuf>,
    pub bind_addr: IpAddr,
    /// The address other agents use to reach this one.
    pub advertise_addr: IpAddr,
    /// Where the HTTP API listens.
    pub client_addr: IpAddr,
    pub ports: ListenPorts,
    /// Joined once at start (`-join`, `start_join`).
    pub start_join: Vec<String>,
    /// Joined by the retry loop (`-retry-join`, `retry_join`), legacy cloud flags included.
    pub retry_join: Vec<String>,
    pub retry_interval: Duration,
    /// Attempts of the retry loop; 0 = forever.
    pub retry_max: u32,
    pub encrypt: Option<GossipKey>,
    /// Consul's `encrypt_verify_incoming` / `encrypt_verify_outgoing` (default true): false
    /// only while turning encryption on in a running cluster (docs/gossip.md).
    pub encrypt_verify_incoming: bool,
    pub encrypt_verify_outgoing: bool,
    pub log_level: LogLevel,
    pub log_json: bool,
    /// `log_file` and its rotation; `None`: logs go to stderr only.
    pub log_file: Option<log_file::LogFileConfig>,
    /// Where the agent writes its pid once started (removed at exit).
    pub pid_file: Option<PathBuf>,
    /// The operator's `node_meta`, checked: shown as the node's `Meta` in the catalog, carried
    /// in gossip tags ([`crate::gossip::NODE_META_PREFIX`]).
    pub node_meta: std::collections::BTreeMap<String, String>,
    /// Leave gracefully on SIGTERM (default: clients yes, servers no).
    pub leave_on_terminate: bool,
    /// Do not leave on SIGINT (default: servers yes, clients no).
    pub skip_leave_on_interrupt: bool,
    /// Scales every Raft timing; 1 = the LAN defaults of docs/servers.md.
    pub raft_multiplier: u32,
    /// How long a failed gossip member is kept before it is reaped (docs/gossip.md, Reaping).
    pub reconnect_timeout: Duration,
    /// How long a gossip member that left is kept before it is reaped.
    pub tombstone_timeout: Duration,
    /// The `autopilot { }` block as written; the agent fills what is unset with the server's
    /// defaults when it assembles the server's configuration (docs/operations.md).
    pub autopilot: AutopilotSettings,
    /// How long a KV tombstone is kept before the leader reaps it (servers; docs/state.md).
    pub kv_tombstone_ttl: Duration,
    /// The `telemetry { }` block (docs/metrics.md).
    pub telemetry: TelemetrySettings,
    /// The DNS domain of certificate names: `server.<datacenter>.<domain>` (docs/tls.md).
    pub domain: String,
    /// TLS per interface, checked and its files loaded once (docs/security.md).
    pub tls: tls::TlsConfig,
    /// Host names the HTTP API answers to besides IP literals, `localhost` and the node name;
    /// lower case, without a trailing dot (docs/security.md, Host check).
    pub http_allowed_hosts: Vec<String>,
    /// Access control (docs/acl.md).
    pub acl: acl::AclConfig,
}

/// The autopilot settings a new cluster starts with, as the operator gave them (checked). `None`
/// means "not set": the server's own default applies, which depends on `bootstrap_expect` and
/// `raft_multiplier`. Plain data, so that config knows nothing of the server's types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AutopilotSettings {
    pub cleanup_dead_servers: Option<bool>,
    pub last_contact_threshold: Option<Duration>,
    pub max_trailing_logs: Option<u64>,
    pub min_quorum: Option<u32>,
    pub server_stabilization_time: Option<Duration>,
}

/// The `telemetry { }` block, checked, with Consul's meanings (docs/metrics.md). Plain data:
/// the agent hands it to the metrics recorder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// How long a metric not updated stays in the Prometheus output; zero (the default, as in
    /// Consul) turns `/v1/agent/metrics?format=prometheus` off.
    pub prometheus_retention_time: Duration,
    /// Leave the host name out of gauge names (Consul puts it in unless this is set).
    pub disable_hostname: bool,
}

impl RuntimeConfig {
    /// The tags this agent advertises in gossip, under the names Consul gives them
    /// (docs/reference/consul.md), and its `node_meta` under [`crate::gossip::NODE_META_PREFIX`].
    /// Here, beside the settings they come from, so that config can check their size before the
    /// agent starts.
    pub fn gossip_tags(&self, node_id: Uuid) -> crate::gossip::Tags {
        let mut t = crate::gossip::Tags::new();
        t.insert(
            "role".into(),
            if self.server { "consul" } else { "node" }.into(),
        );
        t.insert("dc".into(), self.datacenter.clone());
        t.insert("id".into(), node_id.to_string());
        t.insert("build".into(), crate::VERSION.into());
        t.insert("vsn".into(), "1".into());
        if self.server {
            t.insert("port".into(), self.ports.server.to_string());
            if self.bootstrap_expect > 0 {
                t.insert("expect".into(), self.bootstrap_expect.to_string());
            }
            if self.bootstrap {
                t.insert("bootstrap".into(), "1".into());
            }
        }
        for (k, v) in &self.node_meta {
            t.insert(format!("{}{k}", crate::gossip::NODE_META_PREFIX), v.clone());
        }
        t
    }
}

/// A built configuration plus the warnings to print before starting.
#[derive(Debug)]
pub struct Built {
    pub config: RuntimeConfig,
    pub warnings: Vec<String>,
}

/// Reads every file layer named by `flags`, applies the flags, validates the result.
/// `providers` are the discovery providers of this build, for checking `retry_join`.
pub fn build(flags: &AgentFlags, providers: &Registry) -> Result<Built, ConfigErrors> {
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    let mut merged = PartialConfig::default();
    let forced = match flags.config_format.as_deref().map(file::Format::from_flag) {
        None => None,
        Some(Ok(f)) => Some(f),
        Some(Err(e)) => return Err(ConfigErrors(vec![e])),
    };
    let mut files = flags.config_file.clone();
    for dir in &flags.config_dir {
        match file::files_in_dir(dir, forced) {
            Ok(found) => files.extend(found),
            Err(e) => errors.push(e),
        }
    }
    for path in &files {
        match file::load_file(path, forced, &mut warnings) {
            Ok(layer) => merged = merged.merge(layer),
            Err(es) => errors.extend(es),
        }
    }
    merged = merged.merge(flags.to_partial());
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    finish(merged, warnings, providers)
}
