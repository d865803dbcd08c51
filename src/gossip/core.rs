//! The task that owns the foca instance. Everything that changes membership goes through it, in
//! order: datagrams, timers and commands arrive on one channel, effects go out through
//! [`Effects`] (foca's `Runtime`) and are carried out right after each call.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foca::{Foca, Member as SwimMember, OwnedNotification, PostcardCodec, State, Timer};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use super::envelope::{Kind, Sealer};
use super::identity::NodeIdentity;
use super::members::{Member, MemberStatus};
use super::meta::{MemberMeta, MetaHandler, MetaStore, Tags};
use super::stats::Stats;
use super::sync::{SyncState, Syncer};
use super::{Command, Input, Timings, MAX_SWIM_PACKET};

type Swim = Foca<NodeIdentity, PostcardCodec, StdRng, MetaHandler>;

/// What foca asked for during one call.
#[derive(Default)]
struct Effects {
    sends: Vec<(NodeIdentity, Vec<u8>)>,
    timers: Vec<(Timer<NodeIdentity>, Duration)>,
    notes: Vec<OwnedNotification<NodeIdentity>>,
}

impl foca::Runtime<NodeIdentity> for Effects {
    fn notify(&mut self, n: foca::Notification<'_, NodeIdentity>) {
        self.notes.push(n.to_owned());
    }
    fn send_to(&mut self, to: NodeIdentity, data: &[u8]) {
        self.sends.push((to, data.to_vec()));
    }
    fn submit_after(&mut self, event: Timer<NodeIdentity>, after: Duration) {
        self.timers.push((event, after));
    }
}

pub(super) struct Core {
    swim: Swim,
    metas: Arc<Mutex<MetaStore>>,
    /// Every other member ever seen, by name, with its operator-facing status.
    table: BTreeMap<String, Member>,
    local: MemberMeta,
    local_status: MemberStatus,
    sealer: Arc<Sealer>,
    udp: Arc<UdpSocket>,
    stats: Arc<Stats>,
    input: mpsc::Sender<Input>,
    members_tx: watch::Sender<Arc<Vec<Member>>>,
    timings: Timings,
    sized_for: usize,
    syncer: Syncer,
    fx: Effects,
}

fn foca_config(t: &Timings, cluster_size: usize) -> foca::Config {
    let n = cluster_size.max(1);
    let mut c = foca::Config::new_lan(NonZeroU32::new(n as u32).expect("n >= 1"));
    c.probe_period = t.probe_period;
    c.probe_rtt = t.probe_rtt;
    // Consul's suspicion timeout: mult × max(1, log10 n) × probe interval (memberlist util.go).
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
    c
}

