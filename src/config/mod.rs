//! Configuration: flags and files in, one validated [`RuntimeConfig`] out, before anything binds.
//!
//! Layers are applied in order — every `-config-file` in command-line order, then every
//! `-config-dir` in command-line order (files of a directory in lexical order), then the flags —
//! and a later layer wins for single values while
//! lists (`retry_join`, `start_join`) concatenate, as Consul does. Every problem is collected and
//! reported at once, one line each, so an operator fixes a file in one pass.

pub mod duration;
pub mod file;
pub mod flags;
pub mod netif;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use uuid::Uuid;

pub use crate::gossip::GossipKey;
pub use duration::{format_go_duration, parse_go_duration};
pub use flags::AgentFlags;

/// Default gossip (Serf LAN) port, as Consul.
pub const DEFAULT_SERF_LAN_PORT: u16 = 8301;
/// Default server RPC port, as Consul.
pub const DEFAULT_SERVER_PORT: u16 = 8300;
/// Default HTTP API port, as Consul.
pub const DEFAULT_HTTP_PORT: u16 = 8500;
/// Default longest wait between retry-join attempts, as Consul.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_secs(30);

/// One problem with the configuration. The agent refuses to start (exit 1) while any remains.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// Every problem found, each on its own line.
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

/// Port numbers as written (unchecked), per layer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Ports<T = Option<i64>> {
    pub http: T,
    pub serf_lan: T,
    pub server: T,
}

/// One layer of configuration: a file or the command line. `None`/empty means "not set here".
#[derive(Debug, Default, Clone)]
pub struct PartialConfig {
    pub origin: Option<String>,
    pub advertise_addr: Option<String>,
    pub bind_addr: Option<String>,
    pub bootstrap: Option<bool>,
    pub bootstrap_expect: Option<i64>,
    pub client_addr: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub datacenter: Option<String>,
    pub dev: Option<bool>,
    pub encrypt: Option<String>,
    pub leave_on_terminate: Option<bool>,
    pub log_json: Option<bool>,
    pub log_level: Option<String>,
    pub node_id: Option<String>,
    pub node_name: Option<String>,
    pub ports: Ports,
    pub retry_interval: Option<String>,
    pub retry_join: Vec<String>,
    pub retry_max: Option<i64>,
    pub server: Option<bool>,
    pub skip_leave_on_interrupt: Option<bool>,
    pub start_join: Vec<String>,
    pub ec2_region: Option<String>,
    pub ec2_tag_key: Option<String>,
    pub ec2_tag_value: Option<String>,
    pub ec2_access_key_id: Option<String>,
    pub ec2_secret_access_key: Option<String>,
    pub gce_project_name: Option<String>,
    pub gce_zone_pattern: Option<String>,
    pub gce_tag_value: Option<String>,
    pub gce_credentials_file: Option<String>,
    pub raft_multiplier: Option<i64>,
    /// The `autopilot { }` block (its keys, Consul's names).
    pub ap_cleanup_dead_servers: Option<bool>,
    pub ap_last_contact_threshold: Option<String>,
    pub ap_max_trailing_logs: Option<i64>,
    pub ap_min_quorum: Option<i64>,
    pub ap_server_stabilization_time: Option<String>,
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
            dev,
            encrypt,
            leave_on_terminate,
            log_json,
            log_level,
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
            ec2_region,
            ec2_tag_key,
            ec2_tag_value,
            ec2_access_key_id,
            ec2_secret_access_key,
            gce_project_name,
            gce_zone_pattern,
            gce_tag_value,
            gce_credentials_file
        );
        if later.ports.http.is_some() {
            self.ports.http = later.ports.http;
        }
        if later.ports.serf_lan.is_some() {
            self.ports.serf_lan = later.ports.serf_lan;
        }
        if later.ports.server.is_some() {
            self.ports.server = later.ports.server;
        }
        self.retry_join.extend(later.retry_join);
        self.start_join.extend(later.start_join);
        self.origin = later.origin;
        self
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
    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "trace" => Self::Trace,
            "debug" => Self::Debug,
            "info" => Self::Info,
            "warn" | "warning" => Self::Warn,
            "err" | "error" => Self::Error,
            other => {
                return Err(format!(
                    "log_level: {other:?} is not a level; use trace, debug, info, warn or error"
                ))
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

/// The legacy `-retry-join-ec2-*` settings, kept for the translation into a provider string.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LegacyCloud {
    pub ec2_region: Option<String>,
    pub ec2_tag_key: Option<String>,
    pub ec2_tag_value: Option<String>,
    pub ec2_access_key_id: Option<String>,
    pub ec2_secret_access_key: Option<String>,
    pub gce_project_name: Option<String>,
    pub gce_zone_pattern: Option<String>,
    pub gce_tag_value: Option<String>,
    pub gce_credentials_file: Option<String>,
}

