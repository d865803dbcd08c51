//! The server RPC port (8300): framing, a connection pool for callers, and the listener.
//!
//! Frames are `u32 big-endian length ‖ postcard(Frame)` (docs/servers.md). A connection carries
//! many requests at once; answers are matched to callers by request id, so one slow request
//! (a snapshot) does not hold up heartbeats behind it.
//!
//! Nothing here waits without a deadline (docs/servers.md, "Deadlines and limits"): a call's
//! deadline covers connecting, queueing and the answer; a write that does not complete within
//! [`WRITE_TIMEOUT`] closes the connection; a connection with calls outstanding that hears
//! nothing is pinged and closed when the ping goes unanswered ([`PING_TIMEOUT`]); sockets keep
//! TCP keepalive on. The listener caps connections per client address
//! ([`MAX_CONNS_PER_CLIENT`]), closes idle ones ([`IDLE_TIMEOUT`]) and cuts off a frame that
//! stalls halfway ([`FRAME_TIMEOUT`]).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;

use super::protocol::{Answer, Request, Response};
use crate::frame::FrameError;
use crate::tls::rpc::{plain, Refused, Role, RpcTls};

/// Largest frame accepted, an answer (an operator snapshot) or a request; each kind of request
/// has a smaller limit of its own (`rpc_guard`, docs/servers.md "A hostile network").
pub const MAX_FRAME: usize = 64 << 20;

/// Longest one write to a connection may take (a burst of frames, at most a few MiB). A peer
/// that stops reading fills the socket buffers and the write stalls: past this the connection
/// is closed, on both sides of the port, and every call still waiting on it fails at once.
/// 10 s is yamux's `ConnectionWriteTimeout`, which Consul's RPC connections use.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest the rest of a frame may take once its first byte has arrived: a peer that sends
/// half a frame and stalls is cut off. Equal to [`WRITE_TIMEOUT`], the sender's own limit.
pub const FRAME_TIMEOUT: Duration = WRITE_TIMEOUT;

/// Silence on a connection with calls outstanding after which the caller pings the server.
pub const SILENCE_BEFORE_PING: Duration = Duration::from_secs(1);

/// Longest a ping may go unanswered before the connection is declared dead and every call on
/// it fails (the caller then tries another server). A server answers a ping on its own task
/// even while a write waits for its commit, so only a stopped process, a dead host or a lost
/// network misses it. 1 s of silence plus 2 s fits three tries inside the callers' 7 s hold.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Connections one client address may hold open on the server RPC port; the next ones are
/// closed at once. Consul's `limits.rpc_max_conns_per_client` default. An agent uses one
/// connection per server, so only a broken or hostile host reaches it.
pub const MAX_CONNS_PER_CLIENT: usize = 100;

/// An inbound connection with nothing in flight and no frame for this long is closed.
/// Callers drop their own idle connections sooner ([`CLIENT_IDLE`]), so this reclaims only
/// connections their owner forgot.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A pooled connection unused for this long is closed and dialled anew on the next call,
/// before the server's [`IDLE_TIMEOUT`] could close it under a request.
pub const CLIENT_IDLE: Duration = Duration::from_secs(20);

/// TCP keepalive on every RPC socket: first probe after 15 s of silence, then every 5 s, and
/// the kernel drops the connection after 3 unanswered probes (Go's dialer, which Consul uses,
/// probes after 15 s). Without it a peer host that vanished leaves an idle pooled connection
/// open for Linux's default of 2 hours.
const KEEPALIVE: (Duration, Duration, u32) = (Duration::from_secs(15), Duration::from_secs(5), 3);

/// At most one line per this long about connections refused over the cap.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

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

/// Turns on TCP keepalive ([`KEEPALIVE`]) on an RPC socket. A failure only costs the early
/// detection of a dead peer, so it is logged and the connection used anyway.
fn keep_alive(stream: &TcpStream) {
    let (time, interval, retries) = KEEPALIVE;
    let params = socket2::TcpKeepalive::new()
        .with_time(time)
        .with_interval(interval)
        .with_retries(retries);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&params) {
        tracing::debug!(error = %e, "cannot turn on TCP keepalive on a server RPC socket");
    }
}

