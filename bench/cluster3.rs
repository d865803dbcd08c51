//! Three-member clusters on 127.0.0.1–3 for the side-by-side benches (`raft_bench`,
//! `kv_bench`): how each system is launched, kept in one place so that both benches measure
//! the same setup. Included by each bench with `#[path = "cluster3.rs"] mod cluster3;`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A member process, killed and reaped when dropped (also when a bench panics).
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `muster` binary next to the running example (`target/<profile>/muster`).
pub fn muster_bin() -> PathBuf {
    std::env::current_exe()
        .expect("exe")
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("muster")
}

/// Starts muster server `i` (1–3) on 127.0.0.i with its data under `root`: all three expect
/// three servers and find each other with `-retry-join`, as in production.
pub fn start_muster(root: &Path, i: usize) -> Proc {
    let child = Command::new(muster_bin())
        .args(["agent", "-server", "-bootstrap-expect", "3"])
        .args(["-node", &format!("m{i}"), "-log-level", "warn"])
        .args(["-bind", &format!("127.0.0.{i}")])
        .args(["-client", &format!("127.0.0.{i}")])
        .args(["-retry-join", "127.0.0.1", "-retry-join", "127.0.0.2"])
        .args(["-retry-join", "127.0.0.3", "-data-dir"])
        .arg(root.join(format!("m{i}")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn muster (build it with --release first)");
    Proc(child)
}

/// Starts etcd member `i` (1–3) on 127.0.0.i (client port 2379, peer port 2380) with its data
/// under `root`, in a static three-member cluster; `extra` flags are appended.
pub fn start_etcd(root: &Path, i: usize, extra: &[&str]) -> Proc {
    let cluster = "e1=http://127.0.0.1:2380,e2=http://127.0.0.2:2380,e3=http://127.0.0.3:2380";
    let ip = format!("127.0.0.{i}");
    let child = Command::new("etcd")
        .args(["--name", &format!("e{i}"), "--data-dir"])
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
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn etcd (apt-get install etcd-server)");
    Proc(child)
}
