//! Configuration files: JSON or HCL, with Consul's key names, read into a [`PartialConfig`].
//!
//! A file is first parsed into a generic tree, then every key is checked against the keys muster
//! knows, so that a typo gets "unknown key `bootstrap_expct` — did you mean `bootstrap_expect`?"
//! rather than silence, and only then deserialised into typed fields. Keys that Consul knows but
//! muster does not implement (`ui`, `connect`, …) are accepted with a warning, so an existing Consul
//! config file can be dropped in; see docs/configuration.md.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::tls::{TlsKeys, TlsLayer, TLS_BLOCK_KEYS, TLS_RPC_KEYS, TLS_STANZA_KEYS};
use super::{ConfigError, LegacyCloud, PartialConfig, Ports};

/// Top-level keys, exactly as Consul names them.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "advertise_addr",
    "bind_addr",
    "autopilot",
    "bootstrap",
    "bootstrap_expect",
    "ca_file",
    "ca_path",
    "cert_file",
    "client_addr",
    "data_dir",
    "datacenter",
    "acl",
    "acl_default_policy",
    "acl_down_policy",
    "acl_master_token",
    "acl_token",
    "acl_agent_token",
    "acl_ttl",
    "domain",
    "encrypt",
    "encrypt_verify_incoming",
    "encrypt_verify_outgoing",
    "http_allowed_hosts",
    "key_file",
    "kv_tombstone_ttl",
    "leave_on_terminate",
    "log_file",
    "log_json",
    "log_level",
    "log_rotate_bytes",
    "log_rotate_duration",
    "log_rotate_max_files",
    "node_id",
    "node_meta",
    "node_name",
    "performance",
    "pid_file",
    "ports",
    "reconnect_timeout",
    "retry_interval",
    "retry_join",
    "retry_join_ec2",
    "retry_join_gce",
    "retry_max",
    "server",
    "skip_leave_on_interrupt",
    "start_join",
    "telemetry",
    "tls",
    "tls_cipher_suites",
    "tls_min_version",
    "tombstone_timeout",
    "verify_incoming",
    "verify_incoming_https",
    "verify_incoming_rpc",
    "verify_outgoing",
    "verify_server_hostname",
];

/// Consul security settings muster does not implement: errors, never warnings, so that an
/// agent asked for a protection never starts without it (docs/security.md, Fail closed).
const UNIMPLEMENTED_SECURITY_KEYS: &[(&str, &str)] = &[
    (
        "auto_encrypt",
        "muster servers do not hand out certificates; make them with `muster tls cert create` \
         and set cert_file and key_file",
    ),
    (
        "auto_config",
        "muster has no auto-config; give each agent its settings and certificates",
    ),
];

/// Consul's legacy (pre-1.4) ACL keys: errors, since before 1.4 `acl_datacenter` is what turned
/// ACLs on, and an agent asked for ACLs must not start open.
const LEGACY_ACL_KEYS: &[&str] = &["acl_datacenter", "enable_acl_replication"];

const PORT_KEYS: &[&str] = &["http", "https", "serf_lan", "server"];
/// Consul ports muster has no listener for: accepted with a warning.
const CONSUL_ONLY_PORT_KEYS: &[&str] = &[
    "dns",
    "expose_max_port",
    "expose_min_port",
    "grpc",
    "grpc_tls",
    "serf_wan",
    "sidecar_max_port",
    "sidecar_min_port",
];
const EC2_KEYS: &[&str] = &[
    "access_key_id",
    "region",
    "secret_access_key",
    "tag_key",
    "tag_value",
];
const AUTOPILOT_KEYS: &[&str] = &[
    "cleanup_dead_servers",
    "disable_upgrade_migration",
    "last_contact_threshold",
    "max_trailing_logs",
    "min_quorum",
    "redundancy_zone_tag",
    "server_stabilization_time",
    "upgrade_version_tag",
];
const TELEMETRY_KEYS: &[&str] = &["disable_hostname", "prometheus_retention_time"];
/// Consul's other `telemetry` keys (sinks muster has not: statsd, DogStatsD, Circonus; filters):
/// accepted with a warning, like the other Consul settings muster does not implement.
const CONSUL_ONLY_TELEMETRY_KEYS: &[&str] = &[
    "allowed_prefixes",
    "blocked_prefixes",
    "circonus_api_app",
    "circonus_api_token",
    "circonus_api_url",
    "circonus_broker_id",
    "circonus_broker_select_tag",
    "circonus_check_display_name",
    "circonus_check_force_metric_activation",
    "circonus_check_id",
    "circonus_check_instance_id",
    "circonus_check_search_tag",
    "circonus_check_tags",
    "circonus_submission_interval",
    "circonus_submission_url",
    "disable_compat_1.9",
    "disable_per_tenancy_usage_metrics",
    "dogstatsd_addr",
    "dogstatsd_tags",
    "enable_host_metrics",
    "filter_default",
    "metrics_prefix",
    "prefix_filter",
    "retry_failed_connection",
    "statsd_address",
    "statsite_address",
];
const PERFORMANCE_KEYS: &[&str] = &["leave_drain_time", "raft_multiplier", "rpc_hold_timeout"];
const GCE_KEYS: &[&str] = &[
    "credentials_file",
    "project_name",
    "tag_value",
    "zone_pattern",
];

