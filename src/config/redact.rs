//! `Debug` for the configuration types that hold secrets (docs/security.md, Secrets): the
//! gossip key, provider strings (`secret_access_key=…`), the legacy cloud credentials. A
//! `{:?}` of a configuration, in a log line or a test failure, shows every other setting as
//! it is and these as `hidden` (provider strings through the provider core's redaction, which
//! works on the parsed pairs). Each impl destructures its struct without `..`, so a new field
//! does not compile until someone decides how it is shown.

use std::fmt;

use super::legacy::LegacyCloud;
use super::partial::PartialConfig;
use super::RuntimeConfig;

/// Provider strings among `entries` redacted, addresses as they are.
fn entries(entries: &[String]) -> Vec<String> {
    entries
        .iter()
        .map(|e| {
            if muster_provider_core::is_provider_string(e) {
                muster_provider_core::redact(e)
            } else {
                e.clone()
            }
        })
        .collect()
}

/// `Some("hidden")` for a secret that is set.
fn hidden<T>(secret: &Option<T>) -> Option<&'static str> {
    secret.as_ref().map(|_| "hidden")
}

impl fmt::Debug for RuntimeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let RuntimeConfig {
            server,
            bootstrap,
            bootstrap_expect,
            dev,
            datacenter,
            node_name,
            node_id,
            data_dir,
            bind_addr,
            advertise_addr,
            client_addr,
            ports,
            start_join,
            retry_join,
            retry_interval,
            retry_max,
            encrypt,
            encrypt_verify_incoming,
            encrypt_verify_outgoing,
            log_level,
            log_json,
            leave_on_terminate,
            skip_leave_on_interrupt,
            raft_multiplier,
            reconnect_timeout,
            tombstone_timeout,
            autopilot,
            kv_tombstone_ttl,
            telemetry,
            domain,
            tls,
            http_allowed_hosts,
            acl,
            log_file,
            pid_file,
            node_meta,
        } = self;
        f.debug_struct("RuntimeConfig")
            .field("server", server)
            .field("bootstrap", bootstrap)
            .field("bootstrap_expect", bootstrap_expect)
            .field("dev", dev)
            .field("datacenter", datacenter)
            .field("node_name", node_name)
            .field("node_id", node_id)
            .field("data_dir", data_dir)
            .field("bind_addr", bind_addr)
            .field("advertise_addr", advertise_addr)
            .field("client_addr", client_addr)
            .field("ports", ports)
            .field("start_join", start_join)
            .field("retry_join", &entries(retry_join))
            .field("retry_interval", retry_interval)
            .field("retry_max", retry_max)
            .field("encrypt", &hidden(encrypt))
            .field("encrypt_verify_incoming", encrypt_verify_incoming)
            .field("encrypt_verify_outgoing", encrypt_verify_outgoing)
            .field("log_level", log_level)
            .field("log_json", log_json)
            .field("leave_on_terminate", leave_on_terminate)
            .field("skip_leave_on_interrupt", skip_leave_on_interrupt)
            .field("raft_multiplier", raft_multiplier)
            .field("reconnect_timeout", reconnect_timeout)
            .field("tombstone_timeout", tombstone_timeout)
            .field("autopilot", autopilot)
            .field("kv_tombstone_ttl", kv_tombstone_ttl)
            .field("telemetry", telemetry)
            .field("domain", domain)
            .field("tls", tls)
            .field("http_allowed_hosts", http_allowed_hosts)
            // Its tokens are `Secret`s, whose Debug is `hidden`.
            .field("acl", acl)
            // No secrets: a path, rotation numbers, the operator's public node metadata.
            .field("log_file", log_file)
            .field("pid_file", pid_file)
            .field("node_meta", node_meta)
            .finish()
    }
}

