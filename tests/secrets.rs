//! Secrets stay out of everything muster writes, and a web page cannot drive a local agent
//! (docs/security.md, Secrets and Host check). Real processes: a server with a gossip key and
//! a provider string carrying a cloud secret, run through typos, `muster validate`, start-up
//! at debug level, `muster info`, `/v1/agent/self` and `muster members`; then every byte
//! written is searched for each secret. A client agent takes the key from `MUSTER_ENCRYPT`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};
use std::time::Duration;

use support::*;

const T: Duration = Duration::from_secs(30);

/// A cloud secret no real credential looks like, unique to this run.
fn cloud_secret() -> String {
    format!("S3CR3T{}", uuid::Uuid::new_v4().simple())
}

/// `muster ARGS` with `AWS_EC2_METADATA_DISABLED` (no metadata service is ever asked).
fn run(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("MUSTER_ENCRYPT")
        .output()
        .expect("run muster")
}

fn all_output(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

#[test]
fn secrets_never_reach_a_log_an_error_or_an_answer() {
    let block = Block::Secrets;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = stdout(&run(&["keygen"])).trim().to_string();
    let secret = cloud_secret();
    // An ACL management token (docs/acl.md), in the config file and in a token file.
    let token = format!("t0k3n-{}", uuid::Uuid::new_v4().simple());
    // With the aws provider compiled in, a provider string with a secret; its endpoint is a
    // loopback port where nothing listens, so every lookup fails (and is logged) at once.
    let provider = cfg!(feature = "aws").then(|| {
        format!(
            "provider=aws region=us-east-1 tag_key=role tag_value=muster \
             access_key_id=AKIDEXAMPLE secret_access_key={secret} endpoint=http://{}:9",
            block.ip(200)
        )
    });
    let mut written = Vec::new();

    step(
        1,
        "typos and broken strings carrying the secret, through validate and agent",
    );
    let broken = [
        format!("provider=aws secret_access_key={secret} tag_kye=role"),
        format!("provider=aws secret_access_key=\"{secret}"),
        format!("provider=aws\nsecret_access_key={secret}\ttag_key=role"),
        format!("provider=aws region=x secret_access_key=abc {secret}"),
    ];
    for (i, entry) in broken.iter().enumerate() {
        let f = write_file(
            d,
            &format!("typo{i}.json"),
            &serde_json::json!({ "retry_join": [entry], "encrypt": key }).to_string(),
        );
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let f = f.to_str().unwrap();
        let v = run(&["validate", f]);
        assert_eq!(v.status.code(), Some(1), "{entry:?}: {}", all_output(&v));
        let a = run(&[
            "agent",
            "-data-dir",
            d.join("x").to_str().unwrap(),
            "-config-file",
            f,
        ]);
        assert_eq!(a.status.code(), Some(1), "{entry:?}: {}", all_output(&a));
        written.push(all_output(&v));
        written.push(all_output(&a));
    }
    // A secret key of the wrong type: the error names the type, not the value (serde would
    // quote the string it refuses).
    let wrong = write_file(
        d,
        "wrong.json",
        &format!(r#"{{"acl": {{"tokens": "{secret}"}}}}"#),
    );
    let v = run(&["validate", wrong.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(1), "{}", all_output(&v));
    assert!(stderr(&v).contains("key `acl.tokens`"), "{}", stderr(&v));
    written.push(all_output(&v));
    // An HCL syntax error on the key's line: the parser's own text would quote the line.
    let broken = write_file(d, "broken.hcl", &format!("encrypt = \"{key}\n"));
    let v = run(&["validate", broken.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(1), "{}", all_output(&v));
    assert!(stderr(&v).contains("invalid HCL: line 1"), "{}", stderr(&v));
    written.push(all_output(&v));

    step(
        2,
        "a server with the key in a 0600 file and the provider string, at debug level",
    );
    // data_dir and bind_addr for `muster validate`; the agent's flags give its own.
    let mut cfg = serde_json::json!({
        "encrypt": key,
        "retry_join": [block.ip(1)],
        "data_dir": d.join("v").display().to_string(),
        "bind_addr": block.ip(1),
        "acl": {
            "enabled": true,
            "default_policy": "allow",
            "tokens": { "initial_management": token },
        },
    });
    if let Some(p) = &provider {
        cfg["retry_join"]
            .as_array_mut()
            .unwrap()
            .push(p.clone().into());
    }
    let file = write_file(d, "server.json", &cfg.to_string());
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let v = run(&["validate", file.to_str().unwrap()]);
    assert!(v.status.success(), "{}", all_output(&v));
    written.push(all_output(&v));
    let s1 = Agent::spec("s1", &block.ip(1))
        .args(&[
            "-server",
            "-bootstrap-expect",
            "1",
            "-log-level",
            "debug",
            "-config-file",
            file.to_str().unwrap(),
        ])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .start();
    s1.wait_ready();
    wait_until(T, "s1 leads", || s1.is_leader());
    if provider.is_some() {
        wait_until(T, "a provider lookup failed and was logged", || {
            s1.log().contains("cannot discover addresses")
        });
    }

    step(
        3,
        "a client agent takes the key from MUSTER_ENCRYPT and joins",
    );
    let c1 = Agent::spec("c1", &block.ip(2))
        .args(&["-retry-join", &block.ip(1), "-log-level", "debug"])
        .env("MUSTER_ENCRYPT", &key)
        .start();
    wait_until(T, "c1 and s1 see each other alive", || {
        s1.sees("c1", "alive") && c1.sees("s1", "alive")
    });
    assert!(
        !c1.log().contains("the gossip key is on the command line"),
        "{}",
        c1.log()
    );
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", c1.pid().unwrap())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(&key));

    // The token at work, from a 0600 file, and a token file that is missing.
    let token_file = write_file(d, "mgmt.token", &format!("{token}\n"));
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let tf = token_file.to_str().unwrap();
    wait_until(T, "the initial management token writes", || {
        let o = s1.cli(&["kv", "put", "-token-file", tf, "k", "v"]);
        written.push(all_output(&o));
        o.status.success()
    });
    let o = s1.cli(&["acl", "token", "list", "-token-file", tf]);
    assert!(o.status.success(), "{}", all_output(&o));
    written.push(all_output(&o));
    let o = s1.cli(&["kv", "get", "-token-file", &format!("{tf}.missing"), "k"]);
    assert_eq!(o.status.code(), Some(1), "{}", all_output(&o));
    written.push(all_output(&o));

    step(
        4,
        "info, members, /v1/agent/self and both logs, searched for every secret",
    );
    for args in [["info"], ["members"]] {
        let o = s1.cli(&args);
        assert!(o.status.success(), "{args:?}: {}", all_output(&o));
        written.push(all_output(&o));
    }
    let (status, body) = http(&s1.http_addr(), "GET", "/v1/agent/self").unwrap();
    assert_eq!(status, 200);
    if provider.is_some() {
        assert!(body.contains("secret_access_key=hidden"), "{body}");
    }
    written.push(body);
    written.push(s1.log());
    written.push(c1.log());
    for (what, text) in written.iter().enumerate() {
        assert!(
            !text.contains(&key),
            "the gossip key in output {what}:\n{text}"
        );
        assert!(
            !text.contains(&secret),
            "the cloud secret in output {what}:\n{text}"
        );
        assert!(
            !text.contains(&token),
            "the ACL token in output {what}:\n{text}"
        );
    }

    step(5, "the data dir is the agent's alone: 0700, its files 0600");
    let data = s1.data_dir();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "{}", data.display());
    let mut files = 0;
    let mut stack = vec![data.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
                stack.push(p);
            } else {
                assert_eq!(mode(&p), 0o600, "{}", p.display());
                files += 1;
            }
        }
    }
    assert!(
        files >= 3,
        "node-id, the keyring and the Raft store at least: {files}"
    );
}

/// One request with this `Host` header; the status code.
fn status_with_host(addr: &str, method: &str, path: &str, host: &str) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_page_under_another_host_name_cannot_drive_the_agent() {
    let block = Block::HostCheck;
    let a = Agent::start(
        "h1",
        &block.ip(1),
        &["-dev", "-http-allowed-host", "muster.internal"],
    );
    a.wait_ready();
    let addr = a.http_addr();
    for host in [
        addr.as_str(),
        "localhost:8500",
        "h1:8500",
        "muster.internal",
    ] {
        assert_eq!(
            status_with_host(&addr, "GET", "/v1/agent/members", host),
            200,
            "Host {host}"
        );
    }
    // A rebinding page: its own name, pointing at the agent's address.
    for host in ["attacker.example:8500", "127.0.0.1.attacker.example"] {
        assert_eq!(
            status_with_host(&addr, "GET", "/v1/kv/?recurse", host),
            403,
            "Host {host}"
        );
        assert_eq!(
            status_with_host(&addr, "PUT", "/v1/agent/leave", host),
            403,
            "Host {host}"
        );
    }
    assert!(a.pid().is_some() && a.members().is_some(), "the agent left");
    let o = muster(&["agent", "-dev", "-http-allowed-host", "not a name"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("http_allowed_hosts \"not a name\" is not a host name"));
}
