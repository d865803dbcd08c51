//! One `muster agent` process and what a test asks of it: its members, its Raft state, its
//! cluster's voters, reads and writes; a set of servers; waiting for one agreed leader.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::blocks::Block;
use super::http::{http, Client};
use super::{bin, wait_until};

/// How to start an agent, for the starts [`Agent::start`] does not cover: environment
/// variables, a data dir of the caller's, output thrown away (the benches).
pub struct AgentSpec {
    name: String,
    ip: String,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    data_dir: Option<PathBuf>,
    quiet: bool,
    tmpfs: Option<String>,
}

impl AgentSpec {
    /// Flags after `-node NAME -bind IP -client IP -data-dir DIR`.
    pub fn args(mut self, extra: &[&str]) -> AgentSpec {
        self.extra.extend(extra.iter().map(|s| s.to_string()));
        self
    }

    /// An environment variable of the agent process.
    pub fn env(mut self, key: &str, value: &str) -> AgentSpec {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The data dir, kept when the agent is dropped (the caller owns it); by default a fresh
    /// temp dir, removed with the agent.
    pub fn data_dir(mut self, dir: PathBuf) -> AgentSpec {
        self.data_dir = Some(dir);
        self
    }

    /// Throws the agent's output away instead of keeping it for [`Agent::log`] (the benches:
    /// nothing but muster's own work on the machine).
    pub fn quiet(mut self) -> AgentSpec {
        self.quiet = true;
        self
    }

    /// The data dir on a tmpfs of `size` (`8m`), mounted in a mount namespace of the agent's
    /// own (`unshare --mount --propagation private`, as root), so that a test can fill the
    /// agent's disk and nothing outside is touched. The test reaches the files through
    /// [`Agent::data_dir_as_seen_by_agent`]; the tmpfs goes away with the process.
    pub fn data_on_tmpfs(mut self, size: &str) -> AgentSpec {
        self.tmpfs = Some(size.into());
        self
    }

    pub fn start(self) -> Agent {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = self
            .data_dir
            .clone()
            .unwrap_or_else(|| tmp.path().join("data"));
        let mut a = Agent {
            name: self.name,
            ip: self.ip,
            dir: tmp.path().to_path_buf(),
            data,
            _tmp: tmp,
            child: None,
            extra: self.extra,
            env: self.env,
            quiet: self.quiet,
            tmpfs: self.tmpfs,
            generation: 0,
        };
        a.spawn();
        a
    }
}

/// One agent process, SIGKILLed when dropped; its log is printed when the test panics.
pub struct Agent {
    pub name: String,
    pub ip: String,
    /// The agent's own temp dir: its logs, and its data dir unless one was given.
    pub dir: PathBuf,
    data: PathBuf,
    _tmp: tempfile::TempDir,
    child: Option<Child>,
    /// Flags after the fixed ones; a test changes them before [`Agent::restart`].
    pub extra: Vec<String>,
    env: Vec<(String, String)>,
    quiet: bool,
    /// The size of the tmpfs the data dir is mounted on, if any ([`AgentSpec::data_on_tmpfs`]).
    tmpfs: Option<String>,
    generation: u32,
}

impl Agent {
    /// Starts `muster agent -node NAME -bind IP -client IP -data-dir TMP EXTRA…`.
    pub fn start(name: &str, ip: &str, extra: &[&str]) -> Agent {
        Agent::spec(name, ip).args(extra).start()
    }

    /// An agent to start with more than flags (see [`AgentSpec`]).
    pub fn spec(name: &str, ip: &str) -> AgentSpec {
        AgentSpec {
            name: name.into(),
            ip: ip.into(),
            extra: Vec::new(),
            env: Vec::new(),
            data_dir: None,
            quiet: false,
            tmpfs: None,
        }
    }

    fn spawn(&mut self) {
        self.generation += 1;
        let mut cmd = match &self.tmpfs {
            None => Command::new(bin()),
            Some(size) => {
                // $0 is the data dir, $1 the size; the rest is the agent's command line.
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                    .arg(
                        "mkdir -p \"$0\" && mount -t tmpfs -o size=\"$1\" tmpfs \"$0\" \
                         && shift && exec \"$@\"",
                    )
                    .arg(&self.data)
                    .arg(size)
                    .arg(bin());
                c
            }
        };
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
        .arg(&self.data)
        .args(&self.extra)
        .envs(self.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
        // The agent dies with the thread that started it, even when the test process is
        // killed outright (a timeout) and no Drop runs: no agent outlives its test.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        if self.quiet {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        } else {
            let log = std::fs::File::create(self.log_path()).expect("log file");
            cmd.stdout(log.try_clone().expect("log")).stderr(log);
        }
        self.child = Some(cmd.spawn().expect("spawn muster agent (is it built?)"));
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
        Command::new(bin())
            .args(args)
            .env("MUSTER_HTTP_ADDR", self.http_addr())
            .output()
            .expect("run muster")
    }

    /// `GET path` as JSON when the agent answers 200, or None.
    fn get_json(&self, path: &str) -> Option<Value> {
        let (status, body) = http(&self.http_addr(), "GET", path)?;
        if status != 200 {
            return None;
        }
        serde_json::from_str(&body).ok()
    }

