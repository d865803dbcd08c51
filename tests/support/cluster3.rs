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
    muster_spec(root, i).start()
}

fn muster_spec(root: &Path, i: u8) -> super::agent::AgentSpec {
    Agent::spec(&format!("m{i}"), &Block::Loopback.ip(i))
        .args(&["-server", "-bootstrap-expect", "3", "-log-level", "warn"])
        .args(&["-retry-join", "127.0.0.1", "-retry-join", "127.0.0.2"])
        .args(&["-retry-join", "127.0.0.3"])
        .data_dir(root.join(format!("m{i}")))
        .quiet()
}

/// [`start_muster`] with mutual TLS on the server port, the production settings of
/// docs/security.md (`verify_incoming`, `verify_outgoing`, `verify_server_hostname`), with a
/// CA and server certificates from [`make_certs`].
pub fn start_muster_tls(root: &Path, i: u8) -> Agent {
    let certs = make_certs(root);
    start_tls_spec(root, &certs, i)
}

/// A CA and three server certificates made by `muster tls` under `root/certs`, once.
pub fn make_certs(root: &Path) -> std::path::PathBuf {
    let certs = root.join("certs");
    if !certs.join("muster-agent-ca.pem").exists() {
        std::fs::create_dir_all(&certs).expect("certs dir");
        let run = |args: &[&str]| {
            let o = super::muster_in(&certs, args);
            assert!(o.status.success(), "muster {args:?}: {}", super::stderr(&o));
        };
        run(&["tls", "ca", "create"]);
        for _ in 0..3 {
            run(&["tls", "cert", "create", "-server"]);
        }
    }
    certs
}

fn tls_config(certs: &Path, i: u8) -> std::path::PathBuf {
    let n = i - 1;
    super::write_file(
        certs,
        &format!("m{i}.hcl"),
        &format!(
            "tls {{\n  defaults {{\n    ca_file = \"{c}/muster-agent-ca.pem\"\n    \
             cert_file = \"{c}/dc1-server-muster-{n}.pem\"\n    \
             key_file = \"{c}/dc1-server-muster-{n}-key.pem\"\n    \
             verify_incoming = true\n    verify_outgoing = true\n  }}\n  \
             internal_rpc {{\n    verify_server_hostname = true\n  }}\n}}\n",
            c = certs.display()
        ),
    )
}

fn start_tls_spec(root: &Path, certs: &Path, i: u8) -> Agent {
    let config = tls_config(certs, i);
    muster_spec(root, i)
        .args(&["-config-file", config.to_str().expect("utf-8 path")])
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
