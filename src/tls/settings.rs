//! One interface's TLS settings, checked: what config hands the TLS layer (docs/security.md).

use std::path::PathBuf;

use rustls::CipherSuite;

/// The lowest TLS version an interface speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3 (Consul's default, `TLSv1_2`).
    #[default]
    V12,
    /// TLS 1.3 only.
    V13,
}

impl TlsVersion {
    /// Consul's names (`TLSv1_2`, `TLSv1_3`) and its older ones (`tls12`, `tls13`). Versions
    /// below 1.2 are refused: rustls does not speak them (docs/security.md).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "TLSv1_2" | "tls12" => Ok(Self::V12),
            "TLSv1_3" | "tls13" => Ok(Self::V13),
            "TLSv1_0" | "TLSv1_1" | "tls10" | "tls11" => Err(format!(
                "{s:?} is below TLS 1.2, which muster does not speak (rustls has no older \
                 versions); use \"TLSv1_2\" (the default) or \"TLSv1_3\""
            )),
            _ => Err(format!(
                "{s:?} is not a TLS version; use \"TLSv1_2\" (the default) or \"TLSv1_3\""
            )),
        }
    }

    pub(super) fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static BOTH: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static ONLY_13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            Self::V12 => &BOTH,
            Self::V13 => &ONLY_13,
        }
    }
}

/// The TLS 1.2 suites muster can offer, by their Go (Consul) names, with Go's older aliases
/// for the ChaCha20 suites.
const SUITES: &[(&str, CipherSuite)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// Checks a `tls_cipher_suites` value: comma-separated Go names of TLS 1.2 suites, each one
/// muster can offer. Returns the names in order.
pub fn parse_cipher_suites(s: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = s
        .split(',')
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Err("is empty; leave it out for the default suites".into());
    }
    for n in &names {
        if !SUITES.iter().any(|(name, _)| name == n) {
            let known: Vec<&str> = SUITES.iter().map(|(n, _)| *n).collect();
            return Err(format!(
                "{n:?} is not a TLS 1.2 suite muster offers (rustls has only ECDHE with AES-GCM \
                 or ChaCha20-Poly1305); use some of {}",
                known.join(", ")
            ));
        }
    }
    Ok(names)
}

/// Whether the Go name `name` is `suite`.
pub(super) fn suite_matches(name: &str, suite: CipherSuite) -> bool {
    SUITES.iter().any(|(n, s)| *n == name && *s == suite)
}

/// One interface's settings, after `defaults` and the interface's own block (and Consul's
/// older top-level keys) were combined and checked (config/tls.rs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterfaceSettings {
    pub ca_file: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub verify_incoming: bool,
    pub verify_outgoing: bool,
    /// The server port only.
    pub verify_server_hostname: bool,
    pub min_version: TlsVersion,
    /// Go names of the TLS 1.2 suites to offer; empty: all of rustls's.
    pub cipher_suites: Vec<String>,
}

impl InterfaceSettings {
    /// Whether anything asks for TLS on this interface.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() || self.verify_outgoing || self.verify_incoming
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_below_one_two_are_refused_by_name() {
        assert_eq!(TlsVersion::parse("TLSv1_3"), Ok(TlsVersion::V13));
        assert_eq!(TlsVersion::parse("tls12"), Ok(TlsVersion::V12));
        assert!(TlsVersion::parse("TLSv1_0")
            .unwrap_err()
            .contains("below TLS 1.2"));
        assert!(TlsVersion::parse("ssl3")
            .unwrap_err()
            .contains("not a TLS version"));
    }

    #[test]
    fn cipher_suites_are_go_names_of_rustls_suites() {
        assert_eq!(
            parse_cipher_suites(
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305"
            )
            .unwrap()
            .len(),
            2
        );
        let e = parse_cipher_suites("TLS_RSA_WITH_AES_128_CBC_SHA").unwrap_err();
        assert!(e.contains("TLS_RSA_WITH_AES_128_CBC_SHA"), "{e}");
        assert!(parse_cipher_suites(" , ").is_err());
        assert!(suite_matches(
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
            CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        ));
    }
}