/// Writes the frames queued on `rx` to `w` until either side closes. Frames waiting together
/// go out in one write (a length prefix and a body each), so a busy connection costs one
/// syscall per burst rather than two per frame. Returns why it stopped, if not because the
/// queue was closed: a failed write, or one that took longer than [`WRITE_TIMEOUT`].
async fn pump_frames<W: AsyncWriteExt + Unpin>(
    mut rx: mpsc::Receiver<Vec<u8>>,
    mut w: W,
    writing: impl Fn(bool),
) -> Result<(), String> {
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
        writing(true);
        let wrote = tokio::time::timeout(WRITE_TIMEOUT, w.write_all(&buf)).await;
        writing(false);
        match wrote {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("write failed: {e}")),
            Err(_) => {
                return Err(format!(
                    "a write did not complete within {WRITE_TIMEOUT:?}: the peer stopped reading"
                ))
            }
        }
        buf.clear();
        if buf.capacity() > BURST {
            buf.shrink_to(64 << 10);
        }
    }
    Ok(())
}

/// Read buffer of a connection: many small frames arrive per read.
const READ_BUFFER: usize = 64 << 10;

/// Reads one frame of at most [`MAX_FRAME`] bytes.
async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> Result<Vec<u8>, FrameError> {
    crate::frame::read_frame(r, MAX_FRAME).await
}

type Pending = Mutex<HashMap<u64, oneshot::Sender<Response>>>;

/// What the tasks of one outbound connection share.
struct ConnState {
    /// The calls waiting for an answer, by request id.
    pending: Pending,
    alive: AtomicBool,
    /// Why the connection was closed, for the calls it fails.
    closed_why: Mutex<Option<String>>,
    /// When a frame last arrived: the server's last sign of life.
    last_read: Mutex<Instant>,
    /// Whether a write is going out now: while it does, the server is still reading, and its
    /// silence means nothing yet.
    writing: AtomicBool,
    /// When a call last used the connection (for [`CLIENT_IDLE`]).
    last_used: Mutex<Instant>,
    /// The reader, writer and liveness tasks, stopped when the connection is closed.
    tasks: Mutex<Vec<AbortHandle>>,
}

impl ConnState {
    fn read(&self) {
        *self.last_read.lock().expect("read lock") = Instant::now();
    }

    /// Closes the connection: later calls dial again, and every call waiting on it fails now
    /// with `why`.
    fn close(&self, why: String) {
        if self.alive.swap(false, Ordering::Relaxed) {
            *self.closed_why.lock().expect("closed lock") = Some(why);
        }
        // Dropping the senders fails every call still waiting on this connection.
        self.pending.lock().expect("pending lock").clear();
        for t in self.tasks.lock().expect("tasks lock").drain(..) {
            t.abort();
        }
    }

    fn why(&self) -> String {
        self.closed_why
            .lock()
            .expect("closed lock")
            .clone()
            .unwrap_or_else(|| "connection lost".into())
    }
}

struct Conn {
    out: mpsc::Sender<Vec<u8>>,
    state: Arc<ConnState>,
}

impl Drop for Conn {
    /// The pool replaced this connection: its tasks must not outlive it (the writer ends by
    /// itself once `out` is dropped, the reader and the liveness watch would not).
    fn drop(&mut self) {
        self.state.close("replaced".into());
    }
}

/// Persistent connections to other servers, one per address, re-dialled when broken.
pub struct RpcClient {
    conns: Mutex<HashMap<String, Arc<Conn>>>,
    next_id: Arc<AtomicU64>,
    bind_ip: Option<IpAddr>,
    /// TLS for outgoing connections (docs/security.md, Outbound); `None`: plaintext.
    tls: Option<Arc<RpcTls>>,
}

impl RpcClient {
    /// `bind_ip`: source address of outgoing connections (the agent's bind address); `tls`:
    /// the server port's TLS, which decides whether connections are dialled with TLS.
    pub fn new(bind_ip: Option<IpAddr>, tls: Option<Arc<RpcTls>>) -> Arc<Self> {
        Arc::new(Self {
            conns: Mutex::new(HashMap::new()),
            next_id: Arc::new(AtomicU64::new(1)),
            bind_ip,
            tls,
        })
    }

