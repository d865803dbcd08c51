//! An EC2 autoscaling group played on moto: instances are terminated and replaced by new ones
//! with new 127.x addresses and the same tag; every server and the client run the same
//! `-retry-join "provider=aws …"` line. The servers heal on their own, the client follows, and
//! the EC2 calls are counted (moto behind a counting front, tests/fixtures/moto_counting.py).
#![cfg(feature = "aws")]

mod support;

use std::time::Duration;

use support::fixture::{self, aws_provider, moto_calls as calls, moto_counting};
use support::*;

const T: Duration = Duration::from_secs(40);
const B: Block = Block::Ec2Group;

/// The autoscaling group of `block` (tests/fixtures/moto_asg.py): `setup`, or `launch` or
/// `terminate` the instances 127.B.0.OCTET.
fn asg(block: Block, endpoint: &str, command: &str, octets: &[u8]) {
    let octets: Vec<String> = octets.iter().map(u8::to_string).collect();
    let prefix = block.prefix();
    let mut args = vec![endpoint, &prefix, command];
    args.extend(octets.iter().map(String::as_str));
    fixture::run_script("moto_asg.py", &args);
}

#[test]
fn an_autoscaling_group_replaces_every_server_and_the_cluster_heals_on_its_own() {
    let moto = moto_counting(B, 0);
    let host = format!("{}:5000", B.ip(1));
    let endpoint = format!("http://{host}");
    asg(B, &endpoint, "setup", &[]);
    let join = aws_provider(&endpoint, "tag_key=role tag_value=muster");
    let server_args = ["-server", "-bootstrap-expect", "3", "-retry-join", &join];

    step(
        1,
        "the group launches three instances; each runs the same server line",
    );
    let mut servers: Vec<Agent> = Vec::new();
    for o in 11..=13u8 {
        asg(B, &endpoint, "launch", &[o]);
        servers.push(Agent::start(&format!("i-{o}"), &B.ip(o), &server_args));
    }
    let client = Agent::start("client", &B.ip(50), &["-retry-join", &join]);
    let refs: Vec<&Agent> = servers.iter().collect();
    let l = wait_for_leader(&refs, T);
    let cluster = servers[l].raft("cluster_id");
    wait_until(T, "three voters", || servers[l].voters().len() == 3);
    client.put("asg/first", "1");
    let after_formation = calls(&host)["DescribeInstances"].as_u64().unwrap_or(0);

    step(
        2,
        "every instance is terminated in turn and replaced with a new address",
    );
    for (k, o) in (11..=13u8).enumerate() {
        let new_octet = 21 + k as u8;
        asg(B, &endpoint, "terminate", &[o]);
        let mut dead = servers.remove(0);
        let dead_name = dead.name.clone();
        dead.kill();
        asg(B, &endpoint, "launch", &[new_octet]);
        servers.push(Agent::start(
            &format!("i-{new_octet}"),
            &B.ip(new_octet),
            &server_args,
        ));
        let fresh = servers.last().unwrap();
        wait_until(
            T,
            &format!("{} is a voter and {dead_name} is removed", fresh.name),
            || {
                let v = fresh.voters();
                v.len() == 3 && v.contains(&fresh.name) && !v.contains(&dead_name)
            },
        );
        assert!(
            !fresh.log().contains("attempting bootstrap"),
            "a replacement never bootstraps: {}",
            fresh.log()
        );
    }

    step(
        3,
        "the same cluster, every write kept, and the client follows on its own",
    );
    let refs: Vec<&Agent> = servers.iter().collect();
    let l = wait_for_leader(&refs, T);
    // A leader that came in by snapshot may be elected before it has applied it: the
    // cluster id shows once it has (empty until then, never another one).
    wait_until(T, "the leader names the same cluster", || {
        let id = servers[l].raft("cluster_id");
        assert!(id.is_empty() || id == cluster, "another cluster: {id}");
        id == cluster
    });
    client.put("asg/after", "2");
    let out = client.cli(&["kv", "get", "asg/first"]);
    assert_eq!(stdout(&out).trim(), "1", "{}", stderr(&out));

    step(4, "the EC2 API was asked sparingly");
    let c = calls(&host);
    let total = c["DescribeInstances"].as_u64().unwrap_or(0);
    eprintln!(
        "DescribeInstances calls: {after_formation} to form (4 agents), {total} in all (7 agents): {c}"
    );
    // Each agent discovers until it has joined, then stops asking (it re-discovers only when
    // it has seen no live server for a while). A handful per agent, not a loop.
    assert!(total <= 7 * 4, "too many EC2 calls: {c}");
    drop(moto);
}

#[test]
fn fifty_agents_booting_at_once_ask_ec2_about_once_each() {
    // The thundering herd of an autoscaling group's first boot (docs/reference/user-pains.md A14): 50 agents, one
    // provider line, started in the same instant against one EC2 API. Budget
    // (docs/performance.md): at most one DescribeInstances per agent per 10 s (the provider's
    // cache), so at most 2 per agent for a boot that converges within 20 s.
    const N: u8 = 50;
    let b = Block::Ec2Herd;
    let _moto = moto_counting(b, 0);
    let host = format!("{}:5000", b.ip(1));
    let endpoint = format!("http://{host}");
    asg(b, &endpoint, "setup", &[]);
    let octets: Vec<u8> = (0..N).map(|i| 10 + i).collect();
    asg(b, &endpoint, "launch", &octets);
    let join = aws_provider(&endpoint, "tag_key=role tag_value=muster");
    // Every page is read: 50 instances, 5 per page, 10 calls.
    let o = muster(&["discover", &format!("{join} page_size=5")]);
    assert_eq!(stdout(&o).lines().count(), N as usize, "{}", stderr(&o));
    let paged = calls(&host)["DescribeInstances"].as_u64().unwrap_or(0);
    assert_eq!(paged, 10, "{}", calls(&host));
    let agents: Vec<Agent> = (0..N)
        .map(|i| Agent::start(&format!("a{i}"), &b.ip(10 + i), &["-retry-join", &join]))
        .collect();
    wait_until(Duration::from_secs(60), "every agent sees all 50", || {
        agents.iter().all(|a| a.alive_count() == N as usize)
    });
    // Convergence does not wait for every agent's own lookup: an agent that others have
    // joined may still have its first call in flight (or retrying after a refused connection
    // when 50 connect at once). Wait for all of them, then check the budget.
    wait_until(Duration::from_secs(30), "every agent has asked EC2", || {
        calls(&host)["DescribeInstances"].as_u64().unwrap_or(0) - paged >= N as u64
    });
    let c = calls(&host);
    let n = c["DescribeInstances"].as_u64().unwrap_or(0) - paged;
    eprintln!("50 agents booting at once: {n} DescribeInstances calls ({c})");
    assert!(n <= 2 * N as u64, "over budget: {c}");
}
