//! Membership with real processes: join through one seed, failure, leave, restart, refusals.

mod support;

use std::time::Duration;

use support::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn five_agents_join_fail_leave_and_restart() {
    let net = Block::FiveAgents;
    step(1, "start 5 agents; n2..n5 join through n1");
    let seed = Agent::start("n1", &net.ip(1), &[]);
    seed.wait_ready();
    let mut agents = vec![seed];
    for i in 2..=5u8 {
        agents.push(Agent::start(
            &format!("n{i}"),
            &net.ip(i),
            &["-join", &net.ip(1)],
        ));
    }
    step(2, "every agent sees 5 alive");
    for a in &agents {
        wait_until(T, &format!("{} sees 5 alive", a.name), || {
            a.alive_count() == 5
        });
    }
    let id_before = agents[2]
        .members()
        .unwrap()
        .iter()
        .find(|m| m["Name"] == "n3")
        .unwrap()["Tags"]["id"]
        .clone();

    step(3, "SIGKILL n3: every other agent sees it failed");
    agents[2].kill();
    for a in agents.iter().filter(|a| a.name != "n3") {
        wait_until(T, &format!("{} sees n3 failed", a.name), || {
            a.sees("n3", "failed")
        });
    }

    step(
        4,
        "n4 leaves gracefully: every other agent sees it left, and it exits 0",
    );
    let out = agents[3].cli(&["leave"]);
    assert!(out.status.success(), "leave failed: {}", stderr(&out));
    assert!(stdout(&out).contains("Graceful leave complete"));
    assert_eq!(agents[3].wait_exit(T), Some(0));
    for a in agents.iter().filter(|a| a.name != "n3" && a.name != "n4") {
        wait_until(T, &format!("{} sees n4 left", a.name), || {
            a.sees("n4", "left")
        });
        assert!(
            a.sees("n3", "failed"),
            "n3 must stay failed, not left, on {}",
            a.name
        );
    }

    step(
        5,
        "restart n3 with its data dir: seen alive again with the same node id",
    );
    agents[2].extra = vec!["-join".into(), net.ip(2)];
    agents[2].restart();
    for a in agents.iter().filter(|a| a.name != "n4") {
        wait_until(T, &format!("{} sees n3 alive again", a.name), || {
            a.sees("n3", "alive")
        });
        let m = a.members().unwrap();
        let n3 = m.iter().find(|m| m["Name"] == "n3").unwrap();
        assert_eq!(
            n3["Tags"]["id"], id_before,
            "node id kept across restart on {}",
            a.name
        );
    }

    step(
        6,
        "`muster members` prints Consul's columns; -status filters; no match exits 2",
    );
    let out = agents[0].cli(&["members"]);
    let text = stdout(&out);
    assert!(text.starts_with("Node"), "{text}");
    for col in ["Address", "Status", "Type", "Build", "Protocol", "DC"] {
        assert!(text.lines().next().unwrap().contains(col), "{text}");
    }
    let failed_only = agents[0].cli(&["members", "-status", "left"]);
    assert!(
        stdout(&failed_only).contains("n4") && !stdout(&failed_only).contains("n1 "),
        "{}",
        stdout(&failed_only)
    );
    assert_eq!(
        agents[0]
            .cli(&["members", "-status", "leaving"])
            .status
            .code(),
        Some(2)
    );
    let detailed = stdout(&agents[0].cli(&["members", "-detailed"]));
    assert!(
        detailed.contains("role=node") && detailed.contains("dc=dc1"),
        "{detailed}"
    );
}

#[test]
fn wrong_or_missing_key_cannot_join_and_both_sides_say_why() {
    let net = Block::Encryption;
    let key = stdout(&muster(&["keygen"])).trim().to_string();
    let other = stdout(&muster(&["keygen"])).trim().to_string();
    assert_ne!(key, other);
    step(1, "two agents with the same key form a pool");
    let a = Agent::start("k1", &net.ip(1), &["-encrypt", &key]);
    a.wait_ready();
    let b = Agent::start("k2", &net.ip(2), &["-encrypt", &key, "-join", &net.ip(1)]);
    wait_until(T, "k2 sees 2 alive", || b.alive_count() == 2);
    let info = stdout(&a.cli(&["info"]));
    assert!(info.contains("encrypted = true"), "{info}");

    step(
        2,
        "an agent without a key is refused; it exits 1 and says why",
    );
    let mut c = Agent::start("k3", &net.ip(3), &["-join", &net.ip(1)]);
    assert_eq!(c.wait_exit(T), Some(1));
    assert!(
        c.log().contains("requires gossip encryption"),
        "{}",
        c.log()
    );

    step(
        3,
        "an agent with another key is refused; it exits 1 and says why",
    );
    let mut d = Agent::start("k4", &net.ip(4), &["-encrypt", &other, "-join", &net.ip(1)]);
    assert_eq!(d.wait_exit(T), Some(1));
    assert!(d.log().contains("keys differ"), "{}", d.log());

    step(
        4,
        "the seed logged both refusals; the pool still has exactly 2 members",
    );
    wait_until(T, "seed logged the refusals", || {
        let log = a.log();
        log.contains("refused gossip join")
            && log.contains("keys differ")
            && log.contains("requires gossip encryption")
    });
    assert_eq!(a.members().unwrap().len(), 2);
}

