//! From the merged layers to one [`RuntimeConfig`]: defaults and every rule, one named step per
//! concern. Each step records what is wrong in [`Findings`] and goes on with a stand-in value, so
//! that every problem is reported at once, in the order the steps run (the order operators have
//! always seen them in).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use muster_provider_core::{is_provider_string, JoinAddr, Registry};
use uuid::Uuid;

use super::{
    netif, AutopilotSettings, Built, ConfigError, ConfigErrors, GossipKey, ListenPorts, LogLevel,
    PartialConfig, Ports, RuntimeConfig, TelemetrySettings, DEFAULT_HTTP_PORT,
    DEFAULT_KV_TOMBSTONE_TTL, DEFAULT_RETRY_INTERVAL, DEFAULT_SERF_LAN_PORT, DEFAULT_SERVER_PORT,
    MIN_KV_TOMBSTONE_TTL,
};
use crate::duration::parse_go_duration;

/// Consul's smallest `reconnect_timeout`; shorter values are taken with a warning.
const REAP_FLOOR: Duration = Duration::from_secs(8 * 3600);

/// Turns the merged layers into a [`RuntimeConfig`], applying defaults and every rule.
///
/// `providers` are the discovery providers of this build: provider strings in `retry_join` are
/// checked against them now, so that a typo stops the agent before it binds anything.
pub fn finish(
    p: PartialConfig,
    warnings: Vec<String>,
    providers: &Registry,
) -> Result<Built, ConfigErrors> {
    let mut f = Findings {
        errors: Vec::new(),
        warnings,
    };
    let mode = f.mode(&p);
    let (datacenter, node_name, node_id) = f.identity(&p);
    let data_dir = f.data_dir(&p, mode.dev);
    let (bind_addr, advertise_addr, client_addr) = f.addresses(&p, mode.dev);
    let ports = f.ports(&p.ports);
    let (retry_interval, retry_max) = f.retry_pace(&p);
    let encrypt = f.encrypt(&p);
    let log_level = f.log_level(&p);
    f.join_entries(&p);
    let retry_join = f.retry_join(&p, providers);
    let raft_multiplier = f.raft_multiplier(&p);
    let (reconnect_timeout, tombstone_timeout) = f.reap_timeouts(&p);
    let autopilot = f.autopilot(&p);
    let kv_tombstone_ttl = f.kv_tombstone_ttl(&p);
    let telemetry = f.telemetry(&p);
    let domain = f.domain(&p);
    let http_allowed_hosts = f.http_allowed_hosts(&p);
    let log_file = {
        let mut errors = Vec::new();
        let l = super::log_file::finish_log_file(&p, &mut errors, &mut f.warnings);
        f.errors.extend(errors.into_iter().map(ConfigError::new));
        l
    };
    let pid_file = f.pid_file(&p);
    let node_meta = {
        let mut errors = Vec::new();
        let m = super::node_meta::finish_node_meta(&p.node_meta, &mut errors);
        f.errors.extend(errors.into_iter().map(ConfigError::new));
        m
    };
    let acl = {
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        let a = super::acl::finish_acl(&p.acl, &mut errors, &mut warnings);
        f.errors.extend(errors.into_iter().map(ConfigError::new));
        f.warnings.extend(warnings);
        a
    };
    let tls = {
        let (mut errors, mut warnings) = (Vec::new(), Vec::new());
        let server_name = crate::tls::server_name(&datacenter, &domain);
        let t = super::tls::finish_tls(
            &p.tls,
            mode.server,
            &server_name,
            &mut errors,
            &mut warnings,
        );
        f.errors.extend(errors.into_iter().map(ConfigError::new));
        f.warnings.extend(warnings);
        t
    };
    if let Some(port) = ports.https {
        let has_cert = tls
            .https
            .as_ref()
            .is_some_and(|s| s.cert_file.is_some() && s.key_file.is_some());
        if !has_cert {
            // Fail closed: an HTTPS port is never served in plaintext (docs/security.md).
            f.error(format!(
                "ports.https = {port} needs a certificate: set tls.https.cert_file and \
                 tls.https.key_file (or tls.defaults.*, or the top-level cert_file and \
                 key_file); `muster tls cert create -server` makes a pair"
            ));
        }
    }
    let leave_on_terminate = p.leave_on_terminate.unwrap_or(!mode.server);
    let skip_leave_on_interrupt = p.skip_leave_on_interrupt.unwrap_or(mode.server);

    let Findings {
        errors,
        mut warnings,
    } = f;
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    if mode.bootstrap && !mode.dev {
        warnings.push("bootstrap = true: this server elects itself without waiting for others; do not enable unless necessary".into());
    }
    let config = RuntimeConfig {
        server: mode.server,
        bootstrap: mode.bootstrap,
        bootstrap_expect: mode.expect,
        dev: mode.dev,
        datacenter,
        node_name,
        node_id,
        data_dir,
        bind_addr,
        advertise_addr,
        client_addr,
        ports,
        start_join: p.start_join,
        http_allowed_hosts,
        acl,
        retry_join,
        retry_interval,
        retry_max,
        encrypt,
        encrypt_verify_incoming: p.encrypt_verify_incoming.unwrap_or(true),
        encrypt_verify_outgoing: p.encrypt_verify_outgoing.unwrap_or(true),
        log_level,
        log_json: p.log_json.unwrap_or(false),
        leave_on_terminate,
        skip_leave_on_interrupt,
        raft_multiplier,
        reconnect_timeout,
        tombstone_timeout,
        autopilot,
        kv_tombstone_ttl,
        domain,
        telemetry,
        tls,
        log_file,
        pid_file,
        node_meta,
    };
    if let Some(e) = super::node_meta::check_tags_fit(&config) {
        return Err(ConfigErrors(vec![e]));
    }
    Ok(Built { config, warnings })
}