/// Consul agent keys muster accepts and ignores (with a warning), so that Consul files still load.
const CONSUL_ONLY_KEYS: &[&str] = &[
    // Consul's older ACL keys for what muster does not have.
    "acl_agent_master_token",
    "acl_enforce_version_8",
    "acl_replication_token",
    "addresses",
    "advertise_addr_wan",
    "check_update_interval",
    "checks",
    "connect",
    "disable_update_check",
    "dns_config",
    "enable_local_script_checks",
    "enable_script_checks",
    "enable_syslog",
    "limits",
    "primary_datacenter",
    "raft_protocol",
    "recursors",
    "rejoin_after_leave",
    "retry_interval_wan",
    "retry_join_wan",
    "retry_max_wan",
    "serf_lan",
    "services",
    // A no-op in Go since 1.18; rustls always prefers the server's order.
    "tls_prefer_server_cipher_suites",
    "translate_wan_addrs",
    "ui",
    "ui_config",
];

/// The raw, typed shape of one file. Every field is optional: absent means "not set here".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileModel {
    acl: Option<super::acl::AclLayer>,
    // Consul's older top-level ACL keys, folded into `acl` (docs/acl.md).
    acl_default_policy: Option<String>,
    acl_down_policy: Option<String>,
    acl_master_token: Option<String>,
    acl_token: Option<String>,
    acl_agent_token: Option<String>,
    acl_ttl: Option<String>,
    advertise_addr: Option<String>,
    autopilot: Option<AutopilotModel>,
    bind_addr: Option<String>,
    bootstrap: Option<bool>,
    bootstrap_expect: Option<i64>,
    client_addr: Option<String>,
    data_dir: Option<PathBuf>,
    datacenter: Option<String>,
    domain: Option<String>,
    encrypt: Option<String>,
    encrypt_verify_incoming: Option<bool>,
    encrypt_verify_outgoing: Option<bool>,
    kv_tombstone_ttl: Option<String>,
    leave_on_terminate: Option<bool>,
    log_file: Option<PathBuf>,
    log_json: Option<bool>,
    log_level: Option<String>,
    log_rotate_bytes: Option<i64>,
    log_rotate_duration: Option<String>,
    log_rotate_max_files: Option<i64>,
    node_id: Option<String>,
    node_meta: Option<std::collections::BTreeMap<String, String>>,
    pid_file: Option<PathBuf>,
    node_name: Option<String>,
    ports: Option<PortsModel>,
    performance: Option<PerformanceModel>,
    reconnect_timeout: Option<String>,
    retry_interval: Option<String>,
    #[serde(default)]
    retry_join: Vec<String>,
    retry_join_ec2: Option<Ec2Model>,
    retry_join_gce: Option<GceModel>,
    retry_max: Option<i64>,
    server: Option<bool>,
    skip_leave_on_interrupt: Option<bool>,
    #[serde(default)]
    start_join: Vec<String>,
    #[serde(default)]
    http_allowed_hosts: Vec<String>,
    tombstone_timeout: Option<String>,
    telemetry: Option<TelemetryModel>,
    tls: Option<TlsStanza>,
    verify_incoming_rpc: Option<bool>,
    verify_incoming_https: Option<bool>,
    // Consul's older top-level TLS keys (docs/security.md). `flatten` cannot be used with
    // `deny_unknown_fields`, hence one field each.
    ca_file: Option<PathBuf>,
    ca_path: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    tls_min_version: Option<String>,
    tls_cipher_suites: Option<String>,
    verify_incoming: Option<bool>,
    verify_outgoing: Option<bool>,
    verify_server_hostname: Option<bool>,
}

