//! The server RPC port as a hostile network (docs/servers.md, "A hostile network"), through
//! real processes: a forged Raft term from a stranger, garbage and unbounded snapshot chunks,
//! and a minute of random and mutated frames while the cluster takes writes.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use muster::server::protocol::{
    Consistency, KvQuery, PreVote, ReadRequest, Request, Response, StateCommand, Write as KvWrite,
};
use muster::server::types::{LogId, ServerNode, TypeConfig, Vote};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::{CommittedLeaderId, SnapshotMeta};
use support::*;

const T: Duration = Duration::from_secs(30);

/// Three servers on `block`, formed, with a leader.
fn cluster(block: Block) -> Vec<Agent> {
    let s = servers(
        block,
        3,
        3,
        &["-retry-join", &block.ip(1), "-retry-join", &block.ip(2)],
    );
    let refs: Vec<&Agent> = s.iter().collect();
    wait_for_leader(&refs, T);
    s
}

/// A request as it goes on the wire: `u32 length ‖ postcard(Frame { id, body })` (a tuple
/// encodes as the struct does).
fn frame(id: u64, req: &Request) -> Vec<u8> {
    let body = postcard::to_allocvec(&(id, req)).unwrap();
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(&body);
    f
}

/// A TCP connection to `to` from the address `from`.
fn connect_from(from: &str, to: &str) -> std::io::Result<TcpStream> {
    let to: SocketAddr = to.parse().unwrap();
    let from: SocketAddr = format!("{from}:0").parse().unwrap();
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.bind(&from.into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(2))?;
    let s: TcpStream = s.into();
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    Ok(s)
}

