//! KV write throughput and latency: muster and etcd 3.4 (Debian's etcd-server) side by side, in
//! one run, three members each on 127.0.0.1–3, with 1, 16 and 64 concurrent writers.
//!
//! Each writer keeps one HTTP/1.1 connection open to one member (writer i → member i mod 3, so
//! two thirds of the writes go through a follower, which forwards them to the leader) and sends
//! 100-byte values to its own keys, as fast as it can, for `SECONDS`. A write counts when it is
//! acknowledged: muster answers `true` after a quorum commit; etcd answers 200 after its quorum
//! commit. Both systems fsync their logs (redb commits; etcd's WAL).
//!
//! Run: `cargo build --release --bin muster --example kv_bench && target/release/examples/kv_bench`

use std::path::Path;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;
use support::cluster3::{start_etcd, start_muster, start_muster_tls};
use support::http::KeepAlive as Conn;
use support::{Agent, Block, Fixture};

const SECONDS: u64 = 5;

/// The members' processes, held only to be stopped when dropped.
#[allow(dead_code)]
enum Members {
    Muster(Vec<Agent>),
    Etcd(Vec<Fixture>),
}

trait System {
    fn name(&self) -> &'static str;
    fn start(&self, root: &Path) -> Members;
    fn ready(&self) -> bool;
    /// One write of `value` under a key of writer `w`, number `n`; true when acknowledged.
    fn put(&self, c: &mut Conn, w: usize, n: u64, value: &[u8]) -> bool;
    fn port(&self) -> u16;
}

struct Muster;
impl System for Muster {
    fn name(&self) -> &'static str {
        "muster"
    }
    fn port(&self) -> u16 {
        8500
    }
    fn start(&self, root: &Path) -> Members {
        Members::Muster((1..=3).map(|i| start_muster(root, i)).collect())
    }
    fn ready(&self) -> bool {
        (1..=3).all(|i| {
            Conn::open(&format!("{}:8500", Block::Loopback.ip(i)))
                .and_then(|mut c| c.call("PUT", "/v1/kv/ready", b"1"))
                .is_some_and(|(s, b)| s == 200 && b == b"true")
        })
    }
    fn put(&self, c: &mut Conn, w: usize, n: u64, value: &[u8]) -> bool {
        c.call("PUT", &format!("/v1/kv/bench/{w}/{}", n % 1000), value)
            .is_some_and(|(s, b)| s == 200 && b == b"true")
    }
}

/// muster with mutual TLS on the server port (docs/security.md); the HTTP API is the same.
struct MusterTls;
impl System for MusterTls {
    fn name(&self) -> &'static str {
        "muster, mutual TLS"
    }
    fn port(&self) -> u16 {
        8500
    }
    fn start(&self, root: &Path) -> Members {
        Members::Muster((1..=3).map(|i| start_muster_tls(root, i)).collect())
    }
    fn ready(&self) -> bool {
        (1..=3).all(|i| {
            Conn::open(&format!("{}:8500", Block::Loopback.ip(i)))
                .and_then(|mut c| c.call("PUT", "/v1/kv/ready", b"1"))
                .is_some_and(|(s, b)| s == 200 && b == b"true")
        })
    }
    fn put(&self, c: &mut Conn, w: usize, n: u64, value: &[u8]) -> bool {
        c.call("PUT", &format!("/v1/kv/bench/{w}/{}", n % 1000), value)
            .is_some_and(|(s, b)| s == 200 && b == b"true")
    }
}

