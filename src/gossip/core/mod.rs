//! The sans-io gossip core: foca, the member table and the metadata records, with no socket, no
//! clock and no task. Like foca itself, it is driven from outside: every input is one method
//! (a datagram, a timer firing, a sync request or its result, a command) and every method
//! returns the [`Effects`] the caller must carry out: datagrams to send, timers to arm, syncs to
//! run, a new member list to publish. The [driver](super::driver) does that with real I/O; the
//! unit tests in `tests.rs` do it by hand, passing datagrams between cores and advancing a fake
//! clock, as foca's own tests do.
//!
//! - this file: construction, the inputs and how foca's requests become [`Effects`].
//! - `table.rs`: the member table and metadata records, how they react to SWIM and syncs.
//! - `reap.rs`: forgetting failed and left members after their timeouts (docs/gossip.md,
//!   Reaping).

mod reap;
mod table;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foca::{Foca, OwnedNotification, PostcardCodec};
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, IteratorRandom};
use rand::SeedableRng;

use super::envelope::{Kind, OpenError, Sealer};
use super::identity::NodeIdentity;
use super::members::{Member, MemberStatus};
use super::meta::{MemberMeta, MetaHandler, MetaStore, Tags};
use super::stats::Stats;
use super::sync::{Refusal, SyncState};
use super::{Timings, MAX_SWIM_PACKET};

type Swim = Foca<NodeIdentity, PostcardCodec, StdRng, MetaHandler>;

/// Everything a [`Core`] is made of, in one value.
pub(crate) struct CoreParts {
    /// Who this agent is.
    pub identity: NodeIdentity,
    /// This agent's tags at start.
    pub tags: Tags,
    /// Protocol timings: foca's probe and suspicion periods, anti-entropy.
    pub timings: Timings,
    /// Seals outgoing and opens incoming datagrams (datacenter and key).
    pub sealer: Arc<Sealer>,
    /// Counters of dropped datagrams; shared with the driver, which counts the I/O.
    pub stats: Arc<Stats>,
    /// foca's randomness and the anti-entropy peer choice; tests pass a seeded one.
    pub rng: StdRng,
}

/// A timer the core asked for, handed back through [`Core::handle_timer`] when it is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Timer {
    /// One of foca's: probes, suspicion, periodic gossip.
    Swim(foca::Timer<NodeIdentity>),
    /// Time for a full-state sync with a random live member.
    AntiEntropy,
    /// A member has been failed (or left) for its whole timeout: forget it, unless its status
    /// changed since (`token` is then stale).
    Reap { name: String, token: u64 },
    /// Time to announce this agent to one member it lists failed (healing a partition).
    AnnounceToFailed,
}

/// What the caller must do after an input, in order.
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// Sealed datagrams, each to its address.
    pub datagrams: Vec<(SocketAddr, Vec<u8>)>,
    /// Timers to hand back to [`Core::handle_timer`] once each delay has passed.
    pub timers: Vec<(Duration, Timer)>,
    /// Full-state syncs (TCP) to run with these members.
    pub syncs: Vec<SocketAddr>,
    /// The member list, when it changed.
    pub members: Option<Arc<Vec<Member>>>,
}

/// Why a force-leave was not done. The operator picked the wrong member: nothing to retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForceLeaveError {
    /// The name is this agent's own; it must leave with `muster leave`.
    #[error("member {0:?} is this agent, which is alive; force-leave only removes failed members (use `muster leave`)")]
    IsSelf(String),
    /// No member of that name was ever seen (HTTP 404).
    #[error("no member named {0:?}; see `muster members`")]
    NoSuchMember(String),
    /// The member is alive or leaving; stop it first.
    #[error("member {name:?} is {}; force-leave only removes failed members (stop it, or run `muster leave` on it)", .status.as_str())]
    StillLive { name: String, status: MemberStatus },
    /// The gossip layer has stopped; the agent is shutting down.
    #[error("the gossip layer has stopped")]
    Stopped,
}

/// What foca asked for during one call; turned into [`Effects`] by [`Core::finish`].
#[derive(Default)]
struct SwimRuntime {
    sends: Vec<(NodeIdentity, Vec<u8>)>,
    timers: Vec<(foca::Timer<NodeIdentity>, Duration)>,
    notes: Vec<OwnedNotification<NodeIdentity>>,
}

impl foca::Runtime<NodeIdentity> for SwimRuntime {
    fn notify(&mut self, n: foca::Notification<'_, NodeIdentity>) {
        self.notes.push(n.to_owned());
    }
    fn send_to(&mut self, to: NodeIdentity, data: &[u8]) {
        self.sends.push((to, data.to_vec()));
    }
    fn submit_after(&mut self, event: foca::Timer<NodeIdentity>, after: Duration) {
        self.timers.push((event, after));
    }
}

