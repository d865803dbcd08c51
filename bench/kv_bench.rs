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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECONDS: u64 = 5;

#[path = "cluster3.rs"]
mod cluster3;
use cluster3::{start_etcd, start_muster, Proc};

/// One keep-alive HTTP/1.1 connection.
struct Conn {
    addr: String,
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: &str) -> Option<Conn> {
        let s = TcpStream::connect(addr).ok()?;
        s.set_nodelay(true).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        Some(Conn {
            addr: addr.into(),
            reader: BufReader::new(s.try_clone().ok()?),
            writer: s,
        })
    }

    /// Sends a request and returns (status, body), or None if the connection broke.
    fn call(&mut self, method: &str, path: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
        let head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", self.addr, body.len());
        self.writer.write_all(head.as_bytes()).ok()?;
        self.writer.write_all(body).ok()?;
        let mut line = String::new();
        self.reader.read_line(&mut line).ok()?;
        let status: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).ok()?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().ok()?;
                }
            }
        }
        let mut out = vec![0u8; len];
        self.reader.read_exact(&mut out).ok()?;
        Some((status, out))
    }
}

trait System {
    fn name(&self) -> &'static str;
    fn start(&self, root: &Path) -> Vec<Proc>;
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
    fn start(&self, root: &Path) -> Vec<Proc> {
        (1..=3).map(|i| start_muster(root, i)).collect()
    }
    fn ready(&self) -> bool {
        (1..=3).all(|i| {
            Conn::open(&format!("127.0.0.{i}:8500"))
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
    fn start(&self, root: &Path) -> Vec<Proc> {
        (1..=3).map(|i| start_etcd(root, i, &[])).collect()
    }
    fn ready(&self) -> bool {
        (1..=3).all(|i| {
            Conn::open(&format!("127.0.0.{i}:2379"))
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
                    .and_then(|m| m.parse::<usize>().ok())
                    .unwrap_or(1 + w % 3);
                let addr = format!("127.0.0.{member}:{}", sys.port());
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

/// `kv_bench [muster|etcd|both] [WRITERS…]`: both systems and 1, 16, 64 writers by default;
/// narrower runs are for profiling one side.
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let which = args.first().map(String::as_str).unwrap_or("both");
    let systems: Vec<&(dyn System + Sync)> = match which {
        "both" => vec![&Muster, &Etcd],
        "muster" => vec![&Muster],
        "etcd" => vec![&Etcd],
        other => {
            eprintln!("unknown system {other:?}: expected muster, etcd or both");
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