/// The validated configuration of one agent. Built once, before anything binds.
#[derive(Debug, Clone)]
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
    pub ports: Ports<u16>,
    /// Joined once at start (`-join`, `start_join`).
    pub start_join: Vec<String>,
    /// Joined by the retry loop (`-retry-join`, `retry_join`), legacy cloud flags included.
    pub retry_join: Vec<String>,
    pub retry_interval: Duration,
    /// Attempts of the retry loop; 0 = forever.
    pub retry_max: u32,
    pub encrypt: Option<GossipKey>,
    pub log_level: LogLevel,
    pub log_json: bool,
    /// Leave gracefully on SIGTERM (default: clients yes, servers no).
    pub leave_on_terminate: bool,
    /// Do not leave on SIGINT (default: servers yes, clients no).
    pub skip_leave_on_interrupt: bool,
    pub legacy_cloud: LegacyCloud,
    /// Scales every Raft timing; 1 = the LAN defaults of docs/servers.md.
    pub raft_multiplier: u32,
    /// Autopilot settings a new cluster starts with (docs/operations.md).
    pub autopilot: crate::server::autopilot::AutopilotConfig,
}

/// A built configuration plus the warnings to print before starting.
#[derive(Debug)]
pub struct Built {
    pub config: RuntimeConfig,
    pub warnings: Vec<String>,
}

/// Reads every file layer named by `flags`, applies the flags, validates the result.
pub fn build(flags: &AgentFlags) -> Result<Built, ConfigErrors> {
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    let mut merged = PartialConfig::default();
    let mut files = flags.config_file.clone();
    for dir in &flags.config_dir {
        match file::files_in_dir(dir) {
            Ok(found) => files.extend(found),
            Err(e) => errors.push(e),
        }
    }
    for path in &files {
        match file::load_file(path, &mut warnings) {
            Ok(layer) => merged = merged.merge(layer),
            Err(es) => errors.extend(es),
        }
    }
    merged = merged.merge(flags.to_partial());
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    finish(merged, warnings)
}

