//! The fault suite: real servers and client agents in a network namespace of the test's own,
//! faults done to them one at a time on a seeded random schedule while clients write and read,
//! and checks at the end that nothing acknowledged was lost, nothing appeared that was never
//! written, the register's history is linearizable, and one cluster with one leader remains.
//! docs/servers.md ("The fault suite") says what it covers and how to run the long form.
//!
//! - `fault_suite_short` (in the test command): one trial, every kind of fault once.
//! - `fault_suite_long` (ignored; by hand): `MUSTER_FAULT_TRIALS=50 cargo test --release
//!   --test faults -- --ignored fault_suite_long --nocapture` prints a table of the trials.
//! - `MUSTER_FAULT_SEED=<n>` replays a trial's schedule (the seed is printed).

#[path = "../support/mod.rs"]
mod support;

mod checker;
mod nemesis;
mod workload;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use base64::Engine;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use checker::Verdict;
use nemesis::{shuffle, Cluster, Fault};
use support::{http, http_full, netns, servers, step, wait_for_leader, wait_until, Agent, Block};
use workload::Workload;

const T: Duration = Duration::from_secs(60);

/// How many search steps the checker may take on one trial's register history.
const CHECKER_STEPS: u64 = 20_000_000;

/// Three servers of `net` formed with `-bootstrap-expect 3`, and the index of their leader.
fn three_servers(net: Block) -> (Vec<Agent>, usize) {
    let s = servers(
        net,
        3,
        3,
        &["-retry-join", &net.ip(1), "-retry-join", &net.ip(2)],
    );
    let refs: Vec<&Agent> = s.iter().collect();
    let leader = wait_for_leader(&refs, T);
    (s, leader)
}

/// The issue's own report: a leader cut off by packet filters, a new leader elected on the
/// other side and the key overwritten there; the old leader must not answer a default read with
/// the old value, and must not name itself leader.
#[test]
fn a_partitioned_leader_serves_no_stale_read() {
    if !netns::enter("a_partitioned_leader_serves_no_stale_read") {
        return;
    }
    let net = Block::PartitionedLeader;
    let fw = netns::Firewall::new();
    step(1, "three servers form; k = v1 is written");
    let (s, old) = three_servers(net);
    s[old].put("k", "v1");

    step(
        2,
        "the leader is cut off from the other two by packet filters",
    );
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let other_ips: Vec<&str> = others.iter().map(|&i| s[i].ip.as_str()).collect();
    fw.partition(&[&s[old].ip], &other_ips);

    step(3, "the other two elect a leader and overwrite k = v2");
    let mut new = 0;
    wait_until(T, "one of the other two leads them", || {
        others.iter().any(|&i| {
            let me = format!("\"{}:8300\"", s[i].ip);
            let leads = http(&s[i].http_addr(), "GET", "/v1/status/leader")
                .is_some_and(|(st, b)| st == 200 && b == me);
            if leads {
                new = i;
            }
            leads
        })
    });
    let (st, _, body) = http_full(&s[new].http_addr(), "PUT", "/v1/kv/k", b"v2").unwrap();
    assert_eq!((st, String::from_utf8_lossy(&body).trim()), (200, "true"));

    step(
        4,
        "the old leader: no default read answers v1, its status names no leader",
    );
    let addr = s[old].http_addr();
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut answers = BTreeMap::new();
    while Instant::now() < deadline {
        let (st, _, body) = http_full(&addr, "GET", "/v1/kv/k?raw", b"").unwrap();
        let body = String::from_utf8_lossy(&body).into_owned();
        assert!(
            !(st == 200 && body == "v1"),
            "the cut-off old leader answered a default read with the overwritten v1"
        );
        *answers.entry(format!("{st} {body}")).or_insert(0) += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("the old leader's answers: {answers:?}");
    assert!(
        answers
            .keys()
            .all(|a| a.starts_with("500 No cluster leader")),
        "a cut-off server answers 500 \"No cluster leader\": {answers:?}"
    );
    let (st, body) = http(&addr, "GET", "/v1/status/leader").unwrap();
    assert_eq!((st, body.as_str()), (200, "\"\""));
    let (st, headers, body) = http_full(&addr, "GET", "/v1/kv/k?raw&stale", b"").unwrap();
    assert_eq!(
        (st, &body[..]),
        (200, &b"v1"[..]),
        "?stale serves local data"
    );
    assert_eq!(
        support::header(&headers, "x-consul-knownleader"),
        Some("false")
    );

    step(5, "healed, the old leader follows and reads v2");
    fw.heal();
    wait_until(T, "the old leader reads v2", || {
        s[old].get_consistent("k").as_deref() == Some("v2")
    });
}

/// A leader paused (SIGSTOP) while the others elect a new leader and overwrite the key, with
/// default-mode reads queued on its HTTP port meanwhile: resumed, it must not answer them
/// with the old value. What it last heard from a quorum was fresh when it was paused; only
/// the clock read at the moment of answering tells it that its lease is long gone.
#[test]
fn a_paused_leader_serves_no_stale_read() {
    let net = Block::PausedLeader;
    step(1, "three servers form; k = v1 is written");
    let (s, old) = three_servers(net);
    s[old].put("k", "v1");

    step(
        2,
        "the leader is paused; the other two elect a leader and overwrite k = v2",
    );
    s[old].signal(libc::SIGSTOP);
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    wait_until(T, "k = v2 is acknowledged by the other two", || {
        others.iter().any(|&i| {
            http_full(&s[i].http_addr(), "PUT", "/v1/kv/k", b"v2")
                .is_some_and(|(st, _, b)| st == 200 && b.trim_ascii() == b"true")
        })
    });

    step(
        3,
        "default reads are queued on the paused leader, then it is resumed",
    );
    let addr = s[old].http_addr();
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || http_full(&addr, "GET", "/v1/kv/k?raw", b""))
        })
        .collect();
    // The requests must be in the paused server's socket queue before it resumes: its kernel
    // accepts the connections, nothing answers them.
    wait_until(T, "eight connections wait on the paused leader", || {
        established_to(&addr) >= 8
    });
    s[old].signal(libc::SIGCONT);
    for r in readers {
        let (st, _, body) = r.join().expect("reader").expect("an answer");
        assert!(
            !(st == 200 && body == b"v1"),
            "the resumed old leader answered a default read with the overwritten v1"
        );
    }
    wait_until(T, "the old leader reads v2", || {
        s[old].get_consistent("k").as_deref() == Some("v2")
    });
}

