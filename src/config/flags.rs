//! Command-line flags of `muster agent`, and the Go-style single-dash spelling.
//!
//! Consul is written in Go, whose flag package takes `-retry-join` and `--retry-join` alike, and
//! operators paste Consul command lines; so every long flag of every subcommand is accepted with
//! one dash too ([`accept_single_dash`]). Flags are parsed into plain values here and merged with
//! config files in [`super::build`]; nothing here is validated beyond its type.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;

use super::{LegacyCloud, PartialConfig, Ports};

/// Flags of `muster agent`. Each mirrors a Consul flag of the same name.
#[derive(Debug, Default, Args, Clone)]
pub struct AgentFlags {
    /// Run in server mode (take part in Raft). Default false (client).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub server: Option<bool>,
    /// Address to bind the gossip and server listeners to. Default 0.0.0.0.
    #[arg(long, value_name = "IP")]
    pub bind: Option<String>,
    /// Address advertised to other agents. Default: the bind address.
    #[arg(long, value_name = "IP")]
    pub advertise: Option<String>,
    /// Address the HTTP API binds to. Default 127.0.0.1.
    #[arg(long, value_name = "IP")]
    pub client: Option<String>,
    /// Node name, unique in the datacenter. Default: the host name.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// Node ID (UUID). Default: generated once and kept in data_dir.
    #[arg(long = "node-id", value_name = "UUID")]
    pub node_id: Option<String>,
    /// Datacenter name. Default dc1.
    #[arg(long, value_name = "DC")]
    pub datacenter: Option<String>,
    /// DNS domain of certificate names (server.DC.DOMAIN, docs/security.md). Default consul.
    #[arg(long, value_name = "DOMAIN")]
    pub domain: Option<String>,
    /// Directory for the agent's state (node id, later Raft data). Required unless -dev.
    #[arg(long = "data-dir", value_name = "PATH")]
    pub data_dir: Option<PathBuf>,
    /// A config file (JSON or HCL). Repeatable; read in order.
    #[arg(long = "config-file", value_name = "FILE")]
    pub config_file: Vec<PathBuf>,
    /// A directory of config files (*.json, *.hcl), read in lexical order. Repeatable.
    #[arg(long = "config-dir", value_name = "DIR")]
    pub config_dir: Vec<PathBuf>,
    /// Read every config file as json or hcl, whatever its name (Consul's flag). Without it a
    /// file's format comes from its .json or .hcl extension.
    #[arg(long = "config-format", value_name = "FORMAT")]
    pub config_format: Option<String>,
    /// Write the agent's pid and a newline to FILE once it has started; removed at exit.
    #[arg(long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// Also write the logs to this file (a path ending in / is a directory: muster.log in it).
    #[arg(long = "log-file", value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Rotate the log file once it holds this many bytes. Default: no size limit.
    #[arg(
        long = "log-rotate-bytes",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub log_rotate_bytes: Option<i64>,
    /// Rotate the log file once it is this old (a Go duration). Default 24h.
    #[arg(long = "log-rotate-duration", value_name = "DURATION")]
    pub log_rotate_duration: Option<String>,
    /// Rotated log files to keep: 0 (the default) keeps all, -1 keeps none.
    #[arg(
        long = "log-rotate-max-files",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub log_rotate_max_files: Option<i64>,
    /// A node metadata pair, KEY:VALUE, shown in the catalog as Meta. Repeatable.
    #[arg(long = "node-meta", value_name = "KEY:VALUE")]
    pub node_meta: Vec<String>,
    /// Address to join at start (start_join). Repeatable.
    #[arg(long, value_name = "ADDR")]
    pub join: Vec<String>,
    /// A host name the HTTP API answers to, besides IP addresses, localhost and the node
    /// name (http_allowed_hosts). Repeatable.
    #[arg(long = "http-allowed-host", value_name = "NAME")]
    pub http_allowed_host: Vec<String>,
    /// Address or provider string to join, retried until it succeeds. Repeatable.
    #[arg(long = "retry-join", value_name = "ADDR")]
    pub retry_join: Vec<String>,
    /// Longest wait between retry-join attempts (a Go duration). Default 30s.
    #[arg(long = "retry-interval", value_name = "DURATION")]
    pub retry_interval: Option<String>,
    /// Maximum retry-join attempts; 0 = forever. Default 0.
    #[arg(long = "retry-max", value_name = "N", allow_negative_numbers = true)]
    pub retry_max: Option<i64>,
    /// Number of servers to wait for before forming the cluster.
    #[arg(
        long = "bootstrap-expect",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub bootstrap_expect: Option<i64>,
    /// Elect this server at once as a cluster of one (discouraged).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub bootstrap: Option<bool>,
    /// Throwaway single server: data in a temp dir, everything on 127.0.0.1.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub dev: Option<bool>,
    /// Gossip encryption key: base64 of 32 bytes (`muster keygen`). Prefer MUSTER_ENCRYPT or
    /// a config file of mode 0600: a flag is visible to every local user in /proc.
    #[arg(
        long,
        value_name = "KEY",
        env = "MUSTER_ENCRYPT",
        hide_env_values = true
    )]
    pub encrypt: Option<String>,
    /// Log level: trace, debug, info, warn, error. Default info.
    #[arg(long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log JSON lines instead of human-readable text.
    #[arg(long = "log-json", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub log_json: Option<bool>,
    /// Gossip (LAN) port, UDP and TCP. Default 8301.
    #[arg(
        long = "serf-lan-port",
        value_name = "PORT",
        allow_negative_numbers = true
    )]
    pub serf_lan_port: Option<i64>,
    /// Server RPC port. Default 8300.
    #[arg(
        long = "server-port",
        value_name = "PORT",
        allow_negative_numbers = true
    )]
    pub server_port: Option<i64>,
    /// HTTP API port. Default 8500.
    #[arg(long = "http-port", value_name = "PORT", allow_negative_numbers = true)]
    pub http_port: Option<i64>,
    /// HTTPS API port; -1 (the default) is off. Needs tls.https (or tls.defaults) cert_file
    /// and key_file (docs/security.md).
    #[arg(
        long = "https-port",
        value_name = "PORT",
        allow_negative_numbers = true
    )]
    pub https_port: Option<i64>,
    /// Scales every Raft timing: 1 (LAN, default) to 10 (slow networks).
    #[arg(
        long = "raft-multiplier",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub raft_multiplier: Option<i64>,
    /// Legacy: EC2 tag key to discover servers by (becomes `provider=aws tag_key=…`).
    #[arg(long = "retry-join-ec2-tag-key", value_name = "KEY")]
    pub ec2_tag_key: Option<String>,
    /// Legacy: EC2 tag value to discover servers by.
    #[arg(long = "retry-join-ec2-tag-value", value_name = "VALUE")]
    pub ec2_tag_value: Option<String>,
    /// Legacy: EC2 region to search.
    #[arg(long = "retry-join-ec2-region", value_name = "REGION")]
    pub ec2_region: Option<String>,
    /// Legacy: GCE network tag to discover servers by (becomes `provider=gce tag_value=…`).
    #[arg(long = "retry-join-gce-tag-value", value_name = "TAG")]
    pub gce_tag_value: Option<String>,
    /// Legacy: GCE project to search.
    #[arg(long = "retry-join-gce-project-name", value_name = "PROJECT")]
    pub gce_project_name: Option<String>,
    /// Legacy: GCE zone regex to search.
    #[arg(long = "retry-join-gce-zone-pattern", value_name = "REGEX")]
    pub gce_zone_pattern: Option<String>,
    /// Legacy: GCE service-account credentials file.
    #[arg(long = "retry-join-gce-credentials-file", value_name = "FILE")]
    pub gce_credentials_file: Option<String>,
}

