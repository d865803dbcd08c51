//! ACLs as Consul's users meet them (issue 12): the py-consul library's ACL calls
//! (`acl.bootstrap`, the `acl.policy` and `acl.token` families, KV under a token) run against a
//! muster server as against Consul (tests/fixtures/acl_pyconsul.py holds the calls and their
//! expected answers); and tokens and policies that keep working when the leader is killed and
//! another takes over, with an ACL write on the new leader and the old one caught up on return,
//! which then leaves and removes itself from Raft with its agent token (`acl.tokens.agent`).

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;

const T: Duration = Duration::from_secs(40);

fn acl_config(dir: &std::path::Path, extra: &str) -> String {
    let cfg = write_file(
        dir,
        "acl.hcl",
        &format!("acl {{\n  enabled = true\n  default_policy = \"deny\"\n{extra}}}\n"),
    );
    cfg.to_str().unwrap().to_string()
}

/// The leader's server address as `addr` sees it ("" while there is none).
fn leader_seen_by(addr: &str) -> String {
    match http(addr, "GET", "/v1/status/leader") {
        Some((200, body)) => serde_json::from_str::<String>(&body).unwrap_or_default(),
        _ => String::new(),
    }
}

#[test]
fn py_consul_acl_calls_work_against_muster() {
    let block = Block::AclPyConsul;
    let dir = tempfile::tempdir().unwrap();
    let cfg = acl_config(dir.path(), "");
    let s1 = Agent::start(
        "s1",
        &block.ip(1),
        &["-server", "-bootstrap-expect", "1", "-config-file", &cfg],
    );
    wait_until(T, "s1 leads", || {
        !leader_seen_by(&s1.http_addr()).is_empty()
    });

    step(
        1,
        "py-consul's ACL and KV calls (tests/fixtures/acl_pyconsul.py)",
    );
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/acl_pyconsul.py");
    let o = Command::new("python3")
        .arg(&script)
        .args([block.ip(1).as_str(), "8500"])
        // py-consul reads these before its arguments: none may come from the test's caller.
        .env_remove("CONSUL_HTTP_TOKEN")
        .env_remove("CONSUL_HTTP_ADDR")
        .env_remove("CONSUL_HTTP_SSL")
        .output()
        .expect("run python3 (the test command installs py-consul)");
    eprintln!("{}{}", stdout(&o), stderr(&o));
    assert!(
        o.status.success(),
        "py-consul's calls did not all answer as against Consul; agent log:\n{}",
        s1.log()
    );
    assert!(stdout(&o).contains("py-consul ACL calls: all passed"));
}

