//! TLS for the server RPC port and the HTTPS API: settings, loading certificates into rustls,
//! and the roles a verified certificate gives its holder. The model is docs/security.md.
//!
//! - [`settings`]: one interface's settings (Consul's keys, checked) — plain data for config.
//! - [`Material`]: the files of those settings, loaded into rustls configurations.
//! - [`Reloadable`]: the material in use now, replaced as a whole on reload (SIGHUP).
//! - `verify`: the outbound verifier that checks the chain but not the name, for
//!   `verify_outgoing` without `verify_server_hostname`.
//! - [`api_client`]: what the CLI trusts and presents when it calls an HTTPS API.
//! - [`rpc`]: the server port's side: telling TLS from plaintext, handshakes, roles.

pub mod api_client;
pub mod rpc;
pub mod settings;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use settings::{InterfaceSettings, TlsVersion};

/// Why TLS material could not be loaded. Each names the setting and the file, and says what to
/// do; none is retried: the agent does not start (or, on reload, keeps what it has).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A named file cannot be read.
    #[error("{key}: cannot read {path}: {reason}")]
    Unreadable {
        key: &'static str,
        path: String,
        reason: String,
    },
    /// A file holds no PEM item of the kind the setting needs.
    #[error("{key}: {path} holds no {what} in PEM form; {fix}")]
    Empty {
        key: &'static str,
        path: String,
        what: &'static str,
        fix: &'static str,
    },
    /// The files load but rustls refuses them together (a key that does not match its
    /// certificate, an unsupported key type).
    #[error("{0}")]
    Refused(String),
}

/// The DNS name every server certificate carries and every caller checks with
/// `verify_server_hostname`: `server.<datacenter>.<domain>` (docs/tls.md).
pub fn server_name(datacenter: &str, domain: &str) -> String {
    format!("server.{datacenter}.{}", domain.trim_end_matches('.'))
}

/// One interface's settings loaded into rustls: what it accepts, what it dials with, and
/// the names in its own certificate (to check a server's own certificate at start).
#[derive(Debug)]
pub struct Material {
    /// For accepting TLS: present when a certificate and key are configured.
    pub acceptor: Option<Arc<ServerConfig>>,
    /// For dialling with TLS (`verify_outgoing`); `None` means outbound is plaintext.
    pub connector: Option<Arc<ClientConfig>>,
    /// The DNS names of this agent's own certificate, if it has one.
    pub own_dns_names: Vec<String>,
}

impl Material {
    /// Reads the files `s` names and builds the rustls configurations.
    pub fn load(s: &InterfaceSettings) -> Result<Self, TlsError> {
        let provider = Arc::new(provider(s));
        let versions = s.min_version.versions();
        let roots = match (&s.ca_file, &s.ca_path) {
            (None, None) => None,
            (file, dir) => Some(Arc::new(load_roots(
                &CONFIG_KEYS,
                file.as_deref(),
                dir.as_deref(),
            )?)),
        };
        let own = match (&s.cert_file, &s.key_file) {
            (Some(c), Some(k)) => Some((
                load_chain(CONFIG_KEYS.cert_file, c)?,
                load_key(CONFIG_KEYS.key_file, k)?,
            )),
            _ => None,
        };
        let own_dns_names = match &own {
            Some((chain, _)) => dns_names(&chain[0]),
            None => Vec::new(),
        };
        let refused = |what: &str, e: rustls::Error| {
            TlsError::Refused(format!(
                "{what}: {e}; check that key_file is the key of cert_file (muster tls cert \
                 create writes them as a pair)"
            ))
        };
        let acceptor = match &own {
            None => None,
            Some((chain, key)) => {
                let builder = ServerConfig::builder_with_provider(provider.clone())
                    .with_protocol_versions(versions)
                    .map_err(|e| TlsError::Refused(format!("tls_min_version: {e}")))?;
                let builder = match &roots {
                    Some(roots) => {
                        let v = WebPkiClientVerifier::builder_with_provider(
                            roots.clone(),
                            provider.clone(),
                        );
                        // Without verify_incoming a caller may come without a certificate;
                        // one it does present is still checked against the CA.
                        let v = if s.verify_incoming {
                            v
                        } else {
                            v.allow_unauthenticated()
                        };
                        let v = v
                            .build()
                            .map_err(|e| TlsError::Refused(format!("ca_file: {e}")))?;
                        builder.with_client_cert_verifier(v)
                    }
                    None => builder.with_no_client_auth(),
                };
                let cfg = builder
                    .with_single_cert(chain.clone(), key.clone_key())
                    .map_err(|e| refused("cert_file and key_file", e))?;
                Some(Arc::new(cfg))
            }
        };
        let connector =
            match (s.verify_outgoing, &roots) {
                (false, _) => None,
                (true, None) => return Err(TlsError::Refused(
                    "verify_outgoing needs ca_file or ca_path: the CA that signed the servers' \
                     certificates (muster-agent-ca.pem from muster tls ca create)"
                        .into(),
                )),
                (true, Some(roots)) => {
                    let builder = ClientConfig::builder_with_provider(provider.clone())
                        .with_protocol_versions(versions)
                        .map_err(|e| TlsError::Refused(format!("tls_min_version: {e}")))?;
                    let builder = if s.verify_server_hostname {
                        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
                            roots.clone(),
                            provider.clone(),
                        )
                        .build()
                        .map_err(|e| TlsError::Refused(format!("ca_file: {e}")))?;
                        builder.with_webpki_verifier(v)
                    } else {
                        builder
                            .dangerous()
                            .with_custom_certificate_verifier(Arc::new(verify::ChainOnly::new(
                                roots.clone(),
                                provider.clone(),
                            )?))
                    };
                    let cfg = match &own {
                        Some((chain, key)) => builder
                            .with_client_auth_cert(chain.clone(), key.clone_key())
                            .map_err(|e| refused("cert_file and key_file", e))?,
                        None => builder.with_no_client_auth(),
                    };
                    Some(Arc::new(cfg))
                }
            };
        Ok(Self {
            acceptor,
            connector,
            own_dns_names,
        })
    }
}