/// Established TCP connections to `addr` (`ip:port`), from /proc/net/tcp.
fn established_to(addr: &str) -> usize {
    let (ip, port) = addr.rsplit_once(':').expect("ip:port");
    let ip: std::net::Ipv4Addr = ip.parse().expect("IPv4");
    let port: u16 = port.parse().expect("port");
    // /proc/net/tcp shows the local address as little-endian hex: 127.0.0.1:8500 is
    // 0100007F:2134. State 01 is ESTABLISHED.
    let want = format!("{:08X}:{port:04X}", u32::from_le_bytes(ip.octets()));
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "01"
        })
        .count()
}

/// Issue 10's double apply: a `?cas=0` lock forwarded by a follower commits on the leader, its
/// answer is lost, the follower's connection breaks and it sends the write again. Applied
/// twice, the client is told `false` for the lock it took; with request ids the retry gets the
/// first outcome, `true`, and the key holds the value once.
///
/// The answer is lost for certain: packets from the leader to the follower are dropped from
/// before the request (the follower's connection to the leader is already open, so the request
/// still arrives), and the follower's socket is destroyed (`ss -K`) only once the leader has
/// applied the write; the drop ends just after, so that the retry can connect.
#[test]
fn a_retried_lock_is_applied_once() {
    if !netns::enter("a_retried_lock_is_applied_once") {
        return;
    }
    let net = Block::RetriedLock;
    let fw = netns::Firewall::new();
    step(1, "three servers form");
    let (s, l) = three_servers(net);
    let f = (0..3).find(|&i| i != l).expect("a follower");
    let (leader, follower) = (s[l].ip.clone(), s[f].ip.clone());

    step(
        2,
        "a write through the follower opens its connection to the leader",
    );
    let (st, _, body) = http_full(&s[f].http_addr(), "PUT", "/v1/kv/warm", b"1").unwrap();
    assert_eq!((st, String::from_utf8_lossy(&body).trim()), (200, "true"));

    step(
        3,
        "the leader's packets to the follower are dropped; a ?cas=0 lock goes through it",
    );
    fw.drop_one_way(&leader, &follower);
    let addr = s[f].http_addr();
    let put = std::thread::spawn(move || http_full(&addr, "PUT", "/v1/kv/lock?cas=0", b"me"));

    step(
        4,
        "the leader applies the lock; its answer cannot reach the follower",
    );
    let applied = |a: &Agent| -> Option<(u64, u64)> {
        let (st, body) = http(&a.http_addr(), "GET", "/v1/kv/lock?stale")?;
        let v: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| st == 200)?;
        let e = &v[0];
        assert_eq!(
            e["Value"],
            base64::engine::general_purpose::STANDARD.encode("me")
        );
        Some((e["CreateIndex"].as_u64()?, e["ModifyIndex"].as_u64()?))
    };
    let first = support::poll(T, Duration::from_millis(20), || applied(&s[l]))
        .expect("the leader applies the forwarded lock");
    eprintln!("applied on the leader: (CreateIndex, ModifyIndex) = {first:?}");
    assert!(
        !put.is_finished(),
        "the answer reached the follower: {:?}",
        fw.rules()
    );

    step(
        5,
        "the follower's connection to the leader is destroyed, then the drop lifted",
    );
    let out = std::process::Command::new("ss")
        .args(["-K", "src", &follower, "dst", &leader, "dport", "=", "8300"])
        .output()
        .expect("run ss (iproute2) to destroy the follower's connection");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains(":8300"),
        "ss -K destroyed no connection from {follower} to {leader}:8300: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    fw.heal();

    step(
        6,
        "the follower sends the write again: the client is told true, applied once",
    );
    let (st, _, body) = put.join().unwrap().expect("the PUT is answered");
    let body = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(
        (st, body.trim()),
        (200, "true"),
        "the lock taken by this very request was reported refused: its retry was applied again"
    );
    wait_until(T, "every server holds the lock as first applied", || {
        s.iter().all(|a| applied(a) == Some(first))
    });
    assert_eq!(first.0, first.1, "created once, never modified");
    let (st, body) = http(&s[l].http_addr(), "GET", "/v1/kv/lock?raw&consistent").unwrap();
    assert_eq!((st, body.as_str()), (200, "me"));
}

