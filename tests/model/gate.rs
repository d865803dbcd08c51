//! A model of the bootstrap gate's protocol for the `stateright` model checker
//! (docs/servers.md, "Why at most one cluster"): every server's decisions are made by the pure
//! code the agent runs (`muster::server::gate`: `evaluate`, `veto`, `admit`, `accept`,
//! `Promise`, `Attempt`, and the old rule's `LapsingPromise`); the model adds only what the
//! agent leaves to the world: gossip, the network, crashes, restarts and time.
//!
//! - **Gossip is adversarial.** Whenever a server looks, its view may be any set of the
//!   servers started so far (itself included): a partition or a slow join shows any of them
//!   missing, a lagging failure detector shows a crashed one alive.
//! - **The network** is a set of every message sent: a message may be delivered any number of
//!   times, in any order, or never (loss; a partition is loss between some pairs).
//! - **Crashes** lose what a server holds in memory (its attempt; under the old rule its
//!   promise); a restart *with data* keeps its Raft state and its promise file. A restart
//!   *without data* is a new data dir, so a new node id (`<data_dir>/node-id`): the old
//!   identity is gone for good and a fresh server takes a spare slot.
//! - **Time** is abstract: under the old rule a `Tick` makes every promise given so far lapse
//!   (its 10 s ran out); gossip showing a holder dead is the same event.
//! - **Raft** is abstracted: the server that calls `initialize` sends its membership a `Join`
//!   (vote requests and AppendEntries); a server without Raft state that receives it joins
//!   that configuration and holds Raft state from then on. A configuration joined by a
//!   majority of its members has elected a leader, which names the cluster: a cluster id.
//!
//! The properties: at most one cluster id is ever named, and (stronger, independent of the
//! Raft abstraction) at most one configuration is ever initialised.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use muster::server::gate::{self, Attempt, Decision, LapsingPromise, Progress, Promise};
use muster::server::protocol::{PeerStatus, ServerView};
use muster::server::types::{NodeId, ServerNode};
use stateright::{Model, Property};

/// Which acceptor rule the servers follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Before issue 10: a promise in memory that lapses (`gate::LapsingPromise`).
    Lapsing,
    /// The agent's rule: a promise on disk, ended only by its holder (`gate::Promise`).
    Durable,
}

/// The model's parameters: how many servers, and how much adversity (every budget keeps the
/// state space finite).
#[derive(Debug, Clone)]
pub struct GateModel {
    pub rule: Rule,
    /// Servers started with `-bootstrap-expect expect`.
    pub servers: usize,
    pub expect: u32,
    /// Attempts (probe, then propose) started, over all servers.
    pub attempts: u8,
    /// Crashes, each followed (or not) by a restart with data.
    pub crashes: u8,
    /// Restarts without data (each takes a spare slot: a new identity).
    pub wipes: u8,
    /// `Tick`s: times every promise given so far lapses (old rule only).
    pub lapses: u8,
    /// The instant the model's clock starts at (the old rule takes `Instant`s).
    base: Instant,
}

impl GateModel {
    pub fn new(rule: Rule, servers: usize, expect: u32) -> GateModel {
        GateModel {
            rule,
            servers,
            expect,
            attempts: 2,
            crashes: 0,
            wipes: 0,
            lapses: if rule == Rule::Lapsing { 1 } else { 0 },
            base: Instant::now(),
        }
    }

    /// Identities: the started servers, then one spare per restart without data.
    fn slots(&self) -> usize {
        self.servers + self.wipes as usize
    }

    /// Slot `i`'s node id. The spares have the lowest ids: a server started on a fresh data dir
    /// may well have the lowest id, and then it may propose.
    fn id(&self, i: usize) -> NodeId {
        if i >= self.servers {
            (i - self.servers + 1) as NodeId
        } else {
            (self.wipes as usize + i + 1) as NodeId
        }
    }

    fn slot(&self, id: NodeId) -> usize {
        (0..self.slots())
            .find(|&i| self.id(i) == id)
            .expect("a slot")
    }

    fn view(&self, i: usize) -> ServerView {
        ServerView {
            id: self.id(i),
            name: format!("s{}", self.id(i)),
            rpc_addr: format!("127.0.0.{}:8300", self.id(i)),
            alive: true,
            datacenter: "dc1".into(),
            expect: Some(self.expect),
            bootstrap_mode: false,
            cluster_id: None,
        }
    }

    fn views(&self, mask: u16) -> Vec<ServerView> {
        (0..self.slots())
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| self.view(i))
            .collect()
    }

    fn membership(&self, mask: u16) -> Vec<(NodeId, ServerNode)> {
        gate::canonical_membership(&self.views(mask))
    }

    fn mask_of(&self, members: &[(NodeId, ServerNode)]) -> u16 {
        members.iter().fold(0, |m, (id, _)| m | 1 << self.slot(*id))
    }

    fn now(&self, clock: u8) -> Instant {
        self.base + (gate::PROMISE_TTL + Duration::from_secs(1)) * u32::from(clock)
    }
}