struct Etcd;
impl System for Etcd {
    fn name(&self) -> &'static str {
        "etcd 3.4"
    }
    fn port(&self) -> u16 {
        2379
    }
    fn start(&self, root: &Path) -> Members {
        Members::Etcd((1..=3).map(|i| start_etcd(root, i, &[])).collect())
    }
    fn ready(&self) -> bool {
        (1..=3).all(|i| {
            Conn::open(&format!("{}:2379", Block::Loopback.ip(i)))
                .and_then(|mut c| {
                    c.call(
                        "POST",
                        "/v3/kv/put",
                        br#"{"key":"cmVhZHk=","value":"MQ=="}"#,
                    )
                })
                .is_some_and(|(s, _)| s == 200)
        })
    }
    fn put(&self, c: &mut Conn, w: usize, n: u64, value: &[u8]) -> bool {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let body = format!(
            r#"{{"key":"{}","value":"{}"}}"#,
            b64.encode(format!("bench/{w}/{}", n % 1000)),
            b64.encode(value)
        );
        c.call("POST", "/v3/kv/put", body.as_bytes())
            .is_some_and(|(s, _)| s == 200)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn run(sys: &(dyn System + Sync), writers: usize) -> (f64, f64, f64, usize) {
    let value = vec![b'v'; 100];
    let lat = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let failed = Arc::new(Mutex::new(0usize));
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    std::thread::scope(|scope| {
        for w in 0..writers {
            let (lat, failed, value) = (lat.clone(), failed.clone(), value.clone());
            scope.spawn(move || {
                // KV_BENCH_MEMBER=N (1–3) sends every write to one member, for profiling.
                let member = std::env::var("KV_BENCH_MEMBER")
                    .ok()
                    .and_then(|m| m.parse::<u8>().ok())
                    .unwrap_or(1 + (w % 3) as u8);
                let addr = format!("{}:{}", Block::Loopback.ip(member), sys.port());
                let mut conn = Conn::open(&addr).expect("connect");
                let mut mine = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if sys.put(&mut conn, w, n, &value) {
                        mine.push(t.elapsed());
                    } else {
                        *failed.lock().unwrap() += 1;
                        if let Some(c) = Conn::open(&addr) {
                            conn = c;
                        }
                    }
                    n += 1;
                }
                lat.lock().unwrap().extend(mine);
            });
        }
    });
    let mut lat = lat.lock().unwrap().clone();
    lat.sort();
    let throughput = lat.len() as f64 / SECONDS as f64;
    let f = *failed.lock().unwrap();
    (throughput, percentile(&lat, 0.5), percentile(&lat, 0.99), f)
}

/// `kv_bench [muster|tls|etcd|both] [WRITERS…]`: both systems and 1, 16, 64 writers by default;
/// narrower runs are for profiling one side.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("both");
    let systems: Vec<&(dyn System + Sync)> = match which {
        "both" => vec![&Muster, &MusterTls, &Etcd],
        "muster" => vec![&Muster],
        // TLS on and off, side by side.
        "tls" => vec![&Muster, &MusterTls],
        "etcd" => vec![&Etcd],
        other => {
            eprintln!("unknown system {other:?}: expected muster, tls, etcd or both");
            std::process::exit(1);
        }
    };
    let mut writer_counts: Vec<usize> = Vec::new();
    for a in args.iter().skip(1) {
        match a.parse() {
            Ok(n) if n > 0 => writer_counts.push(n),
            _ => {
                eprintln!("invalid writer count {a:?}: expected a positive number");
                std::process::exit(1);
            }
        }
    }
    if writer_counts.is_empty() {
        writer_counts = vec![1, 16, 64];
    }
    let mut rows = Vec::new();
    for sys in systems {
        let root = std::env::temp_dir().join(format!(
            "kv-bench-{}-{}",
            std::process::id(),
            sys.name().replace(' ', "")
        ));
        let _ = std::fs::remove_dir_all(&root);
        let procs = sys.start(&root);
        let t0 = Instant::now();
        while !sys.ready() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "{} did not become ready",
                sys.name()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for &writers in &writer_counts {
            let (tput, p50, p99, failed) = run(sys, writers);
            eprintln!("{} with {writers} writers: {tput:.0} writes/s, p50 {p50:.2} ms, p99 {p99:.2} ms, {failed} failed", sys.name());
            rows.push((sys.name(), writers, tput, p50, p99, failed));
        }
        drop(procs);
        let _ = std::fs::remove_dir_all(&root);
    }
    println!("| system | writers | writes/s | p50 latency | p99 latency | failed |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, w, t, p50, p99, f) in rows {
        println!("| {name} | {w} | {t:.0} | {p50:.2} ms | {p99:.2} ms | {f} |");
    }
    println!("\n{SECONDS} s per row, 100-byte values, three members on 127.0.0.1–3, same machine, same run.");
}
