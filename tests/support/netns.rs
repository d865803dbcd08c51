//! A network (and mount) namespace of the test's own, and packet filters inside it.
//!
//! A fault test cannot filter packets on the machine's own loopback: other tests, and whatever
//! else runs here, share it. So a test that partitions agents runs its whole body in a child
//! process of its own binary, started under `unshare --net --mount`: a fresh loopback that
//! only this test's agents use, a mount table where it may put a small tmpfs (a full disk)
//! without anything outside seeing it, and nftables rules that vanish with the namespace when
//! the test ends, however it ends.
//!
//! ```ignore
//! #[test]
//! fn a_partitioned_leader() {
//!     if !netns::enter("a_partitioned_leader") {
//!         return; // the body ran, and passed, in the namespace
//!     }
//!     let fw = Firewall::new();
//!     …
//! }
//! ```

use std::process::Command;

/// The environment variable that tells the child process which test it runs inside the
/// namespace (and that it is the child).
const INSIDE: &str = "MUSTER_NETNS_TEST";

/// Runs the test `name` (its path in the test binary, as `--exact` takes it) in a namespace of
/// its own. In the parent, re-executes this binary for that one test under `unshare`, panics
/// unless it passed, and returns false: the caller returns. In the child, brings the namespace's
/// loopback up and returns true: the caller runs the body.
pub fn enter(name: &str) -> bool {
    if std::env::var(INSIDE).as_deref() == Ok(name) {
        run("ip", &["link", "set", "lo", "up"]);
        assert!(
            Command::new("nft").arg("--version").output().is_ok(),
            "the fault tests need the nft command (apt-get install nftables; .ci/test.sh does)"
        );
        return true;
    }
    let exe = std::env::current_exe().expect("own test binary");
    let mut unshare = Command::new("unshare");
    // Not root: a user namespace of its own too, in which the test is root of its namespaces.
    if unsafe { libc::geteuid() } != 0 {
        unshare.arg("--map-root-user");
    }
    let status = unshare
        .args(["--net", "--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args([
            name,
            "--exact",
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env(INSIDE, name)
        .status()
        .expect("run unshare (util-linux) for a network namespace of the test's own");
    assert!(
        status.success(),
        "{name} failed inside its namespace: {status}"
    );
    false
}

/// Runs a command of the namespace's setup; panics with its stderr unless it succeeds.
fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The packet filter of the namespace: one nftables table whose output chain drops what a
/// fault says. Loopback traffic passes the output hook once per packet, so dropping there cuts
/// both UDP gossip and TCP Raft traffic from one address to another.
pub struct Firewall;

impl Firewall {
    /// Creates the table and its empty chain. Only inside a namespace of the test's own.
    pub fn new() -> Firewall {
        assert!(
            std::env::var(INSIDE).is_ok(),
            "Firewall::new outside a test namespace would filter the machine's own loopback"
        );
        nft("add table inet muster_faults");
        nft("add chain inet muster_faults out \
             { type filter hook output priority 0 ; policy accept ; }");
        Firewall
    }

    /// Drops every packet from `from` to `to` (one direction).
    pub fn drop_one_way(&self, from: &str, to: &str) {
        nft(&format!(
            "add rule inet muster_faults out ip saddr {from} ip daddr {to} drop"
        ));
    }

    /// Cuts every address of `a` off from every address of `b`, both ways.
    pub fn partition(&self, a: &[&str], b: &[&str]) {
        for x in a {
            for y in b {
                self.drop_one_way(x, y);
                self.drop_one_way(y, x);
            }
        }
    }

    /// Removes every rule: the network is whole again.
    pub fn heal(&self) {
        nft("flush chain inet muster_faults out");
    }

    /// The rules in force, as nft lists them (for a failing test's output).
    pub fn rules(&self) -> String {
        let out = Command::new("nft")
            .args(["list", "chain", "inet", "muster_faults", "out"])
            .output()
            .expect("nft list");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Default for Firewall {
    fn default() -> Self {
        Firewall::new()
    }
}

/// One `nft` command, given as nft's own command language.
fn nft(rule: &str) {
    let out = Command::new("nft")
        .arg(rule)
        .output()
        .expect("run nft (apt-get install nftables)");
    assert!(
        out.status.success(),
        "nft {rule}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Mounts a tmpfs of `mib` MiB at `dir`, in the test's own mount namespace (a disk that fills).
pub fn small_disk(dir: &std::path::Path, mib: u32) {
    assert!(
        std::env::var(INSIDE).is_ok(),
        "small_disk outside a test namespace would mount on the machine itself"
    );
    std::fs::create_dir_all(dir).expect("mount point");
    run(
        "mount",
        &[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={mib}m"),
            "tmpfs",
            dir.to_str().expect("utf-8 path"),
        ],
    );
}
