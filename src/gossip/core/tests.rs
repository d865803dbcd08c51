//! Cores run against each other by hand, as foca's own tests run foca: no socket, no task, no
//! real clock. [`Net`] carries every datagram from one core to another at once, keeps one timer
//! queue for all of them on a fake clock, and runs syncs by passing the same frames the TCP
//! syncer would (sealed, opened, merged), so refusals are the ones a real join meets.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use foca::State;
use rand::rngs::StdRng;
use rand::SeedableRng;
use uuid::Uuid;

use super::{Core, CoreParts, Effects, ForceLeaveError, Timer};
use crate::gossip::envelope::Sealer;
use crate::gossip::identity::NodeIdentity;
use crate::gossip::members::{Member, MemberStatus};
use crate::gossip::meta::Tags;
use crate::gossip::stats::Stats;
use crate::gossip::sync::{self, Refusal, SyncError};
use crate::gossip::{GossipKey, Timings};

/// One agent of the fake network.
struct Node {
    core: Core,
    addr: SocketAddr,
    /// A stopped node neither sends nor receives, and its timers are dropped.
    stopped: bool,
    /// The member list the core last published.
    members: Arc<Vec<Member>>,
}

/// Several cores on one fake network and one fake clock.
#[derive(Default)]
struct Net {
    nodes: Vec<Node>,
    /// Fake time since the start.
    now: Duration,
    /// Every node's timers: (deadline, sequence) → (node, timer).
    timers: BTreeMap<(Duration, u64), (usize, Timer)>,
    seq: u64,
    /// Datagrams sent and not yet delivered: (from, to, packet).
    wire: VecDeque<(usize, SocketAddr, Vec<u8>)>,
    /// Nodes cut off from everyone (their datagrams are lost both ways).
    cut: BTreeSet<usize>,
    /// Pairs (from, to) whose datagrams are lost: the two sides of a partition.
    apart: BTreeSet<(usize, usize)>,
    /// Anti-entropy syncs the cores asked for, in order: (node, peer).
    syncs_asked: Vec<(usize, SocketAddr)>,
}

struct Spec<'a> {
    name: &'a str,
    node_id: Uuid,
    datacenter: &'a str,
    key: Option<GossipKey>,
    timings: Timings,
}

impl<'a> Spec<'a> {
    fn named(name: &'a str) -> Self {
        Spec {
            name,
            node_id: Uuid::new_v4(),
            datacenter: "dc1",
            key: None,
            timings: Timings::default(),
        }
    }

    /// With reaping after `failed` (reconnect) and `left` (tombstone) seconds.
    fn reaping(name: &'a str, failed: u64, left: u64) -> Self {
        Spec {
            timings: Timings {
                reconnect_timeout: Duration::from_secs(failed),
                tombstone_timeout: Duration::from_secs(left),
                ..Timings::default()
            },
            ..Spec::named(name)
        }
    }
}

impl Net {
    fn add(&mut self, spec: Spec<'_>) -> usize {
        let i = self.nodes.len();
        let addr: SocketAddr = format!("127.0.0.1:{}", 8301 + i).parse().unwrap();
        let mut identity = NodeIdentity::new(spec.name.into(), spec.node_id, addr);
        // Fixed generations keep the runs identical (and a later node's wins, as a restart's).
        identity.generation = 1_000 + i as u64;
        let mut core = Core::new(CoreParts {
            identity,
            tags: Tags::new(),
            timings: spec.timings,
            sealer: Arc::new(Sealer::new(spec.datacenter, spec.key.as_ref())),
            stats: Arc::new(Stats::default()),
            rng: StdRng::seed_from_u64(i as u64 + 1),
        });
        let fx = core.start();
        self.nodes.push(Node {
            core,
            addr,
            stopped: false,
            members: Arc::new(Vec::new()),
        });
        self.apply(i, fx);
        i
    }

    fn add_named(&mut self, names: &[&str]) -> Vec<usize> {
        names.iter().map(|n| self.add(Spec::named(n))).collect()
    }