impl AgentFlags {
    /// The flag values as one more configuration layer, applied after every file.
    pub fn to_partial(&self) -> PartialConfig {
        PartialConfig {
            origin: Some("command line".into()),
            // Config files only, as in Consul (tokens are secrets: never flags).
            acl: Default::default(),
            advertise_addr: self.advertise.clone(),
            bind_addr: self.bind.clone(),
            bootstrap: self.bootstrap,
            bootstrap_expect: self.bootstrap_expect,
            client_addr: self.client.clone(),
            data_dir: self.data_dir.clone(),
            datacenter: self.datacenter.clone(),
            domain: self.domain.clone(),
            dev: self.dev,
            encrypt: self.encrypt.clone(),
            // Config files only, like the leave behaviour (Consul has no flags either).
            encrypt_verify_incoming: None,
            encrypt_verify_outgoing: None,
            kv_tombstone_ttl: None,
            leave_on_terminate: None,
            log_json: self.log_json,
            log_level: self.log_level.clone(),
            log_file: self.log_file.clone(),
            log_rotate_bytes: self.log_rotate_bytes,
            log_rotate_duration: self.log_rotate_duration.clone(),
            log_rotate_max_files: self.log_rotate_max_files,
            pid_file: self.pid_file.clone(),
            node_meta: self
                .node_meta
                .iter()
                .map(|pair| parse_meta_pair(pair))
                .collect(),
            node_id: self.node_id.clone(),
            node_name: self.node.clone(),
            ports: Ports {
                http: self.http_port,
                https: self.https_port,
                serf_lan: self.serf_lan_port,
                server: self.server_port,
            },
            retry_interval: self.retry_interval.clone(),
            retry_join: self.retry_join.clone(),
            retry_max: self.retry_max,
            server: self.server,
            skip_leave_on_interrupt: None,
            start_join: self.join.clone(),
            http_allowed_hosts: self.http_allowed_host.clone(),
            legacy_cloud: LegacyCloud {
                ec2_region: self.ec2_region.clone(),
                ec2_tag_key: self.ec2_tag_key.clone(),
                ec2_tag_value: self.ec2_tag_value.clone(),
                ec2_access_key_id: None,
                ec2_secret_access_key: None,
                gce_project_name: self.gce_project_name.clone(),
                gce_zone_pattern: self.gce_zone_pattern.clone(),
                gce_tag_value: self.gce_tag_value.clone(),
                gce_credentials_file: self.gce_credentials_file.clone(),
            },
            raft_multiplier: self.raft_multiplier,
            // Consul has no reaping flags either: config files only (docs/configuration.md).
            reconnect_timeout: None,
            tombstone_timeout: None,
            telemetry_prometheus_retention_time: None,
            telemetry_disable_hostname: None,
            // Consul has no autopilot flags: the config file's block or `operator autopilot`.
            ap_cleanup_dead_servers: None,
            ap_last_contact_threshold: None,
            ap_max_trailing_logs: None,
            ap_min_quorum: None,
            ap_server_stabilization_time: None,
            // TLS settings are config files only, as in Consul.
            tls: Default::default(),
        }
    }
}