#[test]
fn agents_of_another_datacenter_are_never_merged() {
    let net = Block::Datacenters;
    let a = Agent::start("d1", &net.ip(1), &["-datacenter", "east"]);
    a.wait_ready();
    let mut b = Agent::start(
        "d2",
        &net.ip(2),
        &["-datacenter", "west", "-join", &net.ip(1)],
    );
    assert_eq!(b.wait_exit(T), Some(1));
    assert!(b.log().contains("datacenter"), "{}", b.log());
    assert_eq!(
        a.members().unwrap().len(),
        1,
        "the other datacenter's agent must not appear"
    );
}

#[test]
fn a_name_held_by_a_live_node_is_refused() {
    let net = Block::NameConflict;
    let a = Agent::start("same", &net.ip(1), &[]);
    a.wait_ready();
    let mut b = Agent::start("same", &net.ip(2), &["-join", &net.ip(1)]);
    assert_eq!(b.wait_exit(T), Some(1));
    assert!(
        b.log()
            .contains("node name \"same\" is claimed by two live nodes"),
        "{}",
        b.log()
    );
    assert!(a.log().contains("refused gossip join"), "{}", a.log());
}

#[test]
fn start_join_with_nobody_there_exits_1_naming_each_address() {
    let net = Block::StartJoinFails;
    let mut a = Agent::start(
        "lonely",
        &net.ip(1),
        &["-join", &net.ip(2), "-join", &format!("{}:9999", net.ip(3))],
    );
    assert_eq!(a.wait_exit(T), Some(1));
    let log = a.log();
    assert!(
        log.contains(&net.ip(2)) && log.contains(&format!("{}:9999", net.ip(3))),
        "{log}"
    );
    assert!(log.contains("could not join"), "{log}");
}

#[test]
fn muster_join_by_hand_reports_like_consul() {
    let net = Block::JoinCli;
    let a = Agent::start("j1", &net.ip(1), &[]);
    let b = Agent::start("j2", &net.ip(2), &[]);
    let c = Agent::start("j3", &net.ip(3), &[]);
    for x in [&a, &b, &c] {
        x.wait_ready();
    }
    step(1, "join two addresses, one with an explicit port");
    let out = a.cli(&["join", &net.ip(2), &format!("{}:8301", net.ip(3))]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "Successfully joined cluster by contacting 2 nodes."
    );
    wait_until(T, "j3 sees 3 alive", || c.alive_count() == 3);

    step(2, "an address with nothing behind it fails, named, exit 1");
    let out = a.cli(&["join", &net.ip(9)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("Error joining address '{}'", net.ip(9))),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("Failed to join any nodes."));

    step(3, "no address is a usage error");
    assert_eq!(a.cli(&["join"]).status.code(), Some(1));

    step(4, "an agent that is not running: connection error, exit 1");
    let out = muster(&[
        "join",
        "-http-addr",
        &format!("{}:8500", net.ip(9)),
        &net.ip(1),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot reach the agent at"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn host_names_and_ipv6_literals_are_join_addresses() {
    // "localhost" resolves through /etc/hosts to 127.0.0.1 (and maybe ::1): every record is tried.
    let a = Agent::start(
        "h1",
        "127.0.0.1",
        &["-serf-lan-port", "18301", "-http-port", "18500"],
    );
    wait_until(T, "h1 answers", || {
        http("127.0.0.1:18500", "GET", "/v1/agent/members").is_some()
    });
    let b = Agent::start(
        "h2",
        &Block::HostNames.ip(2),
        &["-serf-lan-port", "18301", "-join", "localhost:18301"],
    );
    wait_until(T, "h2 joined h1 by name", || b.alive_count() == 2);
    let out = b.cli(&["join", "[::1]:18399"]);
    assert_eq!(out.status.code(), Some(1), "nothing listens on [::1]:18399");
    assert!(stderr(&out).contains("[::1]:18399"), "{}", stderr(&out));
    drop(a);
}

#[test]
fn http_api_rejects_malformed_requests_with_a_reason() {
    let a = Agent::start("h", &Block::HttpErrors.ip(1), &[]);
    a.wait_ready();
    let addr = a.http_addr();
    let (s, body) = http(&addr, "PUT", "/v1/agent/join/not%20an%20address").unwrap();
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("not a valid address"), "{body}");
    let (s, body) = http(&addr, "GET", "/v1/agent/nope").unwrap();
    assert_eq!(s, 404);
    assert!(body.contains("unknown endpoint"), "{body}");
    let (s, body) = http(&addr, "GET", "/v1/agent/leave").unwrap();
    assert_eq!(s, 405, "{body}");
    assert!(body.contains("not allowed"), "{body}");
    let (s, body) = http(&addr, "PUT", "/v1/agent/force-leave/ghost").unwrap();
    assert_eq!(s, 404, "{body}");
    let (s, body) = http(&addr, "PUT", "/v1/agent/force-leave/h").unwrap();
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("only removes failed members"), "{body}");
    let (s, body) = http(&addr, "GET", "/v1/agent/self").unwrap();
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Config"]["NodeName"], "h");
    assert_eq!(v["Member"]["Name"], "h");
    assert!(v["Stats"]["serf_lan"]["members"].is_string());
}

