//! The server RPC port (8300): framing, a connection pool for callers, and the listener.
//!
//! Frames are `u32 big-endian length ‖ postcard(Frame)` (docs/servers.md). A connection carries
//! many requests at once; answers are matched to callers by request id, so one slow request
//! (a snapshot) does not hold up heartbeats behind it.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::protocol::{Answer, Request, Response};
use crate::frame::FrameError;

/// Largest frame accepted (a snapshot chunk or a large append fits well below).
pub const MAX_FRAME: usize = 64 << 20;

#[derive(Serialize, Deserialize)]
struct Frame<T> {
    id: u64,
    body: T,
}

/// Why a call failed. `Unreachable` means "back off", the others "retry when it suits".
/// Callers that forward requests see every variant as "the server did not answer": try
/// another server, or the same one later.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RpcError {
    /// No connection could be made. Back off: the server is down or not listening.
    #[error("cannot connect to {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    /// Connected, but no answer in time. Retry when it suits: the server may be busy.
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
    /// The connection broke before the answer came. Retry: the next call dials again.
    #[error("connection to {addr} closed: {reason}")]
    Closed { addr: String, reason: String },
    /// The server answered with another kind of answer than the request calls for: it runs
    /// an incompatible version. Treat it as unreachable.
    #[error("unexpected answer from {addr}")]
    UnexpectedAnswer { addr: String },
}

/// Writes the frames queued on `rx` to `w` until either side closes. Frames waiting together
/// go out in one write (a length prefix and a body each), so a busy connection costs one
/// syscall per burst rather than two per frame.
async fn pump_frames<W: AsyncWriteExt + Unpin>(mut rx: mpsc::Receiver<Vec<u8>>, mut w: W) {
    /// A burst stops growing here; the rest goes in the next write.
    const BURST: usize = 1 << 20;
    let mut buf = Vec::with_capacity(64 << 10);
    while let Some(first) = rx.recv().await {
        let mut frame = Some(first);
        while let Some(f) = frame.take() {
            crate::frame::put_frame(&mut buf, &f);
            if buf.len() < BURST {
                frame = rx.try_recv().ok();
            }
        }
        if w.write_all(&buf).await.is_err() {
            return;
        }
        buf.clear();
        if buf.capacity() > BURST {
            buf.shrink_to(64 << 10);
        }
    }
}

/// Read buffer of a connection: many small frames arrive per read.
const READ_BUFFER: usize = 64 << 10;

