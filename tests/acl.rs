//! ACLs through real processes and the CLI (docs/acl.md): a server and a client agent with
//! `acl { enabled = true, default_policy = "deny" }`; `muster acl bootstrap`, a policy for
//! `app/` and a token for it made with the CLI; writes and reads under it through the client
//! agent, refusals in Consul's words, the agents' own endpoints refused; the tokens survive a
//! cold restart of the server; with every server gone, the client's `down_policy`
//! (extend-cache) keeps a token it resolved before and refuses one it never did.

mod support;

use std::process::Output;
use std::time::Duration;

use support::*;

const T: Duration = Duration::from_secs(40);

fn refused(o: Output, needle: &str) {
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains(needle),
        "expected {needle:?} in:\n{}",
        stderr(&o)
    );
}

#[test]
fn acls_deny_by_default_and_a_token_writes_only_what_its_policy_says() {
    let block = Block::AclCli;
    let dir = tempfile::tempdir().unwrap();
    let acl =
        |extra: &str| format!("acl {{\n  enabled = true\n  default_policy = \"deny\"\n{extra}}}\n");
    let server_cfg = write_file(dir.path(), "server.hcl", &acl(""));
    let client_cfg = write_file(dir.path(), "client.hcl", &acl("  token_ttl = \"1s\"\n"));
    let mut s1 = Agent::start(
        "s1",
        &block.ip(1),
        &[
            "-server",
            "-bootstrap-expect",
            "1",
            "-config-file",
            server_cfg.to_str().unwrap(),
        ],
    );
    let c1 = Agent::start(
        "c1",
        &block.ip(2),
        &[
            "-retry-join",
            &block.ip(1),
            "-config-file",
            client_cfg.to_str().unwrap(),
        ],
    );

    step(1, "muster acl bootstrap, once");
    let boot = poll(T, Duration::from_millis(200), || {
        let o = c1.cli(&["acl", "bootstrap"]);
        o.status.success().then_some(o)
    })
    .expect("the bootstrap succeeds once a leader is up");
    let mgmt = field(&boot, "SecretID:");
    refused(c1.cli(&["acl", "bootstrap"]), "no longer allowed");

    step(2, "a policy for app/ and a token for it, made with the CLI");
    let as_mgmt = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["-token", &mgmt]);
        c1.cli(&a)
    };
    ok(as_mgmt(&[
        "acl",
        "policy",
        "create",
        "-name",
        "app",
        "-rules",
        r#"key_prefix "app/" { policy = "write" }"#,
    ]));
    let made = ok(as_mgmt(&[
        "acl",
        "token",
        "create",
        "-description",
        "app",
        "-policy-name",
        "app",
    ]));
    let app = field(&made, "SecretID:");
    let token_file = write_file(dir.path(), "app.token", &format!("{app}\n"));
    let tf = token_file.to_str().unwrap();

    step(3, "the app token writes app/ only; anonymous gets nothing");
    ok(c1.cli(&["kv", "put", "-token-file", tf, "app/x", "1"]));
    refused(
        c1.cli(&["kv", "put", "-token-file", tf, "other", "1"]),
        "Permission denied: token with AccessorID",
    );
    refused(c1.cli(&["kv", "get", "app/x"]), "Permission denied");
    let got = ok(c1.cli(&["kv", "get", "-token", &app, "app/x"]));
    assert_eq!(stdout(&got).trim(), "1");
    // The agents' own endpoints: leaving needs agent:write on the agent.
    refused(
        c1.cli(&["leave", "-token", &app]),
        "lacks permission 'agent:write' on \"c1\"",
    );
    // Lists never show secrets.
    let list = ok(as_mgmt(&["acl", "token", "list"]));
    assert!(!stdout(&list).contains(&app) && !stdout(&list).contains(&mgmt));

    step(
        4,
        "a cold restart of the server: every token and policy is still there",
    );
    s1.restart();
    wait_until(T, "the app token writes again", || {
        c1.cli(&["kv", "put", "-token", &app, "app/y", "2"])
            .status
            .success()
    });
    // Resolved now by the client agent, for the next step.
    ok(c1.cli(&["members", "-token", &mgmt]));
    let resolved_at = std::time::Instant::now();

    step(
        5,
        "every server gone: extend-cache keeps what was resolved, refuses the rest",
    );
    s1.kill();
    // The condition is the clock itself: the client's token_ttl (1s) must have run out, so
    // that the next request asks the (gone) servers again.
    wait_until(T, "the client's token_ttl has run out", || {
        resolved_at.elapsed() > Duration::from_millis(1100)
    });
    let o = ok(c1.cli(&["members", "-token", &mgmt]));
    assert!(stdout(&o).contains("c1"), "{}", stdout(&o));
    refused(
        c1.cli(&["members", "-token", "never-seen-secret"]),
        "ACL not found",
    );
}
