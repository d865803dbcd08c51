//! TLS settings as written (the `tls` stanza and Consul's older top-level keys), how layers
//! combine, and how they become one checked [`InterfaceSettings`] per interface
//! (docs/security.md, Settings).

use std::path::PathBuf;

use serde::Deserialize;

use crate::tls::settings::parse_cipher_suites;
use crate::tls::{InterfaceSettings, Material, TlsVersion};

/// The keys of one block of the `tls` stanza (and of the top level, for Consul's older keys).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsKeys {
    pub ca_file: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub tls_min_version: Option<String>,
    pub tls_cipher_suites: Option<String>,
    pub verify_incoming: Option<bool>,
    pub verify_outgoing: Option<bool>,
    /// `tls.internal_rpc` and the top level only.
    pub verify_server_hostname: Option<bool>,
}

/// Keys of `tls.defaults` and `tls.https`.
pub const TLS_BLOCK_KEYS: &[&str] = &[
    "ca_file",
    "ca_path",
    "cert_file",
    "key_file",
    "tls_cipher_suites",
    "tls_min_version",
    "verify_incoming",
    "verify_outgoing",
];
/// Keys of `tls.internal_rpc`.
pub const TLS_RPC_KEYS: &[&str] = &[
    "ca_file",
    "ca_path",
    "cert_file",
    "key_file",
    "tls_cipher_suites",
    "tls_min_version",
    "verify_incoming",
    "verify_outgoing",
    "verify_server_hostname",
];
/// Blocks of the `tls` stanza muster reads (`grpc` is handled apart: muster has no gRPC).
pub const TLS_STANZA_KEYS: &[&str] = &["defaults", "grpc", "https", "internal_rpc"];

impl TlsKeys {
    /// Applies `later` on top: later values win.
    fn merge(&mut self, later: TlsKeys) {
        macro_rules! take {
            ($($f:ident),*) => { $( if later.$f.is_some() { self.$f = later.$f; } )* };
        }
        take!(
            ca_file,
            ca_path,
            cert_file,
            key_file,
            tls_min_version,
            tls_cipher_suites,
            verify_incoming,
            verify_outgoing,
            verify_server_hostname
        );
    }
}

/// One layer's TLS settings, as written.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TlsLayer {
    /// Consul's older top-level keys (`ca_file`, `verify_incoming`, …).
    pub top: TlsKeys,
    /// `verify_incoming_rpc` and `verify_incoming_https` (older top-level keys).
    pub verify_incoming_rpc: Option<bool>,
    pub verify_incoming_https: Option<bool>,
    pub defaults: TlsKeys,
    pub internal_rpc: TlsKeys,
    pub https: TlsKeys,
}

impl TlsLayer {
    pub fn merge(&mut self, later: TlsLayer) {
        self.top.merge(later.top);
        self.defaults.merge(later.defaults);
        self.internal_rpc.merge(later.internal_rpc);
        self.https.merge(later.https);
        if later.verify_incoming_rpc.is_some() {
            self.verify_incoming_rpc = later.verify_incoming_rpc;
        }
        if later.verify_incoming_https.is_some() {
            self.verify_incoming_https = later.verify_incoming_https;
        }
    }
}

/// The checked TLS settings of each interface; `None`: that interface has no TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// The server RPC port (and every outbound RPC connection).
    pub rpc: Option<InterfaceSettings>,
    /// The HTTPS API.
    pub https: Option<InterfaceSettings>,
}

/// `top` into `into` where `into` is unset; both set and different is an error naming both.
fn fold_legacy<T: Clone + PartialEq>(
    key: &str,
    stanza: &str,
    top: &Option<T>,
    into: &mut Option<T>,
    errors: &mut Vec<String>,
) {
    match (top, &*into) {
        (Some(a), Some(b)) if a != b => errors.push(format!(
            "`{key}` (top level) and `{stanza}` disagree; keep only `{stanza}` (Consul 1.12's \
             name for it)"
        )),
        (Some(a), None) => *into = Some(a.clone()),
        _ => {}
    }
}