/// Sends one request and waits (5 s at most) for its answer; None if the connection closed
/// or nothing came.
fn ask(s: &mut TcpStream, id: u64, req: &Request) -> Option<Response> {
    s.write_all(&frame(id, req)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    let (got, resp): (u64, Response) = postcard::from_bytes(&body).ok()?;
    assert_eq!(got, id, "the answer carries its request's id");
    Some(resp)
}

/// Every server's current term.
fn terms(s: &[Agent]) -> Vec<u64> {
    s.iter()
        .map(|a| a.raft("term").parse().unwrap_or(0))
        .collect()
}

/// A node id no server has.
const STRANGER: u128 = 0x5eed_0000_0000_0000_0000_0000_0000_0bad;

/// A writer through every server's HTTP API: counts the writes acknowledged and the longest
/// time without one.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    longest_gap: Arc<Mutex<Duration>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(addrs: Vec<String>, prefix: &'static str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let longest_gap = Arc::new(Mutex::new(Duration::ZERO));
        let (st, ack, fail, gap) = (
            stop.clone(),
            acked.clone(),
            failed.clone(),
            longest_gap.clone(),
        );
        let thread = std::thread::spawn(move || {
            let mut last = Instant::now();
            let mut n = 0usize;
            while !st.load(Ordering::Relaxed) {
                let addr = &addrs[n % addrs.len()];
                let ok = matches!(
                    http_full(addr, "PUT", &format!("/v1/kv/{prefix}/{n}"), b"v"),
                    Some((200, _, ref b)) if b == b"true"
                );
                n += 1;
                if ok {
                    ack.fetch_add(1, Ordering::Relaxed);
                    let mut g = gap.lock().unwrap();
                    *g = (*g).max(last.elapsed());
                    last = Instant::now();
                } else {
                    fail.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let mut g = gap.lock().unwrap();
            *g = (*g).max(last.elapsed());
        });
        Writer {
            stop,
            acked,
            failed,
            longest_gap,
            thread: Some(thread),
        }
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Stops it: (acknowledged, failed, longest time without an acknowledged write).
    fn finish(mut self) -> (u64, u64, Duration) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        (
            self.acked(),
            self.failed.load(Ordering::Relaxed),
            *self.longest_gap.lock().unwrap(),
        )
    }
}

/// Every server still runs (no panic, no abort, no exit) and logged no panic.
fn all_alive(s: &mut [Agent]) {
    for a in s.iter_mut() {
        let exited = a.wait_exit(Duration::ZERO);
        assert_eq!(exited, None, "{} is still running:\n{}", a.name, a.log());
        assert!(
            !a.log().contains("panicked"),
            "{} panicked:\n{}",
            a.name,
            a.log()
        );
    }
}

/// A stranger (a node id in no configuration and not in gossip) sends every server an
/// AppendEntries, a Vote and an InstallSnapshot with the term `u64::MAX`. Before, a follower
/// adopted the term, and the leader was deposed by it at its next AppendEntries: the cluster's
/// term went to `u64::MAX` for good. Each must be refused, the terms stay where they were, and
/// the cluster keeps committing.
#[test]
fn a_forged_term_from_a_stranger_does_not_raise_the_clusters_term() {
    let net = Block::ForgedTerm;
    let mut s = cluster(net);
    let before = terms(&s);
    eprintln!("terms before: {before:?}");
    let writer = Writer::start(s.iter().map(Agent::http_addr).collect(), "forged");

    step(
        1,
        "a stranger sends each server AppendEntries, Vote and InstallSnapshot of term u64::MAX",
    );
    let forged = Vote::new_committed(u64::MAX, STRANGER);
    let far = Some(LogId::new(
        CommittedLeaderId::new(u64::MAX, STRANGER),
        u64::MAX,
    ));
    let requests = [
        Request::AppendEntries(AppendEntriesRequest {
            vote: forged,
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        }),
        Request::Vote(VoteRequest::new(Vote::new(u64::MAX, STRANGER), far)),
        Request::InstallSnapshot(InstallSnapshotRequest::<TypeConfig> {
            vote: forged,
            meta: SnapshotMeta {
                last_log_id: far,
                last_membership: Default::default(),
                snapshot_id: "forged".into(),
            },
            offset: 0,
            data: vec![0; 64],
            done: true,
        }),
    ];
    for (i, a) in s.iter().enumerate() {
        let mut c = connect_from(&net.ip(50), &format!("{}:8300", a.ip)).expect("connect");
        for (k, req) in requests.iter().enumerate() {
            let answer = ask(&mut c, (i * 10 + k) as u64, req);
            let kind = ["AppendEntries", "Vote", "InstallSnapshot"][k];
            eprintln!("{} answered the forged {kind} with {answer:?}", a.name);
            let refused = match &answer {
                Some(Response::AppendEntries(r)) => r.is_err(),
                Some(Response::Vote(r)) => r.is_err() || r.as_ref().is_ok_and(|v| !v.vote_granted),
                Some(Response::InstallSnapshot(r)) => r.is_err(),
                _ => false,
            };
            assert!(refused, "{} refuses the forged {kind}: {answer:?}", a.name);
        }
    }

    step(
        2,
        "the terms stay where they were, and the cluster keeps committing",
    );
    let start = writer.acked();
    wait_until(T, "20 more writes are acknowledged", || {
        writer.acked() >= start + 20
    });
    let refs: Vec<&Agent> = s.iter().collect();
    wait_for_leader(&refs, T);
    let after = terms(&s);
    eprintln!("terms after: {after:?}");
    for (b, a) in before.iter().zip(&after) {
        assert!(
            *a <= b + 2,
            "the term did not move with the forged one: {before:?} → {after:?}"
        );
    }
    let (acked, failed, gap) = writer.finish();
    eprintln!("writes: {acked} acknowledged, {failed} failed, longest gap {gap:?}");
    assert!(
        s.iter()
            .any(|a| a.log().contains("refusing AppendEntries of term")),
        "the refusal is logged"
    );
    all_alive(&mut s);
}

/// Snapshot chunks a sender should never send, with the leader's own vote (so the term check
/// lets them through): a chunk that leaves a hole at 2^40 bytes, one whose end overflows, and a
/// finished snapshot of garbage. Before, the first made the follower try to grow a buffer to a
/// terabyte, and the last failed the store's install and stopped Raft (the server exited). Each
/// must be an error answer, and the follower keeps following.
#[test]
fn unbounded_and_garbage_snapshot_chunks_are_refused_and_raft_goes_on() {
    let net = Block::GarbageSnapshot;
    let mut s = cluster(net);
    let leader = s.iter().position(Agent::is_leader).expect("a leader");
    let follower = (leader + 1) % s.len();
    let leader_id: u128 = uuid::Uuid::parse_str(&s[follower].raft("leader_id"))
        .expect("the follower names its leader")
        .as_u128();
    let term: u64 = s[follower].raft("term").parse().unwrap();
    let vote = Vote::new_committed(term, leader_id);
    let chunk = |offset: u64, data: Vec<u8>, done: bool| {
        Request::InstallSnapshot(InstallSnapshotRequest::<TypeConfig> {
            vote,
            meta: SnapshotMeta {
                last_log_id: Some(LogId::new(CommittedLeaderId::new(term, leader_id), 1 << 40)),
                last_membership: Default::default(),
                snapshot_id: "garbage".into(),
            },
            offset,
            data,
            done,
        })
    };
    let f = &s[follower];
    let mut c = connect_from(&net.ip(50), &format!("{}:8300", f.ip)).expect("connect");

    step(
        1,
        "a first chunk of garbage, then one at 2^40 and one whose end overflows",
    );
    let first = ask(&mut c, 1, &chunk(0, vec![0xa5; 1000], false));
    eprintln!("first chunk: {first:?}");
    assert!(
        matches!(first, Some(Response::InstallSnapshot(Ok(_)))),
        "{first:?}"
    );
    for (id, offset) in [(2, 1u64 << 40), (3, u64::MAX - 4)] {
        let answer = ask(&mut c, id, &chunk(offset, vec![1; 16], false));
        eprintln!("chunk at {offset}: {answer:?}");
        assert!(
            matches!(answer, Some(Response::InstallSnapshot(Err(_)))),
            "refused: {answer:?}"
        );
    }

    step(
        2,
        "the snapshot finished as garbage: an error answer, nothing installed",
    );
    let first = ask(&mut c, 4, &chunk(0, vec![0xa5; 1000], false));
    assert!(
        matches!(first, Some(Response::InstallSnapshot(Ok(_)))),
        "{first:?}"
    );
    let last = ask(&mut c, 5, &chunk(1000, vec![0xff; 1000], true));
    eprintln!("last chunk: {last:?}");
    assert!(
        matches!(last, Some(Response::InstallSnapshot(Err(_)))),
        "refused: {last:?}"
    );
    assert!(f.log().contains("does not decode"), "{}", f.log());

    step(
        3,
        "the follower keeps following: a new write reaches its state",
    );
    s[leader].put("after-garbage", "v");
    wait_until(T, "the follower applies the write", || {
        http(&f.http_addr(), "GET", "/v1/kv/after-garbage?raw&stale")
            .is_some_and(|(st, b)| st == 200 && b == "v")
    });
    all_alive(&mut s);
}

/// A small seeded generator (splitmix64), so that a run can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Between 1 and `max` random bytes.
    fn up_to(&mut self, max: u64) -> Vec<u8> {
        let n = 1 + self.below(max) as usize;
        self.bytes(n)
    }
}

