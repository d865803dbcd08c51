//! The HTTPS API's listener (docs/security.md, HTTPS API): the same router as plain HTTP,
//! behind TLS handshakes that run off the accept loop.
//!
//! Each accepted connection gets a task of its own that finishes the handshake within
//! [`HANDSHAKE_DEADLINE`]; only completed TLS streams reach the HTTP server, through a
//! channel that `Handshaken` hands to `axum::serve` as its listener. So a caller that
//! connects and says nothing holds up nobody, and at most [`MAX_HANDSHAKES`] handshakes run
//! at once (more are closed at once: the port is as hostile a network as the server port).
//! The material is read at each handshake, so a reload (SIGHUP) applies to the next one.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;

use crate::agent::Agent;
use crate::tls::Reloadable;

/// How long a caller has to complete its handshake.
pub const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// Handshakes in progress at once; a connection beyond them is closed unanswered.
pub const MAX_HANDSHAKES: usize = 1024;

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// What a plain HTTP request to the HTTPS port is told before the connection closes (Go's
/// server, and so Consul's, answers the same way).
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\n\
Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server: use https://\n";

/// Serves the API over TLS on `listener` until the agent stops.
pub fn serve(agent: Arc<Agent>, listener: TcpListener, tls: Arc<Reloadable>) {
    let local = listener.local_addr();
    let (tx, rx) = mpsc::channel(64);
    let accepting = tokio::spawn(accept_loop(agent.clone(), listener, tls, tx));
    let app = super::router(agent.clone());
    tokio::spawn(async move {
        let Ok(local) = local else {
            tracing::error!("HTTPS API: the listener has no local address");
            accepting.abort();
            return;
        };
        let stop = async move {
            agent.stopped().await;
        };
        if let Err(e) = axum::serve(Handshaken { rx, local }, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "HTTPS API stopped");
        }
        accepting.abort();
    });
}

/// Accepts connections and hands each to a handshake task of its own, until the agent
/// stops: then the listener closes at once (new callers are refused, not left hanging while
/// the server drains).
async fn accept_loop(
    agent: Arc<Agent>,
    listener: TcpListener,
    tls: Arc<Reloadable>,
    done: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let stopping = agent.stopped();
    tokio::pin!(stopping);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stopping => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of descriptors, most likely: wait a little rather than spin.
                tracing::warn!(error = %e, "HTTPS API accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "HTTPS API: too many handshakes at once; connection closed");
            continue;
        };
        let (tls, done) = (tls.clone(), done.clone());
        tokio::spawn(async move {
            // The slot is held until the stream is handed over (or given up), so the tasks
            // waiting on a full channel are counted too.
            match handshake(stream, &tls).await {
                Ok(stream) => {
                    let _ =
                        tokio::time::timeout(HANDSHAKE_DEADLINE, done.send((stream, peer))).await;
                    drop(slot);
                }
                // A stranger's failed handshake is not the operator's error.
                Err(why) => {
                    drop(slot);
                    tracing::debug!(%peer, %why, "HTTPS API: connection refused");
                }
            }
        });
    }
}

/// Finishes the TLS handshake of one connection within the deadline. A caller that speaks
/// plain HTTP is told to use `https://`.
async fn handshake(stream: TcpStream, tls: &Reloadable) -> Result<TlsStream<TcpStream>, String> {
    let work = async {
        let mut first = [0u8; 1];
        let n = stream.peek(&mut first).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before sending anything".to_string());
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            let mut stream = stream;
            let _ = stream.write_all(PLAIN_HTTP_ANSWER).await;
            let _ = stream.shutdown().await;
            return Err("plain HTTP on the HTTPS port".to_string());
        }
        let Some(acceptor) = tls.current().acceptor.clone() else {
            // Config refuses ports.https without a certificate; never serve without one.
            return Err("no certificate loaded".to_string());
        };
        tokio_rustls::TlsAcceptor::from(acceptor)
            .accept(stream)
            .await
            .map_err(|e| format!("TLS handshake failed: {e}"))
    };
    tokio::time::timeout(HANDSHAKE_DEADLINE, work)
        .await
        .map_err(|_| format!("handshake not done within {HANDSHAKE_DEADLINE:?}"))?
}

/// The completed TLS streams, as a listener for `axum::serve`.
struct Handshaken {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl axum::serve::Listener for Handshaken {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The accept loop ended (the agent is stopping): nothing more will come, and the
            // graceful shutdown ends the server.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
