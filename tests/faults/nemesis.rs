//! The cluster under test and the faults done to it, one at a time.
//!
//! Five servers (`-bootstrap-expect 5`) and two client agents, all inside the test's own
//! network and mount namespace (tests/support/netns.rs). The fifth server keeps its data dir on
//! a small tmpfs of its own, so that its disk can be filled.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::RngExt;

use super::support::netns::{small_disk, Firewall};
use super::support::{server_flags, Agent, Block, Client};

/// The servers of the suite.
pub const SERVERS: u8 = 5;
/// How long a fault holds before it is healed.
pub const HOLD: Duration = Duration::from_secs(5);
/// The size of the small disk: room for a short run's Raft data, little more.
const SMALL_DISK_MIB: u32 = 64;

/// A quick client for the nemesis' own questions: a paused server must not hold it up.
const QUICK: Client = Client::new(Duration::from_millis(300), Duration::from_secs(2));

/// The faults, one at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// SIGKILL one server, restart it with its data.
    KillRestart,
    /// SIGSTOP the leader, SIGCONT it.
    PauseLeader,
    /// The leader cut off from every other agent.
    PartitionLeader,
    /// Two servers (and one client agent) on one side, three (and the other) on the other.
    SplitTwoThree,
    /// One follower cut off from every other agent.
    IsolateFollower,
    /// SIGKILL every server, restart them in a random order.
    ColdRestart,
    /// The fifth server's disk filled up, then emptied.
    FullDisk,
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::KillRestart,
        Fault::PauseLeader,
        Fault::PartitionLeader,
        Fault::SplitTwoThree,
        Fault::IsolateFollower,
        Fault::ColdRestart,
        Fault::FullDisk,
    ];
}

/// The agents and the firewall between them.
pub struct Cluster {
    pub servers: Vec<Agent>,
    pub clients: Vec<Agent>,
    pub fw: Firewall,
    /// Where the fifth server's data lives (a tmpfs), and the file that fills it.
    small_disk: tempfile::TempDir,
}

impl Cluster {
    /// Starts the five servers and two client agents and waits for one leader.
    pub fn start(block: Block) -> Cluster {
        let fw = Firewall::new();
        let ips: Vec<String> = (1..=SERVERS).map(|i| block.ip(i)).collect();
        let joins: Vec<&str> = ips.iter().map(String::as_str).collect();
        let flags = server_flags(SERVERS, &joins);
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let small = tempfile::tempdir().expect("mount point");
        small_disk(small.path(), SMALL_DISK_MIB);
        let servers = (1..=SERVERS)
            .map(|i| {
                let spec = Agent::spec(&format!("s{i}"), &block.ip(i)).args(&flags);
                let spec = if i == SERVERS {
                    spec.data_dir(small.path().join("data"))
                } else {
                    spec
                };
                spec.start()
            })
            .collect();
        let mut client_flags = Vec::new();
        for ip in &joins {
            client_flags.extend(["-retry-join", *ip]);
        }
        let clients = (1..=2)
            .map(|i| Agent::start(&format!("c{i}"), &block.ip(10 + i), &client_flags))
            .collect();
        let cluster = Cluster {
            servers,
            clients,
            fw,
            small_disk: small,
        };
        cluster
            .wait_healthy(Duration::from_secs(60))
            .expect("the five servers form a cluster");
        cluster
    }

    /// The HTTP addresses of every agent, servers and clients.
    pub fn addrs(&self) -> Vec<String> {
        self.servers
            .iter()
            .chain(&self.clients)
            .map(Agent::http_addr)
            .collect()
    }

    fn ips(&self) -> Vec<String> {
        self.servers
            .iter()
            .chain(&self.clients)
            .map(|a| a.ip.clone())
            .collect()
    }

    /// The server that names itself leader on `/v1/status/leader` (the lease-checked answer),
    /// if one does.
    pub fn leader(&self) -> Option<usize> {
        self.servers.iter().position(|s| {
            QUICK
                .text(&s.http_addr(), "GET", "/v1/status/leader", b"")
                .is_some_and(|(st, b)| st == 200 && b.trim() == format!("\"{}:8300\"", s.ip))
        })
    }

    /// Whether every server names the same leader, and that leader names itself.
    fn agreed(&self) -> bool {
        let Some(l) = self.leader() else {
            return false;
        };
        let want = format!("\"{}:8300\"", self.servers[l].ip);
        self.servers.iter().all(|s| {
            QUICK
                .text(&s.http_addr(), "GET", "/v1/status/leader", b"")
                .is_some_and(|(st, b)| st == 200 && b.trim() == want)
        })
    }

    /// Waits until every server agrees on one leader; how long that took, or None on timeout.
    pub fn wait_healthy(&self, timeout: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        super::support::poll(timeout, Duration::from_millis(100), || {
            self.agreed().then(|| t0.elapsed())
        })
    }

    /// One line per server: what it says of the leader and of its own Raft state (printed
    /// when the servers do not agree in time).
    pub fn describe(&self) -> String {
        self.servers
            .iter()
            .map(|s| {
                let leader = QUICK.text(&s.http_addr(), "GET", "/v1/status/leader", b"");
                let raft = &QUICK.json_get(&s.http_addr(), "/v1/agent/self")["Stats"]["raft"];
                format!(
                    "{} ({}): status/leader {:?}, state {}, term {}, leader {}, last_log_index {}, \
                     commit {}, applied {}\n",
                    s.name, s.ip, leader, raft["state"], raft["term"], raft["leader"],
                    raft["last_log_index"], raft["commit_index"], raft["applied_index"]
                )
            })
            .collect()
    }