/// Real requests to mutate: each kind the port takes, with plausible values. No request that
/// an intact copy would make harmful is here as such (no real server id to remove, no
/// hand-over): they reach the port only mutated.
fn corpus(rng: &mut Rng) -> Vec<Request> {
    let id = rng.next() as u128;
    let term = rng.below(1 << 20);
    let set = StateCommand::KvSet {
        key: format!("fuzz-{}", rng.below(1000)),
        value: rng.up_to(200),
        flags: 0,
        cas: None,
    };
    vec![
        Request::AppendEntries(AppendEntriesRequest {
            vote: Vote::new_committed(term, id),
            prev_log_id: Some(LogId::new(
                CommittedLeaderId::new(term, id),
                rng.below(1000),
            )),
            entries: vec![],
            leader_commit: None,
        }),
        Request::Vote(VoteRequest::new(Vote::new(term, id), None)),
        Request::InstallSnapshot(InstallSnapshotRequest::<TypeConfig> {
            vote: Vote::new_committed(term, id),
            meta: Default::default(),
            offset: rng.below(1 << 16),
            data: rng.up_to(512),
            done: rng.below(2) == 0,
        }),
        Request::PeerStatus,
        Request::BootstrapPropose {
            proposer: id,
            attempt: rng.next(),
            servers: vec![(
                id,
                ServerNode {
                    addr: "127.177.0.99:8300".into(),
                    name: "fuzz".into(),
                },
            )],
        },
        Request::KvRead(ReadRequest {
            query: KvQuery::Recurse(String::new()),
            consistency: Consistency::Stale,
            min_index: 0,
            wait_ms: rng.below(2000),
        }),
        Request::Write(set.clone()),
        Request::CatalogNodes(Consistency::Default),
        Request::AutopilotState,
        Request::BootstrapRelease {
            proposer: id,
            up_to: rng.next(),
        },
        Request::PreVote(PreVote {
            candidate: id,
            last_log_id: None,
        }),
        Request::WriteOnce(KvWrite {
            id: Some(uuid::Uuid::from_u128(rng.next() as u128)),
            cmd: set,
        }),
    ]
}

