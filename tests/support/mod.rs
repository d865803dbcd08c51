//! Test harness: real `muster` processes, each on its own 127.0.0.x address with its own temp
//! data dir, killed when the test ends however it ends.
//!
//! Address blocks: every test takes its own second octet (`127.B.0.x`) so tests run in parallel
//! without sharing a port. Blocks in use — keep this list unique:
//! 10 five_agents · 11 encryption · 12 datacenters · 13 name_conflict · 14 garbage_packets ·
//! 15 join_cli · 16 http_errors · 17 signals · 18 retry_join · 19 retry_max · 20 tags (library) ·
//! 21 start_join_fails · 22 config_cli · 23 ipv6_and_names · 30 benchmarks · 40–59 servers.rs ·
//! 60–69 kv.rs · 70–72 providers.rs · 73–74, 78 aws.rs · 90 providers.rs (dns) · 75, 79 autoscaling_aws.rs · 76–77 gce.rs · 80–89 autoscaling.rs.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_muster");

/// Prints a numbered step, so a failing test reads like a script.
pub fn step(n: u32, what: &str) {
    eprintln!("--- step {n}: {what}");
}

/// Polls `cond` until it holds or `timeout` passes; panics naming `what` on timeout.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `i`-th address of block `block`: 127.block.0.i.
pub fn ip(block: u8, i: u8) -> String {
    format!("127.{block}.0.{i}")
}

/// One agent process.
pub struct Agent {
    pub name: String,
    pub ip: String,
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    child: Option<Child>,
    pub extra: Vec<String>,
    generation: u32,
}

impl Agent {
    /// Starts `muster agent -node NAME -bind IP -client IP -data-dir TMP EXTRA…`.
    pub fn start(name: &str, ip: &str, extra: &[&str]) -> Agent {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().to_path_buf();
        let mut a = Agent {
            name: name.into(),
            ip: ip.into(),
            dir,
            _tmp: Some(tmp),
            child: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            generation: 0,
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        self.generation += 1;
        let log = std::fs::File::create(self.log_path()).expect("log file");
        let mut cmd = Command::new(BIN);
        cmd.args([
            "agent",
            "-node",
            &self.name,
            "-bind",
            &self.ip,
            "-client",
            &self.ip,
            "-data-dir",
        ])
        .arg(self.dir.join("data"))
        .args(&self.extra)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn muster agent"));
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("agent-{}.log", self.generation))
    }

    /// Everything this agent logged in its current run.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Starts the same agent again (same name, address and data dir) after it stopped.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn http_addr(&self) -> String {
        format!("{}:8500", self.ip)
    }

    /// Runs a CLI command against this agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("MUSTER_HTTP_ADDR", self.http_addr())
            .output()
            .expect("run muster")
    }

    /// `GET /v1/agent/members` as JSON, or None while the agent does not answer.
    pub fn members(&self) -> Option<Vec<Value>> {
        let (status, body) = http(&self.http_addr(), "GET", "/v1/agent/members")?;
        if status != 200 {
            return None;
        }
        serde_json::from_str(&body).ok()
    }

    /// Name → status word of every member this agent sees.
    pub fn statuses(&self) -> Vec<(String, String)> {
        self.members()
            .unwrap_or_default()
            .iter()
            .map(|m| {
                let s = match m["Status"].as_u64() {
                    Some(1) => "alive",
                    Some(2) => "leaving",
                    Some(3) => "left",
                    Some(4) => "failed",
                    _ => "none",
                };
                (m["Name"].as_str().unwrap_or("").to_string(), s.to_string())
            })
            .collect()
    }

    /// Whether this agent sees `name` with `status`.
    pub fn sees(&self, name: &str, status: &str) -> bool {
        self.statuses()
            .iter()
            .any(|(n, s)| n == name && s == status)
    }

    /// Number of members this agent sees alive.
    pub fn alive_count(&self) -> usize {
        self.statuses().iter().filter(|(_, s)| s == "alive").count()
    }

    /// Waits until the HTTP API answers.
    pub fn wait_ready(&self) {
        wait_until(
            Duration::from_secs(20),
            &format!("{} answers HTTP", self.name),
            || self.members().is_some(),
        );
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// Sends a signal (SIGTERM, SIGINT…).
    pub fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            unsafe {
                libc::kill(pid, sig);
            }
        }
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("=== log of {} ({}) ===\n{}", self.name, self.ip, self.log());
        }
    }
}

/// A minimal HTTP/1.1 request over a fresh connection; (status, body), or None on connection
/// failure.
pub fn http(addr: &str, method: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Runs `muster ARGS` with no agent involved; a run longer than 60 s is killed and fails the
/// test (a command expected to exit must not hang the suite).
pub fn muster(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run muster");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait for muster").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("reap muster");
            panic!(
                "muster {args:?} did not exit within 60 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect muster output")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p
}

impl Agent {
    /// The `Stats` of `/v1/agent/self`, or None while the agent does not answer.
    pub fn stats(&self) -> Option<Value> {
        let (status, body) = http(&self.http_addr(), "GET", "/v1/agent/self")?;
        if status != 200 {
            return None;
        }
        serde_json::from_str::<Value>(&body)
            .ok()
            .map(|v| v["Stats"].clone())
    }

    /// One key of the `raft` section of `muster info`, as text ("" when absent).
    pub fn raft(&self, key: &str) -> String {
        self.stats()
            .and_then(|s| s["raft"][key].as_str().map(str::to_string))
            .unwrap_or_default()
    }

    pub fn is_leader(&self) -> bool {
        self.raft("state") == "Leader"
    }
}

/// Starts `n` servers on block `block` with `-server -bootstrap-expect expect` and `extra`.
pub fn servers(block: u8, n: u8, expect: u8, extra: &[&str]) -> Vec<Agent> {
    let e = expect.to_string();
    (1..=n)
        .map(|i| {
            let mut args = vec!["-server", "-bootstrap-expect", &e];
            args.extend_from_slice(extra);
            Agent::start(&format!("s{i}"), &ip(block, i), &args)
        })
        .collect()
}

/// Waits until exactly one of `agents` is leader and every one agrees on it; its index.
pub fn wait_for_leader(agents: &[&Agent], timeout: Duration) -> usize {
    let mut found = 0;
    wait_until(timeout, "one leader that every server agrees on", || {
        let leaders: Vec<usize> = agents
            .iter()
            .enumerate()
            .filter(|(_, a)| a.is_leader())
            .map(|(i, _)| i)
            .collect();
        if leaders.len() != 1 {
            return false;
        }
        let addr = format!("{}:8300", agents[leaders[0]].ip);
        if agents.iter().all(|a| a.raft("leader") == addr) {
            found = leaders[0];
            true
        } else {
            false
        }
    });
    found
}

/// An HTTP answer: status, lower-cased headers, body.
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// A full HTTP/1.1 exchange. None on connection failure.
pub fn http_full(addr: &str, method: &str, path: &str, body: &[u8]) -> Option<Answer> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).ok()?;
    s.write_all(body).ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        })
        .collect();
    let mut body = buf[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&String::from_utf8_lossy(&body)).into_bytes();
    }
    Some((status, headers, body))
}

/// The value of header `name` (lower case) in a `http_full` answer.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}