/// How soon after a partition heals every agent must list every other alive again: a few
/// probe periods (docs/gossip.md, "Healing after a partition").
const HEAL_BOUND: Duration = Duration::from_secs(3);
/// How long a split is kept after each side lists the other failed, before it heals.
const SPLIT_SETTLE: Duration = Duration::from_secs(3);

/// Issue 10 item 9: after a 2|3 split of five servers healed, two of them still listed the
/// other three failed (and logged "quorum lost") for about 11 s, while Raft already committed
/// through them. Five servers, split 2|3 until each side lists the other side failed, then
/// healed: every agent must list all five alive within [`HEAL_BOUND`]. The time it took is
/// printed (docs/performance.md).
#[test]
fn a_healed_split_lists_everyone_alive_within_a_few_probe_periods() {
    if !netns::enter("a_healed_split_lists_everyone_alive_within_a_few_probe_periods") {
        return;
    }
    let net = Block::HealedSplit;
    let fw = netns::Firewall::new();
    step(1, "five servers form; every one lists all five alive");
    let ips: Vec<String> = (1..=5).map(|i| net.ip(i)).collect();
    let mut joins = Vec::new();
    for ip in &ips {
        joins.extend(["-retry-join", ip.as_str()]);
    }
    let s = servers(net, 5, 5, &joins);
    let refs: Vec<&Agent> = s.iter().collect();
    wait_for_leader(&refs, T);
    // Whether agent `a` lists every agent of `of` as `status`: one members request per agent.
    let lists = |a: &Agent, of: &[usize], status: &str| {
        let statuses = a.statuses();
        of.iter().all(|&j| {
            statuses
                .iter()
                .any(|(n, st)| *n == s[j].name && st == status)
        })
    };
    let everyone: Vec<usize> = (0..5).collect();
    let all_alive = || s.iter().all(|a| lists(a, &everyone, "alive"));
    wait_until(T, "every agent lists all five alive", all_alive);

    step(2, "split 2|3 until each side lists the other side failed");
    let (two, three) = ([0, 1], [2, 3, 4]);
    let side_ips = |side: &[usize]| side.iter().map(|&i| s[i].ip.as_str()).collect::<Vec<_>>();
    fw.partition(&side_ips(&two), &side_ips(&three));
    let split_at = Instant::now();
    wait_until(T, "each side lists the other side failed", || {
        two.iter().all(|&i| lists(&s[i], &three, "failed"))
            && three.iter().all(|&i| lists(&s[i], &two, "failed"))
    });
    eprintln!(
        "each side lists the other failed {:.2} s after the split",
        split_at.elapsed().as_secs_f64()
    );
    // Held a while longer, as the fault suite holds its split, so that no probe of the split's
    // own failure detection is still in flight when it heals (one in flight can bridge the
    // sides by chance); meanwhile neither side may list the other alive.
    let settled = Instant::now() + SPLIT_SETTLE;
    while Instant::now() < settled {
        assert!(
            two.iter().all(|&i| lists(&s[i], &three, "failed"))
                && three.iter().all(|&i| lists(&s[i], &two, "failed")),
            "a side listed the other alive through the split: {}",
            fw.rules()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    step(
        3,
        "healed: every agent lists all five alive within the bound",
    );
    fw.heal();
    let healed_at = Instant::now();
    let healed = support::poll(HEAL_BOUND, Duration::from_millis(50), || {
        all_alive().then(|| healed_at.elapsed())
    });
    if let Some(took) = healed {
        eprintln!(
            "every agent lists all five alive {:.2} s after the heal (bound {HEAL_BOUND:?})",
            took.as_secs_f64()
        );
        return;
    }
    // Over the bound: who saw what then, and how long it did take, within 90 s (without the
    // core's announce to failed members, foca's every 65 s was the only way across).
    let views: Vec<String> = s
        .iter()
        .map(|a| format!("{}: {:?}", a.name, a.statuses()))
        .collect();
    let late = support::poll(Duration::from_secs(90), Duration::from_millis(50), || {
        all_alive().then(|| healed_at.elapsed())
    });
    panic!(
        "not every agent listed all five alive within {HEAL_BOUND:?} of the heal; they did after \
         {late:?}; views at the bound:\n{}",
        views.join("\n")
    );
}

/// One trial in the test command: every kind of fault once, in a seeded random order.
#[test]
fn fault_suite_short() {
    if !netns::enter("fault_suite_short") {
        return;
    }
    let seed = seed();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults = Fault::ALL.to_vec();
    shuffle(&mut faults, &mut rng);
    let report = trial(seed, &faults);
    print_table(std::slice::from_ref(&report));
    report.assert_sound();
}

/// The long form, by hand: `MUSTER_FAULT_TRIALS` trials (50 by default) of
/// `MUSTER_FAULT_COUNT` random faults each (5), then a table.
#[test]
#[ignore = "the long form of the fault suite, minutes per trial: run by hand"]
fn fault_suite_long() {
    if !netns::enter("fault_suite_long") {
        return;
    }
    let trials: u64 = env_number("MUSTER_FAULT_TRIALS", 50);
    let count: usize = env_number("MUSTER_FAULT_COUNT", 5) as usize;
    let first = seed();
    let mut reports = Vec::new();
    for t in 0..trials {
        let seed = first.wrapping_add(t);
        let mut rng = StdRng::seed_from_u64(seed);
        let faults: Vec<Fault> = (0..count)
            .map(|_| Fault::ALL[rng.random_range(0..Fault::ALL.len())])
            .collect();
        let report = trial(seed, &faults);
        eprintln!("trial {}/{trials}: {}", t + 1, report.line());
        reports.push(report);
    }
    print_table(&reports);
    for r in &reports {
        r.assert_sound();
    }
}

/// The seed of the (first) trial: `MUSTER_FAULT_SEED`, or the clock's.
fn seed() -> u64 {
    let seed = env_number(
        "MUSTER_FAULT_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_micros() as u64,
    );
    eprintln!("fault schedule seed: {seed} (MUSTER_FAULT_SEED={seed} replays it)");
    seed
}

fn env_number(key: &str, default: u64) -> u64 {
    match std::env::var(key) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{key}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// What one trial found.
#[derive(Clone, Debug)]
struct Report {
    seed: u64,
    faults: Vec<FaultRun>,
    acked: usize,
    unknown: usize,
    lost: Vec<String>,
    phantom: Vec<String>,
    register_ops: usize,
    verdict: String,
    linearizable: bool,
    one_cluster: Result<(), String>,
    terms: (u64, u64),
}

impl Report {
    fn line(&self) -> String {
        format!(
            "seed {} acked {} unknown {} lost {} phantom {} register ops {} ({}) cluster {} \
             terms {}→{}",
            self.seed,
            self.acked,
            self.unknown,
            self.lost.len(),
            self.phantom.len(),
            self.register_ops,
            self.verdict,
            match &self.one_cluster {
                Ok(()) => "one".to_string(),
                Err(e) => e.clone(),
            },
            self.terms.0,
            self.terms.1
        )
    }

    fn assert_sound(&self) {
        assert!(
            self.lost.is_empty(),
            "seed {}: lost acknowledged writes {:?}",
            self.seed,
            self.lost
        );
        assert!(
            self.phantom.is_empty(),
            "seed {}: writes that were never made: {:?}",
            self.seed,
            self.phantom
        );
        assert!(
            self.linearizable,
            "seed {}: the register's history: {}",
            self.seed, self.verdict
        );
        if let Err(e) = &self.one_cluster {
            panic!("seed {}: {e}", self.seed);
        }
        for f in &self.faults {
            assert!(
                f.healed.is_some(),
                "seed {}: after {:?} ({}) no leader was agreed on within {T:?}",
                self.seed,
                f.fault,
                f.what
            );
        }
    }
}

/// One fault of a trial and what it cost.
#[derive(Clone, Debug)]
struct FaultRun {
    fault: Fault,
    what: String,
    /// How long after the heal every server agreed on one leader (None: not within [`T`]).
    healed: Option<Duration>,
    /// Terms the cluster went through (the highest term after, less the highest before).
    terms: u64,
    /// Whether the leader after the heal is another than the one before the fault.
    leader_changed: bool,
}

/// Starts a fresh cluster, runs the workload through `faults`, heals, and checks.
fn trial(seed: u64, faults: &[Fault]) -> Report {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut cluster = Cluster::start(Block::FaultSuite);
    let term0 = cluster.max_term();
    let load = Workload::start(cluster.addrs(), 2, 3, seed);
    let mut done = Vec::new();
    for (i, &f) in faults.iter().enumerate() {
        let (term, leader) = (cluster.max_term(), cluster.leader());
        let what = cluster.apply(f, &mut rng);
        let healed = cluster.wait_healthy(T);
        if healed.is_none() {
            eprintln!("no agreement after {f:?}:\n{}", cluster.describe());
        }
        let terms = cluster.max_term().saturating_sub(term);
        let leader_changed = cluster.leader() != leader;
        eprintln!(
            "fault {}/{}: {f:?}: {what}; one leader again after {healed:?}; {terms} terms, \
             leader changed: {leader_changed}",
            i + 1,
            faults.len()
        );
        done.push(FaultRun {
            fault: f,
            what,
            healed,
            terms,
            leader_changed,
        });
        // Quiet time between faults: the workload runs on a whole cluster.
        std::thread::sleep(Duration::from_millis(rng.random_range(500..2000)));
    }
    let (writes, register) = load.stop();
    cluster.heal_all();
    let settled = cluster.wait_healthy(T);
    let one_cluster = match settled {
        None => Err("no leader agreed on after the last heal".to_string()),
        Some(_) => one_configuration(&cluster),
    };
    let term1 = cluster.max_term();

    // Every unique-key write, against what the cluster holds now.
    let stored = stored_writes(&cluster);
    let attempted: HashMap<&str, &str> = writes
        .iter()
        .map(|w| (w.key.as_str(), w.value.as_str()))
        .collect();
    let lost = writes
        .iter()
        .filter(|w| w.acked && stored.get(&w.key) != Some(&w.value))
        .map(|w| format!("{} (has {:?})", w.key, stored.get(&w.key)))
        .collect();
    let phantom = stored
        .iter()
        .filter(|(k, v)| attempted.get(k.as_str()) != Some(&v.as_str()))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();

    let verdict = checker::check(&register, CHECKER_STEPS);
    if verdict != Verdict::Linearizable {
        // Kept for a look: one line per operation, in call order (under target/tmp).
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("fault-history-{seed}.txt"));
        let mut ops = register.clone();
        ops.sort_by_key(|e| e.call);
        let text: String = ops
            .iter()
            .map(|e| format!("{} {:?} {:?}\n", e.call, e.ret, e.op))
            .collect();
        let _ = std::fs::write(&path, text);
        eprintln!("the register history is in {}", path.display());
    }
    Report {
        seed,
        faults: done,
        acked: writes.iter().filter(|w| w.acked).count(),
        unknown: writes.iter().filter(|w| !w.acked).count(),
        lost,
        phantom,
        register_ops: register.len(),
        linearizable: verdict == Verdict::Linearizable,
        verdict: format!("{verdict:?}"),
        one_cluster,
        terms: (term0, term1),
    }
}

/// Every server lists the same five voters.
fn one_configuration(cluster: &Cluster) -> Result<(), String> {
    let mut voters = Vec::new();
    for s in &cluster.servers {
        let mut v = Vec::new();
        // A server that restarted last may still be catching up: give it a moment.
        support::poll(Duration::from_secs(20), Duration::from_millis(100), || {
            v = s.voters();
            (v.len() == nemesis::SERVERS as usize).then_some(())
        });
        voters.push((s.name.clone(), v));
    }
    if voters.iter().all(|(_, v)| *v == voters[0].1) && voters[0].1.len() == 5 {
        Ok(())
    } else {
        Err(format!("the servers disagree on the voters: {voters:?}"))
    }
}

/// Every `w/` key the cluster holds, read `?consistent` through the leader.
fn stored_writes(cluster: &Cluster) -> BTreeMap<String, String> {
    let l = cluster.leader().expect("a leader after the heal");
    let (st, _, body) = http_full(
        &cluster.servers[l].http_addr(),
        "GET",
        "/v1/kv/w/?recurse&consistent",
        b"",
    )
    .expect("the leader answers");
    if st == 404 {
        return BTreeMap::new();
    }
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&body).expect("JSON entries");
    entries
        .iter()
        .map(|e| {
            let value = e["Value"]
                .as_str()
                .map(|v| {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(v)
                        .expect("base64 value");
                    String::from_utf8_lossy(&raw).into_owned()
                })
                .unwrap_or_default();
            (e["Key"].as_str().unwrap_or("").to_string(), value)
        })
        .collect()
}

/// The table of the trials: one line each, then the totals and the faults by kind.
fn print_table(reports: &[Report]) {
    println!(
        "\n| trial | seed | faults | acked writes | unknown | lost | phantom | register ops | \
         linearizable | one cluster | terms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    // Per kind: times, longest heal, terms, leader changes.
    let mut kinds: BTreeMap<Fault, (usize, Duration, u64, usize)> = BTreeMap::new();
    for (i, r) in reports.iter().enumerate() {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {}→{} |",
            i + 1,
            r.seed,
            r.faults.len(),
            r.acked,
            r.unknown,
            r.lost.len(),
            r.phantom.len(),
            r.register_ops,
            if r.linearizable { "yes" } else { "NO" },
            if r.one_cluster.is_ok() { "yes" } else { "NO" },
            r.terms.0,
            r.terms.1
        );
        for f in &r.faults {
            let k = kinds.entry(f.fault).or_default();
            k.0 += 1;
            k.1 = k.1.max(f.healed.unwrap_or(T));
            k.2 += f.terms;
            k.3 += usize::from(f.leader_changed);
        }
    }
    let sum = |f: fn(&Report) -> usize| reports.iter().map(f).sum::<usize>();
    println!(
        "\ntotal: {} trials, {} acknowledged writes, {} lost, {} phantom, {} of {} register \
         histories linearizable, {} of {} ending in one cluster",
        reports.len(),
        sum(|r| r.acked),
        sum(|r| r.lost.len()),
        sum(|r| r.phantom.len()),
        reports.iter().filter(|r| r.linearizable).count(),
        reports.len(),
        reports.iter().filter(|r| r.one_cluster.is_ok()).count(),
        reports.len()
    );
    println!(
        "\n| fault | times | longest until one leader again (after the heal) | terms per fault | \
         leader changes per fault |"
    );
    println!("|---|---|---|---|---|");
    for (f, (n, longest, terms, changes)) in kinds {
        println!(
            "| {f:?} | {n} | {:.1} s | {:.1} | {:.2} |",
            longest.as_secs_f64(),
            terms as f64 / n as f64,
            changes as f64 / n as f64
        );
    }
}