/// One hostile frame: random bytes, a valid length with a random body, or a real request
/// mutated (bytes flipped, inserted, removed, the whole cut short).
fn hostile_frame(rng: &mut Rng) -> (usize, Vec<u8>) {
    match rng.below(3) {
        0 => (0, rng.up_to(2048)),
        1 => {
            let body = rng.up_to(4096);
            let mut f = (body.len() as u32).to_be_bytes().to_vec();
            f.extend_from_slice(&body);
            (1, f)
        }
        _ => {
            let reqs = corpus(rng);
            let req = &reqs[rng.below(reqs.len() as u64) as usize];
            let mut f = frame(rng.next(), req);
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(f.len() as u64) as usize;
                match rng.below(4) {
                    0 => f[at] ^= 1 << rng.below(8),
                    1 => f[at] = rng.next() as u8,
                    2 => f.insert(at, rng.next() as u8),
                    _ => {
                        f.remove(at);
                    }
                }
                if f.is_empty() {
                    f.push(0);
                }
            }
            if rng.below(8) == 0 {
                let keep = 1 + rng.below(f.len() as u64) as usize;
                f.truncate(keep);
            }
            (2, f)
        }
    }
}

/// Reads whatever the server sent back, without waiting.
fn drain(c: &mut TcpStream) -> bool {
    let mut buf = [0u8; 8192];
    let _ = c.set_nonblocking(true);
    let open = loop {
        match c.read(&mut buf) {
            Ok(0) => break false,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break true,
            Err(_) => break false,
        }
    };
    let _ = c.set_nonblocking(false);
    open
}