impl fmt::Debug for PartialConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let PartialConfig {
            origin,
            acl,
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
            node_meta,
            node_id,
            node_name,
            ports,
            retry_interval,
            retry_join,
            retry_max,
            server,
            skip_leave_on_interrupt,
            start_join,
            http_allowed_hosts,
            legacy_cloud,
            raft_multiplier,
            reconnect_timeout,
            tombstone_timeout,
            telemetry_prometheus_retention_time,
            telemetry_disable_hostname,
            ap_cleanup_dead_servers,
            ap_last_contact_threshold,
            ap_max_trailing_logs,
            ap_min_quorum,
            ap_server_stabilization_time,
            tls,
        } = self;
        f.debug_struct("PartialConfig")
            .field("origin", origin)
            // Its own Debug shows which tokens are set, never their values.
            .field("acl", acl)
            .field("advertise_addr", advertise_addr)
            .field("bind_addr", bind_addr)
            .field("bootstrap", bootstrap)
            .field("bootstrap_expect", bootstrap_expect)
            .field("client_addr", client_addr)
            .field("data_dir", data_dir)
            .field("datacenter", datacenter)
            .field("domain", domain)
            .field("dev", dev)
            .field("encrypt", &hidden(encrypt))
            .field("encrypt_verify_incoming", encrypt_verify_incoming)
            .field("encrypt_verify_outgoing", encrypt_verify_outgoing)
            .field("kv_tombstone_ttl", kv_tombstone_ttl)
            .field("leave_on_terminate", leave_on_terminate)
            .field("log_json", log_json)
            .field("log_level", log_level)
            .field("log_file", log_file)
            .field("log_rotate_bytes", log_rotate_bytes)
            .field("log_rotate_duration", log_rotate_duration)
            .field("log_rotate_max_files", log_rotate_max_files)
            .field("pid_file", pid_file)
            .field("node_meta", node_meta)
            .field("node_id", node_id)
            .field("node_name", node_name)
            .field("ports", ports)
            .field("retry_interval", retry_interval)
            .field("retry_join", &entries(retry_join))
            .field("retry_max", retry_max)
            .field("server", server)
            .field("skip_leave_on_interrupt", skip_leave_on_interrupt)
            .field("start_join", start_join)
            .field("http_allowed_hosts", http_allowed_hosts)
            .field("legacy_cloud", legacy_cloud)
            .field("raft_multiplier", raft_multiplier)
            .field("reconnect_timeout", reconnect_timeout)
            .field("tombstone_timeout", tombstone_timeout)
            .field(
                "telemetry_prometheus_retention_time",
                telemetry_prometheus_retention_time,
            )
            .field("telemetry_disable_hostname", telemetry_disable_hostname)
            .field("ap_cleanup_dead_servers", ap_cleanup_dead_servers)
            .field("ap_last_contact_threshold", ap_last_contact_threshold)
            .field("ap_max_trailing_logs", ap_max_trailing_logs)
            .field("ap_min_quorum", ap_min_quorum)
            .field("ap_server_stabilization_time", ap_server_stabilization_time)
            .field("tls", tls)
            .finish()
    }
}

impl fmt::Debug for LegacyCloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let LegacyCloud {
            ec2_region,
            ec2_tag_key,
            ec2_tag_value,
            ec2_access_key_id,
            ec2_secret_access_key,
            gce_project_name,
            gce_zone_pattern,
            gce_tag_value,
            gce_credentials_file,
        } = self;
        f.debug_struct("LegacyCloud")
            .field("ec2_region", ec2_region)
            .field("ec2_tag_key", ec2_tag_key)
            .field("ec2_tag_value", ec2_tag_value)
            .field("ec2_access_key_id", &hidden(ec2_access_key_id))
            .field("ec2_secret_access_key", &hidden(ec2_secret_access_key))
            .field("gce_project_name", gce_project_name)
            .field("gce_zone_pattern", gce_zone_pattern)
            .field("gce_tag_value", gce_tag_value)
            .field("gce_credentials_file", &hidden(gce_credentials_file))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_a_layer_shows_no_secret() {
        let p = PartialConfig {
            encrypt: Some("c2VjcmV0LWtleQ==".into()),
            retry_join: vec![
                "10.0.0.1".into(),
                "provider=aws region=x secret_access_key=\"S3 CR3T\"".into(),
            ],
            legacy_cloud: LegacyCloud {
                ec2_secret_access_key: Some("AWSSECRET".into()),
                ec2_region: Some("eu-west-1".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let shown = format!("{p:?}");
        for secret in ["c2VjcmV0LWtleQ", "CR3T", "AWSSECRET"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        for kept in ["10.0.0.1", "eu-west-1", "provider=aws", "region=x"] {
            assert!(shown.contains(kept), "{kept} missing from {shown}");
        }
    }
}
