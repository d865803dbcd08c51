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
    let mut cmd = Command::new(bin());
    // The AWS rows must see no credentials and no region but what they set themselves.
    for var in AWS_VARS {
        cmd.env_remove(var);
    }
    let child = cmd
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
    // One line, never kilobytes of a library's debug output (which only the trace-level row
    // asks for).
    let traced = row.args.iter().any(|a| a == "trace");
    if let Some(long) = text.lines().find(|l| !traced && l.len() > 1000) {
        panic!("{}: a line of {} bytes:\n{long}", row.what, long.len());
    }
    if let Some(secret) = row.absent {
        assert!(
            !text.contains(secret),
            "{}: shows {secret:?}:\n{text}",
            row.what
        );
    }
    eprintln!("ok: {}", row.what);
}

/// What the AWS SDK reads for credentials and a region.
const AWS_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_ENDPOINT_URL",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
];

/// An environment with nowhere to find AWS credentials: no variables (removed for every row),
/// no profile files, the instance metadata service off.
#[cfg(feature = "aws")]
fn no_aws_env() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_CONFIG_FILE", "/nonexistent/config".into()),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/credentials".into(),
        ),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]
}

/// A web server that answers every request with an HTML 404 page, as an endpoint for a region
/// that does not exist, or a wrong `endpoint=`, does. Returns its address.
#[cfg(feature = "aws")]
fn error_page_server(ip: &str) -> String {
    use std::io::Write;
    let listener = TcpListener::bind(format!("{ip}:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut c in listener.incoming().flatten() {
            let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 8192];
            let _ = c.read(&mut buf);
            let page =
                "<html><head><title>404 Not Found</title></head><body>\n<h1>Not Found</h1>\n\
                        <p>The requested URL was not found on this server.</p></body></html>";
            let _ = write!(
                c,
                "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{page}",
                page.len()
            );
        }
    });
    addr
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
    #[cfg(feature = "aws")]
    let rows = {
        let mut rows = rows;
        rows.extend(aws_rows(net, dir));
        rows
    };
    for row in &rows {
        run_row(row, dir);
    }
}

/// The AWS provider's failures (issue 14 item 4): no credentials, no region, an endpoint that
/// answers a web page, and the agent's log line for the first, with the SDK's own debug output
/// shown at trace level only.
#[cfg(feature = "aws")]
fn aws_rows(net: Block, dir: &Path) -> Vec<Row> {
    let nowhere = format!("http://{}:1", net.ip(4));
    let page = error_page_server(&net.ip(5));
    let creds = "no AWS credentials found (tried environment, profile, web identity, ECS, \
                 instance metadata); set AWS_PROFILE (or AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY), attach an instance role, or give access_key_id= and \
                 secret_access_key=";
    let agent = |node: &str, ip: u8, level: &str| -> Vec<String> {
        vec![
            "agent".into(),
            "-node".into(),
            node.into(),
            "-bind".into(),
            net.ip(ip),
            "-client".into(),
            net.ip(ip),
            "-data-dir".into(),
            dir.join(node).to_str().unwrap().into(),
            "-log-level".into(),
            level.into(),
            "-retry-join".into(),
            format!(
                "provider=aws region=us-east-1 tag_key=role tag_value=consul endpoint={nowhere}"
            ),
        ]
    };
    vec![
        Row {
            what: "aws without credentials",
            args: s(&[
                "discover",
                &format!("provider=aws region=us-east-1 tag_key=role tag_value=consul endpoint={nowhere}"),
            ]),
            env: no_aws_env(),
            code: Some(1),
            needle: format!(
                "discovery failed: configuration error: {creds} (the retry-join loop keeps asking, so a fix made outside muster is picked up)"
            ),
            absent: Some("would retry"),
        },
        Row {
            what: "aws without a region",
            args: s(&[
                "discover",
                &format!("provider=aws tag_key=role tag_value=consul endpoint={nowhere}"),
            ]),
            env: no_aws_env(),
            code: Some(1),
            needle: "configuration error: no AWS region found (tried region=, AWS_REGION, the profile, instance metadata); set region=… or AWS_REGION".into(),
            absent: None,
        },
        Row {
            what: "aws against an endpoint that answers an error page",
            args: s(&[
                "discover",
                &format!(
                    "provider=aws region=us-nowhere-9 tag_key=role tag_value=consul endpoint=http://{page} \
                     access_key_id=AKIDEXAMPLE secret_access_key=wJalrXUtnFEMIEXAMPLEKEY"
                ),
            ]),
            env: no_aws_env(),
            code: Some(1),
            needle: "ec2:DescribeInstances in us-nowhere-9: the endpoint answered HTTP 404 without an EC2 error (404 Not Found Not Found The requested URL was not found on this server.); check that region=us-nowhere-9 is an EC2 region".into(),
            absent: Some("wJalrXUtnFEMIEXAMPLEKEY"),
        },
        Row {
            what: "an agent's retry-join without AWS credentials, at debug level",
            args: agent("aws-debug", 6, "debug"),
            env: no_aws_env(),
            code: None,
            needle: format!("error=configuration error: {creds}"),
            absent: Some("entering 'serialization' phase"),
        },
        Row {
            what: "the SDK's own debug output at trace level",
            args: agent("aws-trace", 7, "trace"),
            env: no_aws_env(),
            code: None,
            needle: "entering 'serialization' phase".into(),
            absent: None,
        },
    ]
}
