//! Autoscaling figures (issue: life in an autoscaling group), real processes on 127.0.1.x:
//!
//! - replacement time: a follower is SIGKILLed (its instance terminated) and a replacement
//!   started at once with the same command line; measured from the kill until the replacement
//!   is a voter and the dead server is out of the Raft configuration. Three rounds.
//! - rolling replacement of 3 and of 5 servers, one at a time (new server joins and is
//!   promoted, then the old one leaves gracefully): the longest window in which no server was
//!   leader (every live server polled every 5 ms), and the longest stall seen by a writer that
//!   writes without pause through a client agent.
//!
//! Run: `cargo build --release --bin muster --example autoscale_bench && target/release/examples/autoscale_bench`

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;
use support::{wait_every, Agent, Block, Client, LeaderWatch};

const DEADLINE: Duration = Duration::from_secs(60);

/// Every wait and every leader check polls this often.
const POLL: Duration = Duration::from_millis(5);

/// Short timeouts: a server that does not answer at once counts as not leading.
const CLIENT: Client = Client::new(Duration::from_millis(500), Duration::from_secs(10));

/// Starts agent `name` on `ip` (server expecting `server` servers, or a client) joining `join`,
/// its data under `root`.
fn start(root: &Path, name: &str, ip: &str, server: Option<u8>, join: &str) -> Agent {
    let mut spec = Agent::spec(name, ip)
        .args(&["-log-level", "warn", "-retry-join", join])
        .data_dir(root.join(format!("{ip}-{name}")))
        .quiet();
    if let Some(expect) = server {
        spec = spec.args(&["-server", "-bootstrap-expect", &expect.to_string()]);
    }
    spec.start()
}

fn voters(a: &Agent) -> Vec<String> {
    a.voters_via(&CLIENT)
}

fn wait(what: &str, cond: impl FnMut() -> bool) {
    wait_every(DEADLINE, POLL, what, cond)
}

/// 127.0.ROUND.i: each round of the bench in a /24 of its own.
fn ip(round: u8, i: u8) -> String {
    Block::Loopback.ip_in(round, i)
}

fn form(root: &Path, round: u8, n: u8) -> Vec<Agent> {
    let nodes: Vec<Agent> = (1..=n)
        .map(|i| {
            start(
                root,
                &format!("s{i}"),
                &ip(round, i),
                Some(n),
                &ip(round, 1),
            )
        })
        .collect();
    wait("all voters", || {
        nodes.iter().any(|a| a.is_leader_via(&CLIENT)) && voters(&nodes[0]).len() == n as usize
    });
    nodes
}

/// Kill a follower, start its replacement, time until the configuration is whole again.
fn replacement_times(root: &Path, rounds: usize) -> Vec<Duration> {
    let round = 1;
    let mut nodes = form(root, round, 3);
    let mut out = Vec::new();
    for r in 0..rounds {
        let victim = nodes
            .iter()
            .position(|a| !a.is_leader_via(&CLIENT))
            .expect("a follower");
        let dead = nodes.remove(victim);
        let dead_name = dead.name.clone();
        let seed = nodes[0].ip.clone();
        let t0 = Instant::now();
        drop(dead);
        let name = format!("n{r}");
        nodes.push(start(root, &name, &ip(round, 10 + r as u8), Some(3), &seed));
        let probe = &nodes[0];
        wait("replacement voter, dead removed", || {
            let v = voters(probe);
            v.len() == 3 && v.contains(&name) && !v.contains(&dead_name)
        });
        out.push(t0.elapsed());
    }
    out
}

/// Writes without pause through the client agent at `client` until `stop`; the longest stall
/// between two acknowledged writes, and how many were acknowledged.
fn writer(client: String, stop: Arc<AtomicBool>) -> JoinHandle<(Duration, u64)> {
    std::thread::spawn(move || {
        let mut longest = Duration::ZERO;
        let mut last = Instant::now();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let ok = CLIENT
                .text(&client, "PUT", &format!("/v1/kv/roll/{}", n % 100), b"v")
                .is_some_and(|(s, b)| s == 200 && b.trim() == "true");
            if ok {
                longest = longest.max(last.elapsed());
                last = Instant::now();
                n += 1;
            }
        }
        (longest, n)
    })
}

/// (longest leaderless window, longest write stall, writes acknowledged, duration).
fn rolling(root: &Path, round: u8, n: u8) -> (Duration, Duration, u64, Duration) {
    let mut old: Vec<Option<Agent>> = form(root, round, n).into_iter().map(Some).collect();
    let client = start(
        root,
        &format!("c{round}"),
        &ip(round, 100),
        None,
        &ip(round, 1),
    );
    wait("the client can write", || {
        CLIENT
            .text(&client.http_addr(), "PUT", "/v1/kv/roll/ready", b"1")
            .is_some_and(|(s, _)| s == 200)
    });
    let mut new: Vec<Agent> = Vec::new();
    let live = |old: &[Option<Agent>], new: &[Agent]| -> Vec<String> {
        old.iter()
            .flatten()
            .chain(new)
            .map(|a| a.http_addr())
            .collect()
    };
    let watch = LeaderWatch::start(live(&old, &new), POLL, CLIENT);
    let stop = Arc::new(AtomicBool::new(false));
    let writes = writer(client.http_addr(), stop.clone());
    let t0 = Instant::now();
    for i in 0..n as usize {
        let seed = old
            .iter()
            .flatten()
            .chain(&new)
            .find(|a| a.name != format!("s{}", i + 1))
            .map(|a| a.ip.clone())
            .unwrap();
        let name = format!("r{}", i + 1);
        new.push(start(root, &name, &ip(round, 20 + i as u8), Some(n), &seed));
        watch.set(live(&old, &new));
        let probe = new.last().unwrap();
        wait("new server promoted", || voters(probe).contains(&name));
        let gone = old[i].take().unwrap();
        let _ = CLIENT.text(&gone.http_addr(), "PUT", "/v1/agent/leave", b"");
        watch.set(live(&old, &new));
        wait("old server removed", || !voters(probe).contains(&gone.name));
        drop(gone);
    }
    let took = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let leaderless = watch.finish_closed();
    let (stall, writes) = writes.join().unwrap();
    (leaderless, stall, writes, took)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let root = tempfile::tempdir().expect("temp dir");
    let rep = replacement_times(root.path(), 3);
    let (l3, s3, w3, t3) = rolling(root.path(), 2, 3);
    let (l5, s5, w5, t5) = rolling(root.path(), 3, 5);
    println!("| measure | result |");
    println!("|---|---|");
    println!(
        "| replacement time (kill → replacement voter, dead removed), 3 rounds | {} |",
        rep.iter().map(|d| ms(*d)).collect::<Vec<_>>().join(", ")
    );
    for (n, l, s, w, t) in [(3, l3, s3, w3, t3), (5, l5, s5, w5, t5)] {
        println!(
            "| rolling replacement of {n}: longest leaderless window | {} |",
            ms(l)
        );
        println!(
            "| rolling replacement of {n}: longest write stall (client agent) | {} ({w} writes in {:.1} s) |",
            ms(s),
            t.as_secs_f64()
        );
    }
}