    async fn dial(&self, addr: &str) -> Result<Arc<Conn>, RpcError> {
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
        // The caller's deadline bounds the connect (`call`).
        let stream = socket
            .connect(target)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        keep_alive(&stream);
        let (rd, wr) = match &self.tls {
            Some(tls) => tls.connect(stream).await.map_err(unreachable)?,
            None => plain(stream),
        };
        let mut rd = tokio::io::BufReader::with_capacity(READ_BUFFER, rd);
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(1024);
        let state = Arc::new(ConnState {
            pending: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
            closed_why: Mutex::new(None),
            last_read: Mutex::new(Instant::now()),
            writing: AtomicBool::new(false),
            last_used: Mutex::new(Instant::now()),
            tasks: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let writer = tokio::spawn(async move {
            let why = pump_frames(out_rx, wr, |w| st.writing.store(w, Ordering::Relaxed)).await;
            st.close(why.err().unwrap_or_else(|| "closed".into()));
        });
        let st = state.clone();
        let reader = tokio::spawn(async move {
            let why = loop {
                let bytes = match read_frame(&mut rd).await {
                    Ok(b) => b,
                    Err(e) => break e.to_string(),
                };
                st.read();
                let Ok(frame) = postcard::from_bytes::<Frame<Response>>(&bytes) else {
                    break "malformed answer".to_string();
                };
                if let Some(tx) = st.pending.lock().expect("pending lock").remove(&frame.id) {
                    let _ = tx.send(frame.body);
                }
            };
            st.close(why);
        });
        let liveness = tokio::spawn(watch_liveness(
            state.clone(),
            out_tx.downgrade(),
            self.next_id.clone(),
        ));
        state.tasks.lock().expect("tasks lock").extend([
            writer.abort_handle(),
            reader.abort_handle(),
            liveness.abort_handle(),
        ]);
        if !state.alive.load(Ordering::Relaxed) {
            // A task closed it before its handles were stored: stop the rest now.
            state.close(state.why());
        }
        Ok(Arc::new(Conn { out: out_tx, state }))
    }

    async fn conn(&self, addr: &str) -> Result<Arc<Conn>, RpcError> {
        if let Some(c) = self.conns.lock().expect("conns lock").get(addr) {
            let idle = c.state.last_used.lock().expect("used lock").elapsed();
            if c.state.alive.load(Ordering::Relaxed) && idle < CLIENT_IDLE {
                return Ok(c.clone());
            }
        }
        let c = self.dial(addr).await?;
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

    /// Sends `req` to the server at `addr` and returns its answer, all within `timeout`:
    /// connecting, queueing the request behind others and waiting for the answer.
    async fn call(
        &self,
        addr: &str,
        req: Request,
        timeout: Duration,
    ) -> Result<Response, RpcError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let timed_out = || RpcError::Timeout {
            addr: addr.into(),
            timeout,
        };
        let conn = tokio::time::timeout_at(deadline, self.conn(addr))
            .await
            .map_err(|_| RpcError::Unreachable {
                addr: addr.into(),
                reason: format!("connect timed out after {timeout:?}"),
            })??;
        *conn.state.last_used.lock().expect("used lock") = Instant::now();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes =
            postcard::to_allocvec(&Frame { id, body: req }).map_err(|e| RpcError::Closed {
                addr: addr.into(),
                reason: format!("cannot encode: {e}"),
            })?;
        let (tx, rx) = oneshot::channel();
        conn.state
            .pending
            .lock()
            .expect("pending lock")
            .insert(id, tx);
        let forget = || {
            conn.state.pending.lock().expect("pending lock").remove(&id);
        };
        match tokio::time::timeout_at(deadline, conn.out.send(bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                forget();
                return Err(RpcError::Closed {
                    addr: addr.into(),
                    reason: conn.state.why(),
                });
            }
            Err(_) => {
                // The queue stayed full: the writer is stuck behind a peer that stopped
                // reading (its write timeout closes the connection soon).
                forget();
                return Err(timed_out());
            }
        }
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(RpcError::Closed {
                addr: addr.into(),
                reason: conn.state.why(),
            }),
            Err(_) => {
                forget();
                Err(timed_out())
            }
        }
    }
}

/// Watches one outbound connection: while calls wait on it and nothing has arrived for
/// [`SILENCE_BEFORE_PING`], it sends a ping (`PeerStatus`, which every server answers at
/// once); if nothing arrives within [`PING_TIMEOUT`] of it, the connection is closed and its
/// calls fail, whatever their own deadlines (a blocking read may wait minutes). This is what
/// tells a stopped server, whose kernel still accepts and acknowledges, from a slow one.
async fn watch_liveness(
    state: Arc<ConnState>,
    out: mpsc::WeakSender<Vec<u8>>,
    next_id: Arc<AtomicU64>,
) {
    const TICK: Duration = Duration::from_millis(250);
    let mut ping: Option<(u64, Instant)> = None;
    loop {
        tokio::time::sleep(TICK).await;
        if !state.alive.load(Ordering::Relaxed) {
            return;
        }
        let last_read = *state.last_read.lock().expect("read lock");
        let waiting = {
            let pending = state.pending.lock().expect("pending lock");
            pending.keys().any(|id| Some(*id) != ping.map(|p| p.0))
        };
        match ping {
            Some((_, sent)) if last_read >= sent => ping = None,
            Some((_, sent)) if sent.elapsed() >= PING_TIMEOUT => {
                state.close(format!(
                    "no answer to a ping within {PING_TIMEOUT:?}: the server is stopped, or \
                     its host or the network is down"
                ));
                return;
            }
            Some(_) => {}
            None if waiting && last_read.elapsed() >= SILENCE_BEFORE_PING => {
                let Some(out) = out.upgrade() else { return };
                // Only once everything before it is out: the ping's clock must not run while
                // a large frame ahead of it is still being written (and read).
                let busy =
                    state.writing.load(Ordering::Relaxed) || out.capacity() < out.max_capacity();
                if busy {
                    continue;
                }
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let Ok(bytes) = postcard::to_allocvec(&Frame {
                    id,
                    body: Request::PeerStatus,
                }) else {
                    return;
                };
                let (tx, _rx) = oneshot::channel();
                state.pending.lock().expect("pending lock").insert(id, tx);
                if out.try_send(bytes).is_err() {
                    return; // the queue closed meanwhile
                }
                ping = Some((id, Instant::now()));
            }
            None => {}
        }
        if let Some((id, _)) = ping.filter(|_| !waiting) {
            // Nothing waits any more: the ping's answer no longer matters.
            state.pending.lock().expect("pending lock").remove(&id);
            ping = None;
        }
    }
}

/// How many connections each client address holds on one listener, and the refusals not yet
/// logged.
#[derive(Default)]
struct Admission {
    per_client: HashMap<IpAddr, usize>,
    /// When a refusal was last logged, and how many came since.
    refusals: Option<(Instant, u64)>,
}

/// One admitted connection: gives its slot back when the connection ends, however it ends.
struct Slot {
    admission: Arc<Mutex<Admission>>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut a = self.admission.lock().expect("admission lock");
        if let Some(n) = a.per_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                a.per_client.remove(&self.ip);
            }
        }
    }
}