#[test]
fn tokens_and_policies_survive_a_leader_change() {
    let block = Block::AclLeaderChange;
    let dir = tempfile::tempdir().unwrap();
    // The management token is given in the configuration, so the test holds it from the start.
    let mgmt = "6f0c2a8e-3b1d-4c57-9a0e-2d8f4b6c1e93";
    let cfg = acl_config(
        dir.path(),
        &format!("  tokens {{\n    initial_management = \"{mgmt}\"\n  }}\n"),
    );
    let seed = block.ip(1);
    let mut servers: Vec<Agent> = (1..=3)
        .map(|i| {
            Agent::start(
                &format!("s{i}"),
                &block.ip(i),
                &[
                    "-server",
                    "-bootstrap-expect",
                    "3",
                    "-retry-join",
                    &seed,
                    "-config-file",
                    &cfg,
                ],
            )
        })
        .collect();

    step(
        1,
        "the cluster forms; the leader creates the management token of the config",
    );
    let as_mgmt = |a: &Agent, args: &[&str]| {
        let mut v = args.to_vec();
        v.extend(["-token", mgmt]);
        a.cli(&v)
    };
    wait_until(T, "the configured management token writes", || {
        as_mgmt(&servers[1], &["kv", "put", "app/a", "1"])
            .status
            .success()
    });

    step(2, "a policy and a token for app/");
    ok(as_mgmt(
        &servers[0],
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "app",
            "-rules",
            r#"key_prefix "app/" { policy = "write" }"#,
        ],
    ));
    let made = ok(as_mgmt(
        &servers[0],
        &[
            "acl",
            "token",
            "create",
            "-description",
            "app",
            "-policy-name",
            "app",
        ],
    ));
    let app = field(&made, "SecretID:");
    ok(servers[2].cli(&["kv", "put", "-token", &app, "app/b", "2"]));

    step(3, "SIGKILL the leader; the other two elect a new one");
    let old = leader_seen_by(&servers[0].http_addr());
    let gone = servers
        .iter()
        .position(|s| old == format!("{}:8300", s.ip))
        .unwrap_or_else(|| panic!("no server is the leader {old:?}"));
    servers[gone].kill();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != gone).collect();
    wait_until(T, "a new leader both survivors agree on", || {
        let seen: Vec<String> = survivors
            .iter()
            .map(|&i| leader_seen_by(&servers[i].http_addr()))
            .collect();
        !seen[0].is_empty() && seen[0] != old && seen[0] == seen[1]
    });

    step(
        4,
        "under the new leader: the token writes app/ only, anonymous nothing",
    );
    let a = &servers[survivors[0]];
    wait_until(T, "the app token writes through the new leader", || {
        a.cli(&["kv", "put", "-token", &app, "app/c", "3"])
            .status
            .success()
    });
    let o = a.cli(&["kv", "put", "-token", &app, "other", "x"]);
    assert!(
        !o.status.success() && stderr(&o).contains("Permission denied"),
        "{}",
        stderr(&o)
    );
    let o = a.cli(&["kv", "get", "app/c"]);
    assert!(!o.status.success() && stderr(&o).contains("Permission denied"));

    step(
        5,
        "an ACL write on the new leader: a second token, which works at once",
    );
    let made = ok(as_mgmt(
        &servers[survivors[1]],
        &[
            "acl",
            "token",
            "create",
            "-description",
            "after",
            "-policy-name",
            "app",
        ],
    ));
    let after = field(&made, "SecretID:");
    ok(servers[survivors[1]].cli(&["kv", "put", "-token", &after, "app/d", "4"]));

    step(
        6,
        "the old leader returns, with an agent token for its own calls, and knows the token \
         made without it",
    );
    let name = servers[gone].name.clone();
    let rules = format!(r#"agent "{name}" {{ policy = "write" }}"#);
    ok(as_mgmt(
        &servers[survivors[0]],
        &[
            "acl",
            "policy",
            "create",
            "-name",
            "own-agent",
            "-rules",
            &rules,
        ],
    ));
    let made = ok(as_mgmt(
        &servers[survivors[0]],
        &[
            "acl",
            "token",
            "create",
            "-description",
            "agent",
            "-policy-name",
            "own-agent",
        ],
    ));
    let agent_token = field(&made, "SecretID:");
    let own_cfg = write_file(
        dir.path(),
        "own.hcl",
        &format!(
            "leave_on_terminate = true\nacl {{\n  enabled = true\n  default_policy = \"deny\"\n  \
             tokens {{\n    initial_management = \"{mgmt}\"\n    agent = \"{agent_token}\"\n  }}\n}}\n"
        ),
    );
    // The file holds secrets: its owner's alone, or the agent warns about it.
    std::fs::set_permissions(
        &own_cfg,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let extra = &mut servers[gone].extra;
    let at = extra.iter().position(|a| a == "-config-file").unwrap() + 1;
    extra[at] = own_cfg.to_str().unwrap().to_string();
    servers[gone].restart();
    let back = &servers[gone];
    wait_until(T, "the returned server answers the new token", || {
        let o = back.cli(&["kv", "get", "-token", &after, "app/d"]);
        o.status.success() && stdout(&o).trim() == "4"
    });
    let list = ok(as_mgmt(back, &["acl", "token", "list"]));
    assert!(stdout(&list).contains("after"), "{}", stdout(&list));

    step(
        7,
        "SIGTERM (leave_on_terminate): the server removes itself from Raft with its agent token",
    );
    wait_until(T, "the returned server is a voter again", || {
        let o = as_mgmt(&servers[survivors[0]], &["operator", "raft", "list-peers"]);
        stdout(&o).lines().filter(|l| l.contains("true")).count() == 3
    });
    servers[gone].signal(libc::SIGTERM);
    assert_eq!(
        servers[gone].wait_exit(T),
        Some(0),
        "{}",
        servers[gone].log()
    );
    assert!(
        servers[gone]
            .log()
            .contains("INFO removed from the Raft configuration"),
        "the leave did not remove the server itself:\n{}",
        servers[gone].log()
    );
    let o = ok(as_mgmt(
        &servers[survivors[0]],
        &["operator", "raft", "list-peers"],
    ));
    assert!(!stdout(&o).contains(&name), "{}", stdout(&o));
}
