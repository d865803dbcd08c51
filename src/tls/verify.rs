//! The outbound check for `verify_outgoing` without `verify_server_hostname`: the server's
//! certificate must chain to the CA, whatever names it carries. This is Consul's meaning of
//! the pair (docs/security.md): any certificate from the CA is a peer. With
//! `verify_server_hostname` rustls's own WebPKI verifier checks the name as well.
//!
//! The same type, without roots, is the CLI's `MUSTER_HTTP_SSL_VERIFY=false`: no check of the
//! agent's certificate at all (Consul's `CONSUL_HTTP_SSL_VERIFY=false`), only of the
//! handshake's signatures.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::TlsError;

/// Checks the chain (signatures, validity dates, key usage for server auth) against the CA,
/// and not the name; without a CA ([`ChainOnly::unverified`]) checks no certificate.
#[derive(Debug)]
pub(super) struct ChainOnly {
    roots: Option<Arc<RootCertStore>>,
    provider: Arc<CryptoProvider>,
}

impl ChainOnly {
    pub(super) fn new(
        roots: Arc<RootCertStore>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        if roots.is_empty() {
            return Err(TlsError::Refused(
                "verify_outgoing: the CA files hold no certificate".into(),
            ));
        }
        Ok(Self {
            roots: Some(roots),
            provider,
        })
    }

    /// Takes any certificate (the CLI's `MUSTER_HTTP_SSL_VERIFY=false`).
    pub(super) fn unverified(provider: Arc<CryptoProvider>) -> Self {
        Self {
            roots: None,
            provider,
        }
    }
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            return Ok(ServerCertVerified::assertion());
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