/// `-node-meta KEY:VALUE` as Consul splits it: at the first `:`; without one, the value is empty.
pub fn parse_meta_pair(pair: &str) -> (String, String) {
    match pair.split_once(':') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (pair.to_string(), String::new()),
    }
}

/// Rewrites `-name` and `-name=value` into `--name…`, so that Go-style command lines parse.
/// Single-letter flags (`-h`), negative numbers and everything after `--` are left alone; an
/// unknown word is rewritten too, so that clap's error suggests the nearest real flag.
pub fn accept_single_dash(args: Vec<OsString>, long_names: &[String]) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut after_terminator = false;
    for arg in args {
        if after_terminator {
            out.push(arg);
            continue;
        }
        let Some(s) = arg.to_str() else {
            out.push(arg);
            continue;
        };
        if s == "--" {
            after_terminator = true;
            out.push(arg);
            continue;
        }
        if let Some(rest) = s.strip_prefix('-') {
            if !rest.starts_with('-') && rest.len() > 1 {
                let name = rest.split('=').next().unwrap_or(rest);
                // Known names, and any other word (so clap can say "did you mean --retry-join"
                // about a typo); never negative numbers.
                let word = rest.starts_with(|c: char| c.is_ascii_alphabetic());
                if word || long_names.iter().any(|n| n == name) {
                    out.push(OsString::from(format!("-{s}")));
                    continue;
                }
            }
        }
        out.push(arg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_dash_becomes_double_for_known_names_only() {
        let names = vec!["retry-join".to_string(), "server".to_string()];
        let args: Vec<OsString> = [
            "muster",
            "agent",
            "-server",
            "-retry-join=a",
            "-retry-join",
            "b",
            "-x",
            "-5",
            "--",
            "-server",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let got: Vec<String> = accept_single_dash(args, &names)
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            got,
            [
                "muster",
                "agent",
                "--server",
                "--retry-join=a",
                "--retry-join",
                "b",
                "-x",
                "-5",
                "--",
                "-server"
            ]
        );
    }
}