    fn apply(&mut self, i: usize, fx: Effects) {
        for (to, packet) in fx.datagrams {
            self.wire.push_back((i, to, packet));
        }
        for (after, timer) in fx.timers {
            self.timers.insert((self.now + after, self.seq), (i, timer));
            self.seq += 1;
        }
        for peer in fx.syncs {
            self.syncs_asked.push((i, peer));
        }
        if let Some(list) = fx.members {
            self.nodes[i].members = list;
        }
    }

    fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.nodes.iter().position(|n| n.addr == addr)
    }

    /// Delivers every datagram in flight, and those they cause, at the current time.
    fn deliver(&mut self) {
        while let Some((from, to, packet)) = self.wire.pop_front() {
            let Some(j) = self.index_of(to) else { continue };
            let lost = self.nodes[from].stopped
                || self.nodes[j].stopped
                || self.cut.contains(&from)
                || self.cut.contains(&j)
                || self.apart.contains(&(from, j));
            if lost {
                continue;
            }
            let from_addr = self.nodes[from].addr;
            let fx = self.nodes[j].core.handle_datagram(&packet, from_addr);
            self.apply(j, fx);
        }
    }

    /// Splits the network: nothing passes between a node of `x` and a node of `y`.
    fn partition(&mut self, x: &[usize], y: &[usize]) {
        for &i in x {
            for &j in y {
                self.apart.insert((i, j));
                self.apart.insert((j, i));
            }
        }
    }

    /// Moves the fake clock forward, firing every timer that falls due on the way, in order.
    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        self.deliver();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > until {
                break;
            }
            let ((at, _), (i, timer)) = entry.remove_entry();
            self.now = at;
            if self.nodes[i].stopped {
                continue;
            }
            let fx = self.nodes[i].core.handle_timer(timer);
            self.apply(i, fx);
            self.deliver();
        }
        self.now = until;
    }

    fn secs(&mut self, s: f64) {
        self.advance(Duration::from_secs_f64(s));
    }

    /// What the TCP syncer does for a join of `a` through `b`, with the same frames.
    fn join(&mut self, a: usize, b: usize) -> Result<usize, SyncError> {
        let request =
            sync::request_frames(&self.nodes[a].core.sealer, &self.nodes[a].core.snapshot())?;
        let opened = {
            let core = &self.nodes[b].core;
            let mut pages = sync::Pages::default();
            request
                .iter()
                .map(|f| pages.add_request(&core.sealer, &core.stats, f))
                .find_map(Result::transpose)
                .expect("a last page")
        };
        let answer = match opened {
            Err(reason) => Err(reason),
            Ok(theirs) => {
                let (answer, fx) = self.nodes[b].core.handle_sync_request(theirs);
                self.apply(b, fx);
                answer
            }
        };
        let reply = sync::answer_frames(&self.nodes[b].core.sealer, &answer);
        let mut pages = sync::Pages::default();
        let theirs = reply
            .iter()
            .map(|f| pages.add_reply(&self.nodes[a].core.sealer, f))
            .find_map(Result::transpose)
            .expect("a last page")?;
        let (result, fx) = self.nodes[a].core.handle_sync_reply(theirs);
        self.apply(a, fx);
        self.deliver();
        result.map_err(|r| SyncError::Refused(r.to_string()))
    }

    /// `about`'s status as `viewer` lists it.
    fn status(&self, viewer: usize, about: &str) -> Option<MemberStatus> {
        let row = self.nodes[viewer].members.iter().find(|m| m.name == about);
        row.map(|m| m.status)
    }

    fn tags(&self, viewer: usize, about: &str) -> Tags {
        let row = self.nodes[viewer].members.iter().find(|m| m.name == about);
        row.map(|m| m.tags.clone()).unwrap_or_default()
    }

    /// Whether every node in `viewers` lists `about` as `status`.
    fn all_see(&self, viewers: &[usize], about: &str, status: MemberStatus) -> bool {
        viewers
            .iter()
            .all(|&v| self.status(v, about) == Some(status))
    }

    /// Whether `viewer`'s foca holds `about` as suspect.
    fn suspects(&self, viewer: usize, about: &str) -> bool {
        self.nodes[viewer]
            .core
            .swim
            .iter_membership_state()
            .any(|m| m.id().name == about && m.state() == State::Suspect)
    }

    /// A graceful leave as [`Gossip::leave`](crate::gossip::Gossip::leave) runs it.
    fn leave(&mut self, i: usize) {
        let fx = self.nodes[i].core.start_leave();
        self.apply(i, fx);
        for _ in 0..20 {
            self.secs(0.1);
            let (backlog, fx) = self.nodes[i].core.push_leave();
            self.apply(i, fx);
            if backlog == 0 {
                break;
            }
        }
        let fx = self.nodes[i].core.finish_leave();
        self.apply(i, fx);
        self.deliver();
        self.nodes[i].stopped = true;
    }

    /// Whether `viewer` holds anything about `about`: a row, a foca entry (any state), a
    /// metadata record, or an entry of its full state.
    fn remembers(&self, viewer: usize, about: &str) -> bool {
        let core = &self.nodes[viewer].core;
        let state = core.snapshot();
        core.table.contains_key(about)
            || core
                .swim
                .iter_membership_state()
                .any(|m| m.id().name == about)
            || core.metas.lock().unwrap().records.contains_key(about)
            || state.members.iter().any(|m| m.id().name == about)
            || state.metas.iter().any(|m| m.name == about)
    }

    fn stats(&self, i: usize) -> &Stats {
        &self.nodes[i].core.stats
    }
}