/// Whether a slot's server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Life {
    /// A spare slot, not started (yet).
    Spare,
    Up,
    Crashed,
    /// Its data dir is gone: this identity never returns.
    Retired,
}

/// Where a server's gate stands.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Waiting: it evaluates gossip whenever it looks.
    Idle,
    /// It asked `members` for their status (round `round`); the answers so far.
    Probing {
        round: u8,
        members: u16,
        statuses: Vec<(usize, bool)>,
    },
    /// It proposed (round `round`) and collects promises.
    Proposing { round: u8, attempt: Attempt },
    /// Nothing left to decide until it restarts (a veto, or Raft state).
    Done,
}

/// One server (one identity, one data dir).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Srv {
    pub life: Life,
    /// The slot whose configuration this server joined: it holds Raft state.
    pub raft: Option<usize>,
    /// The durable rule's promise (its file).
    pub promise: Promise,
    /// The old rule's promise (memory).
    pub lapsing: LapsingPromise,
    pub phase: Phase,
}

/// A message. `round` is the model's stand-in for the RPC layer's request id: an answer is
/// matched to the call it answers, never to a later one.
///
/// A request and its answer are one step: the receiver handles the request and the caller
/// records the answer at once (if it still waits for it; a caller that gave up or crashed
/// drops it). This loses no behaviour that matters: recording an answer is a step of the
/// caller alone, and moving it earlier, next to the handling, only reorders it with steps of
/// other servers (which commute with it) or with the caller's own giving up, crash or Raft
/// state, after which the answer would be dropped or ignored anyway. A lost answer is the
/// caller giving up before the request is delivered.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Msg {
    Probe {
        from: usize,
        to: usize,
        round: u8,
    },
    Propose {
        from: usize,
        to: usize,
        round: u8,
        attempt: u64,
        members: u16,
    },
    Release {
        from: usize,
        to: usize,
        up_to: u64,
    },
    Join {
        from: usize,
        to: usize,
    },
}

