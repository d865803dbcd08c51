//! Configuration as a user meets it: flags with one dash or two, files, and every validation
//! error with its exit code and a message that names the culprit.

mod support;

use support::*;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn every_validation_error_exits_1_and_names_the_culprit() {
    let d = tmp();
    let dir = d.path().to_str().unwrap();
    agent_refuses(&["-bind", "127.0.0.1"], "data_dir is required");
    // The multiplier reaches validation (it used to be dropped when the layers merged).
    agent_refuses(
        &[
            "-data-dir",
            dir,
            "-bind",
            "127.0.0.1",
            "-raft-multiplier",
            "11",
        ],
        "performance.raft_multiplier = 11",
    );
    agent_refuses(
        &[
            "-data-dir",
            dir,
            "-bind",
            "127.0.0.1",
            "-bootstrap-expect",
            "3",
        ],
        "'bootstrap_expect > 0' requires 'server = true'",
    );
    agent_refuses(
        &[
            "-data-dir",
            dir,
            "-bind",
            "127.0.0.1",
            "-server",
            "-bootstrap",
            "-bootstrap-expect",
            "3",
        ],
        "mutually exclusive",
    );
    agent_refuses(
        &["-data-dir", dir, "-bind", "127.0.0.1", "-bootstrap"],
        "'bootstrap = true' requires 'server = true'",
    );
    agent_refuses(
        &[
            "-data-dir",
            dir,
            "-bind",
            "127.0.0.1",
            "-retry-interval",
            "30",
        ],
        "retry_interval",
    );
    agent_refuses(
        &[
            "-data-dir",
            dir,
            "-bind",
            "127.0.0.1",
            "-retry-interval",
            "10 parsecs",
        ],
        "is not a duration",
    );
    agent_refuses(
        &["-data-dir", dir, "-bind", "10.0.0"],
        "bind_addr: \"10.0.0\" is not an IP address",
    );
    agent_refuses(
        &["-data-dir", dir, "-bind", "127.0.0.1", "-advertise", "nope"],
        "advertise_addr",
    );
    agent_refuses(
        &[
            "-data-dir",
            dir,
            "-bind",
            "127.0.0.1",
            "-serf-lan-port",
            "70000",
        ],
        "ports.serf_lan = 70000",
    );
    agent_refuses(
        &[
            "-data-dir",
            dir,
            "-bind",
            "127.0.0.1",
            "-encrypt",
            "c2hvcnQ=",
        ],
        "must be 32",
    );
    agent_refuses(
        &[
            "-data-dir",
            dir,
            "-bind",
            "127.0.0.1",
            "-bootstrap-expect",
            "-1",
            "-server",
        ],
        "bootstrap_expect cannot be -1",
    );
    agent_refuses(
        &[
            "-data-dir",
            dir,
            "-bind",
            "127.0.0.1",
            "-join",
            "1.2.3.4:99999",
        ],
        "not a valid address",
    );
    agent_refuses(
        &["-data-dir", dir, "-bind", "127.0.0.1", "-log-level", "loud"],
        "log_level",
    );
    agent_refuses(&["-data-dir", dir, "-node", "bad name"], "node_name");
    agent_refuses(
        &[
            "-data-dir",
            dir,
            "-bind",
            "0.0.0.0",
            "-advertise",
            "0.0.0.0",
        ],
        "cannot be advertised",
    );
    agent_refuses(
        &[
            "-data-dir",
            dir,
            "-bind",
            "127.0.0.1",
            "-dev",
            "-server",
            "-bootstrap-expect",
            "3",
        ],
        "not allowed in dev mode",
    );
    agent_refuses(
        &[
            "-data-dir",
            dir,
            "-bind",
            "127.0.0.1",
            "-retry-join-ec2-tag-key",
            "role",
        ],
        "needs both tag_key and tag_value",
    );
}

