//! Raft formation and failover, muster side by side with etcd 3.4 (Debian's etcd-server), in
//! one run, three members on 127.0.0.1–3 each.
//!
//! For each system and each of `TRIALS` trials (or the count given):
//! - **formation**: from launching three members at once until a first entry is committed —
//!   for muster, the cluster id the first leader writes (visible on the leader once applied);
//!   for etcd, the first successful `PUT /v3/kv/put`;
//! - **failover**: from SIGKILL of the leader until an entry commits again — for muster, a
//!   survivor is leader and has applied past the old leader's index (openraft commits an entry
//!   at the start of each term); for etcd, the next successful put;
//! - **idle RSS** per member, 2 s after formation.
//!
//! Run: `cargo build --release --bin muster --example raft_bench && target/release/examples/raft_bench`
//! (`raft_bench muster 30`: muster alone, 30 trials — for comparing two builds of muster;
//! `raft_bench tls 15`: muster with and without mutual TLS on the server port).
//! (etcd must be on PATH: `apt-get install etcd-server`).

use std::path::Path;
use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;
use support::cluster3::{start_etcd, start_muster, start_muster_tls};
use support::{rss_kib, Agent, Block, Client, Fixture};

const TRIALS: usize = 7;

/// One trial: (formation ms, failover ms, idle RSS MiB).
type Trial = fn(&Path) -> (f64, f64, f64);

/// Short timeouts: a member that does not answer at once is not ready.
const CLIENT: Client = Client::new(Duration::from_millis(200), Duration::from_millis(1500)).json();

/// The body of a 200 answer to `method path` at `addr`, or None.
fn http(addr: &str, method: &str, path: &str, body: &str) -> Option<String> {
    CLIENT
        .text(addr, method, path, body.as_bytes())
        .filter(|(status, _)| *status == 200)
        .map(|(_, body)| body)
}

fn rss_mib(pid: u32) -> f64 {
    rss_kib(pid) as f64 / 1024.0
}

/// Calls `f` every 2 ms until it gives a value or `timeout` passes.
fn poll<T>(timeout: Duration, f: impl FnMut() -> Option<T>) -> Option<T> {
    support::poll(timeout, Duration::from_millis(2), f)
}

// ---- muster -------------------------------------------------------------------------------

fn muster_raft(i: u8) -> Option<serde_json::Value> {
    let body = http(
        &format!("{}:8500", Block::Loopback.ip(i)),
        "GET",
        "/v1/agent/self",
        "",
    )?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    Some(v["Stats"]["raft"].clone())
}

fn muster_trial(root: &Path) -> (f64, f64, f64) {
    muster_trial_with(root, start_muster)
}

/// The same trial with mutual TLS on the server port (docs/security.md). The certificates
/// are made before the clock starts.
fn muster_tls_trial(root: &Path) -> (f64, f64, f64) {
    support::cluster3::make_certs(root);
    muster_trial_with(root, start_muster_tls)
}

fn muster_trial_with(root: &Path, start: fn(&Path, u8) -> Agent) -> (f64, f64, f64) {
    let mut procs: Vec<Option<Agent>> = Vec::new();
    let t0 = Instant::now();
    for i in 1..=3 {
        procs.push(Some(start(root, i)));
    }
    let formed = poll(Duration::from_secs(30), || {
        (1..=3).find(|&i| {
            muster_raft(i).is_some_and(|r| r["cluster_id"].as_str().is_some_and(|c| !c.is_empty()))
        })
    })
    .map(|_| t0.elapsed().as_secs_f64() * 1000.0)
    .unwrap_or(f64::NAN);
    // And the first successful KV write, as etcd's figure is measured.
    let first_write = poll(Duration::from_secs(30), || {
        (1..=3).find(|&i| {
            http(
                &format!("{}:8500", Block::Loopback.ip(i)),
                "PUT",
                "/v1/kv/first",
                "x",
            )
            .is_some_and(|b| b == "true")
        })
    })
    .map(|_| t0.elapsed().as_secs_f64() * 1000.0)
    .unwrap_or(f64::NAN);
    eprintln!("muster: first KV write acknowledged {first_write:.0} ms after launch");
    std::thread::sleep(Duration::from_secs(2));
    let rss = procs
        .iter()
        .flatten()
        .filter_map(Agent::pid)
        .map(|pid| rss_mib(pid as u32))
        .sum::<f64>()
        / 3.0;
    let leader = (1..=3)
        .find(|&i| muster_raft(i).is_some_and(|r| r["state"] == "Leader"))
        .expect("a leader");
    let applied: u64 = (1..=3)
        .filter_map(|i| muster_raft(i).and_then(|r| r["applied_index"].as_str()?.parse().ok()))
        .max()
        .unwrap_or(0);
    let t1 = Instant::now();
    procs[leader as usize - 1] = None; // SIGKILL
    let failover = poll(Duration::from_secs(30), || {
        (1..=3).filter(|&i| i != leader).find(|&i| {
            muster_raft(i).is_some_and(|r| {
                r["state"] == "Leader"
                    && r["applied_index"]
                        .as_str()
                        .and_then(|a| a.parse::<u64>().ok())
                        .unwrap_or(0)
                        > applied
            })
        })
    })
    .map(|_| t1.elapsed().as_secs_f64() * 1000.0)
    .unwrap_or(f64::NAN);
    (formed, failover, rss)
}