/// Turns the merged layers into a [`RuntimeConfig`], applying defaults and every rule.
pub fn finish(p: PartialConfig, mut warnings: Vec<String>) -> Result<Built, ConfigErrors> {
    let mut errors: Vec<ConfigError> = Vec::new();
    let mut err = |m: String| errors.push(ConfigError::new(m));

    let dev = p.dev.unwrap_or(false);
    let server = p.server.unwrap_or(false) || dev;
    let mut bootstrap = p.bootstrap.unwrap_or(false) || dev;
    let mut expect: u32 = 0;
    match p.bootstrap_expect {
        None => {}
        Some(n) if n < 0 => err(format!(
            "bootstrap_expect cannot be {n}: it must be 0 or more (the number of servers to wait for)"
        )),
        Some(n) if n > 64 => err(format!(
            "bootstrap_expect = {n} is not a sensible server count; use 3 or 5 (at most 64)"
        )),
        Some(n) => expect = n as u32,
    }
    if expect > 0 && dev {
        err(
            "'bootstrap_expect > 0' not allowed in dev mode: drop -bootstrap-expect or -dev".into(),
        );
    }
    if p.bootstrap == Some(true) && !p.server.unwrap_or(false) && !dev {
        err("'bootstrap = true' requires 'server = true': add -server".into());
    }
    if expect > 0 && !p.server.unwrap_or(false) && !dev {
        err(
            "'bootstrap_expect > 0' requires 'server = true': add -server (clients never vote)"
                .into(),
        );
    }
    if expect > 0 && p.bootstrap == Some(true) {
        err("'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive: keep -bootstrap-expect".into());
    }
    if expect == 1 && p.bootstrap != Some(true) {
        warnings.push(
            "bootstrap_expect = 1 is the same as -bootstrap: this server will elect itself at once"
                .into(),
        );
        bootstrap = true;
        expect = 0;
    } else if expect == 2 {
        warnings.push(
            "bootstrap_expect = 2: a cluster with 2 servers tolerates no failure; use 3".into(),
        );
    } else if expect > 2 && expect % 2 == 0 {
        warnings.push(format!(
            "bootstrap_expect = {expect} is even: an even number of servers does not add fault tolerance; use {}",
            expect - 1
        ));
    }
    if !server {
        bootstrap = false;
    }

    let datacenter = p.datacenter.clone().unwrap_or_else(|| "dc1".into());
    if let Err(why) = check_label(&datacenter) {
        err(format!("datacenter {datacenter:?}: {why}"));
    }
    let datacenter = datacenter.to_ascii_lowercase();
    let node_name = p.node_name.clone().unwrap_or_else(hostname);
    if let Err(why) = check_label(&node_name) {
        err(format!("node_name {node_name:?}: {why}; set -node"));
    }
    let node_id = match &p.node_id {
        None => None,
        Some(s) => match Uuid::parse_str(s) {
            Ok(u) => Some(u),
            Err(_) => {
                err(format!(
                    "node_id {s:?} is not a UUID (e.g. 2c8a7a36-6a53-4e7b-9a1c-7b1f0e5a0d41)"
                ));
                None
            }
        },
    };

    let data_dir = p.data_dir.clone();
    if data_dir.is_none() && !dev {
        err(
            "data_dir is required: set -data-dir PATH or data_dir in a config file (or use -dev)"
                .into(),
        );
    }
    if let Some(d) = &data_dir {
        if d.as_os_str().is_empty() {
            err("data_dir is empty: give a directory path".into());
        } else if d.exists() && !d.is_dir() {
            err(format!(
                "data_dir {} exists and is not a directory",
                d.display()
            ));
        }
    }

    let default_bind = if dev { "127.0.0.1" } else { "0.0.0.0" };
    let mut addr = |key: &str, v: Option<&String>, default: &str| -> IpAddr {
        let s = v.map(String::as_str).unwrap_or(default);
        match s.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                err(format!(
                    "{key}: {s:?} is not an IP address (e.g. 10.0.0.5 or ::1)"
                ));
                IpAddr::from([127, 0, 0, 1])
            }
        }
    };
    let bind_addr = addr("bind_addr", p.bind_addr.as_ref(), default_bind);
    let client_addr = addr("client_addr", p.client_addr.as_ref(), "127.0.0.1");
    let advertise_given = p.advertise_addr.is_some();
    let mut advertise_addr = addr(
        "advertise_addr",
        p.advertise_addr.as_ref(),
        &bind_addr.to_string(),
    );
    if advertise_given && advertise_addr.is_unspecified() {
        err(format!(
            "advertise_addr {advertise_addr} cannot be advertised: give this host's reachable IP"
        ));
    }
    if !advertise_given && bind_addr.is_unspecified() {
        // Consul's rule: bound to every address, advertise the host's one private IPv4.
        match netif::single_private_ipv4(&netif::interface_ipv4s()) {
            Ok(ip) => advertise_addr = IpAddr::V4(ip),
            Err(why) => err(format!(
                "bind_addr is {bind_addr} and {why}, so muster cannot tell other agents where to reach \
                 this one: set -advertise to this host's IP (or -bind to a single IP)"
            )),
        }
    }

    let mut port = |key: &str, v: Option<i64>, default: u16| -> u16 {
        match v {
            None => default,
            Some(n) if (1..=65535).contains(&n) => n as u16,
            Some(n) => {
                err(format!("ports.{key} = {n} is not a port: use 1 to 65535"));
                default
            }
        }
    };
    let ports = Ports {
        http: port("http", p.ports.http, DEFAULT_HTTP_PORT),
        serf_lan: port("serf_lan", p.ports.serf_lan, DEFAULT_SERF_LAN_PORT),
        server: port("server", p.ports.server, DEFAULT_SERVER_PORT),
    };

    let retry_interval = match &p.retry_interval {
        None => DEFAULT_RETRY_INTERVAL,
        Some(s) => match parse_go_duration(s) {
            Ok(d) if d < Duration::from_millis(100) => {
                err(format!(
                    "retry_interval {s:?} is too short: use at least 100ms"
                ));
                DEFAULT_RETRY_INTERVAL
            }
            Ok(d) => d,
            Err(why) => {
                err(format!("retry_interval: {why}"));
                DEFAULT_RETRY_INTERVAL
            }
        },
    };
    let retry_max = match p.retry_max {
        None => 0,
        Some(n) if n < 0 => {
            err(format!(
                "retry_max = {n}: use 0 (retry forever) or a positive count"
            ));
            0
        }
        Some(n) => n.min(u32::MAX as i64) as u32,
    };

    let encrypt = match &p.encrypt {
        None => None,
        Some(s) => match GossipKey::from_base64(s) {
            Ok(k) => Some(k),
            Err(why) => {
                err(why.to_string());
                None
            }
        },
    };
    let log_level = match &p.log_level {
        None => LogLevel::Info,
        Some(s) => LogLevel::parse(s).unwrap_or_else(|why| {
            err(why);
            LogLevel::Info
        }),
    };

    for (key, entries) in [("start_join", &p.start_join), ("retry_join", &p.retry_join)] {
        for e in entries.iter() {
            if e.contains("provider=") {
                if key == "start_join" {
                    err(format!(
                        "start_join {e:?}: provider strings belong in retry_join (-retry-join)"
                    ));
                }
                continue;
            }
            if let Err(why) = muster_provider_core::JoinAddr::parse(e) {
                err(format!("{key}: {why}"));
            }
        }
    }

    let legacy_cloud = LegacyCloud {
        ec2_region: p.ec2_region.clone(),
        ec2_tag_key: p.ec2_tag_key.clone(),
        ec2_tag_value: p.ec2_tag_value.clone(),
        ec2_access_key_id: p.ec2_access_key_id.clone(),
        ec2_secret_access_key: p.ec2_secret_access_key.clone(),
        gce_project_name: p.gce_project_name.clone(),
        gce_zone_pattern: p.gce_zone_pattern.clone(),
        gce_tag_value: p.gce_tag_value.clone(),
        gce_credentials_file: p.gce_credentials_file.clone(),
    };
    let mut retry_join = p.retry_join.clone();
    let mut legacy_errors = Vec::new();
    retry_join.extend(legacy_cloud.provider_strings(&mut warnings, &mut legacy_errors));
    errors.extend(legacy_errors);
    // Provider strings are checked now, against the providers of this build, so that a typo
    // stops the agent before it binds anything (user-pains A11).
    if let Err(e) = crate::join::Discovery::new(&crate::join::registry(), &retry_join) {
        errors.push(ConfigError::new(e));
    }

    let raft_multiplier = match p.raft_multiplier {
        None => 1,
        Some(n) if (1..=10).contains(&n) => n as u32,
        Some(n) => {
            errors.push(ConfigError::new(format!(
                "performance.raft_multiplier = {n}: use 1 (LAN, the default) to 10 (slow networks)"
            )));
            1
        }
    };
    let mut autopilot =
        crate::server::autopilot::AutopilotConfig::defaults(expect, raft_multiplier);
    if let Some(b) = p.ap_cleanup_dead_servers {
        autopilot.cleanup_dead_servers = b;
    }
    for (key, value, slot) in [
        (
            "autopilot.last_contact_threshold",
            &p.ap_last_contact_threshold,
            &mut autopilot.last_contact_threshold,
        ),
        (
            "autopilot.server_stabilization_time",
            &p.ap_server_stabilization_time,
            &mut autopilot.server_stabilization_time,
        ),
    ] {
        if let Some(v) = value {
            match duration::parse_go_duration(v) {
                Ok(d) => *slot = d,
                Err(why) => errors.push(ConfigError::new(format!("{key}: {why}"))),
            }
        }
    }
    match p.ap_max_trailing_logs {
        Some(n) if n >= 0 => autopilot.max_trailing_logs = n as u64,
        Some(n) => errors.push(ConfigError::new(format!(
            "autopilot.max_trailing_logs = {n}: use a count of log entries, 0 or more"
        ))),
        None => {}
    }
    match p.ap_min_quorum {
        Some(n) if (0..=i64::from(u16::MAX)).contains(&n) => autopilot.min_quorum = n as u32,
        Some(n) => errors.push(ConfigError::new(format!(
            "autopilot.min_quorum = {n}: use a number of voters, 0 (no floor) or more"
        ))),
        None => {}
    }
    let leave_on_terminate = p.leave_on_terminate.unwrap_or(!server);
    let skip_leave_on_interrupt = p.skip_leave_on_interrupt.unwrap_or(server);

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    if bootstrap && !dev {
        warnings.push("bootstrap = true: this server elects itself without waiting for others; do not enable unless necessary".into());
    }
    Ok(Built {
        config: RuntimeConfig {
            server,
            bootstrap,
            bootstrap_expect: expect,
            dev,
            datacenter,
            node_name,
            node_id,
            data_dir,
            bind_addr,
            advertise_addr,
            client_addr,
            ports,
            start_join: p.start_join,
            retry_join,
            retry_interval,
            retry_max,
            encrypt,
            log_level,
            log_json: p.log_json.unwrap_or(false),
            leave_on_terminate,
            skip_leave_on_interrupt,
            legacy_cloud,
            raft_multiplier,
            autopilot,
        },
        warnings,
    })
}