/// The `tls` stanza (Consul 1.12 and later); `grpc` was taken out before (muster has none).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsStanza {
    defaults: Option<TlsKeys>,
    internal_rpc: Option<TlsKeys>,
    https: Option<TlsKeys>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PortsModel {
    http: Option<i64>,
    https: Option<i64>,
    serf_lan: Option<i64>,
    server: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AutopilotModel {
    cleanup_dead_servers: Option<bool>,
    last_contact_threshold: Option<String>,
    max_trailing_logs: Option<i64>,
    min_quorum: Option<i64>,
    server_stabilization_time: Option<String>,
    /// Consul Enterprise settings accepted for compatibility; muster has no redundancy zones
    /// or upgrade migrations.
    #[allow(dead_code)]
    redundancy_zone_tag: Option<String>,
    #[allow(dead_code)]
    disable_upgrade_migration: Option<bool>,
    #[allow(dead_code)]
    upgrade_version_tag: Option<String>,
}

/// The `telemetry` block: the two keys muster implements (docs/metrics.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TelemetryModel {
    prometheus_retention_time: Option<String>,
    disable_hostname: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PerformanceModel {
    raft_multiplier: Option<i64>,
    /// Consul settings accepted for compatibility, not used yet.
    #[allow(dead_code)]
    leave_drain_time: Option<String>,
    #[allow(dead_code)]
    rpc_hold_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ec2Model {
    access_key_id: Option<String>,
    region: Option<String>,
    secret_access_key: Option<String>,
    tag_key: Option<String>,
    tag_value: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct GceModel {
    credentials_file: Option<String>,
    project_name: Option<String>,
    tag_value: Option<String>,
    zone_pattern: Option<String>,
}

/// The config files inside a directory, in lexical order (as Consul reads them): `*.json` and
/// `*.hcl`, anything else skipped; with `-config-format` (`forced`), every file, as Consul does.
pub fn files_in_dir(dir: &Path, forced: Option<Format>) -> Result<Vec<PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        ConfigError::new(format!(
            "cannot read config directory {}: {e}",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && (forced.is_some()
                    || matches!(p.extension().and_then(|e| e.to_str()), Some("json" | "hcl")))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// An HCL syntax error by line, column and what was expected, without the line itself: the
/// parser's own text quotes the whole line, which may hold the gossip key or a token.
fn hcl_error(e: &hcl::Error) -> String {
    match e {
        hcl::Error::Parse(p) => format!(
            "line {}, column {}: {}",
            p.location().line(),
            p.location().column(),
            p.message()
        ),
        other => other.to_string(),
    }
}

/// Whether a key path names a secret: the gossip key, a token, cloud credentials.
fn holds_secret(path: &str) -> bool {
    path.split('.')
        .any(|k| k == "encrypt" || muster_provider_core::looks_secret(k))
}

/// serde's refusal (`invalid type: string "x", expected i64`) in an operator's words:
/// `expected a whole number, got a string "x"`. serde quotes the value it refused; of a
/// `secret` key only its kind is named. A text of another shape is kept as it is.
fn wrong_type(serde_says: &str, secret: bool) -> String {
    let parsed = serde_says
        .strip_prefix("invalid type: ")
        .or_else(|| serde_says.strip_prefix("invalid value: "))
        .and_then(|rest| rest.split_once(", expected "));
    let Some((got, expected)) = parsed else {
        return if secret {
            "the value cannot be read (not shown: the key holds a secret)".into()
        } else {
            serde_says.to_string()
        };
    };
    let expected = match expected {
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".to_string(),
        "u8" => "a whole number from 0 to 255".to_string(),
        "u16" => "a whole number from 0 to 65535".to_string(),
        "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more".to_string(),
        "f32" | "f64" => "a number".to_string(),
        "a boolean" => "true or false".to_string(),
        "a sequence" => "a list".to_string(),
        e if e == "a map" || e.starts_with("struct ") => "a block of keys".to_string(),
        e => e.to_string(),
    };
    // serde's names of what it found: `string "x"`, ``integer `5` ``, `sequence`, …
    let (kind, value) = match got.split_once(' ') {
        Some(("string", v)) => ("a string", Some(v.to_string())),
        Some(("integer", v)) => ("the number", Some(v.trim_matches('`').to_string())),
        Some(("floating", v)) => (
            "the number",
            Some(v.trim_start_matches("point ").trim_matches('`').to_string()),
        ),
        Some(("boolean", v)) => ("the boolean", Some(v.trim_matches('`').to_string())),
        Some(("unit", _)) => ("null", None),
        _ if got == "sequence" => ("a list", None),
        _ if got == "map" => ("a block of keys", None),
        _ => (got, None),
    };
    match value {
        _ if secret => {
            let kind = match kind {
                "the number" => "a number",
                "the boolean" => "a boolean",
                k => k,
            };
            format!("expected {expected}, got {kind} (not shown: the key holds a secret)")
        }
        Some(v) => format!("expected {expected}, got {kind} {v}"),
        None => format!("expected {expected}, got {kind}"),
    }
}

/// Reads one file, in the `forced` format (`-config-format`) or the one its extension names.
/// Errors carry the file name and the key; `warnings` receives notes about Consul-only keys.
pub fn load_file(
    path: &Path,
    forced: Option<Format>,
    warnings: &mut Vec<String>,
) -> Result<PartialConfig, Vec<ConfigError>> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError::new(format!(
            "cannot read config file {shown}: {e}"
        ))]
    })?;
    warn_if_secret_readable_by_others(path, &shown, &text, warnings);
    let format = match (forced, path.extension().and_then(|e| e.to_str())) {
        (Some(f), _) => f,
        (None, Some("json")) => Format::Json,
        (None, Some("hcl")) => Format::Hcl,
        (None, _) => {
            return Err(vec![ConfigError::new(format!(
                "{shown}: unknown config file type; name it *.json or *.hcl, or give \
                 -config-format json (or hcl) to read it in that format"
            ))])
        }
    };
    parse_str(&text, format, &shown, warnings)
}

/// A config file that holds a secret (the gossip key, a token, cloud credentials) and that
/// other local users may read is worth one warning: the fix is a `chmod`. A rough test on
/// the text (a secret key's name appears in it), so it may also warn for a comment.
fn warn_if_secret_readable_by_others(
    path: &Path,
    shown: &str,
    text: &str,
    warnings: &mut Vec<String>,
) {
    use std::os::unix::fs::PermissionsExt;
    let secret = ["encrypt", "secret_access_key", "token", "credentials_file"]
        .iter()
        .find(|k| text.contains(*k));
    let Some(key) = secret else {
        return;
    };
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        warnings.push(format!(
            "{shown} holds a secret (`{key}`) and other local users may read it (mode \
             {mode:o}): chmod 600 {shown}"
        ));
    }
}

