//! The driver: the one task that owns the [`Core`] and does its I/O. It owns the UDP socket and
//! one ordered timer queue (a single `sleep_until` on the earliest deadline, not a task per
//! timer), takes commands (from the [`Gossip`](super::Gossip) handle and the TCP [`Syncer`]) on
//! one channel, and carries out every [`Effects`] the core returns: sends datagrams, arms timers,
//! spawns syncs, publishes the member list.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::core::{Core, Effects, ForceLeaveError, Timer};
use super::members::Member;
use super::meta::Tags;
use super::stats::Stats;
use super::sync::{Refusal, SyncState, Syncer};
use super::MAX_DATAGRAM;

/// What the handle and the syncer ask of the core, with a channel for the answer where there
/// is one.
pub(crate) enum Command {
    Snapshot(oneshot::Sender<SyncState>),
    SyncRequest {
        state: SyncState,
        reply: oneshot::Sender<Result<SyncState, Refusal>>,
    },
    SyncReply {
        state: SyncState,
        reply: oneshot::Sender<Result<usize, Refusal>>,
    },
    SetTags(Tags),
    StartLeave,
    PushLeave(oneshot::Sender<usize>),
    FinishLeave(oneshot::Sender<()>),
    ForceLeave {
        name: String,
        prune: bool,
        reply: oneshot::Sender<Result<(), ForceLeaveError>>,
    },
}

/// Timers by deadline; the sequence number keeps timers of one deadline in the order they were
/// asked for.
#[derive(Default)]
struct TimerQueue {
    due: BTreeMap<(Instant, u64), Timer>,
    next_seq: u64,
}

impl TimerQueue {
    fn push(&mut self, at: Instant, timer: Timer) {
        self.due.insert((at, self.next_seq), timer);
        self.next_seq += 1;
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.due.keys().next().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest timer if it is due at `now`.
    fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let entry = self.due.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        Some(entry.remove())
    }
}

/// The core with its I/O.
pub(super) struct Driver {
    pub(super) core: Core,
    pub(super) udp: Arc<UdpSocket>,
    pub(super) stats: Arc<Stats>,
    pub(super) syncer: Syncer,
    pub(super) members: watch::Sender<Arc<Vec<Member>>>,
}

impl Driver {
    /// Runs until every command sender is gone (or the task is aborted: [`Gossip::shutdown`]).
    ///
    /// [`Gossip::shutdown`]: super::Gossip::shutdown
    pub(super) async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut timers = TimerQueue::default();
        let fx = self.core.start();
        self.apply(fx, &mut timers);
        // One byte more than the limit, so an oversized datagram is seen as such, not truncated.
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let sleep = tokio::time::sleep_until(Instant::now());
        tokio::pin!(sleep);
        loop {
            let next = timers.next_deadline();
            if let Some(at) = next {
                if sleep.deadline() != at {
                    sleep.as_mut().reset(at);
                }
            }
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None => return,
                    Some(cmd) => {
                        let fx = self.command(cmd);
                        self.apply(fx, &mut timers);
                    }
                },
                received = self.udp.recv_from(&mut buf) => {
                    if let Some(fx) = self.datagram(received, &buf) {
                        self.apply(fx, &mut timers);
                    }
                },
                () = &mut sleep, if next.is_some() => {
                    let now = Instant::now();
                    while let Some(timer) = timers.pop_due(now) {
                        let fx = self.core.handle_timer(timer);
                        self.apply(fx, &mut timers);
                    }
                },
            }
        }
    }

    /// Counts a received datagram and passes it to the core, unless it is oversized.
    fn datagram(
        &mut self,
        received: std::io::Result<(usize, SocketAddr)>,
        buf: &[u8],
    ) -> Option<Effects> {
        let (len, from) = match received {
            Ok(x) => x,
            Err(e) => {
                // ICMP "port unreachable" surfaces here on Linux; it is not fatal.
                tracing::trace!(error = %e, "gossip UDP receive error");
                return None;
            }
        };
        self.stats.packets_received.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes_received
            .fetch_add(len as u64, Ordering::Relaxed);
        if len > MAX_DATAGRAM {
            self.stats.dropped_oversized.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%from, len, "dropped oversized gossip packet");
            return None;
        }
        Some(self.core.handle_datagram(&buf[..len], from))
    }

    /// Passes a command to the core and its answer back to the asker.
    fn command(&mut self, cmd: Command) -> Effects {
        match cmd {
            Command::Snapshot(reply) => {
                let _ = reply.send(self.core.snapshot());
                Effects::default()
            }
            Command::SyncRequest { state, reply } => {
                let (answer, fx) = self.core.handle_sync_request(state);
                let _ = reply.send(answer);
                fx
            }
            Command::SyncReply { state, reply } => {
                let (answer, fx) = self.core.handle_sync_reply(state);
                let _ = reply.send(answer);
                fx
            }
            Command::SetTags(tags) => self.core.set_tags(tags),
            Command::StartLeave => self.core.start_leave(),
            Command::PushLeave(reply) => {
                let (backlog, fx) = self.core.push_leave();
                let _ = reply.send(backlog);
                fx
            }
            Command::FinishLeave(reply) => {
                let fx = self.core.finish_leave();
                let _ = reply.send(());
                fx
            }
            Command::ForceLeave { name, prune, reply } => {
                let (answer, fx) = self.core.force_leave(&name, prune);
                let _ = reply.send(answer);
                fx
            }
        }
    }

    /// Carries out one input's effects.
    fn apply(&mut self, fx: Effects, timers: &mut TimerQueue) {
        for (to, packet) in fx.datagrams {
            match self.udp.try_send_to(&packet, to) {
                Ok(n) => {
                    self.stats.packets_sent.fetch_add(1, Ordering::Relaxed);
                    self.stats.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) => tracing::trace!(%to, error = %e, "gossip send failed"),
            }
        }
        let now = Instant::now();
        for (after, timer) in fx.timers {
            timers.push(now + after, timer);
        }
        for addr in fx.syncs {
            let syncer = self.syncer.clone();
            tokio::spawn(async move {
                if let Err(e) = syncer.sync_with(addr).await {
                    tracing::debug!(%addr, error = %e, "anti-entropy sync failed");
                }
            });
        }
        if let Some(list) = fx.members {
            self.members.send_replace(list);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_come_out_by_deadline_then_in_the_order_asked() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        q.push(t0 + Duration::from_millis(20), Timer::AntiEntropy);
        let probe = |n| Timer::Swim(foca::Timer::ProbeRandomMember(n));
        q.push(t0 + Duration::from_millis(10), probe(1));
        q.push(t0 + Duration::from_millis(10), probe(2));
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(q.pop_due(t0), None, "nothing is due yet");
        let now = t0 + Duration::from_millis(15);
        assert_eq!(q.pop_due(now), Some(probe(1)));
        assert_eq!(q.pop_due(now), Some(probe(2)));
        assert_eq!(q.pop_due(now), None);
        assert_eq!(
            q.pop_due(t0 + Duration::from_millis(20)),
            Some(Timer::AntiEntropy)
        );
        assert_eq!(q.next_deadline(), None);
    }
}
