//! TLS on the server RPC port (docs/security.md): the listener's first-byte test for TLS or
//! plaintext, both handshakes, and the role a caller's certificate gives it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::{dns_names, Reloadable, TlsError};

/// The read half of a connection, TLS or not.
pub type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a connection, TLS or not.
pub type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// The first byte of every TLS connection: a handshake record. A muster frame starts with a
/// length of at most 64 MiB, whose first byte is at most 0x04, so the two cannot be confused.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a caller on the server port may do, from its verified certificate (docs/security.md,
/// Roles). Decided once per connection, at the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A certificate from the CA naming `server.<dc>.<domain>`.
    Server,
    /// Any other certificate from the CA (a client agent, the CLI).
    Agent,
    /// No certificate: plaintext, or TLS without one (only without `verify_incoming`).
    Anonymous,
}

/// At most one warning line per this long about refused callers, with the count since.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The server port's TLS: what it accepts and dials with, reloadable as a whole.
#[derive(Debug)]
pub struct RpcTls {
    material: Reloadable,
    /// Per kind of refusal (a handshake, a request), when one was last logged and how many
    /// came since: a flood of one kind does not hide the other.
    refusals: Mutex<[Option<(Instant, u64)>; 2]>,
}

/// What was refused, for [`RpcTls::log_refusal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The connection: plaintext with `verify_incoming`, a failed handshake.
    Connection = 0,
    /// A request the caller's role may not send.
    Request = 1,
}

impl RpcTls {
    pub fn new(material: Reloadable) -> Self {
        Self {
            material,
            refusals: Mutex::new([None, None]),
        }
    }

    /// Re-reads the certificate, key and CA files (SIGHUP); the old material stays on error.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.material.reload()
    }

    /// Whether the files would load now, changing nothing.
    pub fn check(&self) -> Result<(), TlsError> {
        self.material.check()
    }

    /// Whether Raft and bootstrap requests are served only to the server role: with
    /// `verify_incoming` and `verify_server_hostname` both (docs/security.md, Roles).
    pub fn checks_roles(&self) -> bool {
        let s = &self.material.settings;
        s.verify_incoming && s.verify_server_hostname
    }

    /// Whether a caller of `role` may send a request that only servers send.
    pub fn permits(&self, role: Role, server_only: bool) -> bool {
        !server_only || !self.checks_roles() || role == Role::Server
    }

    /// Logs a refused caller, at most once per 10 s and kind, with the
    /// count since.
    pub fn log_refusal(&self, kind: Refused, peer: std::net::SocketAddr, why: &str) {
        let mut r = self.refusals.lock().expect("refusals lock");
        match &mut r[kind as usize] {
            Some((at, n)) if at.elapsed() < REFUSAL_LOG_EVERY => *n += 1,
            other => {
                let earlier = other.map(|(_, n)| n).unwrap_or(0);
                tracing::warn!(
                    %peer, earlier_refusals = earlier,
                    "server RPC: refused {peer}: {why}; further refusals are logged at most \
                     every {}s",
                    REFUSAL_LOG_EVERY.as_secs()
                );
                *other = Some((Instant::now(), 0));
            }
        }
    }

    /// Accepts one connection: TLS or plaintext by its first byte, within `deadline`.
    pub async fn accept(
        &self,
        stream: TcpStream,
        deadline: Duration,
    ) -> Result<(Reader, Writer, Role), String> {
        let mut first = [0u8; 1];
        let n = tokio::time::timeout(deadline, stream.peek(&mut first))
            .await
            .map_err(|_| format!("sent nothing within {deadline:?}"))?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before sending anything".into());
        }
        let material = self.material.current();
        if first[0] != TLS_HANDSHAKE_RECORD {
            if self.material.settings.verify_incoming {
                return Err(
                    "plaintext connection, but verify_incoming requires TLS with a \
                            certificate from the CA"
                        .into(),
                );
            }
            let (r, w) = plain(stream);
            return Ok((r, w, Role::Anonymous));
        }
        let Some(acceptor) = material.acceptor.clone() else {
            return Err("a TLS handshake, but this server has no cert_file".into());
        };
        let tls = tokio::time::timeout(
            deadline,
            tokio_rustls::TlsAcceptor::from(acceptor).accept(stream),
        )
        .await
        .map_err(|_| format!("TLS handshake not done within {deadline:?}"))?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let role = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
            None => Role::Anonymous,
            Some(cert) if dns_names(cert).contains(&self.material.server_name) => Role::Server,
            Some(_) => Role::Agent,
        };
        let (r, w) = tokio::io::split(tls);
        Ok((Box::new(r), Box::new(w), role))
    }

    /// Whether outbound connections speak TLS (`verify_outgoing`).
    pub fn dials_tls(&self) -> bool {
        self.material.current().connector.is_some()
    }

    /// Completes an outbound connection: TLS with `verify_outgoing` (the caller's deadline
    /// bounds it), plaintext otherwise.
    pub async fn connect(&self, stream: TcpStream) -> Result<(Reader, Writer), String> {
        let Some(connector) = self.material.current().connector.clone() else {
            return Ok(plain(stream));
        };
        let name = ServerName::try_from(self.material.server_name.clone())
            .map_err(|e| format!("{:?} is not a DNS name: {e}", self.material.server_name))?;
        let tls = tokio_rustls::TlsConnector::from(connector)
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))?;
        let (r, w) = tokio::io::split(tls);
        Ok((Box::new(r), Box::new(w)))
    }
}

/// A plaintext connection's halves.
pub fn plain(stream: TcpStream) -> (Reader, Writer) {
    let (r, w) = stream.into_split();
    (Box::new(r), Box::new(w))
}
