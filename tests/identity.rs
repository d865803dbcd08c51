//! Identity that gossip alone cannot spoof (docs/security.md, "The server port has the last
//! word"): two forged servers in gossip, run in-process with tags of their own choosing, each
//! claiming to belong to a formed cluster. One points at a port where nothing answers, the
//! other at a real server's port, which answers as that real server. Three real servers with
//! `-bootstrap-expect 3` hold their bootstrap while the silent claim stands (saying whom they
//! wait for), never take the borrowed claim, and form exactly one cluster of the three once
//! the silent forger leaves. Without the check, either tag ended the gate for good.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use muster::gossip::{Gossip, GossipConfig, NodeIdentity, Tags, Timings};
use support::*;
use tokio::net::{TcpListener, UdpSocket};

const T: Duration = Duration::from_secs(40);

/// A gossip member at `addr` that says it is a server with RPC port `rpc_port` on its own IP,
/// of a formed cluster, and has joined `seed`.
async fn forger(name: &str, addr: SocketAddr, rpc_port: u16, seed: SocketAddr) -> Gossip {
    let udp = UdpSocket::bind(addr).await.unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let id = uuid::Uuid::new_v4();
    let mut tags = Tags::new();
    for (k, v) in [
        ("role", "consul".to_string()),
        ("dc", "dc1".into()),
        ("id", id.to_string()),
        ("port", rpc_port.to_string()),
        ("vsn", "1".into()),
        ("cluster", uuid::Uuid::new_v4().to_string()),
    ] {
        tags.insert(k.into(), v);
    }
    let g = Gossip::start(
        GossipConfig {
            identity: NodeIdentity::new(name.into(), id, addr),
            datacenter: "dc1".into(),
            keyring: None,
            keyring_file: None,
            verify: Default::default(),
            tags,
            timings: Timings::default(),
        },
        udp,
        tcp,
    );
    let deadline = Instant::now() + T;
    while g.join(&[seed]).await[0].1.is_err() {
        assert!(Instant::now() < deadline, "{name} could not join {seed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    g
}

/// The gate's status line of `a` (`muster info`, raft.formation).
fn gate_status(a: &Agent) -> String {
    a.stats()
        .and_then(|s| s["raft"]["formation"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_cluster_tags_hold_the_bootstrap_only_while_unanswered_and_never_join() {
    let block = Block::ForgedClaims;
    step(1, "s1 starts and waits for two more servers");
    let mut s = vec![Agent::start(
        "s1",
        &block.ip(1),
        &[
            "-server",
            "-bootstrap-expect",
            "3",
            "-retry-join",
            &block.ip(1),
        ],
    )];
    let seed: SocketAddr = format!("{}:8301", block.ip(1)).parse().unwrap();
    tokio::task::block_in_place(|| s[0].wait_ready());

    step(
        2,
        "two forgers join: one claims a port where nothing listens, one s3's port",
    );
    let silent = forger(
        "forger-silent",
        format!("{}:8301", block.ip(11)).parse().unwrap(),
        8300,
        seed,
    )
    .await;
    let borrowed = forger(
        "forger-borrowed",
        format!("{}:9301", block.ip(3)).parse().unwrap(),
        8300,
        seed,
    )
    .await;
    tokio::task::block_in_place(|| {
        wait_until(T, "s1 sees both forgers", || {
            s[0].sees("forger-silent", "alive") && s[0].sees("forger-borrowed", "alive")
        })
    });

    step(
        3,
        "s2 and s3 start: the silent claim holds the bootstrap, and says so",
    );
    for i in 2..=3u8 {
        s.push(Agent::start(
            &format!("s{i}"),
            &block.ip(i),
            &[
                "-server",
                "-bootstrap-expect",
                "3",
                "-retry-join",
                &block.ip(1),
            ],
        ));
    }
    tokio::task::block_in_place(|| {
        wait_until(T, "every server's gate names the silent forger", || {
            s.iter().all(|a| {
                let st = gate_status(a);
                st.contains("forger-silent") && st.contains("not confirmed")
            })
        });
        for a in &s {
            assert!(!a.is_leader(), "{} leads past an unconfirmed claim", a.name);
        }
        wait_until(T, "a server names the borrowed claim an impostor", || {
            s.iter().any(|a| {
                a.log()
                    .contains("gossip member forger-borrowed claims server id")
                    && a.log().contains("answers as server")
            })
        });
    });

    step(
        4,
        "the silent forger leaves: one cluster of the three forms, no forger in it",
    );
    silent.leave().await;
    silent.shutdown().await;
    tokio::task::block_in_place(|| {
        let refs: Vec<&Agent> = s.iter().collect();
        let leader = wait_for_leader(&refs, T);
        wait_until(T, "three voters: s1, s2, s3", || {
            let mut v = s[leader].voters();
            v.sort();
            v == ["s1", "s2", "s3"]
        });
        // The leader's duties never take the borrowed claim for a server either.
        let peers = s[leader].peers();
        assert!(
            peers
                .iter()
                .all(|(name, _, _)| name.starts_with('s') && !name.contains("forger")),
            "{peers:?}"
        );
        let clusters: std::collections::BTreeSet<String> =
            s.iter().map(|a| a.raft("cluster_id")).collect();
        assert_eq!(clusters.len(), 1, "one cluster id: {clusters:?}");
    });
    borrowed.shutdown().await;
}
