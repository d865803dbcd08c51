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

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

struct Node {
    name: String,
    ip: String,
    child: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bin() -> PathBuf {
    std::env::current_exe()
        .expect("exe")
        .parent()
        .and_then(Path::parent)
        .expect("target")
        .join("muster")
}

fn start(root: &Path, name: &str, ip: &str, server: Option<u8>, join: &str) -> Node {
    let mut c = Command::new(bin());
    c.args(["agent", "-node", name, "-bind", ip, "-client", ip])
        .args(["-log-level", "warn", "-retry-join", join, "-data-dir"])
        .arg(root.join(format!("{ip}-{name}")));
    if let Some(expect) = server {
        c.args(["-server", "-bootstrap-expect", &expect.to_string()]);
    }
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn muster (build it with --release)");
    Node {
        name: name.into(),
        ip: ip.into(),
        child,
    }
}

fn http(ip: &str, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let addr = format!("{ip}:8500");
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split(' ').nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    Some((status, body))
}

fn json(ip: &str, path: &str) -> serde_json::Value {
    http(ip, "GET", path, b"")
        .and_then(|(_, b)| serde_json::from_str(&b).ok())
        .unwrap_or(serde_json::Value::Null)
}

fn is_leader(ip: &str) -> bool {
    json(ip, "/v1/agent/self")["Stats"]["raft"]["state"].as_str() == Some("Leader")
}

fn voters(ip: &str) -> Vec<String> {
    let mut v: Vec<String> = json(ip, "/v1/operator/raft/configuration")["Servers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["Voter"].as_bool() == Some(true))
        .filter_map(|s| s["Node"].as_str().map(String::from))
        .collect();
    v.sort();
    v
}

fn wait(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn ip(block: u8, i: u8) -> String {
    format!("127.0.{block}.{i}")
}

fn form(root: &Path, block: u8, n: u8) -> Vec<Node> {
    let nodes: Vec<Node> = (1..=n)
        .map(|i| {
            start(
                root,
                &format!("s{i}"),
                &ip(block, i),
                Some(n),
                &ip(block, 1),
            )
        })
        .collect();
    wait("all voters", || {
        nodes.iter().any(|a| is_leader(&a.ip)) && voters(&nodes[0].ip).len() == n as usize
    });
    nodes
}

/// Kill a follower, start its replacement, time until the configuration is whole again.
fn replacement_times(root: &Path, rounds: usize) -> Vec<Duration> {
    let block = 1;
    let mut nodes = form(root, block, 3);
    let mut out = Vec::new();
    for r in 0..rounds {
        let victim = nodes
            .iter()
            .position(|a| !is_leader(&a.ip))
            .expect("a follower");
        let dead = nodes.remove(victim);
        let dead_name = dead.name.clone();
        let seed = nodes[0].ip.clone();
        let t0 = Instant::now();
        drop(dead);
        let name = format!("n{r}");
        nodes.push(start(root, &name, &ip(block, 10 + r as u8), Some(3), &seed));
        let probe = nodes[0].ip.clone();
        wait("replacement voter, dead removed", || {
            let v = voters(&probe);
            v.len() == 3 && v.contains(&name) && !v.contains(&dead_name)
        });
        out.push(t0.elapsed());
    }
    out
}

struct Watch {
    stop: Arc<AtomicBool>,
    ips: Arc<Mutex<Vec<String>>>,
    leaderless: std::thread::JoinHandle<Duration>,
    writer: std::thread::JoinHandle<(Duration, u64)>,
}

/// Longest leaderless window, and the longest write stall through `client`.
fn watch(ips: Vec<String>, client: String) -> Watch {
    let stop = Arc::new(AtomicBool::new(false));
    let ips = Arc::new(Mutex::new(ips));
    let (st, ip2) = (stop.clone(), ips.clone());
    let leaderless = std::thread::spawn(move || {
        let mut longest = Duration::ZERO;
        let mut since: Option<Instant> = None;
        while !st.load(Ordering::Relaxed) {
            let list = ip2.lock().unwrap().clone();
            let has = list.iter().any(|i| is_leader(i));
            match (has, since) {
                (true, Some(t)) => {
                    longest = longest.max(t.elapsed());
                    since = None;
                }
                (false, None) => since = Some(Instant::now()),
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        longest
    });
    let st = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut longest = Duration::ZERO;
        let mut last = Instant::now();
        let mut n = 0u64;
        while !st.load(Ordering::Relaxed) {
            let ok = http(&client, "PUT", &format!("/v1/kv/roll/{}", n % 100), b"v")
                .is_some_and(|(s, b)| s == 200 && b.trim() == "true");
            if ok {
                longest = longest.max(last.elapsed());
                last = Instant::now();
                n += 1;
            }
        }
        (longest, n)
    });
    Watch {
        stop,
        ips,
        leaderless,
        writer,
    }
}

/// (longest leaderless window, longest write stall, writes acknowledged, duration).
fn rolling(root: &Path, block: u8, n: u8) -> (Duration, Duration, u64, Duration) {
    let mut old: Vec<Option<Node>> = form(root, block, n).into_iter().map(Some).collect();
    let client = start(
        root,
        &format!("c{block}"),
        &ip(block, 100),
        None,
        &ip(block, 1),
    );
    wait("the client can write", || {
        http(&client.ip, "PUT", "/v1/kv/roll/ready", b"1").is_some_and(|(s, _)| s == 200)
    });
    let mut new: Vec<Node> = Vec::new();
    let live = |old: &[Option<Node>], new: &[Node]| -> Vec<String> {
        old.iter()
            .flatten()
            .chain(new)
            .map(|a| a.ip.clone())
            .collect()
    };
    let w = watch(live(&old, &new), client.ip.clone());
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
        new.push(start(root, &name, &ip(block, 20 + i as u8), Some(n), &seed));
        *w.ips.lock().unwrap() = live(&old, &new);
        let probe = new.last().unwrap().ip.clone();
        wait("new server promoted", || voters(&probe).contains(&name));
        let gone = old[i].take().unwrap();
        let _ = http(&gone.ip, "PUT", "/v1/agent/leave", b"");
        *w.ips.lock().unwrap() = live(&old, &new);
        wait("old server removed", || {
            !voters(&probe).contains(&gone.name)
        });
        drop(gone);
    }
    let took = t0.elapsed();
    w.stop.store(true, Ordering::Relaxed);
    let leaderless = w.leaderless.join().unwrap();
    let (stall, writes) = w.writer.join().unwrap();
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