#[test]
fn force_leave_marks_a_failed_member_left_everywhere() {
    let net = Block::ForceLeave;
    let a = Agent::start("f1", &net.ip(11), &[]);
    a.wait_ready();
    let b = Agent::start("f2", &net.ip(12), &["-join", &net.ip(11)]);
    let mut c = Agent::start("f3", &net.ip(13), &["-join", &net.ip(11)]);
    wait_until(T, "f2 sees 3 alive", || b.alive_count() == 3);
    c.kill();
    wait_until(T, "f1 sees f3 failed", || a.sees("f3", "failed"));
    let out = a.cli(&["force-leave", "f3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until(T, "f2 sees f3 left", || b.sees("f3", "left"));
}

#[test]
fn signals_clients_leave_servers_do_not() {
    let net = Block::Signals;
    let a = Agent::start("s1", &net.ip(1), &[]);
    a.wait_ready();
    let mut client = Agent::start("s2", &net.ip(2), &["-join", &net.ip(1)]);
    let mut server = Agent::start("s3", &net.ip(3), &["-server", "-join", &net.ip(1)]);
    wait_until(T, "s1 sees 3 alive", || a.alive_count() == 3);
    step(
        1,
        "SIGTERM on a client: graceful leave (leave_on_terminate defaults to true)",
    );
    client.signal(libc::SIGTERM);
    assert_eq!(client.wait_exit(T), Some(0));
    wait_until(T, "s1 sees s2 left", || a.sees("s2", "left"));
    step(
        2,
        "SIGTERM on a server: no leave, it is seen failed (keeps its seat)",
    );
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(T), Some(0));
    wait_until(T, "s1 sees s3 failed", || a.sees("s3", "failed"));
}

#[test]
fn retry_join_waits_for_a_late_seed() {
    let net = Block::RetryJoin;
    let late = net.ip(1);
    let b = Agent::start(
        "r2",
        &net.ip(2),
        &["-retry-join", &late, "-retry-interval", "1s"],
    );
    b.wait_ready();
    wait_until(T, "r2 failed a first attempt", || {
        b.log().contains("will retry")
    });
    let a = Agent::start("r1", &late, &[]);
    wait_until(T, "r2 joined the late seed", || {
        b.alive_count() == 2 && a.alive_count() == 2
    });
}

#[test]
fn retry_max_exhausted_exits_1() {
    let net = Block::RetryMax;
    let mut a = Agent::start(
        "rm",
        &net.ip(1),
        &[
            "-retry-join",
            &net.ip(2),
            "-retry-max",
            "2",
            "-retry-interval",
            "200ms",
        ],
    );
    assert_eq!(a.wait_exit(T), Some(1));
    assert!(a.log().contains("retry join gave up"), "{}", a.log());
}

#[test]
fn dev_mode_is_a_throwaway_server_on_loopback() {
    // -dev binds 127.0.0.1; other ports than the defaults keep this test apart from the demo.
    let mut a = Agent::start(
        "dev",
        "127.0.0.1",
        &["-dev", "-serf-lan-port", "28301", "-http-port", "28500"],
    );
    let addr = "127.0.0.1:28500";
    wait_until(T, "dev agent answers", || {
        http(addr, "GET", "/v1/agent/self").is_some()
    });
    let (_, body) = http(addr, "GET", "/v1/agent/self").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Config"]["Server"], true);
    assert_eq!(v["Member"]["Tags"]["role"], "consul");
    assert_eq!(v["Member"]["Tags"]["bootstrap"], "1");
    assert_eq!(v["DebugConfig"]["DevMode"], true);
    let (s, _) = http(addr, "PUT", "/v1/agent/leave").unwrap();
    assert_eq!(s, 200);
    assert_eq!(a.wait_exit(T), Some(0));
}