/// The gossip state machine of one agent. See the module header.
pub(crate) struct Core {
    swim: Swim,
    metas: Arc<Mutex<MetaStore>>,
    /// Every other member ever seen, by name, with its operator-facing status.
    table: BTreeMap<String, Member>,
    local: MemberMeta,
    local_status: MemberStatus,
    sealer: Arc<Sealer>,
    stats: Arc<Stats>,
    timings: Timings,
    /// The cluster size foca's configuration was last sized for.
    sized_for: usize,
    rng: StdRng,
    /// foca's requests of the current input, not yet turned into effects.
    runtime: SwimRuntime,
    /// What the current input has produced so far.
    out: Effects,
    /// The member list last handed out, to publish only changes.
    published: Arc<Vec<Member>>,
    /// The reap timer armed for each failed or left member of the table.
    reaps: BTreeMap<String, reap::PendingReap>,
    next_reap_token: u64,
    /// Metadata records of names no member carries, found by the last sweep; dropped if the
    /// next sweep finds them orphaned still.
    meta_orphans: BTreeSet<String>,
}

fn foca_config(t: &Timings, cluster_size: usize) -> foca::Config {
    let n = cluster_size.max(1);
    let mut c = foca::Config::new_lan(NonZeroU32::new(n as u32).expect("n >= 1"));
    c.probe_period = t.probe_period;
    c.probe_rtt = t.probe_rtt;
    // Consul's suspicion timeout: mult × max(1, log10 n) × probe interval
    // (docs/reference/consul.md).
    let scale = (n as f64).log10().max(1.0);
    c.suspect_to_down_after = t.probe_period.mul_f64(t.suspicion_mult * scale);
    // foca's default, 4 × log10(n + 1), sends an update only once or twice in small clusters;
    // tags and leave intents must reach everyone, so never fewer than 6 transmissions.
    c.max_transmissions = c
        .max_transmissions
        .max(std::num::NonZeroU8::new(6).expect("non-zero"));
    c.max_packet_size = NonZeroUsize::new(MAX_SWIM_PACKET).expect("non-zero");
    c.periodic_gossip = Some(foca::PeriodicParams {
        frequency: t.gossip_interval,
        num_members: NonZeroUsize::new(3).expect("non-zero"),
    });
    // The core reaps the members it lists (`reap.rs`) and takes them out of foca then; foca's
    // own timer only catches down members the table never listed. Failed for the whole
    // reconnect timeout, then left for the whole tombstone timeout is the longest a listed
    // member is kept, so foca never forgets one first (docs/gossip.md, Reaping).
    c.remove_down_after = Some(t.reconnect_timeout + t.tombstone_timeout);
    // foca's own announce to down members (every 65 s in `new_lan`) is replaced by the core's
    // [`Timer::AnnounceToFailed`], once per probe period and only to members listed failed, so
    // that a healed partition closes within a few probe periods (docs/gossip.md, "Healing
    // after a partition").
    c.periodic_announce_to_down_members = None;
    c
}

impl Core {
    /// A core that knows only itself. Call [`Core::start`] next for its first effects.
    pub(crate) fn new(parts: CoreParts) -> Self {
        let CoreParts {
            identity,
            tags,
            timings,
            sealer,
            stats,
            mut rng,
        } = parts;
        let metas = Arc::new(Mutex::new(MetaStore::default()));
        let swim_rng = StdRng::from_rng(&mut rng);
        let swim = Foca::with_custom_broadcast(
            identity.clone(),
            foca_config(&timings, 1),
            swim_rng,
            PostcardCodec,
            MetaHandler {
                store: metas.clone(),
            },
        );
        let local = MemberMeta {
            name: identity.name.clone(),
            node_id: identity.node_id,
            generation: identity.generation,
            version: 1,
            tags,
            leaving: false,
        };
        let mut core = Self {
            swim,
            metas,
            table: BTreeMap::new(),
            local,
            local_status: MemberStatus::Alive,
            sealer,
            stats,
            timings,
            sized_for: 1,
            rng,
            runtime: SwimRuntime::default(),
            out: Effects::default(),
            published: Arc::new(Vec::new()),
            reaps: BTreeMap::new(),
            next_reap_token: 0,
            meta_orphans: BTreeSet::new(),
        };
        core.publish_local_meta();
        core
    }

