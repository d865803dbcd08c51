//! Test and bench harness: real `muster` processes, each on its own 127.0.0.x address with its
//! own data dir, and the fixture servers they talk to, all killed when the test ends however it
//! ends (and their logs printed when it fails).
//!
//! Included by every integration test (`mod support;`) and by every bench
//! (`#[path = "../tests/support/mod.rs"] mod support;`), so that the benches start muster, poll
//! it and watch its leader exactly as the tests do.
//!
//! - [`certs`]: certificates made by `muster tls`, and which one a TLS port presents.
//! - [`blocks`]: the address block of each test ([`Block`]), clash-free by construction.
//! - [`http`]: the one HTTP client (one request per connection, or a kept-alive connection).
//! - [`agent`]: one agent process ([`Agent`]) and its cluster views (voters, peers, reads,
//!   writes), a set of servers, waiting for a leader.
//! - [`guide`]: a docs page whose `sh` blocks a test runs as written.
//! - [`fixture`]: the Python fixture servers (moto, fake IMDS, fake GCE, fake DNS) and any other
//!   helper process (etcd for the benches).
//! - [`netns`]: a network and mount namespace of the test's own, nftables rules inside it.
//! - [`watch`]: the leader watch: the longest stretch without a leader.
//! - [`cluster3`]: the three-member muster and etcd clusters of the side-by-side benches.
// Each test and bench uses only part of the harness.
#![allow(dead_code, unused_imports)]

pub mod agent;
pub mod blocks;
pub mod certs;
pub mod cluster3;
pub mod fixture;
pub mod guide;
pub mod http;
pub mod netns;
pub mod watch;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use agent::{server_flags, servers, wait_for_leader, Agent};
pub use blocks::Block;
pub use fixture::Fixture;
pub use http::{header, http, http_full, Answer, Client};
pub use watch::LeaderWatch;

/// The `muster` binary under test. Cargo names it for integration tests; an example (a bench)
/// finds it next to itself (`target/<profile>/examples/x` → `target/<profile>/muster`).
pub fn bin() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_muster") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()
            .expect("current exe")
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .join("muster"),
    }
}

/// Prints a numbered step, so a failing test reads like a script.
pub fn step(n: u32, what: &str) {
    // The UTC time of day, to line the steps up with the agents' log lines.
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() % 86_400_000)
        .unwrap_or(0);
    let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    eprintln!("--- step {n} at {h:02}:{m:02}:{s:02}.{ms:03}Z: {what}");
}

/// Calls `f` every `every` until it gives a value or `timeout` passes (None then).
pub fn poll<T>(timeout: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(every);
    }
}

/// Polls `cond` every `every` until it holds or `timeout` passes; panics naming `what` on
/// timeout.
pub fn wait_every(timeout: Duration, every: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    if poll(timeout, every, || cond().then_some(())).is_none() {
        panic!("timed out after {timeout:?} waiting until {what}");
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes; panics naming `what` on timeout.
pub fn wait_until(timeout: Duration, what: &str, cond: impl FnMut() -> bool) {
    wait_every(timeout, Duration::from_millis(50), what, cond)
}

/// Runs `muster ARGS` with no agent involved; a run longer than 60 s is killed and fails the
/// test (a command expected to exit must not hang the suite).
pub fn muster(args: &[&str]) -> Output {
    muster_in(Path::new("."), args)
}

/// [`muster`], run in `dir` (for the commands that write files where they run, `muster tls`).
pub fn muster_in(dir: &Path, args: &[&str]) -> Output {
    use std::io::Read;
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run muster");
    // Read both pipes while waiting: an output larger than a pipe's buffer (a completion
    // script) would otherwise block the command until the deadline.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for muster") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "muster {args:?} did not exit within 60 s; stderr:\n{}",
                String::from_utf8_lossy(&err.join().unwrap_or_default())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().expect("stdout reader"),
        stderr: err.join().expect("stderr reader"),
    }
}

/// Runs `muster agent ARGS` expecting a configuration error: exit 1 and `needle` on stderr.
pub fn agent_refuses(args: &[&str], needle: &str) {
    let mut all = vec!["agent"];
    all.extend_from_slice(args);
    let out = muster(&all);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
    assert!(
        stderr(&out).contains(needle),
        "{args:?}: expected {needle:?} in:\n{}",
        stderr(&out)
    );
}

/// Runs `cmd` to its end (a fixture script, openssl); panics with its stderr unless it succeeds.
pub fn run_ok(what: &str, mut cmd: Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(out.status.success(), "{what} failed: {}", stderr(&out));
    out
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `o`, after asserting that its command succeeded (its output in the failure message).
pub fn ok(o: Output) -> Output {
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    o
}

/// The value after `key:` in a command's output (`SecretID:` in `muster acl token create`).
pub fn field(o: &Output, key: &str) -> String {
    stdout(o)
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no {key} in:\n{}", stdout(o)))
}

/// The lines a command printed, sorted (discovery answers come in no fixed order).
pub fn sorted_lines(o: &Output) -> Vec<String> {
    let mut v: Vec<String> = stdout(o).lines().map(String::from).collect();
    v.sort();
    v
}

pub fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p
}

/// The resident set size of process `pid` in KiB (0 when it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
