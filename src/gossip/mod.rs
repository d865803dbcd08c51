//! Gossip membership: SWIM (foca) over our own UDP transport, full-state sync over TCP, member
//! metadata as custom broadcasts, and an authenticated-encryption envelope. See docs/gossip.md.
//!
//! # Layout
//! - [`identity`]: what a member is called and how foca tells incarnations apart.
//! - [`key`]: the `-encrypt` key and its parsing.
//! - [`keyring`]: several keys, one primary; the keyring file; cluster-wide key changes.
//! - [`envelope`]: framing, datacenter check and AES-GCM around every message.
//! - [`meta`]: tags and leave intents, versioned and spread with SWIM's messages.
//! - [`members`]: the member list operators see.
//! - [`sync`]: the TCP join handshake and anti-entropy.
//! - `core`: the sans-io state machine around foca: inputs in, effects out, no I/O.
//! - `driver`: the one task that owns the core, the UDP socket and the timer queue.
//! - [`stats`]: the counters of sent, received and dropped messages.
//!
//! Sockets are bound by the caller and passed in (so tests bind their own 127.0.0.x addresses);
//! [`Gossip::start`] spawns the tasks and returns a cheap, cloneable [`Gossip`] handle.

mod core;
mod driver;
pub mod envelope;
pub mod identity;
pub mod key;
pub mod keyring;
pub mod members;
pub mod meta;
pub mod stats;
pub mod sync;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use core::ForceLeaveError;
pub use envelope::{OpenError, Verify};
pub use identity::NodeIdentity;
pub use key::{GossipKey, KeyError};
pub use keyring::{Keyring, KeyringError, KeyringOp, KeyringReport, NodeAnswer};
pub use members::{Member, MemberStatus};
pub use meta::{Tags, MAX_TAGS_BYTES, NODE_META_PREFIX};
pub use sync::{Refusal, SyncError};

use driver::{Command, Driver};
use envelope::{Sealer, MAX_OVERHEAD};
use keyring::KeyringStore;
use stats::Stats;
use sync::Syncer;

/// Largest SWIM payload foca may put in one datagram. Encrypted, the datagram is at most
/// 1434 bytes plus the datacenter name: within a 1500-byte Ethernet MTU (IPv4 and UDP headers
/// included) for names up to 38 bytes, or 18 over IPv6. Longer names still work; the kernel
/// fragments.
pub const MAX_SWIM_PACKET: usize = 1400;
/// Largest datagram read at all; anything longer is counted as oversized and dropped.
pub const MAX_DATAGRAM: usize = MAX_SWIM_PACKET + MAX_OVERHEAD;

/// Protocol timings. The defaults are tuned for a LAN (and loopback tests); see docs/gossip.md.
#[derive(Debug, Clone)]
pub struct Timings {
    /// How often each member probes one other member. Consul: 1s (docs/reference/consul.md).
    pub probe_period: Duration,
    /// How long a direct probe waits before asking others to probe indirectly. Consul: 500ms
    /// (docs/reference/consul.md).
    pub probe_rtt: Duration,
    /// Suspicion lasts `suspicion_mult × max(1, log10 n) × probe_period` before "failed".
    pub suspicion_mult: f64,
    /// How often pending updates are pushed to 3 random members.
    pub gossip_interval: Duration,
    /// How often full state is exchanged with one random member over TCP. Consul: 30s
    /// (docs/reference/consul.md).
    pub anti_entropy_interval: Duration,
    /// Deadline of one TCP sync (connect, send, answer).
    pub sync_timeout: Duration,
    /// Longest a graceful leave waits for its intent to spread before going down.
    pub leave_propagate: Duration,
    /// How long a failed member is kept before it is reaped (forgotten). Consul's
    /// `reconnect_timeout`, 72 h (docs/reference/consul.md §4.2; docs/gossip.md, Reaping).
    pub reconnect_timeout: Duration,
    /// How long a member that left is kept before it is reaped. Serf's `tombstone_timeout`,
    /// 24 h (docs/gossip.md, Reaping).
    pub tombstone_timeout: Duration,
}