    /// The first effects: the member list (this agent alone) and the first anti-entropy timer,
    /// one interval from now.
    pub(crate) fn start(&mut self) -> Effects {
        self.out
            .timers
            .push((self.timings.anti_entropy_interval, Timer::AntiEntropy));
        self.out
            .timers
            .push((self.timings.probe_period, Timer::AnnounceToFailed));
        self.finish()
    }

    /// A datagram arrived: opens its envelope (dropping, and counting, what is not for us) and
    /// hands the SWIM payload to foca.
    pub(crate) fn handle_datagram(&mut self, packet: &[u8], from: SocketAddr) -> Effects {
        match self.sealer.open(packet) {
            Ok((Kind::Swim, payload)) => {
                if let Err(e) = self.swim.handle_data(&payload, &mut self.runtime) {
                    self.stats
                        .dropped_swim_rejected
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%from, error = %e, "dropped gossip packet");
                }
            }
            Ok((kind, _)) => {
                self.stats.dropped_malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%from, ?kind, "dropped gossip datagram of a TCP-only kind");
            }
            Err(e) => {
                self.stats.count_drop(&e);
                let key_problem = matches!(
                    e,
                    OpenError::Unencrypted | OpenError::UnexpectedEncrypted | OpenError::Decrypt
                );
                if key_problem && self.stats.should_warn_key() {
                    tracing::warn!(%from, reason = %e, "dropping gossip from an agent with different encryption settings");
                } else {
                    tracing::debug!(%from, reason = %e, "dropped gossip packet");
                }
            }
        }
        self.finish()
    }

    /// A timer asked for in an earlier [`Effects`] is due.
    pub(crate) fn handle_timer(&mut self, timer: Timer) -> Effects {
        match timer {
            Timer::Swim(t) => {
                if matches!(t, foca::Timer::ProbeRandomMember(_)) {
                    self.stats.probes.fetch_add(1, Ordering::Relaxed);
                }
                if let Err(e) = self.swim.handle_timer(t, &mut self.runtime) {
                    tracing::debug!(error = %e, "gossip timer failed");
                }
            }
            Timer::AntiEntropy => {
                self.out
                    .timers
                    .push((self.timings.anti_entropy_interval, Timer::AntiEntropy));
                self.anti_entropy();
                self.sweep_metas();
            }
            Timer::Reap { name, token } => self.reap(&name, token),
            Timer::AnnounceToFailed => {
                self.out
                    .timers
                    .push((self.timings.probe_period, Timer::AnnounceToFailed));
                self.announce_to_failed();
            }
        }
        self.finish()
    }

    /// This agent's full state, to send in a sync.
    pub(crate) fn snapshot(&self) -> SyncState {
        self.state()
    }

    /// A peer sent its full state (a join, or its anti-entropy): merge it and answer with ours,
    /// or refuse it (a name or node id conflict).
    pub(crate) fn handle_sync_request(
        &mut self,
        theirs: SyncState,
    ) -> (Result<SyncState, Refusal>, Effects) {
        let result = self.check_conflicts(&theirs).map(|()| {
            self.merge(theirs);
            self.state()
        });
        (result, self.finish())
    }

    /// The result of a sync this agent started: the peer's full state. Merges it and announces
    /// this agent to the peer; returns how many members the peer knew.
    pub(crate) fn handle_sync_reply(
        &mut self,
        theirs: SyncState,
    ) -> (Result<usize, Refusal>, Effects) {
        let result = self.check_conflicts(&theirs).map(|()| {
            let from = theirs.from.clone();
            let known = theirs.members.len() + 1;
            self.merge(theirs);
            if let Err(e) = self.swim.announce(from, &mut self.runtime) {
                tracing::debug!(error = %e, "announce after sync failed");
            }
            known
        });
        (result, self.finish())
    }

    /// Replaces this agent's tags and starts spreading them.
    pub(crate) fn set_tags(&mut self, tags: Tags) -> Effects {
        self.local.tags = tags;
        self.local.version += 1;
        self.publish_local_meta();
        let _ = self.swim.broadcast(&mut self.runtime);
        self.finish()
    }

    /// First step of a graceful leave: spread the leave intent.
    pub(crate) fn start_leave(&mut self) -> Effects {
        self.local.leaving = true;
        self.local.version += 1;
        self.local_status = MemberStatus::Leaving;
        self.publish_local_meta();
        self.push_intents()
    }

    /// While leaving: push the intent again. Returns (with the effects) how many broadcasts are
    /// still waiting to be sent; at 0 the intent has been sent around.
    pub(crate) fn push_leave(&mut self) -> (usize, Effects) {
        let fx = self.push_intents();
        (self.swim.custom_broadcast_backlog(), fx)
    }

    fn push_intents(&mut self) -> Effects {
        let _ = self.swim.broadcast(&mut self.runtime);
        let _ = self.swim.gossip(&mut self.runtime);
        self.finish()
    }

    /// Last step of a graceful leave: declare this agent down.
    pub(crate) fn finish_leave(&mut self) -> Effects {
        if let Err(e) = self.swim.leave_cluster(&mut self.runtime) {
            tracing::warn!(error = %e, "leaving the gossip pool failed");
        }
        self.local_status = MemberStatus::Left;
        self.finish()
    }

    /// Marks a failed member as left (and with `prune`, forgets it), telling everyone.
    pub(crate) fn force_leave(
        &mut self,
        name: &str,
        prune: bool,
    ) -> (Result<(), ForceLeaveError>, Effects) {
        let result = self.force_leave_member(name, prune);
        (result, self.finish())
    }

    /// Every so often, exchange full state with one random live member over TCP, so that
    /// anything gossip missed (a long partition, a lost broadcast) is repaired.
    fn anti_entropy(&mut self) {
        let live: Vec<SocketAddr> = self
            .table
            .values()
            .filter(|m| m.status == MemberStatus::Alive)
            .map(|m| m.addr)
            .collect();
        if let Some(addr) = live.choose(&mut self.rng).copied() {
            self.out.syncs.push(addr);
        }
    }

    /// Once per probe period, announces this agent to one random member it lists failed: the
    /// first packet across a healed partition. foca never probes or gossips to a member it
    /// holds down, and a down identity stays down, so without this packet the two sides of a
    /// healed split stay apart (foca's own announce to down members, every 65 s, is off). The
    /// member answers as foca answers a member it holds down, with `TurnUndead`, or else with a
    /// `Feed`. Either way the exchange makes both sides renew their identities and accept the
    /// other's renewed one, and gossip carries the new identities to everyone (docs/gossip.md,
    /// "Healing after a partition"). A member really gone answers nothing. One that left is
    /// listed left, not failed, so it is never announced to.
    fn announce_to_failed(&mut self) {
        if self.local_status != MemberStatus::Alive {
            return;
        }
        let chosen = self
            .table
            .values()
            .filter(|m| m.status == MemberStatus::Failed)
            .choose(&mut self.rng)
            .map(|m| NodeIdentity {
                name: m.name.clone(),
                node_id: m.node_id,
                addr: m.addr,
                generation: m.generation,
            });
        if let Some(id) = chosen {
            if let Err(e) = self.swim.announce(id, &mut self.runtime) {
                tracing::debug!(error = %e, "announce to a failed member failed");
            }
        }
    }

    /// Turns what foca asked for into effects, reacts to what changed, and hands it all out.
    fn finish(&mut self) -> Effects {
        loop {
            let rt = std::mem::take(&mut self.runtime);
            if rt.sends.is_empty() && rt.timers.is_empty() && rt.notes.is_empty() {
                break;
            }
            for (to, data) in rt.sends {
                let packet = self.sealer.seal(Kind::Swim, &data);
                self.out.datagrams.push((to.addr, packet));
            }
            for (timer, after) in rt.timers {
                if matches!(timer, foca::Timer::ChangeSuspectToDown { .. }) {
                    self.stats.suspicions.fetch_add(1, Ordering::Relaxed);
                }
                self.out.timers.push((after, Timer::Swim(timer)));
            }
            for note in rt.notes {
                self.notification(note);
            }
        }
        self.apply_meta_changes();
        self.resize();
        self.out.members = self.member_list_if_changed();
        std::mem::take(&mut self.out)
    }

    /// foca's dissemination count and suspicion timeout depend on the cluster size.
    fn resize(&mut self) {
        let n = self.swim.num_members() + 1;
        if n.next_power_of_two() != self.sized_for.next_power_of_two() {
            self.sized_for = n;
            if let Err(e) = self.swim.set_config(foca_config(&self.timings, n)) {
                tracing::debug!(error = %e, "could not resize gossip configuration");
            }
        }
    }

    fn member_list_if_changed(&mut self) -> Option<Arc<Vec<Member>>> {
        let me = self.swim.identity();
        let mut list: Vec<Member> = Vec::with_capacity(self.table.len() + 1);
        list.push(Member {
            name: me.name.clone(),
            node_id: me.node_id,
            addr: me.addr,
            generation: me.generation,
            status: self.local_status,
            tags: self.local.tags.clone(),
        });
        list.extend(self.table.values().cloned());
        list.sort_by(|a, b| a.name.cmp(&b.name));
        if self.published.as_slice() == list.as_slice() {
            return None;
        }
        self.published = Arc::new(list);
        Some(self.published.clone())
    }
}