#[test]
fn unknown_flags_and_keys_suggest_the_fix() {
    let out = muster(&["agent", "-retry-jion", "x"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("retry-join"), "{}", stderr(&out));
    let d = tmp();
    let f = write_file(
        d.path(),
        "bad.json",
        r#"{"bootstrap_expct": 3, "data_dir": "/tmp"}"#,
    );
    let out = muster(&["agent", "-config-file", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("unknown key `bootstrap_expct`")
            && err.contains("did you mean `bootstrap_expect`"),
        "{err}"
    );
    assert!(err.contains("bad.json"), "the file is named: {err}");
    let f = write_file(d.path(), "bad.hcl", "server = \"yes\"\n");
    let out = muster(&["validate", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("key `server`"), "{}", stderr(&out));
    let f = write_file(d.path(), "broken.hcl", "server = \n");
    let out = muster(&["validate", f.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("invalid HCL"), "{}", stderr(&out));
}

#[test]
fn warnings_for_expect_one_and_even_counts() {
    let d = tmp();
    let f = write_file(
        d.path(),
        "one.json",
        r#"{"server": true, "bootstrap_expect": 1, "data_dir": "/tmp/x", "bind_addr": "127.0.0.1"}"#,
    );
    let out = muster(&["validate", f.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("bootstrap_expect = 1 is the same as -bootstrap"),
        "{}",
        stderr(&out)
    );
    let f = write_file(
        d.path(),
        "four.json",
        r#"{"server": true, "bootstrap_expect": 4, "data_dir": "/tmp/x", "bind_addr": "127.0.0.1"}"#,
    );
    let out = muster(&["validate", f.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(stderr(&out).contains("is even"), "{}", stderr(&out));
}

#[test]
fn config_dir_is_read_in_lexical_order_and_lists_concatenate() {
    let d = tmp();
    write_file(
        d.path(),
        "10-base.json",
        r#"{"datacenter": "first", "retry_join": ["127.0.0.2"], "data_dir": "/tmp/x", "bind_addr": "127.0.0.1"}"#,
    );
    write_file(
        d.path(),
        "20-more.hcl",
        "datacenter = \"second\"\nretry_join = [\"127.0.0.3\"]\n",
    );
    write_file(d.path(), "README.txt", "not a config file");
    let out = muster(&["validate", d.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // A later layer wins, and the flag layer wins over all files: check through a running agent.
    let a = Agent::start(
        "cfg",
        &Block::ConfigCli.ip(9),
        &[
            "-config-dir",
            d.path().to_str().unwrap(),
            "--retry-join=127.0.0.4",
            "-retry-interval=5s",
        ],
    );
    a.wait_ready();
    let (_, body) = http(&a.http_addr(), "GET", "/v1/agent/self").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Config"]["Datacenter"], "second");
    assert_eq!(
        v["DebugConfig"]["RetryJoinLAN"],
        serde_json::json!(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    );
    assert_eq!(v["DebugConfig"]["RetryJoinIntervalLAN"], "5s");
}

#[test]
fn every_example_in_config_dir_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if !matches!(p.extension().and_then(|x| x.to_str()), Some("json" | "hcl")) {
            continue;
        }
        n += 1;
        let out = muster(&["validate", p.to_str().unwrap()]);
        assert!(out.status.success(), "{}: {}", p.display(), stderr(&out));
    }
    assert!(n >= 3, "config/ holds the examples");
}

#[test]
fn secrets_never_reach_the_log_or_the_api() {
    let key = stdout(&muster(&["keygen"])).trim().to_string();
    let a = Agent::start(
        "sec",
        &Block::ConfigCli.ip(8),
        &["-encrypt", &key, "-log-level", "debug"],
    );
    a.wait_ready();
    let (_, body) = http(&a.http_addr(), "GET", "/v1/agent/self").unwrap();
    assert!(!body.contains(&key), "the key leaked into /v1/agent/self");
    assert!(body.contains("\"EncryptKey\":\"hidden\""), "{body}");
    assert!(!a.log().contains(&key), "the key leaked into the log");
}

#[test]
fn help_and_version_exit_0() {
    assert!(muster(&["-help"]).status.success());
    assert!(muster(&["agent", "--help"]).status.success());
    assert!(stdout(&muster(&["version"])).starts_with("muster v"));
    assert_eq!(muster(&["frobnicate"]).status.code(), Some(1));
}

#[test]
fn log_json_writes_one_json_object_per_line() {
    let mut a = Agent::start("json", &Block::ConfigCli.ip(7), &["-log-json"]);
    a.wait_ready();
    let (s, _) = http(&a.http_addr(), "PUT", "/v1/agent/leave").unwrap();
    assert_eq!(s, 200);
    assert_eq!(a.wait_exit(std::time::Duration::from_secs(20)), Some(0));
    let log = a.log();
    assert!(log.lines().count() >= 2, "{log}");
    for line in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
}