/// For a minute (`MUSTER_FUZZ_SECS`), four tasks send each server random bytes, frames of a
/// valid length with random bodies, and real requests mutated, while a writer puts keys
/// through the HTTP API. Every server must still run at the end, none may have panicked, the
/// term must not run away, and the writes must commit throughout. The seed is printed;
/// `MUSTER_FUZZ_SEED` replays it.
#[test]
fn random_and_mutated_frames_leave_the_cluster_committing() {
    let net = Block::RpcFuzz;
    let seed: u64 = std::env::var("MUSTER_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let secs: u64 = std::env::var("MUSTER_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    eprintln!("rpc fuzz seed {seed} (replay: MUSTER_FUZZ_SEED={seed}), {secs} s");
    let mut s = cluster(net);
    let before = terms(&s);
    let targets: Vec<String> = s.iter().map(|a| format!("{}:8300", a.ip)).collect();
    let writer = Writer::start(s.iter().map(Agent::http_addr).collect(), "fuzz-w");

    step(
        1,
        &format!("four tasks send hostile frames to the three servers for {secs} s"),
    );
    let until = Instant::now() + Duration::from_secs(secs);
    let fuzzers: Vec<_> = (0..4u64)
        .map(|k| {
            let targets = targets.clone();
            let from = net.ip(50 + k as u8);
            std::thread::spawn(move || {
                let mut rng = Rng(seed ^ (k + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let mut sent = [0u64; 3];
                let mut conns = 0u64;
                let mut conn: Option<TcpStream> = None;
                while Instant::now() < until {
                    if conn.is_none() {
                        let to = &targets[rng.below(targets.len() as u64) as usize];
                        conn = connect_from(&from, to).ok();
                        conns += 1;
                        if conn.is_none() {
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        }
                    }
                    let c = conn.as_mut().unwrap();
                    let (kind, f) = hostile_frame(&mut rng);
                    sent[kind] += 1;
                    let ok = c.write_all(&f).is_ok();
                    std::thread::sleep(Duration::from_millis(20));
                    // A connection the server closed, or one this task gives up (a frame cut
                    // short leaves the server waiting for its rest), is replaced.
                    if !ok || !drain(c) || rng.below(10) == 0 {
                        conn = None;
                    }
                }
                (sent, conns)
            })
        })
        .collect();
    let mut progress = Vec::new();
    while Instant::now() < until {
        std::thread::sleep(Duration::from_secs(10).min(until - Instant::now()));
        progress.push(writer.acked());
    }
    let mut sent = [0u64; 3];
    let mut conns = 0;
    for f in fuzzers {
        let (n, c) = f.join().unwrap();
        for i in 0..3 {
            sent[i] += n[i];
        }
        conns += c;
    }
    let (acked, failed, gap) = writer.finish();
    let after = terms(&s);
    eprintln!(
        "sent {} random byte strings, {} random frames, {} mutated requests over {conns} \
         connections; writes: {acked} acknowledged, {failed} failed, acknowledged by each 10 s: \
         {progress:?}, longest gap {gap:?}; terms {before:?} → {after:?}",
        sent[0], sent[1], sent[2]
    );

    let stood: Vec<usize> = s
        .iter()
        .map(|a| a.log().matches("standing for election").count())
        .collect();
    eprintln!("pre-vote elections won, per server: {stood:?} (other term changes: hand-overs)");
    step(
        2,
        "every server runs, none panicked, the writes went on, the term stayed put",
    );
    all_alive(&mut s);
    let mut prev = 0;
    for (i, n) in progress.iter().enumerate() {
        assert!(*n > prev, "writes committed in window {i}: {progress:?}");
        prev = *n;
    }
    assert!(gap < Duration::from_secs(10), "no write for {gap:?}");
    for (b, a) in before.iter().zip(&after) {
        // A mutated frame may become a valid `TimeoutNow` (a leader's hand-over, which any
        // caller may send until the port is authenticated): a few terms, never a runaway.
        assert!(*a <= b + 50, "the term ran away: {before:?} → {after:?}");
    }
    let refs: Vec<&Agent> = s.iter().collect();
    wait_for_leader(&refs, T);
    s[0].put("after-fuzz", "v");
    for a in &s {
        wait_until(T, "every server reads the last write", || {
            a.get_consistent("after-fuzz").as_deref() == Some("v")
        });
    }
}
