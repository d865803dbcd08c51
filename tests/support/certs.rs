//! Certificates made by `muster tls` for a test (a CA, servers, a client agent, the CLI, and
//! a foreign CA's), and a rustls client that shows which certificate a port presents.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use super::{muster_in, stderr};

/// The files `muster tls` wrote, by role.
pub struct Certs {
    pub dir: PathBuf,
}

impl Certs {
    /// A CA, three server certificates, a client agent's and the CLI's; a foreign CA with a
    /// client and a server certificate of its own in `foreign/`.
    pub fn make(dir: &Path) -> Certs {
        let run = |d: &Path, args: &[&str]| {
            let o = muster_in(d, args);
            assert!(o.status.success(), "muster {args:?}: {}", stderr(&o));
        };
        run(dir, &["tls", "ca", "create"]);
        for _ in 0..3 {
            run(dir, &["tls", "cert", "create", "-server"]);
        }
        run(dir, &["tls", "cert", "create", "-client"]);
        run(dir, &["tls", "cert", "create", "-cli"]);
        let foreign = dir.join("foreign");
        std::fs::create_dir(&foreign).unwrap();
        run(&foreign, &["tls", "ca", "create"]);
        run(&foreign, &["tls", "cert", "create", "-client"]);
        run(&foreign, &["tls", "cert", "create", "-server"]);
        run(&foreign, &["tls", "cert", "create", "-cli"]);
        Certs { dir: dir.into() }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("muster-agent-ca.pem")
    }

    /// (certificate, key) of the n-th server certificate.
    pub fn server(&self, n: u8) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("dc1-server-muster-{n}.pem")),
            self.dir.join(format!("dc1-server-muster-{n}-key.pem")),
        )
    }

    pub fn client(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.join("dc1-client-muster-0.pem"),
            self.dir.join("dc1-client-muster-0-key.pem"),
        )
    }

    /// (certificate, key) of the CLI's certificate.
    pub fn cli(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.join("dc1-cli-muster-0.pem"),
            self.dir.join("dc1-cli-muster-0-key.pem"),
        )
    }

    /// (certificate, key) of the foreign CA's CLI certificate.
    pub fn foreign_cli(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.join("foreign/dc1-cli-muster-0.pem"),
            self.dir.join("foreign/dc1-cli-muster-0-key.pem"),
        )
    }

    pub fn foreign_ca(&self) -> PathBuf {
        self.dir.join("foreign/muster-agent-ca.pem")
    }

    pub fn foreign_client(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.join("foreign/dc1-client-muster-0.pem"),
            self.dir.join("foreign/dc1-client-muster-0-key.pem"),
        )
    }
}

/// A rustls client trusting `ca`, presenting `cert` if any, for `server.dc1.consul`.
pub fn client_conn(
    ca: &Path,
    cert: Option<&(PathBuf, PathBuf)>,
) -> Result<rustls::ClientConnection, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let cfg = match cert {
        Some((c, k)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(c)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(k).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    rustls::ClientConnection::new(
        Arc::new(cfg),
        ServerName::try_from("server.dc1.consul").unwrap(),
    )
    .map_err(|e| e.to_string())
}

/// The certificate a new TLS connection to `addr` is shown.
pub fn presented(addr: &str, ca: &Path, cert: &(PathBuf, PathBuf)) -> Vec<u8> {
    let mut tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut conn = client_conn(ca, Some(cert)).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).unwrap();
    }
    conn.peer_certificates().unwrap()[0].to_vec()
}

pub fn der_of(pem: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(pem).unwrap().to_vec()
}