    /// `GET /v1/agent/members` as JSON, or None while the agent does not answer.
    pub fn members(&self) -> Option<Vec<Value>> {
        serde_json::from_value(self.get_json("/v1/agent/members")?).ok()
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
        self.data.clone()
    }

    /// The data dir as the agent process sees it: through `/proc/PID/root` when it lives on a
    /// tmpfs in the agent's own mount namespace ([`AgentSpec::data_on_tmpfs`]).
    pub fn data_dir_as_seen_by_agent(&self) -> PathBuf {
        match (&self.tmpfs, self.pid()) {
            (Some(_), Some(pid)) => PathBuf::from(format!("/proc/{pid}/root"))
                .join(self.data.strip_prefix("/").unwrap_or(&self.data)),
            _ => self.data.clone(),
        }
    }

    /// The `Stats` of `/v1/agent/self`, or None while the agent does not answer.
    /// Name and `muster-status` of every node in `/v1/catalog/nodes` as this agent answers
    /// it (empty while it does not answer 200).
    pub fn catalog(&self) -> Vec<(String, String)> {
        let body = Client::TEST
            .send(&self.http_addr(), "GET", "/v1/catalog/nodes", b"")
            .filter(|r| r.0 == 200)
            .map(|r| r.2)
            .unwrap_or_default();
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        v.as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                let field = |v: &Value| v.as_str().unwrap_or("").to_string();
                (field(&n["Node"]), field(&n["Meta"]["muster-status"]))
            })
            .collect()
    }

    pub fn stats(&self) -> Option<Value> {
        self.get_json("/v1/agent/self").map(|v| v["Stats"].clone())
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

    /// Whether the agent reports itself Leader, asked through `client` (the benches' timeouts).
    pub fn is_leader_via(&self, client: &Client) -> bool {
        is_leader_at(client, &self.http_addr())
    }

    /// (name, address, voter) of every server in this agent's Raft configuration, sorted;
    /// empty while it does not answer.
    pub fn peers(&self) -> Vec<(String, String, bool)> {
        self.peers_via(&Client::TEST)
    }

    /// [`Agent::peers`], asked through `client`.
    pub fn peers_via(&self, client: &Client) -> Vec<(String, String, bool)> {
        let cfg = client.json_get(&self.http_addr(), "/v1/operator/raft/configuration");
        let mut v: Vec<_> = cfg["Servers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    s["Node"].as_str().unwrap_or("").to_string(),
                    s["Address"].as_str().unwrap_or("").to_string(),
                    s["Voter"].as_bool().unwrap_or(false),
                )
            })
            .collect();
        v.sort();
        v
    }

    /// The names of the voters in this agent's Raft configuration, sorted.
    pub fn voters(&self) -> Vec<String> {
        self.voters_via(&Client::TEST)
    }

    /// [`Agent::voters`], asked through `client`.
    pub fn voters_via(&self, client: &Client) -> Vec<String> {
        self.peers_via(client)
            .into_iter()
            .filter(|p| p.2)
            .map(|p| p.0)
            .collect()
    }

    /// `muster kv put KEY VALUE` through this agent; panics if it fails.
    pub fn put(&self, key: &str, value: &str) {
        let out = self.cli(&["kv", "put", key, value]);
        assert!(
            out.status.success(),
            "kv put {key}: {}",
            super::stderr(&out)
        );
    }

    /// The raw value of `key`, read with `?consistent`; None when absent or unanswered.
    pub fn get_consistent(&self, key: &str) -> Option<String> {
        let (st, body) = http(
            &self.http_addr(),
            "GET",
            &format!("/v1/kv/{key}?raw&consistent"),
        )?;
        (st == 200).then_some(body)
    }
}

/// Whether the agent whose HTTP API is at `addr` reports itself Leader (a follower's
/// `/v1/status/leader` can name a leader that has already stepped down).
pub fn is_leader_at(client: &Client, addr: &str) -> bool {
    client.json_get(addr, "/v1/agent/self")["Stats"]["raft"]["state"].as_str() == Some("Leader")
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() && !self.quiet {
            eprintln!("=== log of {} ({}) ===\n{}", self.name, self.ip, self.log());
        }
    }
}

/// The flags of a server that expects `expect` servers and finds them with `-retry-join` at
/// each of `joins` (for [`Agent::extra`] before a restart).
pub fn server_flags(expect: u8, joins: &[&str]) -> Vec<String> {
    let mut v = vec![
        "-server".to_string(),
        "-bootstrap-expect".into(),
        expect.to_string(),
    ];
    for j in joins {
        v.extend(["-retry-join".to_string(), j.to_string()]);
    }
    v
}

/// Starts `n` servers `s1…sn` on `block` with `-server -bootstrap-expect expect` and `extra`.
pub fn servers(block: Block, n: u8, expect: u8, extra: &[&str]) -> Vec<Agent> {
    let e = expect.to_string();
    (1..=n)
        .map(|i| {
            let mut args = vec!["-server", "-bootstrap-expect", &e];
            args.extend_from_slice(extra);
            Agent::start(&format!("s{i}"), &block.ip(i), &args)
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
