//! One layer of configuration as written (a file or the command line), unchecked, and how
//! layers combine: a later layer's single values win, lists concatenate, as Consul does.

use std::path::PathBuf;

use super::legacy::LegacyCloud;
use super::tls::TlsLayer;

/// Port numbers, per layer as written (`Option<i64>`, unchecked) or validated (`u16`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ports<T = Option<i64>> {
    pub http: T,
    pub https: T,
    pub serf_lan: T,
    pub server: T,
}

/// One layer of configuration: a file or the command line. `None`/empty means "not set here".
/// Its `Debug` hides secrets (`redact.rs`).
#[derive(Default, Clone)]
pub struct PartialConfig {
    pub origin: Option<String>,
    /// The `acl` stanza (and Consul's older `acl_*` keys), docs/acl.md.
    pub acl: super::acl::AclLayer,
    pub advertise_addr: Option<String>,
    pub bind_addr: Option<String>,
    pub bootstrap: Option<bool>,
    pub bootstrap_expect: Option<i64>,
    pub client_addr: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub datacenter: Option<String>,
    /// The DNS domain of certificate names (`server.<dc>.<domain>`); `consul` by default.
    pub domain: Option<String>,
    pub dev: Option<bool>,
    pub encrypt: Option<String>,
    /// `encrypt_verify_incoming` / `encrypt_verify_outgoing` (config files only; docs/gossip.md).
    pub encrypt_verify_incoming: Option<bool>,
    pub encrypt_verify_outgoing: Option<bool>,
    /// `kv_tombstone_ttl`, a Go duration as written.
    pub kv_tombstone_ttl: Option<String>,
    pub leave_on_terminate: Option<bool>,
    pub log_json: Option<bool>,
    pub log_level: Option<String>,
    /// `log_file` and Consul's rotation keys, as written (docs/configuration.md, Logging).
    pub log_file: Option<PathBuf>,
    pub log_rotate_bytes: Option<i64>,
    pub log_rotate_duration: Option<String>,
    pub log_rotate_max_files: Option<i64>,
    pub pid_file: Option<PathBuf>,
    /// `node_meta` pairs in the order written; a later pair for the same key wins.
    pub node_meta: Vec<(String, String)>,
    pub node_id: Option<String>,
    pub node_name: Option<String>,
    pub ports: Ports,
    pub retry_interval: Option<String>,
    pub retry_join: Vec<String>,
    pub retry_max: Option<i64>,
    pub server: Option<bool>,
    pub skip_leave_on_interrupt: Option<bool>,
    pub start_join: Vec<String>,
    /// Host names the HTTP API answers to besides IP literals, `localhost` and the node name
    /// (docs/security.md, Host check). Lists concatenate.
    pub http_allowed_hosts: Vec<String>,
    /// The `retry_join_ec2` / `retry_join_gce` blocks and their flags.
    pub legacy_cloud: LegacyCloud,
    pub raft_multiplier: Option<i64>,
    /// `reconnect_timeout` and `tombstone_timeout` (Go durations; config files only).
    pub reconnect_timeout: Option<String>,
    pub tombstone_timeout: Option<String>,
    /// The `telemetry { }` block (docs/metrics.md): `prometheus_retention_time` as written
    /// (a Go duration) and `disable_hostname`.
    pub telemetry_prometheus_retention_time: Option<String>,
    pub telemetry_disable_hostname: Option<bool>,
    /// The `autopilot { }` block (its keys, Consul's names).
    pub ap_cleanup_dead_servers: Option<bool>,
    pub ap_last_contact_threshold: Option<String>,
    pub ap_max_trailing_logs: Option<i64>,
    pub ap_min_quorum: Option<i64>,
    pub ap_server_stabilization_time: Option<String>,
    /// TLS settings: the `tls` stanza and Consul's older top-level keys.
    pub tls: TlsLayer,
}

impl PartialConfig {
    /// Applies `later` on top of `self`: later single values win, lists concatenate.
    pub fn merge(mut self, later: PartialConfig) -> PartialConfig {
        macro_rules! take {
            ($($f:ident),*) => { $( if later.$f.is_some() { self.$f = later.$f; } )* };
        }
        take!(
            advertise_addr,
            bind_addr,
            bootstrap,
            bootstrap_expect,
            client_addr,
            data_dir,
            datacenter,
            domain,
            dev,
            encrypt,
            encrypt_verify_incoming,
            encrypt_verify_outgoing,
            kv_tombstone_ttl,
            leave_on_terminate,
            log_json,
            log_level,
            log_file,
            log_rotate_bytes,
            log_rotate_duration,
            log_rotate_max_files,
            pid_file,
            node_id,
            node_name,
            retry_interval,
            retry_max,
            server,
            skip_leave_on_interrupt,
            ap_cleanup_dead_servers,
            ap_last_contact_threshold,
            ap_max_trailing_logs,
            ap_min_quorum,
            ap_server_stabilization_time,
            raft_multiplier,
            reconnect_timeout,
            tombstone_timeout,
            telemetry_prometheus_retention_time,
            telemetry_disable_hostname
        );
        if later.ports.http.is_some() {
            self.ports.http = later.ports.http;
        }
        if later.ports.https.is_some() {
            self.ports.https = later.ports.https;
        }
        if later.ports.serf_lan.is_some() {
            self.ports.serf_lan = later.ports.serf_lan;
        }
        if later.ports.server.is_some() {
            self.ports.server = later.ports.server;
        }
        self.legacy_cloud.merge(later.legacy_cloud);
        self.tls.merge(later.tls);
        self.retry_join.extend(later.retry_join);
        self.start_join.extend(later.start_join);
        self.acl.merge(later.acl);
        self.http_allowed_hosts.extend(later.http_allowed_hosts);
        self.node_meta.extend(later.node_meta);
        self.origin = later.origin;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_concatenate_and_scalars_override() {
        let a = PartialConfig {
            retry_join: vec!["a".into()],
            datacenter: Some("one".into()),
            ..Default::default()
        };
        let b = PartialConfig {
            retry_join: vec!["b".into()],
            datacenter: Some("two".into()),
            ..Default::default()
        };
        let m = a.merge(b);
        assert_eq!(m.retry_join, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(m.datacenter.as_deref(), Some("two"));
    }

    #[test]
    fn every_scalar_survives_a_merge() {
        // Regression: `raft_multiplier` was left out of the merge, so neither
        // `-raft-multiplier` nor `performance.raft_multiplier` ever took effect.
        let file = PartialConfig {
            raft_multiplier: Some(3),
            ..Default::default()
        };
        let flags = PartialConfig {
            raft_multiplier: Some(5),
            ..Default::default()
        };
        let base = PartialConfig::default();
        assert_eq!(base.clone().merge(file.clone()).raft_multiplier, Some(3));
        assert_eq!(base.merge(file).merge(flags).raft_multiplier, Some(5));
    }
}