    /// The highest Raft term any server reports.
    pub fn max_term(&self) -> u64 {
        self.servers
            .iter()
            .filter_map(|s| {
                QUICK.json_get(&s.http_addr(), "/v1/agent/self")["Stats"]["raft"]["term"]
                    .as_str()
                    .and_then(|t| t.parse().ok())
            })
            .max()
            .unwrap_or(0)
    }

    /// Does `fault` (choices from `rng`), holds it, heals it. What was done, in words.
    pub fn apply(&mut self, fault: Fault, rng: &mut StdRng) -> String {
        let n = self.servers.len();
        let leader = self.leader();
        match fault {
            Fault::KillRestart => {
                let v = rng.random_range(0..n);
                self.servers[v].kill();
                std::thread::sleep(Duration::from_millis(rng.random_range(500..3000)));
                self.servers[v].restart();
                format!("killed and restarted {}", self.servers[v].name)
            }
            Fault::PauseLeader => {
                let v = leader.unwrap_or_else(|| rng.random_range(0..n));
                self.servers[v].signal(libc::SIGSTOP);
                std::thread::sleep(HOLD);
                self.servers[v].signal(libc::SIGCONT);
                format!(
                    "paused {} (leader: {})",
                    self.servers[v].name,
                    leader.is_some()
                )
            }
            Fault::PartitionLeader | Fault::IsolateFollower => {
                let v = match (fault, leader) {
                    (Fault::PartitionLeader, Some(l)) => l,
                    (_, Some(l)) => (l + rng.random_range(1..n)) % n,
                    (_, None) => rng.random_range(0..n),
                };
                let ip = self.servers[v].ip.clone();
                let rest: Vec<String> = self.ips().into_iter().filter(|i| *i != ip).collect();
                let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
                self.fw.partition(&[&ip], &rest);
                std::thread::sleep(HOLD);
                self.fw.heal();
                format!(
                    "cut off {} (was leader: {})",
                    self.servers[v].name,
                    leader == Some(v)
                )
            }
            Fault::SplitTwoThree => {
                let mut order: Vec<usize> = (0..n).collect();
                shuffle(&mut order, rng);
                let small: Vec<String> = order[..2]
                    .iter()
                    .map(|&i| self.servers[i].ip.clone())
                    .chain([self.clients[0].ip.clone()])
                    .collect();
                let big: Vec<String> = order[2..]
                    .iter()
                    .map(|&i| self.servers[i].ip.clone())
                    .chain([self.clients[1].ip.clone()])
                    .collect();
                let a: Vec<&str> = small.iter().map(String::as_str).collect();
                let b: Vec<&str> = big.iter().map(String::as_str).collect();
                self.fw.partition(&a, &b);
                std::thread::sleep(HOLD);
                self.fw.heal();
                let names: Vec<&str> = order[..2]
                    .iter()
                    .map(|&i| self.servers[i].name.as_str())
                    .collect();
                format!("split {} from the other three", names.join("+"))
            }
            Fault::ColdRestart => {
                for s in self.servers.iter_mut() {
                    s.kill();
                }
                let mut order: Vec<usize> = (0..n).collect();
                shuffle(&mut order, rng);
                for &i in &order {
                    std::thread::sleep(Duration::from_millis(rng.random_range(0..800)));
                    self.servers[i].restart();
                }
                let names: Vec<&str> = order
                    .iter()
                    .map(|&i| self.servers[i].name.as_str())
                    .collect();
                format!("cold restart in the order {}", names.join(", "))
            }
            Fault::FullDisk => {
                let filler = self.small_disk.path().join("filler");
                fill(&filler);
                std::thread::sleep(HOLD);
                std::fs::remove_file(&filler).expect("remove the filler");
                let s = self.servers.last_mut().expect("five servers");
                let exited = s.wait_exit(Duration::ZERO).is_some();
                if exited {
                    s.restart();
                }
                format!("filled the disk of {} (it exited: {exited})", s.name)
            }
        }
    }

    /// Ends every fault: the network whole, every process running and not paused.
    pub fn heal_all(&mut self) {
        self.fw.heal();
        for s in self.servers.iter_mut().chain(self.clients.iter_mut()) {
            s.signal(libc::SIGCONT);
            if s.wait_exit(Duration::ZERO).is_some() {
                s.restart();
            }
        }
        let _ = std::fs::remove_file(self.small_disk.path().join("filler"));
    }
}

impl Drop for Cluster {
    /// Stops the fifth server before its disk goes, and unmounts the disk so that its mount
    /// point can be removed (the namespace would drop the mount, but leave the directory).
    fn drop(&mut self) {
        if let Some(s) = self.servers.last_mut() {
            s.kill();
        }
        let _ = std::process::Command::new("umount")
            .arg(self.small_disk.path())
            .status();
    }
}

/// Writes zeros to `path` until the disk under it is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler file");
    let block = vec![0u8; 1 << 20];
    while f.write_all(&block).is_ok() {}
    let _ = f.sync_all();
}

/// Fisher–Yates, from the trial's own generator (so a seed replays the trial).
pub fn shuffle<T>(v: &mut [T], rng: &mut StdRng) {
    for i in (1..v.len()).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
}