/// Admits a connection from `ip` if it holds fewer than [`MAX_CONNS_PER_CLIENT`]; a refusal
/// is logged at most once per [`REFUSAL_LOG_EVERY`], with the count since the last line.
fn admit(admission: &Arc<Mutex<Admission>>, ip: IpAddr) -> Option<Slot> {
    let mut a = admission.lock().expect("admission lock");
    let n = a.per_client.entry(ip).or_insert(0);
    if *n < MAX_CONNS_PER_CLIENT {
        *n += 1;
        return Some(Slot {
            admission: admission.clone(),
            ip,
        });
    }
    let now = Instant::now();
    match &mut a.refusals {
        Some((at, count)) if at.elapsed() < REFUSAL_LOG_EVERY => *count += 1,
        other => {
            let earlier = other.map(|(_, c)| c).unwrap_or(0);
            tracing::warn!(
                client = %ip, earlier_refusals = earlier,
                "server RPC: refusing connections from {ip}: it already holds \
                 {MAX_CONNS_PER_CLIENT}, the per-client limit (a broken or hostile host; an \
                 agent needs one per server); further refusals are logged at most every {}s",
                REFUSAL_LOG_EVERY.as_secs()
            );
            *other = Some((now, 0));
        }
    }
    None
}

/// Serves the RPC port: each request is handled on its own task by `handle`. With `tls`, each
/// connection is TLS or plaintext as docs/security.md says, and a caller whose certificate does
/// not make it a server may not send what only servers send.
pub async fn serve<H, F>(listener: TcpListener, tls: Option<Arc<RpcTls>>, handle: H)
where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let admission = Arc::new(Mutex::new(Admission::default()));
    let total = super::rpc_guard::ConnCap::new(super::rpc_guard::max_inbound_conns());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "server RPC accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Over a cap: dropping the stream closes it at once.
        let Some(ticket) = total.admit(peer.ip()) else {
            continue;
        };
        let Some(slot) = admit(&admission, peer.ip()) else {
            continue;
        };
        let (handle, tls) = (handle.clone(), tls.clone());
        tokio::spawn(async move {
            serve_conn(stream, peer, tls, handle).await;
            drop((slot, ticket));
        });
    }
}