/// Consul's default `reconnect_timeout`.
pub const DEFAULT_RECONNECT_TIMEOUT: Duration = Duration::from_secs(72 * 3600);
/// Serf's default tombstone timeout.
pub const DEFAULT_TOMBSTONE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

impl Default for Timings {
    fn default() -> Self {
        Self {
            probe_period: Duration::from_millis(500),
            probe_rtt: Duration::from_millis(250),
            suspicion_mult: 2.0,
            gossip_interval: Duration::from_millis(100),
            anti_entropy_interval: Duration::from_secs(30),
            sync_timeout: Duration::from_secs(5),
            leave_propagate: Duration::from_secs(2),
            reconnect_timeout: DEFAULT_RECONNECT_TIMEOUT,
            tombstone_timeout: DEFAULT_TOMBSTONE_TIMEOUT,
        }
    }
}

/// What the gossip layer needs to start.
#[derive(Debug, Clone)]
pub struct GossipConfig {
    pub identity: NodeIdentity,
    pub datacenter: String,
    /// The keys, or `None` for plain gossip (docs/gossip.md, Keyring).
    pub keyring: Option<Keyring>,
    /// Where keyring changes are persisted (`<data_dir>/serf/local.keyring`); `None` keeps
    /// them in memory only.
    pub keyring_file: Option<PathBuf>,
    /// `encrypt_verify_incoming` / `encrypt_verify_outgoing`.
    pub verify: Verify,
    pub tags: Tags,
    pub timings: Timings,
}

/// A handle on the running gossip layer. Clones share it.
#[derive(Clone)]
pub struct Gossip {
    commands: mpsc::Sender<Command>,
    members: watch::Receiver<Arc<Vec<Member>>>,
    stats: Arc<Stats>,
    syncer: Syncer,
    encrypted: bool,
    leave_propagate: Duration,
    tasks: Arc<Vec<JoinHandle<()>>>,
    local: NodeIdentity,
    keyring: Arc<KeyringStore>,
}

impl Gossip {
    /// Starts gossip on already-bound sockets. Must be called inside a tokio runtime.
    pub fn start(config: GossipConfig, udp: UdpSocket, tcp: TcpListener) -> Gossip {
        let sealer = Arc::new(Sealer::with_keyring(
            &config.datacenter,
            config.keyring,
            config.verify,
        ));
        let keyring = Arc::new(KeyringStore {
            sealer: sealer.clone(),
            file: config.keyring_file,
            lock: Default::default(),
        });
        let stats = Arc::new(Stats::default());
        let udp = Arc::new(udp);
        let (commands_tx, commands_rx) = mpsc::channel::<Command>(4096);
        let (members_tx, members_rx) = watch::channel(Arc::new(Vec::new()));
        let syncer = Syncer {
            commands: commands_tx.clone(),
            sealer: sealer.clone(),
            stats: stats.clone(),
            timeout: config.timings.sync_timeout,
            bind_ip: tcp.local_addr().ok().map(|a| a.ip()),
            keyring: keyring.clone(),
        };
        let core = core::Core::new(core::CoreParts {
            identity: config.identity.clone(),
            tags: config.tags,
            timings: config.timings.clone(),
            sealer: sealer.clone(),
            stats: stats.clone(),
            rng: rand::make_rng(),
        });
        let driver = Driver {
            core,
            udp,
            stats: stats.clone(),
            syncer: syncer.clone(),
            members: members_tx,
        };
        let tasks = vec![
            tokio::spawn(driver.run(commands_rx)),
            tokio::spawn(syncer.clone().serve(tcp)),
        ];
        Gossip {
            commands: commands_tx,
            members: members_rx,
            stats,
            syncer,
            encrypted: sealer.encrypted(),
            leave_propagate: config.timings.leave_propagate,
            tasks: Arc::new(tasks),
            local: config.identity,
            keyring,
        }
    }