impl Core {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        identity: NodeIdentity,
        tags: Tags,
        timings: Timings,
        sealer: Arc<Sealer>,
        udp: Arc<UdpSocket>,
        stats: Arc<Stats>,
        input: mpsc::Sender<Input>,
        members_tx: watch::Sender<Arc<Vec<Member>>>,
        syncer: Syncer,
    ) -> Self {
        let metas = Arc::new(Mutex::new(MetaStore::default()));
        let rng: StdRng = rand::make_rng();
        let swim = Foca::with_custom_broadcast(
            identity.clone(),
            foca_config(&timings, 1),
            rng,
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
            udp,
            stats,
            input,
            members_tx,
            timings,
            sized_for: 1,
            syncer,
            fx: Effects::default(),
        };
        core.publish_local_meta();
        core.publish_members();
        core
    }

    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut anti_entropy = tokio::time::interval(self.timings.anti_entropy_interval);
        anti_entropy.tick().await;
        loop {
            tokio::select! {
                msg = rx.recv() => match msg {
                    None => return,
                    Some(Input::Cmd(Command::Shutdown)) => return,
                    Some(input) => self.handle(input),
                },
                _ = anti_entropy.tick() => self.anti_entropy(),
            }
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Swim(data, from) => {
                if let Err(e) = self.swim.handle_data(&data, &mut self.fx) {
                    self.stats
                        .dropped_swim_rejected
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(%from, error = %e, "dropped gossip packet");
                }
            }
            Input::Timer(t) => {
                if let Err(e) = self.swim.handle_timer(t, &mut self.fx) {
                    tracing::debug!(error = %e, "gossip timer failed");
                }
            }
            Input::Cmd(cmd) => self.command(cmd),
        }
        self.flush();
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Snapshot(reply) => {
                let _ = reply.send(self.state());
            }
            Command::MergeRequest { state, reply } => {
                let result = self.check_conflicts(&state).map(|()| {
                    self.merge(state);
                    self.state()
                });
                let _ = reply.send(result);
            }
            Command::MergeReply { state, reply } => {
                let result = self.check_conflicts(&state).map(|()| {
                    let from = state.from.clone();
                    let known = state.members.len() + 1;
                    self.merge(state);
                    if let Err(e) = self.swim.announce(from, &mut self.fx) {
                        tracing::debug!(error = %e, "announce after sync failed");
                    }
                    known
                });
                let _ = reply.send(result);
            }
            Command::SetTags(tags) => {
                self.local.tags = tags;
                self.local.version += 1;
                self.publish_local_meta();
                let _ = self.swim.broadcast(&mut self.fx);
            }
            Command::StartLeave => {
                self.local.leaving = true;
                self.local.version += 1;
                self.local_status = MemberStatus::Leaving;
                self.publish_local_meta();
                let _ = self.swim.broadcast(&mut self.fx);
                let _ = self.swim.gossip(&mut self.fx);
            }
            Command::PushLeave(reply) => {
                let _ = self.swim.broadcast(&mut self.fx);
                let _ = self.swim.gossip(&mut self.fx);
                let _ = reply.send(self.swim.custom_broadcast_backlog());
            }
            Command::FinishLeave(reply) => {
                if let Err(e) = self.swim.leave_cluster(&mut self.fx) {
                    tracing::warn!(error = %e, "leaving the gossip pool failed");
                }
                self.local_status = MemberStatus::Left;
                let _ = reply.send(());
            }
            Command::ForceLeave { name, prune, reply } => {
                let _ = reply.send(self.force_leave(&name, prune));
            }
            Command::Shutdown => {}
        }
    }

    /// Carries out what foca asked for, then reacts to what changed.
    fn flush(&mut self) {
        loop {
            let fx = std::mem::take(&mut self.fx);
            if fx.sends.is_empty() && fx.timers.is_empty() && fx.notes.is_empty() {
                break;
            }
            for (to, data) in fx.sends {
                let packet = self.sealer.seal(Kind::Swim, &data);
                match self.udp.try_send_to(&packet, to.addr) {
                    Ok(n) => {
                        self.stats.packets_sent.fetch_add(1, Ordering::Relaxed);
                        self.stats.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(e) => tracing::trace!(to = %to.addr, error = %e, "gossip send failed"),
                }
            }
            for (timer, after) in fx.timers {
                let input = self.input.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = input.send(Input::Timer(timer)).await;
                });
            }
            for note in fx.notes {
                self.notification(note);
            }
        }
        self.apply_meta_changes();
        self.resize();
        self.publish_members();
    }

    fn notification(&mut self, note: OwnedNotification<NodeIdentity>) {
        match note {
            OwnedNotification::MemberUp(id) | OwnedNotification::Rename(_, id) => {
                self.member_up(id)
            }
            OwnedNotification::MemberDown(id) => self.member_down(id),
            OwnedNotification::Rejoin(id) => {
                tracing::warn!(
                    generation = id.generation,
                    "this agent was declared down by the cluster; rejoined with a new identity"
                );
                self.local.generation = id.generation;
                self.local.version += 1;
                self.publish_local_meta();
            }
            OwnedNotification::Defunct if self.local_status == MemberStatus::Left => {}
            OwnedNotification::Defunct => {
                tracing::warn!("this agent was declared down and cannot rejoin")
            }
            OwnedNotification::Active => tracing::debug!("gossip: connected to the cluster"),
            OwnedNotification::Idle => tracing::debug!("gossip: no other live member known"),
        }
    }

    fn member_up(&mut self, id: NodeIdentity) {
        if id.name == self.local.name {
            return;
        }
        if let Some(old) = self.table.get(&id.name) {
            if old.generation > id.generation && old.node_id == id.node_id {
                return;
            }
        }
        let meta = self
            .metas
            .lock()
            .expect("meta lock")
            .records
            .get(&id.name)
            .cloned();
        let (tags, leaving) = match &meta {
            Some(m) if m.node_id == id.node_id => (m.tags.clone(), m.leaving && m.describes(&id)),
            _ => (Tags::new(), false),
        };
        let status = if leaving {
            MemberStatus::Leaving
        } else {
            MemberStatus::Alive
        };
        let was = self.table.get(&id.name).map(|m| m.status);
        if was != Some(status) {
            tracing::info!(member = %id.name, addr = %id.addr, "member {}", if was.is_some() { "is alive again" } else { "joined" });
        }
        self.table.insert(
            id.name.clone(),
            Member {
                name: id.name,
                node_id: id.node_id,
                addr: id.addr,
                generation: id.generation,
                status,
                tags,
            },
        );
    }

    fn member_down(&mut self, id: NodeIdentity) {
        let metas = self.metas.lock().expect("meta lock");
        let left = metas
            .records
            .get(&id.name)
            .is_some_and(|m| m.leaving && m.describes(&id));
        drop(metas);
        if let Some(m) = self.table.get_mut(&id.name) {
            if m.generation != id.generation || m.node_id != id.node_id {
                return;
            }
            m.status = if left {
                MemberStatus::Left
            } else {
                MemberStatus::Failed
            };
            tracing::info!(member = %id.name, addr = %id.addr, "member {}", m.status.as_str());
        }
    }

    /// Reacts to metadata records that arrived or changed.
    fn apply_meta_changes(&mut self) {
        let (changed, records) = {
            let mut store = self.metas.lock().expect("meta lock");
            if store.changed.is_empty() {
                return;
            }
            let names = std::mem::take(&mut store.changed);
            let recs: Vec<MemberMeta> = names
                .iter()
                .filter_map(|n| store.records.get(n).cloned())
                .collect();
            (names, recs)
        };
        let _ = changed;
        for meta in records {
            if meta.name == self.local.name {
                self.meta_about_self(meta);
                continue;
            }
            if let Some(m) = self.table.get_mut(&meta.name) {
                if m.node_id != meta.node_id {
                    continue;
                }
                m.tags = meta.tags.clone();
                if meta.generation == m.generation {
                    m.status = match (meta.leaving, m.status) {
                        (true, MemberStatus::Alive) => MemberStatus::Leaving,
                        (true, MemberStatus::Failed) => MemberStatus::Left,
                        // The member refuted a leave it did not make (a force-leave while alive).
                        (false, MemberStatus::Leaving) => MemberStatus::Alive,
                        (_, s) => s,
                    };
                }
            }
        }
    }

    /// Someone spread a record under our name: refute it if it is about us (a force-leave while
    /// we live), or report the name conflict if it is another node.
    fn meta_about_self(&mut self, meta: MemberMeta) {
        if meta.node_id != self.local.node_id {
            tracing::error!(
                name = %meta.name, other_node_id = %meta.node_id,
                "another node claims this agent's node name; give one of them another -node name"
            );
            return;
        }
        if meta != self.local
            && (meta.generation, meta.version) >= (self.local.generation, self.local.version)
        {
            self.local.version = meta.version + 1;
            self.publish_local_meta();
        }
    }

    fn publish_local_meta(&mut self) {
        match postcard::to_allocvec(&self.local) {
            Ok(bytes) => {
                if let Err(e) = self.swim.add_broadcast(&bytes) {
                    tracing::warn!(error = %e, "cannot spread this agent's tags (too large?)");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode this agent's tags"),
        }
        // Our own record is never "changed news" for ourselves.
        self.metas
            .lock()
            .expect("meta lock")
            .changed
            .retain(|n| n != &self.local.name);
    }

    fn check_conflicts(&self, state: &SyncState) -> Result<(), String> {
        let mut claims: Vec<&NodeIdentity> = vec![&state.from];
        claims.extend(
            state
                .members
                .iter()
                .filter(|m| m.state() != State::Down)
                .map(|m| m.id()),
        );
        for id in claims {
            if id.name == self.local.name && id.node_id != self.local.node_id {
                let me = self.swim.identity();
                return Err(format!(
                    "node name {:?} is claimed by two live nodes: {} at {} and {} at {}; give one of them another -node name",
                    id.name, me.node_id, me.addr, id.node_id, id.addr
                ));
            }
            if id.node_id == self.local.node_id && id.name != self.local.name {
                return Err(format!(
                    "node id {} is already in use by the live node {:?}; a copied data_dir? remove its node-id file",
                    id.node_id, self.local.name
                ));
            }
            if let Some(m) = self.table.get(&id.name) {
                let live = matches!(m.status, MemberStatus::Alive | MemberStatus::Leaving);
                if live && m.node_id != id.node_id {
                    return Err(format!(
                        "node name {:?} is already in use by the live node {} at {}; give the joining agent another -node name",
                        id.name, m.node_id, m.addr
                    ));
                }
            }
        }
        Ok(())
    }

    fn merge(&mut self, state: SyncState) {
        let mut updates: Vec<SwimMember<NodeIdentity>> = state.members;
        if !updates.iter().any(|m| m.id() == &state.from) {
            updates.push(SwimMember::alive(state.from));
        }
        if let Err(e) = self
            .swim
            .apply_many(updates.into_iter(), true, &mut self.fx)
        {
            tracing::debug!(error = %e, "applying synced members failed");
        }
        for meta in state.metas {
            if meta.name == self.local.name {
                if meta.node_id == self.local.node_id {
                    self.meta_about_self(meta);
                }
                continue;
            }
            if let Ok(bytes) = postcard::to_allocvec(&meta) {
                let _ = self.swim.add_broadcast(&bytes);
            }
        }
        // Members learned here may precede their metadata; refresh their tags now.
        let names: Vec<String> = self.table.keys().cloned().collect();
        self.metas.lock().expect("meta lock").changed.extend(names);
    }

    fn state(&self) -> SyncState {
        let mut members: Vec<SwimMember<NodeIdentity>> =
            self.swim.iter_membership_state().cloned().collect();
        members.push(SwimMember::alive(self.swim.identity().clone()));
        let mut metas: Vec<MemberMeta> = self
            .metas
            .lock()
            .expect("meta lock")
            .records
            .values()
            .cloned()
            .collect();
        metas.retain(|m| m.name != self.local.name);
        metas.push(self.local.clone());
        SyncState {
            from: self.swim.identity().clone(),
            members,
            metas,
        }
    }

    fn force_leave(&mut self, name: &str, prune: bool) -> Result<(), String> {
        if name == self.local.name {
            return Err(format!(
                "member {name:?} is this agent, which is alive; force-leave only removes failed members (use `muster leave`)"
            ));
        }
        let Some(m) = self.table.get(name).cloned() else {
            return Err(format!("no member named {name:?}; see `muster members`"));
        };
        if matches!(m.status, MemberStatus::Alive | MemberStatus::Leaving) {
            return Err(format!(
                "member {name:?} is {}; force-leave only removes failed members (stop it, or run `muster leave` on it)",
                m.status.as_str()
            ));
        }
        let version = self
            .metas
            .lock()
            .expect("meta lock")
            .records
            .get(name)
            .map(|r| r.version)
            .unwrap_or(0);
        let meta = MemberMeta {
            name: m.name.clone(),
            node_id: m.node_id,
            generation: m.generation,
            version: version + 1,
            tags: m.tags.clone(),
            leaving: true,
        };
        if let Ok(bytes) = postcard::to_allocvec(&meta) {
            let _ = self.swim.add_broadcast(&bytes);
        }
        if let Some(e) = self.table.get_mut(name) {
            e.status = MemberStatus::Left;
        }
        if prune {
            self.table.remove(name);
        }
        tracing::info!(member = %name, prune, "forced member to leave");
        Ok(())
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
        if let Some(addr) = live.choose(&mut rand::rng()).copied() {
            let syncer = self.syncer.clone();
            tokio::spawn(async move {
                if let Err(e) = syncer.sync_with(addr).await {
                    tracing::debug!(%addr, error = %e, "anti-entropy sync failed");
                }
            });
        }
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

    fn publish_members(&mut self) {
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
        self.members_tx.send_if_modified(|cur| {
            if cur.as_slice() != list.as_slice() {
                *cur = Arc::new(list);
                true
            } else {
                false
            }
        });
    }
}
