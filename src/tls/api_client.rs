//! What the CLI trusts and presents when it calls an agent's HTTPS API (docs/security.md,
//! The CLI): the CA the agent's certificate must chain to (and whose name it must carry: the
//! host of `-http-addr`, or `-tls-server-name`), and the certificate it shows an agent with
//! `verify_incoming`. Errors name the CLI's flags and variables, not the config keys.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::ClientConfig;

use super::{load_chain, load_key, load_roots, verify::ChainOnly, FileKeys, TlsError};

/// The CLI's TLS settings, as its flags and `MUSTER_*` variables gave them.
#[derive(Debug, Clone, Default)]
pub struct ApiClientTls {
    pub ca_file: Option<PathBuf>,
    pub ca_path: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// `false` only with `MUSTER_HTTP_SSL_VERIFY=false`: no check of the agent's certificate.
    pub verify: bool,
}

const CLI_KEYS: FileKeys = FileKeys {
    ca_file: "-ca-file (MUSTER_CACERT)",
    ca_path: "-ca-path (MUSTER_CAPATH)",
    cert_file: "-client-cert (MUSTER_CLIENT_CERT)",
    key_file: "-client-key (MUSTER_CLIENT_KEY)",
};

impl ApiClientTls {
    /// The rustls configuration for dialling an HTTPS API (ring provider, TLS 1.2 and 1.3,
    /// no system roots: only the CA given).
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Refused(format!("TLS versions: {e}")))?;
        let builder = if !self.verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly::unverified(provider)))
        } else {
            if self.ca_file.is_none() && self.ca_path.is_none() {
                return Err(TlsError::Refused(
                    "an https:// address needs the CA that signed the agent's certificate: give \
                     -ca-file (or MUSTER_CACERT), e.g. muster-agent-ca.pem from muster tls ca \
                     create"
                        .into(),
                ));
            }
            let roots = load_roots(&CLI_KEYS, self.ca_file.as_deref(), self.ca_path.as_deref())?;
            let verifier =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| TlsError::Refused(format!("{}: {e}", CLI_KEYS.ca_file)))?;
            builder.with_webpki_verifier(verifier)
        };
        match (&self.client_cert, &self.client_key) {
            (None, None) => Ok(builder.with_no_client_auth()),
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(
                    load_chain(CLI_KEYS.cert_file, cert)?,
                    load_key(CLI_KEYS.key_file, key)?,
                )
                .map_err(|e| {
                    TlsError::Refused(format!(
                        "-client-cert and -client-key: {e}; give the key written beside the \
                         certificate (muster tls cert create -cli writes them as a pair)"
                    ))
                }),
            (Some(_), None) => Err(TlsError::Refused(
                "-client-cert is given without -client-key (MUSTER_CLIENT_KEY): give both".into(),
            )),
            (None, Some(_)) => Err(TlsError::Refused(
                "-client-key is given without -client-cert (MUSTER_CLIENT_CERT): give both".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(t: ApiClientTls) -> String {
        t.client_config().unwrap_err().to_string()
    }

    #[test]
    fn an_https_client_without_a_ca_or_with_half_a_pair_is_refused_by_flag() {
        let verify = ApiClientTls {
            verify: true,
            ..Default::default()
        };
        assert!(refusal(verify.clone()).contains("-ca-file (or MUSTER_CACERT)"));
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate\n").unwrap();
        let with_ca = ApiClientTls {
            ca_file: Some(ca),
            ..verify
        };
        // A file without a PEM certificate names the flag and the file.
        assert!(refusal(with_ca.clone()).starts_with("-ca-file (MUSTER_CACERT): "));
        let unverified = ApiClientTls {
            verify: false,
            client_cert: Some(dir.path().join("cli.pem")),
            ..Default::default()
        };
        assert!(refusal(unverified.clone()).contains("without -client-key"));
        // Missing files name the flag and the path, never a file's content.
        let missing = ApiClientTls {
            client_key: Some(dir.path().join("cli-key.pem")),
            ..unverified
        };
        let why = refusal(missing);
        assert!(
            why.starts_with("-client-cert (MUSTER_CLIENT_CERT): cannot read"),
            "{why}"
        );
        // Without verification nothing is needed.
        assert!(ApiClientTls::default().client_config().is_ok());
    }
}