    /// Runs a keyring operation on this agent and on every other member listed alive or
    /// leaving (at most [`keyring::MAX_CONCURRENT_ASKS`] at a time, each within the sync
    /// deadline), and gathers every answer, this agent's first. Refused at once without a
    /// keyring (docs/gossip.md, Keyring).
    pub async fn keyring(&self, op: KeyringOp) -> Result<KeyringReport, KeyringError> {
        if !self.keyring.sealer.encrypted() {
            return Err(KeyringError::NotEnabled);
        }
        let mine = NodeAnswer {
            node: self.local.name.clone(),
            result: self.keyring.apply(&op).await.map_err(|e| e.to_string()),
        };
        let others: Vec<Member> = self
            .members()
            .iter()
            .filter(|m| m.name != self.local.name)
            .filter(|m| matches!(m.status, MemberStatus::Alive | MemberStatus::Leaving))
            .cloned()
            .collect();
        let gate = Arc::new(tokio::sync::Semaphore::new(keyring::MAX_CONCURRENT_ASKS));
        let op = Arc::new(op);
        let asks: Vec<_> = others
            .into_iter()
            .map(|m| {
                let (syncer, gate, op) = (self.syncer.clone(), gate.clone(), op.clone());
                let ask = tokio::spawn(async move {
                    let _turn = gate.acquire_owned().await;
                    syncer.ask_keyring(m.addr, &op).await
                });
                (m.name, ask)
            })
            .collect();
        let mut answers = vec![mine];
        for (node, ask) in asks {
            let result = ask
                .await
                .unwrap_or_else(|e| Err(format!("the ask failed: {e}")));
            answers.push(NodeAnswer { node, result });
        }
        Ok(KeyringReport { answers })
    }

    /// This agent's identity.
    pub fn local(&self) -> &NodeIdentity {
        &self.local
    }

    /// The member list now, this agent included, sorted by name.
    pub fn members(&self) -> Arc<Vec<Member>> {
        self.members.borrow().clone()
    }

    /// A receiver that wakes on every change of the member list.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Vec<Member>>> {
        self.members.clone()
    }

    /// Whether gossip is encrypted.
    pub fn encrypted(&self) -> bool {
        self.encrypted
    }

    /// Counters, by name.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        self.stats.snapshot()
    }

    /// Joins through every address at once; one result per address. A success means that agent
    /// answered the handshake and its state was merged.
    pub async fn join(&self, addrs: &[SocketAddr]) -> Vec<(SocketAddr, Result<usize, SyncError>)> {
        let mut tasks = Vec::new();
        for &addr in addrs {
            let syncer = self.syncer.clone();
            let local = self.local.addr;
            tasks.push(tokio::spawn(async move {
                if addr == local {
                    return (
                        addr,
                        Err(SyncError::Refused(
                            "that is this agent's own address".into(),
                        )),
                    );
                }
                (addr, syncer.sync_with(addr).await)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            if let Ok(r) = t.await {
                out.push(r);
            }
        }
        out
    }

    /// Replaces this agent's tags; the change spreads to every member.
    pub async fn set_tags(&self, tags: Tags) {
        let _ = self.commands.send(Command::SetTags(tags)).await;
    }

    /// Leaves gracefully: announces the leave, waits (at most the configured propagation time)
    /// for the announcement to be sent around, then declares itself down.
    pub async fn leave(&self) {
        if self.commands.send(Command::StartLeave).await.is_err() {
            return;
        }
        let deadline = Instant::now() + self.leave_propagate;
        let others_alive = self
            .members()
            .iter()
            .any(|m| m.name != self.local.name && m.status == MemberStatus::Alive);
        while others_alive && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (tx, rx) = oneshot::channel();
            if self.commands.send(Command::PushLeave(tx)).await.is_err() {
                return;
            }
            match rx.await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::FinishLeave(tx)).await.is_ok() {
            let _ = rx.await;
        }
        // Let the final "down" datagrams leave the socket buffer.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    /// Marks a failed member as left (and with `prune`, forgets it).
    pub async fn force_leave(&self, name: &str, prune: bool) -> Result<(), ForceLeaveError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::ForceLeave {
                name: name.to_string(),
                prune,
                reply: tx,
            })
            .await
            .map_err(|_| ForceLeaveError::Stopped)?;
        rx.await.map_err(|_| ForceLeaveError::Stopped)?
    }

    /// Stops every gossip task. Does not announce anything: call [`Gossip::leave`] first for that.
    pub async fn shutdown(&self) {
        for t in self.tasks.iter() {
            t.abort();
        }
    }
}