// ---- etcd ---------------------------------------------------------------------------------

fn etcd_put(i: u8) -> bool {
    http(
        &format!("{}:2379", Block::Loopback.ip(i)),
        "POST",
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YmFy"}"#,
    )
    .is_some()
}

fn etcd_is_leader(i: u8) -> bool {
    http(
        &format!("{}:2379", Block::Loopback.ip(i)),
        "POST",
        "/v3/maintenance/status",
        "{}",
    )
    .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
    .is_some_and(|v| v["leader"].is_string() && v["leader"] == v["header"]["member_id"])
}

fn etcd_trial(root: &Path) -> (f64, f64, f64) {
    etcd_trial_with(root, &[])
}

/// etcd with muster's LAN timings (heartbeat 40 ms, election 200 ms), for a like-for-like row.
fn etcd_tuned_trial(root: &Path) -> (f64, f64, f64) {
    etcd_trial_with(
        root,
        &["--heartbeat-interval", "40", "--election-timeout", "200"],
    )
}

fn etcd_trial_with(root: &Path, extra: &[&str]) -> (f64, f64, f64) {
    let mut procs: Vec<Option<Fixture>> = Vec::new();
    let t0 = Instant::now();
    for i in 1..=3 {
        procs.push(Some(start_etcd(root, i, extra)));
    }
    let formed = poll(Duration::from_secs(30), || (1..=3).find(|&i| etcd_put(i)))
        .map(|_| t0.elapsed().as_secs_f64() * 1000.0)
        .unwrap_or(f64::NAN);
    std::thread::sleep(Duration::from_secs(2));
    let rss = procs
        .iter()
        .flatten()
        .map(|p| rss_mib(p.pid()))
        .sum::<f64>()
        / 3.0;
    let leader = poll(Duration::from_secs(10), || {
        (1..=3).find(|&i| etcd_is_leader(i))
    })
    .expect("an etcd leader");
    let t1 = Instant::now();
    procs[leader as usize - 1] = None;
    let failover = poll(Duration::from_secs(30), || {
        (1..=3).filter(|&i| i != leader).find(|&i| etcd_put(i))
    })
    .map(|_| t1.elapsed().as_secs_f64() * 1000.0)
    .unwrap_or(f64::NAN);
    (formed, failover, rss)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("both");
    let trials = match args.get(1).map(|n| n.parse::<usize>()) {
        None => TRIALS,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: raft_bench [muster|tls|etcd|both] [TRIALS>0]");
            std::process::exit(1);
        }
    };
    let all: [(&str, Trial); 4] = [
        ("muster", muster_trial),
        ("muster, mutual TLS", muster_tls_trial),
        ("etcd 3.4, defaults", etcd_trial),
        ("etcd 3.4, muster's timings", etcd_tuned_trial),
    ];
    let systems: Vec<(&str, Trial)> = match which {
        "both" => all.to_vec(),
        "muster" => all[..1].to_vec(),
        // TLS on and off, side by side.
        "tls" => all[..2].to_vec(),
        "etcd" => all[2..].to_vec(),
        other => {
            eprintln!("raft_bench: unknown system {other:?}; use muster, tls, etcd or both");
            std::process::exit(1);
        }
    };
    let mut rows = Vec::new();
    for (name, trial) in systems {
        let (mut f, mut o, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for t in 0..trials {
            let root = std::env::temp_dir().join(format!("raft-bench-{}-{t}", std::process::id()));
            let _ = std::fs::remove_dir_all(&root);
            let (a, b, c) = trial(&root);
            eprintln!("{name} trial {t}: formation {a:.0} ms, failover {b:.0} ms, RSS {c:.1} MiB");
            f.push(a);
            o.push(b);
            r.push(c);
            let _ = std::fs::remove_dir_all(&root);
            std::thread::sleep(Duration::from_millis(500));
        }
        let minmax = |v: &Vec<f64>| {
            (
                v.iter().cloned().fold(f64::MAX, f64::min),
                v.iter().cloned().fold(f64::MIN, f64::max),
            )
        };
        rows.push((
            name,
            median(f.clone()),
            minmax(&f),
            median(o.clone()),
            minmax(&o),
            median(r),
        ));
    }
    println!("| system | formation, median (min–max) | failover after SIGKILL of the leader, median (min–max) | idle RSS per member, median |");
    println!("|---|---:|---:|---:|");
    for (name, f, (f0, f1), o, (o0, o1), r) in rows {
        println!(
            "| {name} | {f:.0} ms ({f0:.0}–{f1:.0}) | {o:.0} ms ({o0:.0}–{o1:.0}) | {r:.1} MiB |"
        );
    }
    println!("\n{trials} trials each, three members on 127.0.0.1–3, same machine, same run.");
}
