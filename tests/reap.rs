//! Reaping with real processes: a killed client is failed on every server (and stays in the
//! catalog, marked failed) until `reconnect_timeout`, then is gone from every member list and
//! from the catalog; started again, it is alive again (docs/gossip.md, Reaping).

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const T: Duration = Duration::from_secs(30);
/// Short enough for a test; below Consul's 8h minimum, so every agent warns about it.
const REAP_AFTER: &str = "6s";

fn catalog_has(agent: &Agent, name: &str, status: &str) -> bool {
    agent
        .catalog()
        .iter()
        .any(|(n, s)| n == name && s == status)
}

#[test]
fn a_killed_client_is_failed_then_reaped_everywhere_and_deregistered_and_comes_back_when_restarted()
{
    let net = Block::Reap;
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(
        dir.path(),
        "reap.hcl",
        &format!("reconnect_timeout = \"{REAP_AFTER}\"\ntombstone_timeout = \"{REAP_AFTER}\"\n"),
    );
    let cfg = cfg.to_str().unwrap();
    let joins = ["-retry-join", &net.ip(1), "-retry-join", &net.ip(2)];
    let mut args = vec!["-config-file", cfg];
    args.extend_from_slice(&joins);
    let s = servers(net, 3, 3, &args);
    let refs: Vec<&Agent> = s.iter().collect();
    wait_for_leader(&refs, T);
    let mut client = Agent::start(
        "reap-client",
        &net.ip(9),
        &["-config-file", cfg, "-retry-join", &net.ip(1)],
    );

    step(
        1,
        "the short timeout is taken, with Consul's minimum named once",
    );
    for a in &s {
        let warned = a
            .log()
            .matches("reconnect_timeout = \"6s\" is below Consul's minimum of 8h")
            .count();
        assert_eq!(warned, 1, "{} warned {warned} times", a.name);
    }
    client.wait_ready();
    let debug = http_full(&client.http_addr(), "GET", "/v1/agent/self", b"")
        .map(|r| serde_json::from_slice::<Value>(&r.2).unwrap_or_default())
        .unwrap_or_default();
    assert_eq!(debug["DebugConfig"]["ReconnectTimeoutLAN"], REAP_AFTER);

    step(
        2,
        "every agent lists the client alive; the catalog has it alive",
    );
    wait_until(T, "every server sees the client alive", || {
        s.iter().all(|a| a.sees("reap-client", "alive"))
    });
    wait_until(T, "the catalog lists the client alive", || {
        catalog_has(&s[0], "reap-client", "alive")
    });

    step(
        3,
        "SIGKILL the client: failed everywhere, still in the catalog (marked failed)",
    );
    client.kill();
    wait_every(
        T,
        Duration::from_millis(100),
        "every server sees the client failed",
        || s.iter().all(|a| a.sees("reap-client", "failed")),
    );
    wait_every(
        T,
        Duration::from_millis(100),
        "the catalog marks the client failed",
        || catalog_has(&s[1], "reap-client", "failed"),
    );

    step(
        4,
        "after reconnect_timeout: gone from every member list and from the catalog",
    );
    wait_until(T, "no server lists the client any more", || {
        s.iter().all(|a| {
            a.members().is_some_and(|m| m.len() == 3)
                && !a.statuses().iter().any(|(n, _)| n == "reap-client")
        })
    });
    wait_until(T, "the catalog no longer lists the client", || {
        s.iter().all(|a| {
            let c = a.catalog();
            c.len() == 3 && !c.iter().any(|(n, _)| n == "reap-client")
        })
    });
    for a in &s {
        assert!(
            a.log().contains("member reaped: failed for 6s"),
            "{} logged no reap",
            a.name
        );
    }
    // And it stays gone (the unit tests in src/gossip/core/tests.rs cover syncs with a peer
    // that has not reaped yet); the servers stay alive.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        for a in &s {
            assert!(
                !a.statuses().iter().any(|(n, _)| n == "reap-client"),
                "{} lists the reaped client again",
                a.name
            );
            assert_eq!(a.alive_count(), 3, "{}", a.name);
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    step(
        5,
        "the client starts again: alive everywhere and registered again",
    );
    client.restart();
    wait_until(T, "every agent sees the restarted client alive", || {
        s.iter().all(|a| a.sees("reap-client", "alive")) && client.alive_count() == 4
    });
    wait_until(T, "the catalog lists the client alive again", || {
        catalog_has(&s[2], "reap-client", "alive")
    });
}