impl LegacyCloud {
    /// Consul 0.9.1+ turns the legacy blocks into go-discover strings appended to retry_join
    /// (consul-behaviour §2.3): EC2 needs tag_key and tag_value, GCE needs tag_value. The
    /// warning shows the string to put in retry_join instead, with secrets replaced by `hidden`.
    fn provider_strings(
        &self,
        warnings: &mut Vec<String>,
        errors: &mut Vec<ConfigError>,
    ) -> Vec<String> {
        let ec2 = LegacyBlock {
            block: "retry_join_ec2",
            provider: "aws",
            required:
                "both tag_key and tag_value (-retry-join-ec2-tag-key and -retry-join-ec2-tag-value)",
            fields: vec![
                ("access_key_id", &self.ec2_access_key_id, true),
                ("region", &self.ec2_region, false),
                ("secret_access_key", &self.ec2_secret_access_key, true),
                ("tag_key", &self.ec2_tag_key, false),
                ("tag_value", &self.ec2_tag_value, false),
            ],
            complete: self.ec2_tag_key.is_some() && self.ec2_tag_value.is_some(),
        };
        let gce = LegacyBlock {
            block: "retry_join_gce",
            provider: "gce",
            required: "tag_value (-retry-join-gce-tag-value)",
            fields: vec![
                ("credentials_file", &self.gce_credentials_file, true),
                ("project_name", &self.gce_project_name, false),
                ("tag_value", &self.gce_tag_value, false),
                ("zone_pattern", &self.gce_zone_pattern, false),
            ],
            complete: self.gce_tag_value.is_some(),
        };
        [ec2, gce]
            .iter()
            .filter_map(|b| b.translate(warnings, errors))
            .collect()
    }
}