/// The syntax of a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Hcl,
}

impl Format {
    /// `-config-format`'s value: `json` or `hcl`, as Consul takes it.
    pub fn from_flag(value: &str) -> Result<Format, ConfigError> {
        match value {
            "json" => Ok(Format::Json),
            "hcl" => Ok(Format::Hcl),
            other => Err(ConfigError::new(format!(
                "-config-format {other:?} is not a config format: use json or hcl"
            ))),
        }
    }
}

/// Parses config text. `origin` names the source in messages.
pub fn parse_str(
    text: &str,
    format: Format,
    origin: &str,
    warnings: &mut Vec<String>,
) -> Result<PartialConfig, Vec<ConfigError>> {
    let tree: Value = match format {
        Format::Json => serde_json::from_str(text)
            .map_err(|e| vec![ConfigError::new(format!("{origin}: invalid JSON: {e}"))])?,
        Format::Hcl => hcl::from_str(text).map_err(|e| {
            vec![ConfigError::new(format!(
                "{origin}: invalid HCL: {}",
                hcl_error(&e)
            ))]
        })?,
    };
    let Value::Object(mut top) = tree else {
        return Err(vec![ConfigError::new(format!(
            "{origin}: the file must hold an object of keys"
        ))]);
    };
    let mut errors = Vec::new();
    let keys: Vec<String> = top.keys().cloned().collect();
    for key in keys {
        if TOP_LEVEL_KEYS.contains(&key.as_str()) {
            continue;
        }
        top.remove(&key);
        if let Some((_, fix)) = UNIMPLEMENTED_SECURITY_KEYS.iter().find(|(k, _)| *k == key) {
            errors.push(ConfigError::new(format!(
                "{origin}: key `{key}` is a Consul security setting that muster does not \
                 implement, and an agent asked for it must not start without it: {fix}"
            )));
        } else if LEGACY_ACL_KEYS.contains(&key.as_str()) {
            errors.push(ConfigError::new(format!(
                "{origin}: key `{key}` is Consul's legacy (pre-1.4) ACL system, which muster \
                 does not have, and an agent asked for ACLs must not start open; use the acl \
                 stanza (docs/acl.md)"
            )));
        } else if CONSUL_ONLY_KEYS.contains(&key.as_str()) {
            warnings.push(format!(
                "{origin}: key `{key}` is a Consul setting that muster does not implement; it is ignored"
            ));
        } else {
            errors.push(ConfigError::new(format!(
                "{origin}: unknown key `{key}`{}",
                suggestion(&key, TOP_LEVEL_KEYS)
            )));
        }
    }
    for (block, known) in [
        ("ports", PORT_KEYS),
        ("autopilot", AUTOPILOT_KEYS),
        ("performance", PERFORMANCE_KEYS),
        ("telemetry", TELEMETRY_KEYS),
        ("retry_join_ec2", EC2_KEYS),
        ("retry_join_gce", GCE_KEYS),
    ] {
        // HCL gives a block written twice as a list of objects; Consul merges them.
        if let Some(Value::Array(items)) = top.get(block) {
            let mut merged = serde_json::Map::new();
            for item in items {
                if let Value::Object(o) = item {
                    merged.extend(o.clone());
                }
            }
            top.insert(block.to_string(), Value::Object(merged));
        }
        if let Some(Value::Object(inner)) = top.get_mut(block) {
            if block == "ports" {
                let ignored: Vec<String> = inner
                    .keys()
                    .filter(|k| CONSUL_ONLY_PORT_KEYS.contains(&k.as_str()))
                    .cloned()
                    .collect();
                for key in ignored {
                    inner.remove(&key);
                    warnings.push(format!(
                        "{origin}: key `ports.{key}` is a Consul port muster has no listener for; it is ignored"
                    ));
                }
            }
            if block == "telemetry" {
                let ignored: Vec<String> = inner
                    .keys()
                    .filter(|k| CONSUL_ONLY_TELEMETRY_KEYS.contains(&k.as_str()))
                    .cloned()
                    .collect();
                for key in ignored {
                    inner.remove(&key);
                    warnings.push(format!(
                        "{origin}: key `telemetry.{key}` is a Consul setting that muster does not implement; it is ignored"
                    ));
                }
            }
            for key in inner.keys() {
                if !known.contains(&key.as_str()) {
                    errors.push(ConfigError::new(format!(
                        "{origin}: unknown key `{block}.{key}`{}",
                        suggestion(key, known)
                    )));
                }
            }
        }
    }
    tls_stanza(&mut top, origin, &mut errors, warnings);
    if let Some(meta) = top.get_mut("node_meta") {
        merge_blocks(meta);
    }
    if let Some(acl) = top.get_mut("acl") {
        // HCL gives a block written twice (or `tokens` twice) as a list; Consul merges them.
        merge_blocks(acl);
        if let Value::Object(o) = acl {
            if let Some(tokens) = o.get_mut("tokens") {
                merge_blocks(tokens);
            }
        }
    }
    // Consul accepts a single string where a list is expected for these keys.
    for list_key in ["retry_join", "start_join", "http_allowed_hosts"] {
        if let Some(Value::String(s)) = top.get(list_key) {
            let one = Value::Array(vec![Value::String(s.clone())]);
            top.insert(list_key.to_string(), one);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let model: FileModel = serde_path_to_error::deserialize(Value::Object(top)).map_err(|e| {
        let path = e.path().to_string();
        let why = wrong_type(&e.inner().to_string(), holds_secret(&path));
        vec![ConfigError::new(format!("key `{path}` in {origin}: {why}"))]
    })?;
    Ok(model.into_partial(origin))
}

impl FileModel {
    fn into_partial(self, origin: &str) -> PartialConfig {
        let ports = self.ports.unwrap_or_default();
        let ec2 = self.retry_join_ec2.unwrap_or_default();
        let gce = self.retry_join_gce.unwrap_or_default();
        let ap = self.autopilot.unwrap_or_default();
        let mut acl = self.acl.unwrap_or_default();
        {
            // The older top-level keys fill what the stanza leaves unset.
            let fill = |into: &mut Option<String>, from: Option<String>| {
                if into.is_none() {
                    *into = from;
                }
            };
            fill(&mut acl.default_policy, self.acl_default_policy);
            fill(&mut acl.down_policy, self.acl_down_policy);
            fill(&mut acl.token_ttl, self.acl_ttl);
            let tokens = acl.tokens.get_or_insert_with(Default::default);
            if tokens.initial_management.is_none() {
                fill(&mut tokens.master, self.acl_master_token);
            }
            fill(&mut tokens.default, self.acl_token);
            fill(&mut tokens.agent, self.acl_agent_token);
        }
        PartialConfig {
            origin: Some(origin.to_string()),
            acl,
            advertise_addr: self.advertise_addr,
            bind_addr: self.bind_addr,
            bootstrap: self.bootstrap,
            bootstrap_expect: self.bootstrap_expect,
            client_addr: self.client_addr,
            data_dir: self.data_dir,
            datacenter: self.datacenter,
            domain: self.domain,
            dev: None,
            encrypt: self.encrypt,
            encrypt_verify_incoming: self.encrypt_verify_incoming,
            encrypt_verify_outgoing: self.encrypt_verify_outgoing,
            kv_tombstone_ttl: self.kv_tombstone_ttl,
            leave_on_terminate: self.leave_on_terminate,
            log_json: self.log_json,
            log_level: self.log_level,
            log_file: self.log_file,
            log_rotate_bytes: self.log_rotate_bytes,
            log_rotate_duration: self.log_rotate_duration,
            log_rotate_max_files: self.log_rotate_max_files,
            pid_file: self.pid_file,
            node_meta: self.node_meta.unwrap_or_default().into_iter().collect(),
            node_id: self.node_id,
            node_name: self.node_name,
            ports: Ports {
                http: ports.http,
                https: ports.https,
                serf_lan: ports.serf_lan,
                server: ports.server,
            },
            retry_interval: self.retry_interval,
            retry_join: self.retry_join,
            retry_max: self.retry_max,
            server: self.server,
            skip_leave_on_interrupt: self.skip_leave_on_interrupt,
            start_join: self.start_join,
            http_allowed_hosts: self.http_allowed_hosts,
            legacy_cloud: LegacyCloud {
                ec2_region: ec2.region,
                ec2_tag_key: ec2.tag_key,
                ec2_tag_value: ec2.tag_value,
                ec2_access_key_id: ec2.access_key_id,
                ec2_secret_access_key: ec2.secret_access_key,
                gce_project_name: gce.project_name,
                gce_zone_pattern: gce.zone_pattern,
                gce_tag_value: gce.tag_value,
                gce_credentials_file: gce.credentials_file,
            },
            raft_multiplier: self.performance.and_then(|p| p.raft_multiplier),
            reconnect_timeout: self.reconnect_timeout,
            tombstone_timeout: self.tombstone_timeout,
            telemetry_prometheus_retention_time: self
                .telemetry
                .as_ref()
                .and_then(|t| t.prometheus_retention_time.clone()),
            telemetry_disable_hostname: self.telemetry.as_ref().and_then(|t| t.disable_hostname),
            ap_cleanup_dead_servers: ap.cleanup_dead_servers,
            ap_last_contact_threshold: ap.last_contact_threshold,
            ap_max_trailing_logs: ap.max_trailing_logs,
            ap_min_quorum: ap.min_quorum,
            ap_server_stabilization_time: ap.server_stabilization_time,
            tls: {
                let stanza = self.tls.unwrap_or_default();
                TlsLayer {
                    top: TlsKeys {
                        ca_file: self.ca_file,
                        ca_path: self.ca_path,
                        cert_file: self.cert_file,
                        key_file: self.key_file,
                        tls_min_version: self.tls_min_version,
                        tls_cipher_suites: self.tls_cipher_suites,
                        verify_incoming: self.verify_incoming,
                        verify_outgoing: self.verify_outgoing,
                        verify_server_hostname: self.verify_server_hostname,
                    },
                    verify_incoming_rpc: self.verify_incoming_rpc,
                    verify_incoming_https: self.verify_incoming_https,
                    defaults: stanza.defaults.unwrap_or_default(),
                    internal_rpc: stanza.internal_rpc.unwrap_or_default(),
                    https: stanza.https.unwrap_or_default(),
                }
            },
        }
    }
}

/// HCL gives a block written twice as a list of objects; Consul merges them.
fn merge_blocks(v: &mut Value) {
    if let Value::Array(items) = v {
        let mut merged = serde_json::Map::new();
        for item in items.iter() {
            if let Value::Object(o) = item {
                merged.extend(o.clone());
            }
        }
        *v = Value::Object(merged);
    }
}

/// Checks the keys of the `tls` stanza, and takes out `tls.grpc`: muster has no gRPC
/// listener, so its settings are ignored with a warning, unless they ask for verification
/// (an error: docs/security.md, Fail closed).
fn tls_stanza(
    top: &mut serde_json::Map<String, Value>,
    origin: &str,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) {
    let Some(tls) = top.get_mut("tls") else {
        return;
    };
    merge_blocks(tls);
    let Value::Object(blocks) = tls else {
        return; // the typed read names the wrong type
    };
    if let Some(mut grpc) = blocks.remove("grpc") {
        merge_blocks(&mut grpc);
        if grpc.get("verify_incoming") == Some(&Value::Bool(true)) {
            errors.push(ConfigError::new(format!(
                "{origin}: `tls.grpc.verify_incoming = true`: muster has no gRPC listener to \
                 verify callers on; remove the tls.grpc block"
            )));
        } else {
            warnings.push(format!(
                "{origin}: `tls.grpc` is for a gRPC listener, which muster does not have; it is ignored"
            ));
        }
    }
    for (name, block) in blocks.iter_mut() {
        let known = match name.as_str() {
            "internal_rpc" => TLS_RPC_KEYS,
            "defaults" | "https" => TLS_BLOCK_KEYS,
            _ => {
                errors.push(ConfigError::new(format!(
                    "{origin}: unknown key `tls.{name}`{}",
                    suggestion(name, TLS_STANZA_KEYS)
                )));
                continue;
            }
        };
        merge_blocks(block);
        if let Value::Object(keys) = block {
            for key in keys.keys() {
                if !known.contains(&key.as_str()) {
                    let hint = if key == "verify_server_hostname" {
                        " — it belongs in tls.internal_rpc".to_string()
                    } else {
                        suggestion(key, known)
                    };
                    errors.push(ConfigError::new(format!(
                        "{origin}: unknown key `tls.{name}.{key}`{hint}"
                    )));
                }
            }
        }
    }
}

/// " — did you mean `x`?" when a known key is close enough, else "".
pub fn suggestion(input: &str, known: &[&str]) -> String {
    let best = known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(input, k), *k))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, k)) if d <= 3.max(input.len() / 3) => format!(" — did you mean `{k}`?"),
        _ => format!(" — valid keys are: {}", known.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, format: Format) -> Result<PartialConfig, Vec<ConfigError>> {
        parse_str(text, format, "test", &mut Vec::new())
    }

    #[test]
    fn the_acl_stanza_and_consuls_older_acl_keys_are_read() {
        let p = parse(
            "acl {\n  default_policy = \"deny\"\n  tokens {\n    agent = \"a-token\"\n  }\n}\n\
             acl_ttl = \"40s\"\nacl_master_token = \"m-token\"\nacl_default_policy = \"allow\"\n",
            Format::Hcl,
        )
        .unwrap();
        // The stanza wins over an older key; older keys fill what it leaves unset.
        assert_eq!(p.acl.default_policy.as_deref(), Some("deny"));
        assert_eq!(p.acl.token_ttl.as_deref(), Some("40s"));
        let tokens = p.acl.tokens.as_ref().unwrap();
        assert_eq!(tokens.agent.as_deref(), Some("a-token"));
        assert_eq!(tokens.master.as_deref(), Some("m-token"));
        assert!(!format!("{p:?}").contains("-token"), "{p:?}");
        let errs = parse(r#"{"acl": {"tokens": {"agnet": "x"}}}"#, Format::Json).unwrap_err();
        assert!(errs[0].to_string().contains("agnet"), "{errs:?}");
        let errs = parse(r#"{"acl": {"tokens": {"agent": 5}}}"#, Format::Json).unwrap_err();
        assert!(
            errs[0].to_string().contains("expected a string"),
            "{errs:?}"
        );
    }

    #[test]
    fn the_telemetry_block_is_read_and_consuls_other_sinks_warn() {
        let mut warnings = Vec::new();
        let p = parse_str(
            "telemetry {\n  prometheus_retention_time = \"60s\"\n  disable_hostname = true\n  \
             statsd_address = \"127.0.0.1:8125\"\n}\n",
            Format::Hcl,
            "test",
            &mut warnings,
        )
        .unwrap();
        assert_eq!(
            p.telemetry_prometheus_retention_time.as_deref(),
            Some("60s")
        );
        assert_eq!(p.telemetry_disable_hostname, Some(true));
        assert!(
            warnings.len() == 1 && warnings[0].contains("`telemetry.statsd_address`"),
            "{warnings:?}"
        );
        let errs = parse(
            r#"{"telemetry": {"prometheus_retention_tim": "60s"}}"#,
            Format::Json,
        )
        .unwrap_err();
        let msg = errs[0].to_string();
        assert!(
            msg.contains("unknown key `telemetry.prometheus_retention_tim`")
                && msg.contains("prometheus_retention_time"),
            "{msg}"
        );
    }

    #[test]
    fn json_and_hcl_read_the_same_keys() {
        let json = r#"{"server": true, "bootstrap_expect": 3, "retry_join": ["127.0.0.2"],
            "ports": {"serf_lan": 9301, "http": 9500}, "retry_interval": "5s",
            "reconnect_timeout": "8h", "tombstone_timeout": "1h", "encrypt_verify_incoming": false}"#;
        let hcl = r#"
            server = true
            bootstrap_expect = 3
            retry_join = ["127.0.0.2"]
            ports {
              serf_lan = 9301
              http = 9500
            }
            retry_interval = "5s"
            reconnect_timeout = "8h"
            tombstone_timeout = "1h"
            encrypt_verify_incoming = false
        "#;
        let a = parse(json, Format::Json).unwrap();
        let b = parse(hcl, Format::Hcl).unwrap();
        for p in [a, b] {
            assert_eq!(p.server, Some(true));
            assert_eq!(p.bootstrap_expect, Some(3));
            assert_eq!(p.retry_join, vec!["127.0.0.2".to_string()]);
            assert_eq!(p.ports.serf_lan, Some(9301));
            assert_eq!(p.ports.http, Some(9500));
            assert_eq!(p.reconnect_timeout.as_deref(), Some("8h"));
            assert_eq!(p.tombstone_timeout.as_deref(), Some("1h"));
            assert_eq!(p.encrypt_verify_incoming, Some(false));
            assert_eq!(p.encrypt_verify_outgoing, None);
        }
    }

    #[test]
    fn unknown_key_suggests_the_nearest() {
        let errs = parse(r#"{"bootstrap_expct": 3}"#, Format::Json).unwrap_err();
        let msg = errs[0].to_string();
        assert!(
            msg.contains("unknown key `bootstrap_expct`")
                && msg.contains("did you mean `bootstrap_expect`"),
            "{msg}"
        );
        let errs = parse("ports {\n serf_lna = 1\n}\n", Format::Hcl).unwrap_err();
        assert!(
            errs[0]
                .to_string()
                .contains("`ports.serf_lna` — did you mean `serf_lan`"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn consul_only_keys_warn() {
        let mut w = Vec::new();
        parse_str(
            r#"{"ui": true, "server": false}"#,
            Format::Json,
            "f",
            &mut w,
        )
        .unwrap();
        assert!(w[0].contains("`ui`"), "{w:?}");
    }

    /// The backticked names between `<!-- keys: NAME -->` and `<!-- end keys -->` in
    /// docs/configuration.md.
    fn documented(list: &str) -> std::collections::BTreeSet<String> {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/configuration.md"
        ))
        .unwrap();
        let start = format!("<!-- keys: {list} -->");
        let from = doc.find(&start).unwrap_or_else(|| panic!("no {start}")) + start.len();
        let to = from + doc[from..].find("<!-- end keys -->").expect("end marker");
        doc[from..to]
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    fn set(keys: &[&str]) -> std::collections::BTreeSet<String> {
        keys.iter().map(|k| k.to_string()).collect()
    }

    #[test]
    fn docs_list_exactly_the_keys_the_code_honours_ignores_and_refuses() {
        assert_eq!(documented("honoured"), set(TOP_LEVEL_KEYS), "honoured keys");
        assert_eq!(documented("ignored"), set(CONSUL_ONLY_KEYS), "ignored keys");
        let refused: Vec<&str> = UNIMPLEMENTED_SECURITY_KEYS
            .iter()
            .map(|(k, _)| *k)
            .chain(LEGACY_ACL_KEYS.iter().copied())
            .collect();
        assert_eq!(documented("errors"), set(&refused), "refused keys");
        let ports: Vec<String> = CONSUL_ONLY_PORT_KEYS
            .iter()
            .map(|k| format!("ports.{k}"))
            .collect();
        let ports: Vec<&str> = ports.iter().map(String::as_str).collect();
        assert_eq!(documented("ignored ports"), set(&ports), "ignored ports");
        // No key in two lists (a key both honoured and ignored is only ever honoured).
        for k in CONSUL_ONLY_KEYS.iter().chain(&refused) {
            assert!(
                !TOP_LEVEL_KEYS.contains(k),
                "`{k}` is honoured and also listed elsewhere"
            );
        }
        // Every honoured key reaches the typed model (none is dropped by a missing field):
        // a value of the wrong type is refused by the field, never as an unknown field.
        for key in TOP_LEVEL_KEYS {
            let errs = parse(&format!(r#"{{"{key}": [[1]]}}"#), Format::Json)
                .err()
                .unwrap_or_default();
            for e in errs {
                assert!(!e.to_string().contains("unknown field"), "{key}: {e}");
            }
        }
        // Ignored keys warn, refused keys are errors.
        for key in CONSUL_ONLY_KEYS {
            let mut w = Vec::new();
            parse_str(&format!(r#"{{"{key}": 1}}"#), Format::Json, "f", &mut w).unwrap();
            assert!(w.iter().any(|w| w.contains(key)), "{key}");
        }
        for key in &refused {
            assert!(parse(&format!(r#"{{"{key}": true}}"#), Format::Json).is_err());
        }
    }

    #[test]
    fn the_operator_keys_are_read() {
        let p = parse(
            "log_file = \"/var/log/muster/\"\nlog_rotate_bytes = 1000\n\
             log_rotate_duration = \"1h\"\nlog_rotate_max_files = -1\n\
             pid_file = \"/run/muster.pid\"\nnode_meta {\n  rack = \"r1\"\n}\n\
             node_meta {\n  zone = \"z\"\n}\n",
            Format::Hcl,
        )
        .unwrap();
        assert_eq!(p.log_file.as_deref(), Some(Path::new("/var/log/muster/")));
        assert_eq!(p.log_rotate_bytes, Some(1000));
        assert_eq!(p.log_rotate_duration.as_deref(), Some("1h"));
        assert_eq!(p.log_rotate_max_files, Some(-1));
        assert_eq!(p.pid_file.as_deref(), Some(Path::new("/run/muster.pid")));
        assert_eq!(
            p.node_meta,
            [("rack".into(), "r1".into()), ("zone".into(), "z".into())]
        );
        let errs = parse(r#"{"node_meta": {"a": 1}}"#, Format::Json).unwrap_err();
        assert!(errs[0].to_string().contains("node_meta"), "{errs:?}");
    }

    #[test]
    fn config_format_reads_any_name_and_without_it_the_error_names_the_flag() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("agent.conf");
        std::fs::write(&f, "server = true\n").unwrap();
        let errs = load_file(&f, None, &mut Vec::new()).unwrap_err();
        assert!(errs[0].to_string().contains("-config-format"), "{errs:?}");
        let p = load_file(&f, Some(Format::Hcl), &mut Vec::new()).unwrap();
        assert_eq!(p.server, Some(true));
        // In a directory: skipped without the flag, read with it (as Consul).
        assert!(files_in_dir(d.path(), None).unwrap().is_empty());
        assert_eq!(files_in_dir(d.path(), Some(Format::Hcl)).unwrap(), [f]);
        assert!(Format::from_flag("yaml")
            .unwrap_err()
            .to_string()
            .contains("json or hcl"));
    }

    #[test]
    fn wrong_type_names_the_key() {
        let errs = parse(r#"{"server": "yes"}"#, Format::Json).unwrap_err();
        assert!(errs[0].to_string().contains("key `server`"), "{}", errs[0]);
    }
}