/// What the steps found so far: every error, every warning, in the order found.
struct Findings {
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
}

/// Server, bootstrap and dev mode, after Consul's rules.
struct Mode {
    dev: bool,
    server: bool,
    bootstrap: bool,
    /// `bootstrap_expect`; 0 when not in expect mode (or when 1 became `bootstrap`).
    expect: u32,
}

impl Findings {
    fn error(&mut self, message: impl Into<String>) {
        self.errors.push(ConfigError::new(message));
    }

    fn warn(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    /// `pid_file`: a file in a directory that exists (the agent writes it once started).
    fn pid_file(&mut self, p: &PartialConfig) -> Option<PathBuf> {
        let path = p.pid_file.clone()?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if path.as_os_str().is_empty() || path.to_string_lossy().ends_with('/') || path.is_dir() {
            self.error(format!(
                "pid_file {:?} is not a file name: give the file to write the pid into",
                path.display().to_string()
            ));
            return None;
        }
        if !dir.is_dir() {
            self.error(format!(
                "pid_file {:?}: the directory {} does not exist; create it first",
                path.display().to_string(),
                dir.display()
            ));
            return None;
        }
        Some(path)
    }

    /// `server`, `bootstrap`, `bootstrap_expect` and `dev`, and the rules between them.
    fn mode(&mut self, p: &PartialConfig) -> Mode {
        let dev = p.dev.unwrap_or(false);
        let server = p.server.unwrap_or(false) || dev;
        let mut bootstrap = p.bootstrap.unwrap_or(false) || dev;
        let mut expect: u32 = 0;
        match p.bootstrap_expect {
            None => {}
            Some(n) if n < 0 => self.error(format!(
                "bootstrap_expect cannot be {n}: it must be 0 or more (the number of servers to wait for)"
            )),
            Some(n) if n > 64 => self.error(format!(
                "bootstrap_expect = {n} is not a sensible server count; use 3 or 5 (at most 64)"
            )),
            Some(n) => expect = n as u32,
        }
        if expect > 0 && dev {
            self.error(
                "'bootstrap_expect > 0' not allowed in dev mode: drop -bootstrap-expect or -dev",
            );
        }
        if p.bootstrap == Some(true) && !p.server.unwrap_or(false) && !dev {
            self.error("'bootstrap = true' requires 'server = true': add -server");
        }
        if expect > 0 && !p.server.unwrap_or(false) && !dev {
            self.error(
                "'bootstrap_expect > 0' requires 'server = true': add -server (clients never vote)",
            );
        }
        if expect > 0 && p.bootstrap == Some(true) {
            self.error("'bootstrap_expect > 0' and 'bootstrap = true' are mutually exclusive: keep -bootstrap-expect");
        }
        if expect == 1 && p.bootstrap != Some(true) {
            self.warn(
                "bootstrap_expect = 1 is the same as -bootstrap: this server will elect itself at once",
            );
            bootstrap = true;
            expect = 0;
        } else if expect == 2 {
            self.warn("bootstrap_expect = 2: a cluster with 2 servers tolerates no failure; use 3");
        } else if expect > 2 && expect % 2 == 0 {
            self.warn(format!(
                "bootstrap_expect = {expect} is even: an even number of servers does not add fault tolerance; use {}",
                expect - 1
            ));
        }
        if !server {
            bootstrap = false;
        }
        Mode {
            dev,
            server,
            bootstrap,
            expect,
        }
    }

    /// Datacenter (lower-cased), node name (the host name by default) and node id.
    fn identity(&mut self, p: &PartialConfig) -> (String, String, Option<Uuid>) {
        let datacenter = p.datacenter.clone().unwrap_or_else(|| "dc1".into());
        if let Err(why) = check_label(&datacenter) {
            self.error(format!("datacenter {datacenter:?}: {why}"));
        }
        let datacenter = datacenter.to_ascii_lowercase();
        let node_name = p.node_name.clone().unwrap_or_else(hostname);
        if let Err(why) = check_label(&node_name) {
            self.error(format!("node_name {node_name:?}: {why}; set -node"));
        }
        let node_id = match &p.node_id {
            None => None,
            Some(s) => match Uuid::parse_str(s) {
                Ok(u) => Some(u),
                Err(_) => {
                    self.error(format!(
                        "node_id {s:?} is not a UUID (e.g. 2c8a7a36-6a53-4e7b-9a1c-7b1f0e5a0d41)"
                    ));
                    None
                }
            },
        };
        (datacenter, node_name, node_id)
    }

    /// `data_dir`: required outside dev mode, and a directory if it exists.
    fn data_dir(&mut self, p: &PartialConfig, dev: bool) -> Option<PathBuf> {
        let data_dir = p.data_dir.clone();
        if data_dir.is_none() && !dev {
            self.error(
                "data_dir is required: set -data-dir PATH or data_dir in a config file (or use -dev)",
            );
        }
        if let Some(d) = &data_dir {
            if d.as_os_str().is_empty() {
                self.error("data_dir is empty: give a directory path");
            } else if d.exists() && !d.is_dir() {
                self.error(format!(
                    "data_dir {} exists and is not a directory",
                    d.display()
                ));
            }
        }
        data_dir
    }

    /// One address key, or its default; a stand-in (127.0.0.1) when it is not an IP.
    fn addr(&mut self, key: &str, v: Option<&String>, default: &str) -> IpAddr {
        let s = v.map(String::as_str).unwrap_or(default);
        match s.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                self.error(format!(
                    "{key}: {s:?} is not an IP address (e.g. 10.0.0.5 or ::1)"
                ));
                IpAddr::from([127, 0, 0, 1])
            }
        }
    }

    /// Bind, advertise and client addresses (in that order). Bound to every address and not
    /// told what to advertise, the agent advertises the host's one private IPv4, as Consul does.
    fn addresses(&mut self, p: &PartialConfig, dev: bool) -> (IpAddr, IpAddr, IpAddr) {
        let default_bind = if dev { "127.0.0.1" } else { "0.0.0.0" };
        let bind_addr = self.addr("bind_addr", p.bind_addr.as_ref(), default_bind);
        let client_addr = self.addr("client_addr", p.client_addr.as_ref(), "127.0.0.1");
        let advertise_given = p.advertise_addr.is_some();
        let mut advertise_addr = self.addr(
            "advertise_addr",
            p.advertise_addr.as_ref(),
            &bind_addr.to_string(),
        );
        if advertise_given && advertise_addr.is_unspecified() {
            self.error(format!(
                "advertise_addr {advertise_addr} cannot be advertised: give this host's reachable IP"
            ));
        }
        if !advertise_given && bind_addr.is_unspecified() {
            match netif::single_private_ipv4(&netif::interface_ipv4s()) {
                Ok(ip) => advertise_addr = IpAddr::V4(ip),
                Err(why) => self.error(format!(
                    "bind_addr is {bind_addr} and {why}, so muster cannot tell other agents where to reach \
                     this one: set -advertise to this host's IP (or -bind to a single IP)"
                )),
            }
        }
        (bind_addr, advertise_addr, client_addr)
    }

    /// `http_allowed_hosts`: DNS names (letters, digits, `-`, `.`), lower-cased, trailing dot
    /// dropped. An IP literal needs no entry (every IP literal is allowed).
    fn http_allowed_hosts(&mut self, p: &PartialConfig) -> Vec<String> {
        let mut out = Vec::new();
        for h in &p.http_allowed_hosts {
            let name = h.trim().trim_end_matches('.').to_ascii_lowercase();
            let valid = !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|l| {
                    !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                });
            if valid {
                out.push(name);
            } else {
                self.error(format!(
                    "http_allowed_hosts {h:?} is not a host name: give a DNS name such as \
                     muster.internal (IP addresses are always allowed)"
                ));
            }
        }
        out
    }

    /// One port key, or its default when unset or out of range.
    fn port(&mut self, key: &str, v: Option<i64>, default: u16) -> u16 {
        match v {
            None => default,
            Some(n) if (1..=65535).contains(&n) => n as u16,
            Some(n) => {
                self.error(format!("ports.{key} = {n} is not a port: use 1 to 65535"));
                default
            }
        }
    }

    /// An API port key: `-1` is off, unset is `default`.
    fn api_port(&mut self, key: &str, v: Option<i64>, default: Option<u16>) -> Option<u16> {
        match v {
            None => default,
            Some(-1) => None,
            Some(n) if (1..=65535).contains(&n) => Some(n as u16),
            Some(n) => {
                self.error(format!(
                    "ports.{key} = {n} is not a port: use 1 to 65535, or -1 for off"
                ));
                default
            }
        }
    }

    fn ports(&mut self, p: &Ports) -> ListenPorts {
        let http = self.api_port("http", p.http, Some(DEFAULT_HTTP_PORT));
        let https = self.api_port("https", p.https, None);
        if http.is_none() && https.is_none() {
            self.error(
                "ports.http and ports.https are both off (-1): the agent would have no API; \
                 give one a port (-http-port, -https-port)"
                    .to_string(),
            );
        }
        ListenPorts {
            http,
            https,
            serf_lan: self.port("serf_lan", p.serf_lan, DEFAULT_SERF_LAN_PORT),
            server: self.port("server", p.server, DEFAULT_SERVER_PORT),
        }
    }

    /// `retry_interval` (at least 100 ms) and `retry_max` (0 = forever).
    fn retry_pace(&mut self, p: &PartialConfig) -> (Duration, u32) {
        let retry_interval = match &p.retry_interval {
            None => DEFAULT_RETRY_INTERVAL,
            Some(s) => match parse_go_duration(s) {
                Ok(d) if d < Duration::from_millis(100) => {
                    self.error(format!(
                        "retry_interval {s:?} is too short: use at least 100ms"
                    ));
                    DEFAULT_RETRY_INTERVAL
                }
                Ok(d) => d,
                Err(why) => {
                    self.error(format!("retry_interval: {why}"));
                    DEFAULT_RETRY_INTERVAL
                }
            },
        };
        let retry_max = match p.retry_max {
            None => 0,
            Some(n) if n < 0 => {
                self.error(format!(
                    "retry_max = {n}: use 0 (retry forever) or a positive count"
                ));
                0
            }
            Some(n) => n.min(u32::MAX as i64) as u32,
        };
        (retry_interval, retry_max)
    }

    /// `domain`: a DNS name (a trailing dot, as Consul writes `consul.`, is dropped).
    fn domain(&mut self, p: &PartialConfig) -> String {
        let Some(d) = &p.domain else {
            return "consul".into();
        };
        let d = d.trim_end_matches('.');
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if d.split('.').all(label_ok) {
            d.to_ascii_lowercase()
        } else {
            self.error(format!(
                "domain {d:?}: not a DNS name; use labels of letters, digits and hyphens \
                 separated by dots (Consul's default is consul)"
            ));
            "consul".into()
        }
    }

    fn encrypt(&mut self, p: &PartialConfig) -> Option<GossipKey> {
        match &p.encrypt {
            None => None,
            Some(s) => match GossipKey::from_base64(s) {
                Ok(k) => Some(k),
                Err(why) => {
                    self.error(why.to_string());
                    None
                }
            },
        }
    }

    fn log_level(&mut self, p: &PartialConfig) -> LogLevel {
        match &p.log_level {
            None => LogLevel::Info,
            Some(s) => LogLevel::parse(s).unwrap_or_else(|why| {
                self.errors.push(why);
                LogLevel::Info
            }),
        }
    }

    /// Every literal `start_join` and `retry_join` entry is an address; provider strings
    /// belong in `retry_join` only.
    fn join_entries(&mut self, p: &PartialConfig) {
        for (key, entries) in [("start_join", &p.start_join), ("retry_join", &p.retry_join)] {
            for e in entries.iter() {
                if is_provider_string(e) {
                    if key == "start_join" {
                        // Redacted: a provider string may carry secret_access_key=….
                        self.error(format!(
                            "start_join {:?}: provider strings belong in retry_join (-retry-join)",
                            muster_provider_core::redact(e)
                        ));
                    }
                    continue;
                }
                if let Err(why) = JoinAddr::parse(e) {
                    self.error(format!("{key}: {why}"));
                }
            }
        }
    }

    /// `retry_join` with the legacy cloud blocks translated and appended, its provider strings
    /// checked against `providers` (the first refused one is reported).
    fn retry_join(&mut self, p: &PartialConfig, providers: &Registry) -> Vec<String> {
        let mut retry_join = p.retry_join.clone();
        retry_join.extend(
            p.legacy_cloud
                .provider_strings(&mut self.warnings, &mut self.errors),
        );
        if let Some(refused) = retry_join
            .iter()
            .filter(|e| is_provider_string(e))
            .find_map(|e| providers.parse_entry(e).err())
        {
            self.error(refused.to_string());
        }
        retry_join
    }

    /// `kv_tombstone_ttl`: a Go duration, at least [`MIN_KV_TOMBSTONE_TTL`].
    fn kv_tombstone_ttl(&mut self, p: &PartialConfig) -> Duration {
        let Some(s) = &p.kv_tombstone_ttl else {
            return DEFAULT_KV_TOMBSTONE_TTL;
        };
        match parse_go_duration(s) {
            Ok(d) if d >= MIN_KV_TOMBSTONE_TTL => d,
            Ok(_) => {
                self.error(format!(
                    "kv_tombstone_ttl {s:?} is too short: use at least 1s (the default is 15m)"
                ));
                DEFAULT_KV_TOMBSTONE_TTL
            }
            Err(why) => {
                self.error(format!("kv_tombstone_ttl: {why}"));
                DEFAULT_KV_TOMBSTONE_TTL
            }
        }
    }

    /// The `telemetry { }` block: `prometheus_retention_time` a Go duration (0, the default,
    /// leaves the Prometheus format off, as in Consul), `disable_hostname` a bool.
    fn telemetry(&mut self, p: &PartialConfig) -> TelemetrySettings {
        let prometheus_retention_time = match &p.telemetry_prometheus_retention_time {
            None => Duration::ZERO,
            Some(s) => match parse_go_duration(s) {
                Ok(d) => d,
                Err(why) => {
                    self.error(format!(
                        "telemetry.prometheus_retention_time: {why} (for example \"60s\"; \
                         0 leaves the Prometheus format off)"
                    ));
                    Duration::ZERO
                }
            },
        };
        TelemetrySettings {
            prometheus_retention_time,
            disable_hostname: p.telemetry_disable_hostname.unwrap_or(false),
        }
    }

    /// `performance.raft_multiplier`: 1 to 10.
    fn raft_multiplier(&mut self, p: &PartialConfig) -> u32 {
        match p.raft_multiplier {
            None => 1,
            Some(n) if (1..=10).contains(&n) => n as u32,
            Some(n) => {
                self.error(format!(
                    "performance.raft_multiplier = {n}: use 1 (LAN, the default) to 10 (slow networks)"
                ));
                1
            }
        }
    }

    /// `reconnect_timeout` and `tombstone_timeout`: Go durations of at least 1 s. Consul refuses
    /// a `reconnect_timeout` under 8 h; muster takes it with a warning (tests and short-lived
    /// fleets want minutes), and the same for `tombstone_timeout` (docs/configuration.md).
    fn reap_timeouts(&mut self, p: &PartialConfig) -> (Duration, Duration) {
        let mut one = |key: &str, value: &Option<String>, default: Duration, risk: &str| {
            let Some(s) = value else { return default };
            match parse_go_duration(s) {
                Ok(d) if d < Duration::from_secs(1) => {
                    self.error(format!(
                        "{key} {s:?} is too short: use at least 1s (Consul's minimum is 8h)"
                    ));
                    default
                }
                Ok(d) => {
                    if d < REAP_FLOOR {
                        self.warn(format!(
                            "{key} = {s:?} is below Consul's minimum of 8h: {risk}"
                        ));
                    }
                    d
                }
                Err(why) => {
                    self.error(format!("{key}: {why}"));
                    default
                }
            }
        };
        let reconnect = one(
            "reconnect_timeout",
            &p.reconnect_timeout,
            crate::gossip::DEFAULT_RECONNECT_TIMEOUT,
            "a member failed (or cut off) for longer is forgotten everywhere and leaves the catalog; \
             it is listed again only when it joins anew (-retry-join does so by itself, -join does not)",
        );
        let tombstone = one(
            "tombstone_timeout",
            &p.tombstone_timeout,
            crate::gossip::DEFAULT_TOMBSTONE_TIMEOUT,
            "a member that left is forgotten sooner; an agent that missed the leave may list it again until it fails",
        );
        (reconnect, tombstone)
    }

    /// The `autopilot { }` block, each key checked; unset keys stay unset.
    fn autopilot(&mut self, p: &PartialConfig) -> AutopilotSettings {
        let mut autopilot = AutopilotSettings {
            cleanup_dead_servers: p.ap_cleanup_dead_servers,
            ..AutopilotSettings::default()
        };
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
                match parse_go_duration(v) {
                    Ok(d) => *slot = Some(d),
                    Err(why) => self.error(format!("{key}: {why}")),
                }
            }
        }
        match p.ap_max_trailing_logs {
            Some(n) if n >= 0 => autopilot.max_trailing_logs = Some(n as u64),
            Some(n) => self.error(format!(
                "autopilot.max_trailing_logs = {n}: use a count of log entries, 0 or more"
            )),
            None => {}
        }
        match p.ap_min_quorum {
            Some(n) if (0..=i64::from(u16::MAX)).contains(&n) => {
                autopilot.min_quorum = Some(n as u32)
            }
            Some(n) => self.error(format!(
                "autopilot.min_quorum = {n}: use a number of voters, 0 (no floor) or more"
            )),
            None => {}
        }
        autopilot
    }
}

/// Why a node or datacenter name is refused; each becomes a [`ConfigError`] naming the key, and
/// the operator must choose another name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum LabelError {
    /// No name at all.
    #[error("it is empty")]
    Empty,
    /// Longer than gossip and DNS-like uses allow.
    #[error("it is longer than 128 characters")]
    TooLong,
    /// A character outside letters, digits, `-`, `_` and `.`.
    #[error("character {0:?} is not allowed (letters, digits, '-', '_', '.')")]
    Character(char),
}

/// Node and datacenter names travel in gossip and appear in DNS-like places: letters, digits,
/// `-`, `_` and `.`, 1 to 128 characters.
fn check_label(s: &str) -> Result<(), LabelError> {
    if s.is_empty() {
        return Err(LabelError::Empty);
    }
    if s.len() > 128 {
        return Err(LabelError::TooLong);
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(LabelError::Character(c));
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
#[path = "finish_tests.rs"]
mod tests;
