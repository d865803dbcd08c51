//! The gossip layer as a library, on real sockets: tags changed on one member reach all.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use muster::gossip::{Gossip, GossipConfig, MemberStatus, NodeIdentity, Tags, Timings};
use support::Block;
use tokio::net::{TcpListener, UdpSocket};

async fn node(name: &str, ip: &str) -> Gossip {
    let addr: SocketAddr = format!("{ip}:8301").parse().unwrap();
    let udp = UdpSocket::bind(addr).await.unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let mut tags = Tags::new();
    tags.insert("role".into(), "node".into());
    Gossip::start(
        GossipConfig {
            identity: NodeIdentity::new(name.into(), uuid::Uuid::new_v4(), addr),
            datacenter: "dc1".into(),
            keyring: None,
            keyring_file: None,
            verify: Default::default(),
            tags,
            timings: Timings::default(),
        },
        udp,
        tcp,
    )
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_tags_reach_every_member_and_a_leave_is_seen_as_left() {
    let ip = |i| Block::GossipTags.ip(i);
    let a = node("a", &ip(1)).await;
    let b = node("b", &ip(2)).await;
    let c = node("c", &ip(3)).await;
    assert!(
        b.join(&[format!("{}:8301", ip(1)).parse().unwrap()]).await[0]
            .1
            .is_ok()
    );
    assert!(
        c.join(&[format!("{}:8301", ip(2)).parse().unwrap()]).await[0]
            .1
            .is_ok()
    );
    for g in [&a, &b, &c] {
        wait_for("3 alive", || {
            g.members()
                .iter()
                .filter(|m| m.status == MemberStatus::Alive)
                .count()
                == 3
        })
        .await;
    }

    let mut tags = Tags::new();
    tags.insert("role".into(), "consul".into());
    tags.insert("expect".into(), "3".into());
    c.set_tags(tags).await;
    for g in [&a, &b] {
        wait_for("c's new tags", || {
            g.members()
                .iter()
                .any(|m| m.name == "c" && m.tags.get("expect").map(String::as_str) == Some("3"))
        })
        .await;
    }

    b.leave().await;
    b.shutdown().await;
    for g in [&a, &c] {
        wait_for("b left", || {
            g.members()
                .iter()
                .any(|m| m.name == "b" && m.status == MemberStatus::Left)
        })
        .await;
    }
}