/// One legacy cloud block and how it maps onto a provider string.
struct LegacyBlock<'a> {
    block: &'static str,
    provider: &'static str,
    /// What must be set, for the error when it is not.
    required: &'static str,
    /// (provider key, value, secret?) in go-discover's canonical (sorted) order.
    fields: Vec<(&'static str, &'a Option<String>, bool)>,
    complete: bool,
}

impl LegacyBlock<'_> {
    fn translate(
        &self,
        warnings: &mut Vec<String>,
        errors: &mut Vec<ConfigError>,
    ) -> Option<String> {
        if self.fields.iter().all(|(_, v, _)| v.is_none()) {
            return None;
        }
        if !self.complete {
            errors.push(ConfigError::new(format!(
                "{} needs {}",
                self.block, self.required
            )));
            return None;
        }
        // go-discover's grammar: values with spaces, quotes, backslashes or '=' are quoted.
        let quote = |v: &str| {
            if v.chars()
                .any(|c| c.is_whitespace() || matches!(c, '"' | '\\' | '='))
            {
                format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
            } else {
                v.to_string()
            }
        };
        let mut real = vec![format!("provider={}", self.provider)];
        let mut shown = real.clone();
        for (k, v, secret) in &self.fields {
            if let Some(v) = v {
                real.push(format!("{k}={}", quote(v)));
                let visible = if *secret {
                    "hidden".to_string()
                } else {
                    quote(v)
                };
                shown.push(format!("{k}={visible}"));
            }
        }
        warnings.push(format!(
            "{} is deprecated: use -retry-join \"{}\" instead",
            self.block,
            shown.join(" ")
        ));
        Some(real.join(" "))
    }
}

