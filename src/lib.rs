//! muster: a cluster agent that lets a fleet of machines find each other and form a consensus
//! cluster safely. This crate is the agent and its command-line interface; `main.rs` is a thin
//! wrapper around [`cli::run`].
//!
//! # Layout
//! - [`config`]: flags and JSON/HCL files (Consul's key names) into one validated [`config::RuntimeConfig`].
//! - [`gossip`]: SWIM membership (foca) with our UDP/TCP transport, tags, encryption.
//! - [`agent`]: wires gossip, joining and the HTTP API; start-up and graceful shutdown.
//! - [`join`]: join-address resolution, `-join` and the retry-join loop with its backoff.
//! - [`server`]: Raft (openraft, redb), the server RPC port, the bootstrap gate, the leader's duties, KV and catalog.
//! - [`tls`]: TLS for the server RPC port and the HTTPS API (rustls): settings, material, roles.
//! - [`client`]: reaching the cluster from any agent: own Raft state or forwarding with failover.
//! - [`http`]: the Consul-shaped HTTP API on 127.0.0.1:8500.
//! - [`cli`]: one module per subcommand; every command but `agent` talks to the agent over HTTP.
//! - [`telemetry`]: the process's metrics recorder (Prometheus text and Consul's JSON), docs/metrics.md.
//! - [`duration`]: Go-style durations (`30s`, `1m30s`), read and written by config and http alike.
//! - [`frame`]: the length-prefixed frames of both TCP protocols (gossip sync, server RPC).
//! - [`node_id`]: the node's UUID, created once and kept in data_dir.
//! - [`monitor`]: the agent's log lines for `muster monitor` and `/v1/agent/monitor`.
//!
//! See docs/architecture.md for how these fit together.

pub mod acl;
pub mod agent;
pub mod cli;
pub mod client;
pub mod config;
pub mod duration;
pub mod frame;
pub mod gossip;
pub mod http;
pub mod join;
pub mod monitor;
pub mod node_id;
pub mod rotating_file;
pub mod server;
pub mod telemetry;
pub mod tls;

/// The version every agent advertises in its `build` tag.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
