//! Discovery providers and the retry-join loop: `muster discover`, strict arguments, joining
//! through a provider, re-discovery after every server is lost, and a user's own provider.

mod support;

use std::time::Duration;

use support::*;

const T: Duration = Duration::from_secs(30);

#[test]
fn discover_is_a_dry_run_of_any_provider() {
    // (addresses printed, never bound)
    let b = Block::JoinThroughProvider;
    let o = muster(&[
        "discover",
        "provider=static addrs=\"127.0.0.9, [::1]:8301\"",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "127.0.0.9\n[::1]:8301\n");
    let o = muster(&[
        "discover",
        &format!(
            "provider=exec command=\"echo {}; echo {}:9000\"",
            b.ip(5),
            b.ip(6)
        ),
    ]);
    assert_eq!(
        stdout(&o),
        format!("{}\n{}:9000\n", b.ip(5), b.ip(6)),
        "{}",
        stderr(&o)
    );
    let o = muster(&["discover", "provider=dns name=localhost"]);
    assert!(
        o.status.success() && stdout(&o).contains("127.0.0.1"),
        "{}",
        stdout(&o)
    );
    let list = stdout(&muster(&["discover", "-list"]));
    let mut expected = vec!["dns", "exec", "static"];
    if cfg!(feature = "aws") {
        expected.push("aws");
    }
    if cfg!(feature = "gce") {
        expected.push("gce");
    }
    expected.sort();
    assert_eq!(list, format!("{}\n", expected.join("\n")));
    let usage = muster(&["discover", "-help"]);
    assert!(
        usage.status.success()
            && stdout(&usage).contains("Exit: 0 addresses found, 2 none matched, 1 error"),
        "{}",
        stdout(&usage)
    );
    let help = stdout(&muster(&["discover", "-help", "exec"]));
    assert_eq!(
        help,
        stdout(&muster(&["discover", "-help-provider", "exec"]))
    );
    assert!(
        help.contains("command (required)") && help.contains("timeout"),
        "{help}"
    );
}

#[test]
fn bad_provider_arguments_are_refused_with_the_fix() {
    let o = muster(&["discover", "provider=dsn name=x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("did you mean \"dns\""),
        "{}",
        stderr(&o)
    );
    let o = muster(&["discover", "provider=exec comand=x"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("did you mean \"command\""),
        "{}",
        stderr(&o)
    );
    let o = muster(&["discover", "provider=exec command=\"exit 4\""]);
    assert_eq!(o.status.code(), Some(1), "a failed lookup is an error");
    assert!(stderr(&o).contains("would retry"), "{}", stderr(&o));
    step(
        1,
        "the agent refuses the same mistakes at start, before binding anything",
    );
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_str().unwrap();
    let bind = Block::BadProviderArgs.ip(9);
    agent_refuses(
        &[
            "-data-dir",
            dir,
            "-bind",
            &bind,
            "-retry-join",
            "provider=dns nmae=x",
        ],
        "did you mean \"name\"",
    );
    // A provider left out of the build says so (with both cloud features on, none is).
    #[cfg(not(feature = "gce"))]
    agent_refuses(
        &[
            "-data-dir",
            dir,
            "-bind",
            &bind,
            "-retry-join-gce-tag-value",
            "consul",
        ],
        "provider \"gce\" is not compiled into this build",
    );
}

#[test]
fn an_agent_joins_through_a_provider() {
    let b = Block::JoinThroughProvider;
    let a = Agent::start("p1", &b.ip(1), &[]);
    a.wait_ready();
    // The provider fails on its first call (docs/reference/user-pains.md A9: one provider error must not end the
    // retries), then answers.
    let d = tempfile::tempdir().unwrap();
    let flag = d.path().join("called-once");
    let cmd = format!(
        "provider=exec command=\"test -f {f} && echo {ip} || (touch {f}; echo not yet >&2; exit 1)\"",
        f = flag.display(),
        ip = b.ip(1)
    );
    let p2 = Agent::start("p2", &b.ip(2), &["-retry-join", &cmd]);
    wait_until(T, "p2 joined through the exec provider", || {
        p2.alive_count() == 2
    });
    let log = p2.log();
    assert!(
        log.contains("cannot discover addresses (will retry)") && log.contains("not yet"),
        "{log}"
    );
    assert!(log.contains("discovered servers"), "{log}");
    // Operators see the loop without reading logs: muster info's retry_join section.
    let info = stdout(&p2.cli(&["info"]));
    for line in [
        "retry_join:",
        "state = joined",
        "provider.0 = provider=exec",
        "provider.0.lookups = 2",
        &format!("provider.0.last_addrs = {}", b.ip(1)),
        "attempts = 2",
    ] {
        assert!(info.contains(line), "{line:?} in:\n{info}");
    }
}

#[test]
fn an_agent_that_lost_every_server_discovers_again() {
    let b = Block::Rediscovery;
    let d = tempfile::tempdir().unwrap();
    let seeds = write_file(d.path(), "seeds", &b.ip(1));
    step(
        1,
        "a single server, and a client that finds it through a provider reading a file",
    );
    let mut s1 = Agent::start("s1", &b.ip(1), &["-server", "-bootstrap"]);
    s1.wait_ready();
    let cmd = format!("provider=exec command=\"cat {}\"", seeds.display());
    let client = Agent::start(
        "c",
        &b.ip(9),
        &["-retry-join", &cmd, "-retry-interval", "1s"],
    );
    wait_until(T, "the client joined s1", || client.sees("s1", "alive"));
    step(
        2,
        "s1 dies; a replacement starts at another address and the file names it",
    );
    s1.kill();
    let s2 = Agent::start("s2", &b.ip(2), &["-server", "-bootstrap"]);
    s2.wait_ready();
    std::fs::write(&seeds, b.ip(2)).unwrap();
    step(
        3,
        "the client, having lost every server, discovers and joins the replacement on its own",
    );
    wait_until(T, "the client sees s2 alive", || client.sees("s2", "alive"));
    assert!(
        client.log().contains("lost every known server"),
        "{}",
        client.log()
    );
}

#[test]
fn a_users_own_provider_plugs_in_without_changing_muster() {
    // The example binary is built by `cargo test` next to the muster binary.
    let b = Block::CustomProvider;
    let bin = bin()
        .parent()
        .unwrap()
        .join("examples")
        .join("custom_provider");
    assert!(
        bin.exists(),
        "examples/custom_provider.rs is built by cargo test: {}",
        bin.display()
    );
    let o = std::process::Command::new(&bin)
        .args(["discover", "provider=envlist var=SEEDS"])
        .env("SEEDS", format!("{}, {}", b.ip(1), b.ip(2)))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{}\n{}\n", b.ip(1), b.ip(2)));
    let o = std::process::Command::new(&bin)
        .args(["discover", "-list"])
        .output()
        .unwrap();
    assert!(stdout(&o).contains("envlist"));
}

#[test]
fn dns_srv_records_and_a_chosen_name_server_with_ttls_honoured() {
    // A tiny authoritative server (tests/fixtures/fake_dns.py) on 127.B.0.1:5353 that the test
    // controls; it records every query it answers.
    let b = Block::Dns;
    let d = tempfile::tempdir().unwrap();
    let counts = d.path().join("counts.json");
    let counts_arg = counts.to_str().unwrap();
    let _server = Fixture::python("fake_dns.py", &[&b.ip(1), "5353", &b.prefix(), counts_arg]);
    let ns = format!("nameserver={}:5353", b.ip(1));
    let query_count = |key: &str| -> u64 {
        std::fs::read_to_string(&counts)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v[key].as_u64())
            .unwrap_or(0)
    };

    step(
        1,
        "SRV records: each target's address with the record's port",
    );
    let srv = format!("provider=dns type=srv name=_muster._tcp.muster.test {ns}");
    let mut o = muster(&["discover", &srv]);
    wait_until(T, "the fake DNS server answers", || {
        o = muster(&["discover", &srv]);
        o.status.success()
    });
    assert_eq!(
        sorted_lines(&o),
        [format!("{}:8301", b.ip(11)), format!("{}:9301", b.ip(12))]
    );

    step(
        2,
        "A records from a chosen name server; no such name is an empty answer",
    );
    let o = muster(&[
        "discover",
        &format!("provider=dns name=servers.muster.test port=8301 {ns}"),
    ]);
    assert_eq!(
        sorted_lines(&o),
        [format!("{}:8301", b.ip(11)), format!("{}:8301", b.ip(12))]
    );
    let o = muster(&[
        "discover",
        &format!("provider=dns name=nope.muster.test {ns}"),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = muster(&["discover", &format!("{srv} port=1")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("SRV records carry their own port"));

    step(
        3,
        "the loop honours TTLs: 3600 s is asked once, 1 s again and again",
    );
    let before = query_count("servers.muster.test 1");
    let long = Agent::start(
        "ttl-long",
        &b.ip(20),
        &[
            "-retry-join",
            &format!("provider=dns name=servers.muster.test {ns}"),
            "-retry-interval",
            "1s",
        ],
    );
    let short = Agent::start(
        "ttl-short",
        &b.ip(21),
        &[
            "-retry-join",
            &format!("provider=dns name=short.muster.test {ns}"),
            "-retry-interval",
            "1s",
        ],
    );
    let attempts = |a: &Agent| {
        a.stats()
            .and_then(|s| {
                s["retry_join"]["attempts"]
                    .as_str()
                    .and_then(|n| n.parse::<u32>().ok())
            })
            .unwrap_or(0)
    };
    wait_until(T, "both loops made several attempts over seconds", || {
        attempts(&long) >= 5 && attempts(&short) >= 5
    });
    assert_eq!(
        query_count("servers.muster.test 1"),
        before + 1,
        "one query over every attempt for a name with TTL 3600"
    );
    assert!(
        query_count("short.muster.test 1") >= 2,
        "a 1 s TTL is asked again: {}",
        std::fs::read_to_string(&counts).unwrap_or_default()
    );
}