/// Three nodes, b and c joined through a, every list complete.
fn three() -> (Net, [usize; 3]) {
    let mut net = Net::default();
    let ids = net.add_named(&["a", "b", "c"]);
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    net.join(b, a).unwrap();
    net.join(c, a).unwrap();
    net.secs(2.0);
    (net, [a, b, c])
}

#[test]
fn joined_nodes_list_each_other_alive() {
    let (net, all) = three();
    for name in ["a", "b", "c"] {
        assert!(net.all_see(&all, name, MemberStatus::Alive), "{name}");
    }
    assert_eq!(net.nodes[0].members.len(), 3);
    assert!(net.stats(0).dropped_swim_rejected.load(Ordering::Relaxed) == 0);
}

#[test]
fn a_suspected_node_that_answers_again_refutes_and_stays_alive() {
    let (mut net, [a, b, c]) = three();
    net.cut.insert(b);
    let mut waited = 0.0;
    while !(net.suspects(a, "b") || net.suspects(c, "b")) {
        assert!(waited < 3.0, "nobody suspected the cut-off node");
        net.secs(0.05);
        waited += 0.05;
    }
    net.cut.clear();
    for _ in 0..50 {
        net.secs(0.1);
        assert_ne!(
            net.status(a, "b"),
            Some(MemberStatus::Failed),
            "b was not refuted in time"
        );
        assert_ne!(
            net.status(c, "b"),
            Some(MemberStatus::Failed),
            "b was not refuted in time"
        );
    }
    assert!(net.all_see(&[a, b, c], "b", MemberStatus::Alive));
    assert!(!net.suspects(a, "b") && !net.suspects(c, "b"));
}

#[test]
fn a_leave_is_left_and_a_silence_is_failed() {
    let (mut net, [a, b, c]) = three();
    net.leave(c);
    net.secs(3.0);
    assert!(net.all_see(&[a, b], "c", MemberStatus::Left));
    assert_eq!(net.status(c, "c"), Some(MemberStatus::Left));
    net.nodes[b].stopped = true;
    net.secs(5.0);
    assert_eq!(net.status(a, "b"), Some(MemberStatus::Failed));
    assert_eq!(net.status(a, "c"), Some(MemberStatus::Left));
}