/// Reads one frame of at most [`MAX_FRAME`] bytes.
async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<Vec<u8>, FrameError> {
    crate::frame::read_frame(r, MAX_FRAME).await
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

struct Conn {
    out: mpsc::Sender<Vec<u8>>,
    pending: Pending,
    alive: Arc<AtomicBool>,
}

/// Persistent connections to other servers, one per address, re-dialled when broken.
pub struct RpcClient {
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    next_id: AtomicU64,
    bind_ip: Option<IpAddr>,
}

impl RpcClient {
    /// `bind_ip`: source address of outgoing connections (the agent's bind address).
    pub fn new(bind_ip: Option<IpAddr>) -> Arc<Self> {
        Arc::new(Self {
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            bind_ip,
        })
    }

    async fn dial(&self, addr: &str, timeout: Duration) -> Result<Arc<Conn>, RpcError> {
        let unreachable = |reason: String| RpcError::Unreachable {
            addr: addr.to_string(),
            reason,
        };
        let target: SocketAddr = addr
            .parse()
            .map_err(|_| unreachable("not an ip:port address".into()))?;
        let socket = if target.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(|e| unreachable(e.to_string()))?;
        if let Some(ip) = self
            .bind_ip
            .filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == target.is_ipv4())
        {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| unreachable(e.to_string()))?;
        }
        let stream = tokio::time::timeout(timeout, socket.connect(target))
            .await
            .map_err(|_| unreachable("connect timed out".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        let mut rd = tokio::io::BufReader::with_capacity(READ_BUFFER, rd);
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(1024);
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let alive = Arc::new(AtomicBool::new(true));
        let a = alive.clone();
        tokio::spawn(async move {
            pump_frames(out_rx, wr).await;
            a.store(false, Ordering::Relaxed);
        });
        let (p, a) = (pending.clone(), alive.clone());
        tokio::spawn(async move {
            while let Ok(bytes) = read_frame(&mut rd).await {
                let Ok(frame) = postcard::from_bytes::<Frame<Response>>(&bytes) else {
                    break;
                };
                if let Some(tx) = p.lock().expect("pending lock").remove(&frame.id) {
                    let _ = tx.send(frame.body);
                }
            }
            a.store(false, Ordering::Relaxed);
            // Dropping the senders fails every call still waiting on this connection.
            p.lock().expect("pending lock").clear();
        });
        Ok(Arc::new(Conn {
            out: out_tx,
            pending,
            alive,
        }))
    }

    async fn conn(&self, addr: &str, timeout: Duration) -> Result<Arc<Conn>, RpcError> {
        if let Some(c) = self.conns.lock().expect("conns lock").get(addr) {
            if c.alive.load(Ordering::Relaxed) {
                return Ok(c.clone());
            }
        }
        let c = self.dial(addr, timeout).await?;
        self.conns
            .lock()
            .expect("conns lock")
            .insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Sends `request` to the server at `addr` and waits at most `deadline` for its answer,
    /// which must be of the kind `A` the caller expects.
    pub async fn ask<A: Answer>(
        &self,
        addr: &str,
        request: Request,
        deadline: Duration,
    ) -> Result<A, RpcError> {
        let answer = self.call(addr, request, deadline).await?;
        A::from_response(answer).ok_or_else(|| RpcError::UnexpectedAnswer { addr: addr.into() })
    }

    /// Sends `req` to the server at `addr` and waits at most `timeout` for its answer.
    async fn call(
        &self,
        addr: &str,
        req: Request,
        timeout: Duration,
    ) -> Result<Response, RpcError> {
        let conn = self.conn(addr, timeout).await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes =
            postcard::to_allocvec(&Frame { id, body: req }).map_err(|e| RpcError::Closed {
                addr: addr.into(),
                reason: format!("cannot encode: {e}"),
            })?;
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().expect("pending lock").insert(id, tx);
        if conn.out.send(bytes).await.is_err() {
            conn.pending.lock().expect("pending lock").remove(&id);
            return Err(RpcError::Closed {
                addr: addr.into(),
                reason: "writer stopped".into(),
            });
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(RpcError::Closed {
                addr: addr.into(),
                reason: "connection lost".into(),
            }),
            Err(_) => {
                conn.pending.lock().expect("pending lock").remove(&id);
                Err(RpcError::Timeout {
                    addr: addr.into(),
                    timeout,
                })
            }
        }
    }
}

/// Serves the RPC port: each request is handled on its own task by `handle`.
pub async fn serve<H, F>(listener: TcpListener, handle: H)
where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "server RPC accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(serve_conn(stream, peer, handle));
    }
}

async fn serve_conn<H, F>(stream: TcpStream, peer: SocketAddr, handle: H)
where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let mut rd = tokio::io::BufReader::with_capacity(READ_BUFFER, rd);
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(1024);
    let writer = tokio::spawn(pump_frames(out_rx, wr));
    loop {
        let bytes = match read_frame(&mut rd).await {
            Ok(b) => b,
            Err(_) => break,
        };
        let frame: Frame<Request> = match postcard::from_bytes(&bytes) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "malformed server RPC frame; closing the connection");
                break;
            }
        };
        let (handle, out) = (handle.clone(), out_tx.clone());
        tokio::spawn(async move {
            let body = handle(frame.body).await;
            if let Ok(bytes) = postcard::to_allocvec(&Frame { id: frame.id, body }) {
                let _ = out.send(bytes).await;
            }
        });
    }
    drop(out_tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames queued together leave in bursts and arrive whole and in order, the ones over a
    /// burst's size included.
    #[tokio::test]
    async fn bursts_of_frames_arrive_whole_and_in_order() {
        let (a, b) = tokio::io::duplex(1 << 16);
        let (tx, rx) = mpsc::channel::<Vec<u8>>(1024);
        let pump = tokio::spawn(pump_frames(rx, a));
        let sizes: Vec<usize> = (0..200)
            .map(|i| if i % 50 == 7 { 3 << 20 } else { i })
            .collect();
        for (i, n) in sizes.iter().enumerate() {
            tx.send(vec![i as u8; *n]).await.unwrap();
        }
        drop(tx);
        let mut rd = tokio::io::BufReader::with_capacity(READ_BUFFER, b);
        for (i, n) in sizes.iter().enumerate() {
            let f = read_frame(&mut rd).await.unwrap();
            assert_eq!(f.len(), *n, "frame {i}");
            assert!(f.iter().all(|x| *x == i as u8), "frame {i}");
        }
        pump.await.unwrap();
        assert!(
            read_frame(&mut rd).await.is_err(),
            "nothing after the last frame"
        );
    }
}