impl Msg {
    fn to(&self) -> usize {
        match *self {
            Msg::Probe { to, .. }
            | Msg::Propose { to, .. }
            | Msg::Release { to, .. }
            | Msg::Join { to, .. } => to,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    pub srv: Vec<Srv>,
    pub net: BTreeSet<Msg>,
    /// The configurations initialised: (initialising slot, members).
    pub initialized: BTreeSet<(usize, u16)>,
    /// The configurations a majority joined: each names a cluster id.
    pub named: BTreeSet<usize>,
    pub clock: u8,
    pub attempts: u8,
    pub crashes: u8,
    pub wipes: u8,
    /// Rounds started per slot (the RPC ids of its calls).
    pub rounds: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Slot `0` looks at gossip, sees the servers of mask `1`, and the gate says propose.
    Evaluate(usize, u16),
    Deliver(Msg),
    /// The proposer gives up its current attempt: an answer is late or refused.
    GiveUp(usize),
    Crash(usize),
    /// A restart with data.
    Restart(usize),
    /// A restart without data: the slot retires, the next spare starts fresh.
    Wipe(usize),
    /// Every promise given so far lapses (old rule).
    Tick,
}

impl GateModel {
    fn has_state(&self, s: &State, i: usize) -> bool {
        s.srv[i].raft.is_some()
    }

    /// The proposer abandons its attempt: under the durable rule it releases every promise
    /// to its attempts so far (the agent's `release_own`), itself included.
    fn abandon(&self, s: &mut State, i: usize) {
        s.srv[i].phase = Phase::Idle;
        if self.rule == Rule::Durable {
            self.release_all(s, i);
        }
    }

    /// Never once this server holds Raft state: it may have initialised with the promises.
    fn release_all(&self, s: &mut State, i: usize) {
        let up_to = s.srv[i].promise.last_attempt;
        if up_to == 0 || self.has_state(s, i) {
            return;
        }
        let id = self.id(i);
        s.srv[i].promise = s.srv[i].promise.release(id, up_to);
        for to in (0..self.slots()).filter(|&t| t != i) {
            s.net.insert(Msg::Release { from: i, to, up_to });
        }
    }

    /// The acceptor side, under the model's rule: the agent's `accept_proposal`.
    fn accept(&self, s: &mut State, at: usize, from: usize, attempt: u64, members: u16) -> bool {
        let membership = self.membership(members);
        let name = format!("s{}", self.id(at));
        let has_state = self.has_state(s, at);
        match self.rule {
            Rule::Durable => {
                let srv = &mut s.srv[at];
                match gate::accept(
                    self.id(at),
                    &name,
                    has_state,
                    &srv.promise,
                    self.id(from),
                    attempt,
                    &membership,
                ) {
                    Ok(next) => {
                        srv.promise = next;
                        true
                    }
                    Err(_) => false,
                }
            }
            Rule::Lapsing => {
                if gate::admit(self.id(at), &name, has_state, &membership).is_err() {
                    return false;
                }
                let alive: Vec<NodeId> = (0..self.slots())
                    .filter(|&j| s.srv[j].life == Life::Up)
                    .map(|j| self.id(j))
                    .collect();
                let now = self.now(s.clock);
                s.srv[at]
                    .lapsing
                    .offer(self.id(from), now, |h| alive.contains(&h))
                    .is_ok()
            }
        }
    }

    /// Every answer is in: the gate's `veto`, then the proposal (the agent's `try_bootstrap`).
    fn probed(&self, s: &mut State, i: usize, round: u8, members: u16, statuses: &[(usize, bool)]) {
        let peer: Vec<(String, PeerStatus)> = statuses
            .iter()
            .map(|&(j, has_state)| {
                (
                    format!("s{}", self.id(j)),
                    PeerStatus {
                        node_id: self.id(j),
                        has_state,
                        ..Default::default()
                    },
                )
            })
            .collect();
        if gate::veto(&peer).is_some() {
            s.srv[i].phase = Phase::Done;
            return;
        }
        let number = match self.rule {
            Rule::Durable => {
                let (n, next) = s.srv[i].promise.next_attempt();
                s.srv[i].promise = next;
                n
            }
            Rule::Lapsing => u64::from(round),
        };
        let mut attempt = Attempt::new(number, &self.views(members));
        let me = self.id(i);
        let own = self.accept(s, i, i, number, members);
        let answer = if own { Ok(()) } else { Err("refused".into()) };
        if let Progress::Refused(_) = attempt.answer(me, answer) {
            self.abandon(s, i);
            return;
        }
        for to in (0..self.slots()).filter(|&t| t != i && members & (1 << t) != 0) {
            s.net.insert(Msg::Propose {
                from: i,
                to,
                round,
                attempt: number,
                members,
            });
        }
        s.srv[i].phase = Phase::Proposing { round, attempt };
    }

    /// Every member promised: `initialize` (refused by Raft if this server has state by now).
    fn initialize(&self, s: &mut State, i: usize, members: u16) {
        if self.has_state(s, i) {
            s.srv[i].phase = Phase::Done;
            return;
        }
        s.initialized.insert((i, members));
        s.srv[i].phase = Phase::Done;
        self.join(s, i, i);
        for to in (0..self.slots()).filter(|&t| t != i && members & (1 << t) != 0) {
            s.net.insert(Msg::Join { from: i, to });
        }
    }

    fn join(&self, s: &mut State, at: usize, cluster: usize) {
        s.srv[at].raft = Some(cluster);
        s.srv[at].phase = Phase::Done;
        for &(c, members) in &s.initialized {
            let joined = (0..self.slots())
                .filter(|&j| members & (1 << j) != 0 && s.srv[j].raft == Some(c))
                .count();
            if 2 * joined > members.count_ones() as usize {
                s.named.insert(c);
            }
        }
    }

    fn deliver(&self, s: &mut State, m: Msg) {
        match m {
            Msg::Probe { from, to, round } => {
                let has_state = self.has_state(s, to);
                if s.srv[from].life != Life::Up {
                    return;
                }
                let Phase::Probing {
                    round: r,
                    members,
                    statuses,
                } = &mut s.srv[from].phase
                else {
                    return;
                };
                if *r != round || statuses.iter().any(|&(j, _)| j == to) {
                    return;
                }
                statuses.push((to, has_state));
                statuses.sort();
                let (members, statuses) = (*members, statuses.clone());
                if statuses.len() == members.count_ones() as usize {
                    self.probed(s, from, round, members, &statuses);
                }
            }
            Msg::Propose {
                from,
                to,
                round,
                attempt,
                members,
            } => {
                let ok = self.accept(s, to, from, attempt, members);
                if s.srv[from].life != Life::Up {
                    return;
                }
                let id = self.id(to);
                let Phase::Proposing { round: r, attempt } = &mut s.srv[from].phase else {
                    return;
                };
                if *r != round {
                    return;
                }
                let answer = if ok { Ok(()) } else { Err("refused".into()) };
                match attempt.answer(id, answer) {
                    Progress::Pending => {}
                    Progress::Refused(_) => self.abandon(s, from),
                    Progress::Complete => {
                        let members = self.mask_of(&attempt.membership);
                        self.initialize(s, from, members);
                    }
                }
            }
            Msg::Release { from, to, up_to } => {
                let id = self.id(from);
                s.srv[to].promise = s.srv[to].promise.release(id, up_to);
            }
            Msg::Join { from, to } => {
                if !self.has_state(s, to) {
                    self.join(s, to, from);
                }
            }
        }
    }
}

impl Model for GateModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let srv = (0..self.slots())
            .map(|i| Srv {
                life: if i < self.servers {
                    Life::Up
                } else {
                    Life::Spare
                },
                raft: None,
                promise: Promise::default(),
                lapsing: LapsingPromise::default(),
                phase: Phase::Idle,
            })
            .collect();
        vec![State {
            srv,
            net: BTreeSet::new(),
            initialized: BTreeSet::new(),
            named: BTreeSet::new(),
            clock: 0,
            attempts: 0,
            crashes: 0,
            wipes: 0,
            rounds: vec![0; self.slots()],
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        let started: u16 = (0..self.slots())
            .filter(|&i| s.srv[i].life != Life::Spare)
            .fold(0, |m, i| m | 1 << i);
        for i in 0..self.slots() {
            let srv = &s.srv[i];
            if srv.life != Life::Up {
                continue;
            }
            if srv.phase == Phase::Idle && s.attempts < self.attempts {
                // Every view gossip could show: any started servers, this one included.
                let mut sub = started;
                loop {
                    if sub & (1 << i) != 0 {
                        let d = gate::evaluate(
                            self.id(i),
                            self.expect,
                            "dc1",
                            self.has_state(s, i),
                            &self.views(sub),
                        );
                        if matches!(d, Decision::Propose(_)) {
                            actions.push(Action::Evaluate(i, sub));
                        }
                    }
                    if sub == 0 {
                        break;
                    }
                    sub = (sub - 1) & started;
                }
            }
            if matches!(srv.phase, Phase::Probing { .. } | Phase::Proposing { .. }) {
                actions.push(Action::GiveUp(i));
            }
            if s.crashes < self.crashes {
                actions.push(Action::Crash(i));
            }
            if s.wipes < self.wipes {
                actions.push(Action::Wipe(i));
            }
        }
        for i in 0..self.slots() {
            if s.srv[i].life == Life::Crashed {
                actions.push(Action::Restart(i));
                if s.wipes < self.wipes {
                    actions.push(Action::Wipe(i));
                }
            }
        }
        for m in &s.net {
            if s.srv[m.to()].life == Life::Up {
                actions.push(Action::Deliver(m.clone()));
            }
        }
        if s.clock < self.lapses {
            actions.push(Action::Tick);
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Evaluate(i, view) => {
                let Decision::Propose(servers) = gate::evaluate(
                    self.id(i),
                    self.expect,
                    "dc1",
                    self.has_state(&s, i),
                    &self.views(view),
                ) else {
                    return None;
                };
                let members = self.mask_of(&gate::canonical_membership(&servers));
                s.attempts += 1;
                s.rounds[i] += 1;
                let round = s.rounds[i];
                let own = (i, self.has_state(&s, i));
                s.srv[i].phase = Phase::Probing {
                    round,
                    members,
                    statuses: vec![own],
                };
                for to in (0..self.slots()).filter(|&t| t != i && members & (1 << t) != 0) {
                    s.net.insert(Msg::Probe { from: i, to, round });
                }
                if members.count_ones() == 1 {
                    self.probed(&mut s, i, round, members, &[own]);
                }
            }
            Action::Deliver(m) => self.deliver(&mut s, m),
            Action::GiveUp(i) => self.abandon(&mut s, i),
            Action::Crash(i) => {
                s.crashes += 1;
                s.srv[i].life = Life::Crashed;
                s.srv[i].phase = Phase::Idle;
                s.srv[i].lapsing = LapsingPromise::default();
            }
            Action::Restart(i) => {
                s.srv[i].life = Life::Up;
                s.srv[i].phase = Phase::Idle;
                // The agent's gate loop releases its abandoned attempts again after a restart.
                if self.rule == Rule::Durable {
                    self.release_all(&mut s, i);
                }
            }
            Action::Wipe(i) => {
                let spare = self.servers + s.wipes as usize;
                s.wipes += 1;
                s.srv[i].life = Life::Retired;
                s.srv[spare].life = Life::Up;
            }
            Action::Tick => s.clock += 1,
        }
        if s == *last {
            None
        } else {
            Some(s)
        }
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("at most one cluster id", |_, s: &State| s.named.len() <= 1),
            Property::always("at most one configuration initialised", |_, s: &State| {
                s.initialized.len() <= 1
            }),
            Property::sometimes("a cluster is named", |_, s: &State| !s.named.is_empty()),
        ]
    }
}