/// The material an interface uses now. A reload builds new material from the same settings
/// and swaps it in whole; handshakes already under way finish with the old one, and
/// connections already open keep their session (docs/security.md, Reload).
#[derive(Debug)]
pub struct Reloadable {
    pub settings: InterfaceSettings,
    /// `server.<dc>.<domain>`.
    pub server_name: String,
    current: RwLock<Arc<Material>>,
}

impl Reloadable {
    /// Loads the material of `settings`.
    pub fn load(settings: InterfaceSettings, server_name: String) -> Result<Self, TlsError> {
        let m = Material::load(&settings)?;
        Ok(Self {
            settings,
            server_name,
            current: RwLock::new(Arc::new(m)),
        })
    }

    /// The material in use now.
    pub fn current(&self) -> Arc<Material> {
        self.current.read().expect("tls lock").clone()
    }

    /// Whether the files would load now, changing nothing (a reload of several interfaces
    /// checks them all before it replaces any).
    pub fn check(&self) -> Result<(), TlsError> {
        Material::load(&self.settings).map(|_| ())
    }

    /// Re-reads the files; on an error the material in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let m = Material::load(&self.settings)?;
        *self.current.write().expect("tls lock") = Arc::new(m);
        Ok(())
    }
}

/// ring's provider with the TLS 1.2 suites cut to `tls_cipher_suites`, when given.
fn provider(s: &InterfaceSettings) -> CryptoProvider {
    let mut p = rustls::crypto::ring::default_provider();
    if !s.cipher_suites.is_empty() {
        p.cipher_suites
            .retain(|suite: &SupportedCipherSuite| match suite {
                SupportedCipherSuite::Tls13(_) => true,
                SupportedCipherSuite::Tls12(_) => s
                    .cipher_suites
                    .iter()
                    .any(|name| settings::suite_matches(name, suite.suite())),
            });
    }
    p
}

/// What a loading error calls each file: the config keys, or the CLI's flags.
struct FileKeys {
    ca_file: &'static str,
    ca_path: &'static str,
    cert_file: &'static str,
    key_file: &'static str,
}

const CONFIG_KEYS: FileKeys = FileKeys {
    ca_file: "ca_file",
    ca_path: "ca_path",
    cert_file: "cert_file",
    key_file: "key_file",
};

fn unreadable(key: &'static str, path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Unreadable {
        key,
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Reads a PEM file whole, so that a missing file says "No such file" rather than a PEM error.
fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| unreadable(key, path, e))
}

fn certs_in(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(key, path)?;
    CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| unreadable(key, path, format!("not PEM: {e}")))
}

/// The CA certificates of `ca_file` and of every `*.pem` and `*.crt` file in `ca_path`.
fn load_roots(
    names: &FileKeys,
    file: Option<&Path>,
    dir: Option<&Path>,
) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    let mut add = |key: &'static str, path: &Path| -> Result<usize, TlsError> {
        let certs = certs_in(key, path)?;
        let n = certs.len();
        for c in certs {
            roots
                .add(c)
                .map_err(|e| unreadable(key, path, format!("not a usable CA certificate: {e}")))?;
        }
        Ok(n)
    };
    if let Some(f) = file {
        if add(names.ca_file, f)? == 0 {
            return Err(TlsError::Empty {
                key: names.ca_file,
                path: f.display().to_string(),
                what: "certificate",
                fix: "give the CA certificate (muster-agent-ca.pem), not its key",
            });
        }
    }
    if let Some(d) = dir {
        let mut files: Vec<PathBuf> = std::fs::read_dir(d)
            .map_err(|e| unreadable(names.ca_path, d, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|x| x == "pem" || x == "crt" || x == "cer")
            })
            .collect();
        files.sort();
        let mut n = 0;
        for f in &files {
            n += add(names.ca_path, f)?;
        }
        if n == 0 {
            return Err(TlsError::Empty {
                key: names.ca_path,
                path: d.display().to_string(),
                what: "certificate (in *.pem, *.crt or *.cer files)",
                fix: "put the CA certificate (muster-agent-ca.pem) in that directory",
            });
        }
    }
    Ok(roots)
}

fn load_chain(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = certs_in(key, path)?;
    if chain.is_empty() {
        return Err(TlsError::Empty {
            key,
            path: path.display().to_string(),
            what: "certificate",
            fix: "give the agent's certificate (e.g. dc1-server-muster-0.pem), not its key",
        });
    }
    Ok(chain)
}

fn load_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(key, path)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(k) => Ok(k),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(TlsError::Empty {
            key,
            path: path.display().to_string(),
            what: "private key",
            fix: "give the key written beside the certificate (e.g. dc1-server-muster-0-key.pem)",
        }),
        // The PEM error may quote the file's bytes: a key's. Name the file only.
        Err(_) => Err(unreadable(key, path, "not a PEM private key")),
    }
}

/// The DNS names of a certificate's subject alternative names, lower case; empty if it does
/// not parse (rustls has already refused such a certificate where it matters).
pub fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return Vec::new();
    };
    let Ok(Some(san)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}
