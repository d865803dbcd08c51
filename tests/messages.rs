//! Messages that say the fix (issue 14 item 4): each failure an operator meets often is one
//! line naming the cause and what to do. One table, each row a real `muster` run.

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// One run of `muster`: its arguments and environment, and what it must print on stderr.
struct Row {
    what: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    /// The exit code; `None` for an agent that keeps running (it is killed once the needle
    /// shows).
    code: Option<i32>,
    needle: String,
    /// Text that must not appear (a secret's value).
    absent: Option<&'static str>,
}

/// A child killed when the row ends, passed or failed.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_row(row: &Row, dir: &Path) {
    let err_path = dir.join(format!("{}.stderr", row.what.replace(' ', "_")));
    let err_file = std::fs::File::create(&err_path).unwrap();
    let child = Command::new(bin())
        .args(&row.args)
        .envs(row.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(err_file.try_clone().unwrap())
        .stderr(err_file)
        .spawn()
        .expect("run muster");
    let mut child = Running(child);
    let read = || {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&err_path) {
            let _ = f.read_to_string(&mut s);
        }
        s
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let exited = child.0.try_wait().unwrap();
        if let Some(status) = exited {
            let text = read();
            assert_eq!(status.code(), row.code, "{}: {text}", row.what);
            break text;
        }
        if row.code.is_none() && read().contains(&row.needle) {
            break read();
        }
        assert!(
            Instant::now() < deadline,
            "{}: no {:?} within 30 s:\n{}",
            row.what,
            row.needle,
            read()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        text.contains(&row.needle),
        "{}: expected {:?} in:\n{text}",
        row.what,
        row.needle
    );
    if let Some(secret) = row.absent {
        assert!(
            !text.contains(secret),
            "{}: shows {secret:?}:\n{text}",
            row.what
        );
    }
    eprintln!("ok: {}", row.what);
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn common_failures_name_the_cause_and_the_fix() {
    let net = Block::Messages;
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // An address that accepts connections and never answers: a stuck agent, or another
    // service on the port.
    let silent = TcpListener::bind(format!("{}:0", net.ip(2))).unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in silent.incoming().flatten() {
            held.push(c);
        }
    });
    let wrong = write_file(dir, "wrong.json", r#"{"retry_max": "x"}"#);
    let secret = write_file(
        dir,
        "secret.json",
        r#"{"acl": {"tokens": {"agent": 90817263}}}"#,
    );
    let refused = format!("{}:8500", net.ip(9));
    let data = dir.join("data");
    let rows = vec![
        Row {
            what: "no agent listening",
            args: s(&["members", "-http-addr", &refused]),
            env: vec![],
            code: Some(1),
            needle: format!(
                "cannot reach the agent at http://{refused} (connection refused); is it running? set -http-addr or MUSTER_HTTP_ADDR"
            ),
            absent: None,
        },
        Row {
            what: "no agent listening, address from the environment",
            args: s(&["info"]),
            env: vec![("MUSTER_HTTP_ADDR", refused.clone())],
            code: Some(1),
            needle: "(cause: error sending request for url".into(),
            absent: None,
        },
        Row {
            what: "an agent that never answers",
            args: s(&["members", "-http-addr", &silent_addr]),
            env: vec![("MUSTER_HTTP_TIMEOUT", "1".into())],
            code: Some(1),
            needle: format!("the agent at http://{silent_addr} did not answer within 1 s (timed out)"),
            absent: None,
        },
        Row {
            what: "a bad MUSTER_HTTP_TIMEOUT",
            args: s(&["members", "-http-addr", &silent_addr]),
            env: vec![("MUSTER_HTTP_TIMEOUT", "soon".into())],
            code: Some(1),
            needle: "MUSTER_HTTP_TIMEOUT=\"soon\" is not a number of seconds".into(),
            absent: None,
        },
        Row {
            what: "a boolean flag with its value after a space",
            args: s(&["agent", "-server", "false"]),
            env: vec![],
            code: Some(1),
            needle: "unexpected argument 'false' after -server: -server takes no value after a space; write -server=false".into(),
            absent: None,
        },
        Row {
            what: "a boolean flag with two dashes",
            args: s(&["agent", "--dev", "true"]),
            env: vec![],
            code: Some(1),
            needle: "write -dev=true".into(),
            absent: None,
        },
        Row {
            what: "a string where a number belongs",
            args: s(&["validate", wrong.to_str().unwrap()]),
            env: vec![],
            code: Some(1),
            needle: format!(
                "key `retry_max` in {}: expected a whole number, got a string \"x\"",
                wrong.display()
            ),
            absent: None,
        },
        Row {
            what: "a secret key of the wrong type",
            args: s(&["validate", secret.to_str().unwrap()]),
            env: vec![],
            code: Some(1),
            needle: "key `acl.tokens.agent` in".into(),
            absent: Some("90817263"),
        },
        Row {
            what: "an exec provider that fails with a reason",
            args: s(&[
                "discover",
                "provider=exec command=\"echo no inventory file >&2; exit 3\"",
            ]),
            env: vec![],
            code: Some(1),
            needle: "command exited with status 3; its stderr: no inventory file".into(),
            absent: None,
        },
        Row {
            what: "an exec provider that fails silently",
            args: s(&["discover", "provider=exec command=\"exit 4\""]),
            env: vec![],
            code: Some(1),
            needle: "command exited with status 4 and printed nothing on stderr".into(),
            absent: None,
        },
        Row {
            what: "a server waiting for peers it has no way to find",
            args: vec![
                "agent".into(),
                "-node".into(),
                "lonely".into(),
                "-bind".into(),
                net.ip(3),
                "-client".into(),
                net.ip(3),
                "-data-dir".into(),
                data.to_str().unwrap().into(),
                "-server".into(),
                "-bootstrap-expect".into(),
                "3".into(),
            ],
            env: vec![],
            code: None,
            needle: "no -join or -retry-join is configured, so this server finds no peers by itself: start it with -retry-join ADDR".into(),
            absent: None,
        },
    ];
    for row in &rows {
        run_row(row, dir);
    }
}
