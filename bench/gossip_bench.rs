//! Gossip benchmark: N real agents on 127.30.0.x, joined through one seed.
//!
//! For each N it reports: time from launching N-1 agents at once (each with `-join seed`) until
//! every agent sees N alive; time from SIGKILL of one agent until every other agent sees it
//! failed; gossip bytes sent per second per agent while idle; idle RSS per agent.
//!
//! Run: `cargo build --release --bin muster --example gossip_bench && target/release/examples/gossip_bench 5 20 50`

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Node {
    ip: String,
    child: Child,
    _dir: PathBuf,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .join("muster")
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())
}

fn count_status(node: &Node, status: u64) -> usize {
    http_get(&format!("{}:8500", node.ip), "/v1/agent/members")
        .and_then(|b| serde_json::from_str::<Vec<serde_json::Value>>(&b).ok())
        .map(|v| {
            v.iter()
                .filter(|m| m["Status"].as_u64() == Some(status))
                .count()
        })
        .unwrap_or(0)
}

fn sees_failed(node: &Node, name: &str) -> bool {
    http_get(&format!("{}:8500", node.ip), "/v1/agent/members")
        .and_then(|b| serde_json::from_str::<Vec<serde_json::Value>>(&b).ok())
        .is_some_and(|v| {
            v.iter()
                .any(|m| m["Name"] == name && m["Status"].as_u64() == Some(4))
        })
}

fn bytes_sent(node: &Node) -> u64 {
    http_get(&format!("{}:8500", node.ip), "/v1/agent/self")
        .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v["Stats"]["serf_lan"]["bytes_sent"]
                .as_str()
                .and_then(|s| s.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn spawn(i: usize, root: &std::path::Path, join: Option<&str>) -> Node {
    let ip = format!("127.30.0.{}", i + 1);
    let dir = root.join(format!("n{i}"));
    let mut cmd = Command::new(bin());
    cmd.args([
        "agent",
        "-node",
        &format!("n{i}"),
        "-bind",
        &ip,
        "-client",
        &ip,
        "-log-level",
        "warn",
        "-data-dir",
    ])
    .arg(&dir)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(seed) = join {
        cmd.args(["-join", seed]);
    }
    Node {
        ip,
        child: cmd
            .spawn()
            .expect("spawn muster (build it with --release first)"),
        _dir: dir,
    }
}

fn wait(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
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
            http_get(&format!("{}:8500", nodes[0].ip), "/v1/agent/members").is_some()
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
        let rss: Vec<u64> = nodes.iter().map(|x| rss_kib(x.child.id())).collect();
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