#[test]
fn force_leave_turns_failed_into_left_everywhere() {
    let (mut net, [a, b, c]) = three();
    let (refusal, _) = net.nodes[a].core.force_leave("b", false);
    assert_eq!(
        refusal,
        Err(ForceLeaveError::StillLive {
            name: "b".into(),
            status: MemberStatus::Alive
        })
    );
    assert_eq!(
        net.nodes[a].core.force_leave("a", false).0,
        Err(ForceLeaveError::IsSelf("a".into()))
    );
    assert_eq!(
        net.nodes[a].core.force_leave("nobody", false).0,
        Err(ForceLeaveError::NoSuchMember("nobody".into()))
    );

    net.nodes[b].stopped = true;
    net.secs(5.0);
    assert!(net.all_see(&[a, c], "b", MemberStatus::Failed));
    let (done, fx) = net.nodes[a].core.force_leave("b", false);
    done.unwrap();
    net.apply(a, fx);
    net.secs(2.0);
    assert!(net.all_see(&[a, c], "b", MemberStatus::Left));

    // With prune, the member is forgotten by the one that forced it.
    let (done, fx) = net.nodes[c].core.force_leave("b", true);
    done.unwrap();
    net.apply(c, fx);
    assert_eq!(net.status(c, "b"), None);
}

#[test]
fn a_name_in_use_is_refused_with_the_reason() {
    let (mut net, [a, b, _]) = three();
    let b_id = net.nodes[b].core.local.node_id;
    let a_id = net.nodes[a].core.local.node_id;

    // Another node under b's name, joining through a: a knows b alive under another id.
    let impostor = net.add(Spec::named("b"));
    let err = net.join(impostor, a).unwrap_err();
    assert!(
        matches!(&err, SyncError::Refused(r) if r.contains("node name \"b\" is already in use by the live node")),
        "{err}"
    );
    let typed = net.nodes[a]
        .core
        .check_conflicts(&net.nodes[impostor].core.snapshot());
    assert!(matches!(typed, Err(Refusal::NameInUse { holder, .. }) if holder.0 == b_id));

    // Another node under a's own name, joining a.
    let twin = net.add(Spec::named("a"));
    let err = net.join(twin, a).unwrap_err();
    assert!(
        matches!(&err, SyncError::Refused(r) if r.contains("is claimed by two live nodes")),
        "{err}"
    );

    // a's node id under a new name: a copied data_dir.
    let copy = net.add(Spec {
        node_id: a_id,
        ..Spec::named("copy")
    });
    let err = net.join(copy, a).unwrap_err();
    assert!(
        matches!(&err, SyncError::Refused(r) if r.contains("a copied data_dir?")),
        "{err}"
    );
    net.secs(2.0);
    assert_eq!(net.nodes[a].members.len(), 3, "none of them was merged");
    assert!(net.all_see(&[a], "b", MemberStatus::Alive));
}

#[test]
fn tag_updates_reach_everyone_and_the_newest_wins() {
    let (mut net, [a, b, c]) = three();
    for role in ["node", "consul"] {
        let tags: Tags = [("role".to_string(), role.to_string())].into();
        let fx = net.nodes[a].core.set_tags(tags.clone());
        net.apply(a, fx);
        net.secs(1.0);
        for viewer in [a, b, c] {
            assert_eq!(net.tags(viewer, "a"), tags, "viewer {viewer}");
        }
    }
    // A node that joins later learns the tags through the sync.
    let d = net.add(Spec::named("d"));
    net.join(d, b).unwrap();
    assert_eq!(
        net.tags(d, "a").get("role").map(String::as_str),
        Some("consul")
    );
}

#[test]
fn another_datacenter_is_refused_and_its_datagrams_dropped() {
    let mut net = Net::default();
    let east = net.add(Spec {
        datacenter: "east",
        ..Spec::named("e")
    });
    let west = net.add(Spec {
        datacenter: "west",
        ..Spec::named("w")
    });
    let err = net.join(west, east).unwrap_err();
    assert!(
        matches!(&err, SyncError::Refused(r) if r.contains("datacenter \"west\"")),
        "{err}"
    );
    assert_eq!(
        net.stats(east)
            .dropped_wrong_datacenter
            .load(Ordering::Relaxed),
        1
    );

    // A west datagram sent at east anyway is dropped before foca sees it.
    let east_addr = net.nodes[east].addr;
    let east_id = net.nodes[east].core.swim.identity().clone();
    let west_core = &mut net.nodes[west].core;
    let _ = west_core.swim.announce(east_id, &mut west_core.runtime);
    let fx = net.nodes[west].core.finish();
    assert!(fx.datagrams.iter().any(|(to, _)| *to == east_addr));
    net.apply(west, fx);
    net.deliver();
    assert_eq!(
        net.stats(east)
            .dropped_wrong_datacenter
            .load(Ordering::Relaxed),
        2
    );
    assert_eq!(net.status(east, "w"), None);
}

