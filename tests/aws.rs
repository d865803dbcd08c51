//! The aws provider against moto, a real, independent EC2 API implementation (installed by the
//! test command). Instances live in a 127.0.0.0/16 VPC so their addresses are loopback ones.
//! Address blocks 73, 74 and 78 (see tests/support/mod.rs).
#![cfg(feature = "aws")]

mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

const T: Duration = Duration::from_secs(30);

/// A child process (moto, an agent started by hand), killed on drop even when a test fails.
struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A moto server of its own on 127.B.0.1:5000, with the fixture laid out in 127.B.0.0/24.
fn moto(block: u8) -> (Moto, String) {
    let host = format!("127.{block}.0.1");
    let endpoint = format!("http://{host}:5000");
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", &host, "-p", "5000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 with moto, installed by the test command (pip install 'moto[server]')");
    let m = Moto(child);
    wait_until(T, "moto answers", || {
        http(&format!("{host}:5000"), "GET", "/moto-api/").is_some()
    });
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/moto_ec2.py");
    let prefix = format!("127.{block}.0");
    let out = Command::new("python3")
        .arg(fixture)
        .args([&endpoint, &prefix])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "moto fixture failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (m, endpoint)
}

fn provider(endpoint: &str, filter: &str) -> String {
    format!("provider=aws endpoint={endpoint} region=us-east-1 access_key_id=test secret_access_key=test {filter}")
}

#[test]
fn ec2_discovery_by_several_tags_running_instances_only_and_joining() {
    let (_moto, endpoint) = moto(73);
    step(1, "several tags ANDed, running instances only, every page");
    let o = muster(&[
        "discover",
        &provider(&endpoint, "tags=\"role=consul,env=prod\""),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let mut found: Vec<&str> = text.lines().collect();
    found.sort();
    assert_eq!(found, ["127.73.0.11", "127.73.0.12", "127.73.0.13"]);
    assert!(
        !stderr(&o).contains("secret_access_key=test"),
        "secrets are hidden: {}",
        stderr(&o)
    );
    let o = muster(&[
        "discover",
        &provider(&endpoint, "tag_key=role tag_value=consul"),
    ]);
    assert_eq!(
        stdout(&o).lines().count(),
        4,
        "one tag: prod and test, still not the stopped one"
    );
    let o = muster(&[
        "discover",
        &provider(&endpoint, "tag_key=role tag_value=nobody"),
    ]);
    assert!(
        o.status.code() == Some(2) && stdout(&o).is_empty(),
        "nothing matched: exit 2, not an error"
    );

    step(2, "the provider conformance suite, against moto");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(muster_provider_core::conformance::check(
            std::sync::Arc::new(muster_provider_aws::Aws),
            &provider(&endpoint, "tags=\"role=consul,env=prod\""),
        ));

    step(3, "an agent joins the servers it discovers in EC2");
    let a = Agent::start("ec2-a", "127.73.0.11", &[]);
    a.wait_ready();
    let b = Agent::start(
        "ec2-b",
        "127.73.0.12",
        &[
            "-retry-join",
            &provider(&endpoint, "tags=\"role=consul,env=prod\""),
        ],
    );
    wait_until(T, "ec2-b joined ec2-a through EC2 discovery", || {
        b.alive_count() == 2
    });

    step(
        4,
        "an unreachable endpoint is reported as such, and retried",
    );
    let o = muster(&[
        "discover",
        &provider("http://127.73.0.99:5999", "tag_key=role tag_value=consul"),
    ]);
    // (the SDK retries a refused connection a few times before giving up)
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("unreachable") && stderr(&o).contains("would retry"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn legacy_ec2_flags_work_as_written() {
    // Consul's -retry-join-ec2-* flags become a provider string; with a region and keys from the
    // environment they reach the same API.
    let (_moto, endpoint) = moto(74);
    let a = Agent::start("legacy-a", "127.74.0.13", &[]);
    a.wait_ready();
    let d = tempfile::tempdir().unwrap();
    let _child = Moto(
        Command::new(BIN)
            .args([
                "agent",
                "-node",
                "legacy-b",
                "-bind",
                "127.74.0.14",
                "-client",
                "127.74.0.14",
                "-data-dir",
            ])
            .arg(d.path())
            .args([
                "-retry-join-ec2-tag-key",
                "env",
                "-retry-join-ec2-tag-value",
                "prod",
                "-retry-join-ec2-region",
                "us-east-1",
            ])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", &endpoint)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(T, "the legacy flags found legacy-a through EC2", || {
        http("127.74.0.14:8500", "GET", "/v1/agent/members")
            .is_some_and(|(s, body)| s == 200 && body.contains("legacy-a"))
    });
}

#[test]
fn region_and_credentials_come_from_imdsv2_and_throttling_is_recognised() {
    // moto behind the counting front, throttling the first 3 EC2 requests as AWS does
    // (RequestLimitExceeded), and a fake IMDSv2 for the region and the instance-role keys.
    let b = 78;
    let host = format!("127.{b}.0.1");
    let endpoint = format!("http://{host}:5000");
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let _moto = Moto(
        Command::new("python3")
            .arg(fixtures.join("moto_counting.py"))
            .args([&host, "5000", "3"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with moto"),
    );
    wait_until(T, "moto answers", || {
        http(&format!("{host}:5000"), "GET", "/muster-test/calls").is_some()
    });
    let out = Command::new("python3")
        .arg(fixtures.join("moto_ec2.py"))
        .args([&endpoint, &format!("127.{b}.0")])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let imds_host = format!("127.{b}.0.2:1338");
    let _imds = Moto(
        Command::new("python3")
            .arg(fixtures.join("fake_imds.py"))
            .args([&format!("127.{b}.0.2"), "1338", "us-east-1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3"),
    );
    wait_until(T, "the fake IMDS answers", || {
        http(&imds_host, "GET", "/fake/calls").is_some()
    });
    // No region, no keys: the standard chains, with only the instance metadata service to ask.
    let discover = || {
        Command::new(BIN)
            .args([
                "discover",
                &format!("provider=aws endpoint={endpoint} tags=\"role=consul,env=prod\""),
            ])
            .env(
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                format!("http://{imds_host}"),
            )
            .env("AWS_CONFIG_FILE", "/nonexistent/config")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ENDPOINT_URL")
            .env_remove("AWS_EC2_METADATA_DISABLED")
            .output()
            .expect("muster")
    };

    step(
        1,
        "RequestLimitExceeded is reported as throttling, which the loop retries",
    );
    let o = discover();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("throttled")
            && stderr(&o).contains("RequestLimitExceeded")
            && stderr(&o).contains("would retry"),
        "{}",
        stderr(&o)
    );

    step(
        2,
        "once the API lets us through: region and keys from IMDSv2",
    );
    // (the SDK itself retries a throttled call a few times; poll until the budget is spent)
    let mut o = discover();
    wait_until(T, "discovery succeeds once the throttling ends", || {
        o = discover();
        o.status.success() || !stderr(&o).contains("throttled")
    });
    assert!(o.status.success(), "{}", stderr(&o));
    let mut found: Vec<String> = stdout(&o).lines().map(String::from).collect();
    found.sort();
    assert_eq!(found, ["127.78.0.11", "127.78.0.12", "127.78.0.13"]);
    let (_, imds_calls) = http(&imds_host, "GET", "/fake/calls").unwrap();
    assert!(
        imds_calls.contains("/latest/meta-data/placement/region")
            && imds_calls.contains("/latest/meta-data/iam/security-credentials/muster-role"),
        "{imds_calls}"
    );
}