/// Node and datacenter names travel in gossip and appear in DNS-like places: letters, digits,
/// `-`, `_` and `.`, 1 to 128 characters.
fn check_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("it is empty".into());
    }
    if s.len() > 128 {
        return Err("it is longer than 128 characters".into());
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "character {c:?} is not allowed (letters, digits, '-', '_', '.')"
        ));
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "muster".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> PartialConfig {
        PartialConfig {
            data_dir: Some("/tmp/x".into()),
            bind_addr: Some("127.0.0.1".into()),
            node_name: Some("n1".into()),
            ..Default::default()
        }
    }

    fn errors_of(p: PartialConfig) -> String {
        finish(p, vec![]).unwrap_err().to_string()
    }

    #[test]
    fn defaults_follow_consul() {
        let b = finish(base(), vec![]).unwrap();
        let c = b.config;
        assert!(!c.server && c.leave_on_terminate && !c.skip_leave_on_interrupt);
        assert_eq!(
            c.ports,
            Ports {
                http: 8500,
                serf_lan: 8301,
                server: 8300
            }
        );
        assert_eq!(c.retry_interval, Duration::from_secs(30));
        assert_eq!(c.datacenter, "dc1");
        let s = finish(
            PartialConfig {
                server: Some(true),
                ..base()
            },
            vec![],
        )
        .unwrap()
        .config;
        assert!(!s.leave_on_terminate && s.skip_leave_on_interrupt);
    }

    #[test]
    fn consul_rules_are_errors() {
        assert!(errors_of(PartialConfig {
            bootstrap_expect: Some(3),
            ..base()
        })
        .contains("requires 'server = true'"));
        let both = PartialConfig {
            server: Some(true),
            bootstrap: Some(true),
            bootstrap_expect: Some(3),
            ..base()
        };
        assert!(errors_of(both).contains("mutually exclusive"));
        assert!(errors_of(PartialConfig {
            data_dir: None,
            ..base()
        })
        .contains("data_dir is required"));
        assert!(errors_of(PartialConfig {
            retry_interval: Some("30".into()),
            ..base()
        })
        .contains("retry_interval"));
        assert!(errors_of(PartialConfig {
            bind_addr: Some("1.2.3".into()),
            ..base()
        })
        .contains("bind_addr"));
        assert!(errors_of(PartialConfig {
            encrypt: Some("abc".into()),
            ..base()
        })
        .contains("encrypt"));
    }

    #[test]
    fn expect_one_and_even_warn() {
        let one = finish(
            PartialConfig {
                server: Some(true),
                bootstrap_expect: Some(1),
                ..base()
            },
            vec![],
        )
        .unwrap();
        assert!(one.config.bootstrap && one.config.bootstrap_expect == 0);
        assert!(one
            .warnings
            .iter()
            .any(|w| w.contains("bootstrap_expect = 1")));
        let four = finish(
            PartialConfig {
                server: Some(true),
                bootstrap_expect: Some(4),
                ..base()
            },
            vec![],
        )
        .unwrap();
        assert!(four.warnings.iter().any(|w| w.contains("even")));
    }

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
    fn legacy_ec2_flags_become_a_provider_string_and_hide_secrets() {
        let legacy = LegacyCloud {
            ec2_tag_key: Some("role".into()),
            ec2_tag_value: Some("consul server".into()),
            ec2_secret_access_key: Some("SECRETSECRET".into()),
            ..Default::default()
        };
        let (mut warnings, mut errors) = (Vec::new(), Vec::new());
        let out = legacy.provider_strings(&mut warnings, &mut errors);
        assert!(errors.is_empty());
        assert_eq!(out, vec!["provider=aws secret_access_key=SECRETSECRET tag_key=role tag_value=\"consul server\"".to_string()]);
        let w = warnings.join("\n");
        assert!(
            w.contains("secret_access_key=hidden") && !w.contains("SECRETSECRET"),
            "{w}"
        );
        // The translated entry meets the registry: accepted where the provider is compiled in,
        // refused with the reason where it is not.
        let p = PartialConfig {
            ec2_tag_key: Some("role".into()),
            ec2_tag_value: Some("consul".into()),
            ..base()
        };
        assert_eq!(finish(p, vec![]).is_ok(), cfg!(feature = "aws"));
        let g = PartialConfig {
            gce_tag_value: Some("consul".into()),
            ..base()
        };
        if cfg!(feature = "gce") {
            assert!(finish(g, vec![]).is_ok());
        } else {
            assert!(errors_of(g).contains("provider \"gce\" is not compiled into this build"));
        }
    }
}
