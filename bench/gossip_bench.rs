//! Gossip benchmark: N real agents on 127.30.0.x, joined through one seed.
//!
//! For each N it reports: time from launching N-1 agents at once (each with `-join seed`) until
//! every agent sees N alive; time from SIGKILL of one agent until every other agent sees it
//! failed; gossip bytes sent per second per agent while idle; idle RSS per agent.
//!
//! Run: `cargo build --release --bin muster --example gossip_bench && target/release/examples/gossip_bench 5 20 50`

use std::path::Path;
use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;
use support::{rss_kib, Agent, Block, Client};

/// Short timeouts: an agent that does not answer at once counts as seeing nobody.
const CLIENT: Client = Client::new(Duration::from_millis(500), Duration::from_secs(5));

/// The members agent `node` sees, with `Status` as a number; empty while it does not answer.
fn members(node: &Agent) -> Vec<serde_json::Value> {
    CLIENT
        .json_get(&node.http_addr(), "/v1/agent/members")
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn count_status(node: &Agent, status: u64) -> usize {
    members(node)
        .iter()
        .filter(|m| m["Status"].as_u64() == Some(status))
        .count()
}

fn sees_failed(node: &Agent, name: &str) -> bool {
    members(node)
        .iter()
        .any(|m| m["Name"] == name && m["Status"].as_u64() == Some(4))
}

fn bytes_sent(node: &Agent) -> u64 {
    CLIENT.json_get(&node.http_addr(), "/v1/agent/self")["Stats"]["serf_lan"]["bytes_sent"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Agent `n{i}` on 127.30.0.(i+1), its data under `root`, joining `join` if given.
fn spawn(i: usize, root: &Path, join: Option<&str>) -> Agent {
    let name = format!("n{i}");
    let mut spec = Agent::spec(&name, &Block::GossipBench.ip(i as u8 + 1))
        .args(&["-log-level", "warn"])
        .data_dir(root.join(&name))
        .quiet();
    if let Some(seed) = join {
        spec = spec.args(&["-join", seed]);
    }
    spec.start()
}

/// Polls `f` every 20 ms for up to `timeout`; how long it took to hold.
fn wait(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    support::poll(timeout, Duration::from_millis(20), || f().then_some(()))
        .map(|()| start.elapsed())
}

fn fmt(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2} s", d.as_secs_f64()))
        .unwrap_or_else(|| "timeout".into())
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![5, 20, 50]
    } else {
        sizes
    };
    let idle = Duration::from_secs(10);
    println!("| agents | all see N alive | SIGKILL seen failed by all | gossip bytes/s per agent (idle) | idle RSS per agent (mean / max) |");
    println!("|---:|---:|---:|---:|---:|");
    for n in sizes {
        assert!((2..=250).contains(&n), "N must be 2..=250");
        let root = std::env::temp_dir().join(format!("muster-bench-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let mut nodes = vec![spawn(0, &root, None)];
        wait(Duration::from_secs(10), || {
            CLIENT
                .send(&nodes[0].http_addr(), "GET", "/v1/agent/members", b"")
                .is_some()
        })
        .expect("seed starts");
        let seed = format!("{}:8301", nodes[0].ip);
        let t0 = Instant::now();
        for i in 1..n {
            nodes.push(spawn(i, &root, Some(&seed)));
        }
        let converged = wait(Duration::from_secs(60), || {
            nodes.iter().all(|x| count_status(x, 1) == n)
        })
        .map(|_| t0.elapsed());

        // Idle traffic and memory, after a settling second.
        std::thread::sleep(Duration::from_secs(1));
        let before: u64 = nodes.iter().map(bytes_sent).sum();
        std::thread::sleep(idle);
        let after: u64 = nodes.iter().map(bytes_sent).sum();
        let per_agent_bps = (after.saturating_sub(before)) as f64 / idle.as_secs_f64() / n as f64;
        let rss: Vec<u64> = nodes
            .iter()
            .filter_map(Agent::pid)
            .map(|pid| rss_kib(pid as u32))
            .collect();
        let mean_rss = rss.iter().sum::<u64>() as f64 / rss.len() as f64 / 1024.0;
        let max_rss = *rss.iter().max().unwrap_or(&0) as f64 / 1024.0;

        let victim = nodes.pop().expect("n >= 2");
        let victim_name = format!("n{}", n - 1);
        drop(victim); // SIGKILL
        let detected = wait(Duration::from_secs(60), || {
            nodes.iter().all(|x| sees_failed(x, &victim_name))
        });
        println!(
            "| {n} | {} | {} | {:.0} B/s | {:.1} / {:.1} MiB |",
            fmt(converged),
            fmt(detected),
            per_agent_bps,
            mean_rss,
            max_rss
        );
        drop(nodes);
        let _ = std::fs::remove_dir_all(&root);
    }
}