#[test]
fn a_missing_or_different_key_is_refused_and_says_which() {
    let mut net = Net::default();
    let key = |b: u8| Some(GossipKey(vec![b; 32]));
    let keyed = net.add(Spec {
        key: key(1),
        ..Spec::named("k")
    });
    let keyless = net.add(Spec::named("n"));
    let other = net.add(Spec {
        key: key(2),
        ..Spec::named("o")
    });
    let same = net.add(Spec {
        key: key(1),
        ..Spec::named("s")
    });

    let err = net.join(keyless, keyed).unwrap_err();
    assert!(
        matches!(&err, SyncError::Refused(r) if r.contains("requires gossip encryption")),
        "{err}"
    );
    let err = net.join(other, keyed).unwrap_err();
    assert!(
        matches!(&err, SyncError::Refused(r) if r.contains("-encrypt keys differ")),
        "{err}"
    );
    // The other way round: the keyless agent cannot read an encrypted join.
    let err = net.join(keyed, keyless).unwrap_err();
    assert!(
        matches!(&err, SyncError::Refused(r) if r.contains("no gossip key")),
        "{err}"
    );
    let s = net.stats(keyed);
    assert_eq!(s.dropped_unencrypted.load(Ordering::Relaxed), 1);
    assert_eq!(s.dropped_decrypt.load(Ordering::Relaxed), 1);

    net.join(same, keyed).unwrap();
    net.secs(2.0);
    assert!(net.all_see(&[keyed, same], "s", MemberStatus::Alive));
    assert_eq!(net.status(keyed, "n"), None);
    assert_eq!(net.status(keyed, "o"), None);
}

#[test]
fn anti_entropy_asks_for_one_sync_per_interval_with_a_live_member() {
    let (mut net, [a, _, _]) = three();
    net.syncs_asked.clear();
    net.secs(Timings::default().anti_entropy_interval.as_secs_f64());
    let from_a: Vec<SocketAddr> = net
        .syncs_asked
        .iter()
        .filter(|(i, _)| *i == a)
        .map(|(_, peer)| *peer)
        .collect();
    assert_eq!(from_a.len(), 1, "{from_a:?}");
    assert_ne!(from_a[0], net.nodes[a].addr);
}

/// Four nodes, every one joined through the first; `specs` in order.
fn joined(specs: Vec<Spec<'_>>) -> (Net, Vec<usize>) {
    let mut net = Net::default();
    let ids: Vec<usize> = specs.into_iter().map(|s| net.add(s)).collect();
    for &i in &ids[1..] {
        net.join(i, ids[0]).unwrap();
    }
    net.secs(2.0);
    (net, ids)
}