/// Combines the layer's blocks into one [`TlsConfig`], checks it and loads its files (so a
/// bad file stops the start, and `muster validate` finds it). `server_name` is
/// `server.<dc>.<domain>`; a server with `verify_server_hostname` must carry it.
pub fn finish_tls(
    layer: &TlsLayer,
    server: bool,
    server_name: &str,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> TlsConfig {
    let mut defaults = layer.defaults.clone();
    let mut rpc = layer.internal_rpc.clone();
    let mut https = layer.https.clone();
    let t = &layer.top;
    fold_legacy(
        "ca_file",
        "tls.defaults.ca_file",
        &t.ca_file,
        &mut defaults.ca_file,
        errors,
    );
    fold_legacy(
        "ca_path",
        "tls.defaults.ca_path",
        &t.ca_path,
        &mut defaults.ca_path,
        errors,
    );
    fold_legacy(
        "cert_file",
        "tls.defaults.cert_file",
        &t.cert_file,
        &mut defaults.cert_file,
        errors,
    );
    fold_legacy(
        "key_file",
        "tls.defaults.key_file",
        &t.key_file,
        &mut defaults.key_file,
        errors,
    );
    fold_legacy(
        "tls_min_version",
        "tls.defaults.tls_min_version",
        &t.tls_min_version,
        &mut defaults.tls_min_version,
        errors,
    );
    fold_legacy(
        "tls_cipher_suites",
        "tls.defaults.tls_cipher_suites",
        &t.tls_cipher_suites,
        &mut defaults.tls_cipher_suites,
        errors,
    );
    fold_legacy(
        "verify_incoming",
        "tls.defaults.verify_incoming",
        &t.verify_incoming,
        &mut defaults.verify_incoming,
        errors,
    );
    fold_legacy(
        "verify_outgoing",
        "tls.defaults.verify_outgoing",
        &t.verify_outgoing,
        &mut defaults.verify_outgoing,
        errors,
    );
    fold_legacy(
        "verify_server_hostname",
        "tls.internal_rpc.verify_server_hostname",
        &t.verify_server_hostname,
        &mut rpc.verify_server_hostname,
        errors,
    );
    fold_legacy(
        "verify_incoming_rpc",
        "tls.internal_rpc.verify_incoming",
        &layer.verify_incoming_rpc,
        &mut rpc.verify_incoming,
        errors,
    );
    fold_legacy(
        "verify_incoming_https",
        "tls.https.verify_incoming",
        &layer.verify_incoming_https,
        &mut https.verify_incoming,
        errors,
    );
    let mut rpc_keys = defaults.clone();
    rpc_keys.verify_server_hostname = None;
    rpc_keys.merge(rpc);
    let mut https_keys = defaults;
    https_keys.merge(https);
    let rpc = interface("tls.internal_rpc", &rpc_keys, errors);
    let https = interface("tls.https", &https_keys, errors);
    if let Some(s) = &rpc {
        match Material::load(s) {
            Err(e) => errors.push(format!("tls.internal_rpc: {e}")),
            Ok(m) => {
                if server
                    && s.verify_server_hostname
                    && !m.own_dns_names.iter().any(|n| n == server_name)
                {
                    errors.push(format!(
                        "cert_file: this server's certificate does not name {server_name}, so \
                         every other server (with verify_server_hostname) would refuse it; \
                         make one with `muster tls cert create -server` for this datacenter \
                         and domain (-dc, -domain)"
                    ));
                }
            }
        }
        if server && s.cert_file.is_some() {
            if !s.verify_incoming {
                warnings.push(
                    "tls: verify_incoming is off, so the server port also takes callers without \
                     a certificate, plaintext included (the middle of a TLS roll-out; \
                     docs/security.md)"
                        .into(),
                );
            } else if !s.verify_server_hostname {
                warnings.push(format!(
                    "tls: verify_server_hostname is off, so any certificate from the CA can act \
                     as a server (a client agent's included); set it to require {server_name}"
                ));
            }
        }
        if !s.verify_outgoing && s.cert_file.is_some() {
            warnings.push(
                "tls: verify_outgoing is off, so this agent dials servers in plaintext".into(),
            );
        }
    }
    if let Some(s) = &https {
        if let Err(e) = Material::load(s) {
            errors.push(format!("tls.https: {e}"));
        }
    }
    TlsConfig { rpc, https }
}

/// One interface's keys, checked; `None` if nothing asks for TLS on it.
fn interface(name: &str, k: &TlsKeys, errors: &mut Vec<String>) -> Option<InterfaceSettings> {
    let min_version = match &k.tls_min_version {
        None => TlsVersion::default(),
        Some(v) => TlsVersion::parse(v).unwrap_or_else(|why| {
            errors.push(format!("{name}.tls_min_version: {why}"));
            TlsVersion::default()
        }),
    };
    let cipher_suites = match &k.tls_cipher_suites {
        None => Vec::new(),
        Some(v) => parse_cipher_suites(v).unwrap_or_else(|why| {
            errors.push(format!("{name}.tls_cipher_suites: {why}"));
            Vec::new()
        }),
    };
    if !cipher_suites.is_empty() && min_version == TlsVersion::V13 {
        errors.push(format!(
            "{name}.tls_cipher_suites: TLS 1.3 suites are not configurable and \
             tls_min_version is TLSv1_3; drop tls_cipher_suites"
        ));
    }
    let verify_server_hostname = k.verify_server_hostname.unwrap_or(false);
    let s = InterfaceSettings {
        ca_file: k.ca_file.clone(),
        ca_path: k.ca_path.clone(),
        cert_file: k.cert_file.clone(),
        key_file: k.key_file.clone(),
        verify_incoming: k.verify_incoming.unwrap_or(false),
        // Consul documents that verify_server_hostname implies verify_outgoing.
        verify_outgoing: k.verify_outgoing.unwrap_or(false) || verify_server_hostname,
        verify_server_hostname,
        min_version,
        cipher_suites,
    };
    if !s.enabled() {
        return None;
    }
    let has_ca = s.ca_file.is_some() || s.ca_path.is_some();
    match (&s.cert_file, &s.key_file) {
        (Some(_), None) => errors.push(format!(
            "{name}: cert_file is set but key_file is not; give both (muster tls cert create \
             writes them as a pair)"
        )),
        (None, Some(_)) => errors.push(format!(
            "{name}: key_file is set but cert_file is not; give both"
        )),
        _ => {}
    }
    if s.verify_incoming && !has_ca {
        errors.push(format!(
            "{name}: verify_incoming needs ca_file or ca_path, the CA callers' certificates must \
             come from (muster-agent-ca.pem from `muster tls ca create`)"
        ));
    }
    if s.verify_incoming && s.cert_file.is_none() {
        errors.push(format!(
            "{name}: verify_incoming needs cert_file and key_file: the port must present a \
             certificate to speak TLS"
        ));
    }
    if s.verify_outgoing && !has_ca {
        errors.push(format!(
            "{name}: verify_outgoing{} needs ca_file or ca_path, the CA the servers' \
             certificates come from",
            if verify_server_hostname {
                " (implied by verify_server_hostname)"
            } else {
                ""
            }
        ));
    }
    let complete = errors.is_empty();
    complete.then_some(s)
}