/// Resolves once the connection has been idle for [`IDLE_TIMEOUT`]: nothing in flight and no
/// frame or answer since.
async fn idle(in_flight: &AtomicUsize, last_activity: &Mutex<Instant>) {
    loop {
        let since = last_activity.lock().expect("activity lock").elapsed();
        let left = IDLE_TIMEOUT.saturating_sub(since);
        if left.is_zero() && in_flight.load(Ordering::Relaxed) == 0 {
            return;
        }
        tokio::time::sleep(left.max(Duration::from_secs(1))).await;
    }
}

async fn serve_conn<H, F>(stream: TcpStream, peer: SocketAddr, tls: Option<Arc<RpcTls>>, handle: H)
where
    H: Fn(Request) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let _ = stream.set_nodelay(true);
    keep_alive(&stream);
    let (rd, wr, role) = match &tls {
        Some(t) => match t.accept(stream, FRAME_TIMEOUT).await {
            Ok(x) => x,
            Err(why) => {
                t.log_refusal(Refused::Connection, peer, &why);
                return;
            }
        },
        None => {
            let (r, w) = plain(stream);
            (r, w, Role::Anonymous)
        }
    };
    let mut rd = tokio::io::BufReader::with_capacity(READ_BUFFER, rd);
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(1024);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let last_activity = Arc::new(Mutex::new(Instant::now()));
    let mut writer = tokio::spawn(pump_frames(out_rx, wr, |_| {}));
    loop {
        // The next frame's first byte, or idleness, or a writer that gave up.
        let started = tokio::select! {
            r = async { rd.fill_buf().await.map(|b| !b.is_empty()) } => r,
            _ = idle(&in_flight, &last_activity) => {
                tracing::debug!(%peer, "server RPC connection idle for {IDLE_TIMEOUT:?}; closing it");
                break;
            }
            w = &mut writer => {
                if let Ok(Err(why)) = w {
                    tracing::debug!(%peer, "server RPC connection closed: {why}");
                }
                return;
            }
        };
        if !matches!(started, Ok(true)) {
            break;
        }
        let read = super::rpc_guard::read_request(&mut rd, MAX_FRAME);
        let bytes = match tokio::time::timeout(FRAME_TIMEOUT, read).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                if e.is_refusal() {
                    tracing::debug!(%peer, "{e}; closing the server RPC connection");
                }
                break;
            }
            Err(_) => {
                tracing::debug!(%peer, "a server RPC frame stalled for {FRAME_TIMEOUT:?} halfway; closing the connection");
                break;
            }
        };
        *last_activity.lock().expect("activity lock") = Instant::now();
        let frame: Frame<Request> = match postcard::from_bytes(&bytes) {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "malformed server RPC frame; closing the connection");
                break;
            }
        };
        if let Some(t) = tls
            .as_ref()
            .filter(|t| !t.permits(role, frame.body.server_only()))
        {
            t.log_refusal(
                Refused::Request,
                peer,
                &format!(
                    "it sent {}, which only servers send, and its certificate does not name \
                     the servers' name (verify_server_hostname); connection closed",
                    frame.body.kind()
                ),
            );
            break;
        }
        let (handle, out) = (handle.clone(), out_tx.clone());
        let (in_flight, last_activity) = (in_flight.clone(), last_activity.clone());
        in_flight.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let body = handle(frame.body).await;
            if let Ok(bytes) = postcard::to_allocvec(&Frame { id: frame.id, body }) {
                let _ = out.send(bytes).await;
            }
            *last_activity.lock().expect("activity lock") = Instant::now();
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    drop(out_tx);
    // Answers still being computed hold their own senders; the writer must not wait for them
    // past the point the connection is given up.
    writer.abort();
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
        let pump = tokio::spawn(pump_frames(rx, a, |_| {}));
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
        pump.await.unwrap().unwrap();
        assert!(
            read_frame(&mut rd).await.is_err(),
            "nothing after the last frame"
        );
    }
}