#[test]
fn a_crashed_member_is_reaped_everywhere_and_a_peer_that_has_not_reaped_does_not_bring_it_back() {
    // c keeps failed members four times as long as a and b: for 30 s it still syncs d as down.
    let (mut net, ids) = joined(vec![
        Spec::reaping("a", 10, 10),
        Spec::reaping("b", 10, 10),
        Spec::reaping("c", 40, 40),
        Spec::reaping("d", 10, 10),
    ]);
    let (a, b, c, d) = (ids[0], ids[1], ids[2], ids[3]);
    assert!(net.all_see(&[a, b, c], "d", MemberStatus::Alive));
    net.nodes[d].stopped = true;
    net.secs(5.0);
    assert!(net.all_see(&[a, b, c], "d", MemberStatus::Failed));
    // Failed is kept until the timeout, counted from when each saw d fail (2.5 s after the
    // stop here).
    net.secs(4.0);
    assert!(net.all_see(&[a, b], "d", MemberStatus::Failed));
    net.secs(4.0);
    for v in [a, b] {
        assert_eq!(net.status(v, "d"), None, "viewer {v}");
        assert!(!net.remembers(v, "d"), "viewer {v} still holds d");
    }
    assert_eq!(net.status(c, "d"), Some(MemberStatus::Failed));
    assert!(net.remembers(c, "d"));

    // Full-state syncs both ways with c, which still has d down, and its metadata record.
    for _ in 0..3 {
        net.join(a, c).unwrap();
        net.join(c, b).unwrap();
        net.secs(1.0);
        for v in [a, b] {
            assert_eq!(
                net.status(v, "d"),
                None,
                "a sync from c brought d back at {v}"
            );
            assert!(!net.remembers(v, "d"), "a sync from c put d back into {v}");
        }
    }
    // c reaps in its own time; then no one has anything left about d.
    net.secs(30.0);
    for v in [a, b, c] {
        assert_eq!(net.status(v, "d"), None, "viewer {v}");
        assert!(!net.remembers(v, "d"), "viewer {v} still holds d");
    }
    assert!(net.all_see(&[a, b, c], "a", MemberStatus::Alive));
    assert_eq!(net.nodes[a].members.len(), 3);
}

#[test]
fn left_members_go_after_the_tombstone_timeout_and_failed_ones_after_the_reconnect_timeout() {
    let (mut net, ids) = joined(vec![
        Spec::reaping("a", 30, 5),
        Spec::reaping("b", 30, 5),
        Spec::reaping("c", 30, 5),
        Spec::reaping("d", 30, 5),
    ]);
    let (a, b, c, d) = (ids[0], ids[1], ids[2], ids[3]);
    net.leave(c);
    net.nodes[d].stopped = true;
    net.secs(3.0);
    assert!(net.all_see(&[a, b], "c", MemberStatus::Left));
    assert!(net.all_see(&[a, b], "d", MemberStatus::Failed));
    net.secs(5.0);
    for v in [a, b] {
        assert!(
            !net.remembers(v, "c"),
            "viewer {v} still holds c, which left"
        );
        assert_eq!(net.status(v, "d"), Some(MemberStatus::Failed), "viewer {v}");
    }
    // A force-leave turns failed into left: the tombstone timeout runs from then on.
    let (done, fx) = net.nodes[a].core.force_leave("d", false);
    done.unwrap();
    net.apply(a, fx);
    net.secs(2.0);
    assert!(net.all_see(&[a, b], "d", MemberStatus::Left));
    net.secs(5.0);
    for v in [a, b] {
        assert!(!net.remembers(v, "d"), "viewer {v} still holds d");
    }
}

#[test]
fn a_reaped_member_that_comes_back_is_alive_again() {
    let (mut net, ids) = joined(vec![
        Spec::reaping("a", 5, 5),
        Spec::reaping("b", 5, 5),
        Spec::reaping("c", 5, 5),
        Spec::reaping("d", 5, 5),
    ]);
    let (a, b, c, d) = (ids[0], ids[1], ids[2], ids[3]);
    let d_id = net.nodes[d].core.local.node_id;

    // Cut off (not stopped) for longer than the timeout: each side reaps the other.
    net.cut.insert(d);
    net.secs(10.0);
    for v in [a, b, c] {
        assert!(!net.remembers(v, "d"), "viewer {v} still holds d");
    }
    for other in ["a", "b", "c"] {
        assert!(!net.remembers(d, other), "d still holds {other}");
    }
    // The cut heals; nothing reconnects by itself (no one remembers anyone to announce to)
    // until d joins again, as its retry-join does.
    net.cut.clear();
    net.join(d, a).unwrap();
    net.secs(3.0);
    for name in ["a", "b", "c", "d"] {
        assert!(
            net.all_see(&[a, b, c, d], name, MemberStatus::Alive),
            "{name}"
        );
    }

    // Stopped, reaped, then restarted (same name and node id, a new process): alive again.
    net.nodes[d].stopped = true;
    net.secs(10.0);
    for v in [a, b, c] {
        assert!(!net.remembers(v, "d"), "viewer {v} still holds d");
    }
    let d2 = net.add(Spec {
        node_id: d_id,
        ..Spec::reaping("d", 5, 5)
    });
    net.join(d2, b).unwrap();
    net.secs(3.0);
    assert!(net.all_see(&[a, b, c, d2], "d", MemberStatus::Alive));
}

