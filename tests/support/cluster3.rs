//! Three-member clusters on 127.0.0.1–3 for the side-by-side benches (`raft_bench`,
//! `kv_bench`): how each system is launched, kept in one place so that both benches measure
//! the same setup.

use std::path::Path;
use std::process::Command;

use super::{Agent, Block, Fixture};

/// Starts muster server `i` (1–3) on 127.0.0.i with its data under `root`: all three expect
/// three servers and find each other with `-retry-join`, as in production. Its output is thrown
/// away, as etcd's is.
pub fn start_muster(root: &Path, i: u8) -> Agent {
    Agent::spec(&format!("m{i}"), &Block::Loopback.ip(i))
        .args(&["-server", "-bootstrap-expect", "3", "-log-level", "warn"])
        .args(&["-retry-join", "127.0.0.1", "-retry-join", "127.0.0.2"])
        .args(&["-retry-join", "127.0.0.3"])
        .data_dir(root.join(format!("m{i}")))
        .quiet()
        .start()
}

/// Starts etcd member `i` (1–3) on 127.0.0.i (client port 2379, peer port 2380) with its data
/// under `root`, in a static three-member cluster; `extra` flags are appended.
pub fn start_etcd(root: &Path, i: u8, extra: &[&str]) -> Fixture {
    let cluster = "e1=http://127.0.0.1:2380,e2=http://127.0.0.2:2380,e3=http://127.0.0.3:2380";
    let ip = Block::Loopback.ip(i);
    let mut cmd = Command::new("etcd");
    cmd.args(["--name", &format!("e{i}"), "--data-dir"])
        .arg(root.join(format!("e{i}")))
        .args(["--listen-peer-urls", &format!("http://{ip}:2380")])
        .args([
            "--initial-advertise-peer-urls",
            &format!("http://{ip}:2380"),
        ])
        .args(["--listen-client-urls", &format!("http://{ip}:2379")])
        .args(["--advertise-client-urls", &format!("http://{ip}:2379")])
        .args([
            "--initial-cluster",
            cluster,
            "--initial-cluster-state",
            "new",
        ])
        .args(["--initial-cluster-token", "bench"])
        .args(extra);
    Fixture::spawn_quiet("etcd (apt-get install etcd-server)", cmd)
}