#[test]
fn a_metadata_record_no_member_carries_is_dropped_after_two_sweeps() {
    let (mut net, [a, _, _]) = three();
    let stray = crate::gossip::meta::MemberMeta {
        name: "ghost".into(),
        node_id: Uuid::new_v4(),
        generation: 1,
        version: 1,
        tags: Tags::new(),
        leaving: false,
    };
    net.nodes[a].core.metas.lock().unwrap().offer(stray);
    let interval = Timings::default().anti_entropy_interval.as_secs_f64();
    net.secs(interval);
    assert!(net.remembers(a, "ghost"), "dropped at the first sweep");
    net.secs(interval);
    assert!(!net.remembers(a, "ghost"), "kept after the second sweep");
    assert!(net.remembers(a, "b"), "a live member's record was dropped");
}

/// Five nodes split 2|3 until each side lists the other failed, then healed: every one lists
/// every other alive again within a few probe periods (docs/gossip.md, "Healing after a
/// partition"), while a member that died before stays failed and one that left stays left.
#[test]
fn a_healed_split_lists_everyone_alive_within_a_few_probe_periods() {
    let mut net = Net::default();
    let ids = net.add_named(&["a", "b", "c", "d", "e", "dead", "gone"]);
    let (live, dead, gone) = (&ids[..5], ids[5], ids[6]);
    for &i in &ids[1..] {
        net.join(i, ids[0]).unwrap();
    }
    net.secs(2.0);
    net.leave(gone);
    // Its process still runs after the leave (foca holds itself down): nothing may pull it back.
    net.nodes[gone].stopped = false;
    net.nodes[dead].stopped = true;
    net.secs(5.0);
    let names = ["a", "b", "c", "d", "e"];
    for name in names {
        assert!(net.all_see(live, name, MemberStatus::Alive), "{name}");
    }
    assert!(net.all_see(live, "dead", MemberStatus::Failed));
    assert!(net.all_see(live, "gone", MemberStatus::Left));

    let (x, y) = (&live[..2], &live[2..]);
    net.partition(x, y);
    let sees_other_side_failed = |net: &Net| {
        x.iter().all(|&v| {
            names[2..]
                .iter()
                .all(|n| net.status(v, n) == Some(MemberStatus::Failed))
        }) && y.iter().all(|&v| {
            names[..2]
                .iter()
                .all(|n| net.status(v, n) == Some(MemberStatus::Failed))
        })
    };
    let mut waited = 0.0;
    while !sees_other_side_failed(&net) {
        assert!(waited < 10.0, "the sides did not list each other failed");
        net.secs(0.05);
        waited += 0.05;
    }
    net.secs(3.0);
    assert!(
        sees_other_side_failed(&net),
        "a side came back through the split"
    );

    net.apart.clear();
    let bound = 6.0 * Timings::default().probe_period.as_secs_f64();
    let all_alive = |net: &Net| {
        names
            .iter()
            .all(|n| net.all_see(live, n, MemberStatus::Alive))
    };
    let mut waited = 0.0;
    while !all_alive(&net) {
        assert!(
            waited < bound,
            "not every node listed every other alive within {bound} s of the heal: {:?}",
            live.iter()
                .map(|&v| net.nodes[v]
                    .members
                    .iter()
                    .map(|m| (m.name.clone(), m.status))
                    .collect::<Vec<_>>())
                .collect::<Vec<_>>()
        );
        net.secs(0.05);
        waited += 0.05;
    }
    // And it stays so: nobody flaps, the dead stays failed, the one that left stays left.
    for _ in 0..100 {
        net.secs(0.1);
        assert!(all_alive(&net));
        assert!(net.all_see(live, "dead", MemberStatus::Failed));
        assert!(net.all_see(live, "gone", MemberStatus::Left));
    }
    assert_eq!(net.status(gone, "gone"), Some(MemberStatus::Left));
}
