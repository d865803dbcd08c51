//! The gce provider against a fake Compute API and metadata server (tests/fixtures/fake_gce.py,
//! written from the public REST reference), through the real google-cloud-compute-v1 and
//! google-cloud-auth clients: metadata-server credentials and project, a service-account key,
//! tags, labels, zone patterns, RUNNING only, every page, 429 as throttling, and joining.
#![cfg(feature = "gce")]

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use support::*;

const T: Duration = Duration::from_secs(30);

/// The fake (tests/fixtures/fake_gce.py) on 127.B.0.1:8080, its first `throttle` Compute
/// requests answered 429; instances at 127.B.0.11–15. The fixture and its address.
fn fake(block: Block, throttle: u32) -> (Fixture, String) {
    let host = block.ip(1);
    let addr = format!("{host}:8080");
    let f = Fixture::python(
        "fake_gce.py",
        &[&host, "8080", &block.prefix(), &throttle.to_string()],
    )
    .wait_http(&addr, "/fake/calls");
    (f, addr)
}

/// `muster discover …` with the metadata server pointed at the fake (never at a real one).
fn discover(metadata: &str, provider: &str) -> Output {
    Command::new(bin())
        .args(["discover", provider])
        .env("GCE_METADATA_HOST", metadata)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .output()
        .expect("muster")
}

fn calls(addr: &str, kind: &str) -> u64 {
    http(addr, "GET", "/fake/calls")
        .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
        .and_then(|v| v[kind].as_u64())
        .unwrap_or(0)
}

/// gce-a on 127.B.0.11, and gce-b on 127.B.0.12 that finds it with `-retry-join` through the
/// Compute API at `ep`, authenticated by the service-account `key`.
fn pair(b: Block, ep: &str, key: &std::path::Path) -> (Agent, Agent) {
    let a = Agent::start("gce-a", &b.ip(11), &[]);
    a.wait_ready();
    let join = format!(
        "provider=gce {ep} project_name=muster-test tag_value=muster credentials_file={}",
        key.display()
    );
    let gce_b = Agent::start("gce-b", &b.ip(12), &["-retry-join", &join]);
    (a, gce_b)
}

/// A service-account key file with a fresh RSA key (openssl), as the console hands them out.
fn service_account_key(dir: &std::path::Path) -> std::path::PathBuf {
    let pem = dir.join("key.pem");
    let mut openssl = Command::new("openssl");
    openssl
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pem);
    run_ok("openssl", openssl);
    let key = std::fs::read_to_string(&pem).unwrap();
    let json = serde_json::json!({
        "type": "service_account",
        "project_id": "muster-test",
        "private_key_id": "0123456789abcdef",
        "private_key": key,
        "client_email": "muster@muster-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",
    });
    write_file(dir, "sa.json", &json.to_string())
}

#[test]
fn gce_discovery_by_tag_labels_and_zone_running_only_every_page_and_joining() {
    let b = Block::GceDiscovery;
    let (_fake, addr) = fake(b, 0);
    let ep = format!("endpoint=http://{addr}");

    step(
        1,
        "by network tag; project and token from the metadata server",
    );
    let o = discover(&addr, &format!("provider=gce {ep} tag_value=muster"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        sorted_lines(&o),
        [b.ip(11), b.ip(12), b.ip(13)],
        "RUNNING with the tag, every zone (one page per zone): {}",
        stderr(&o)
    );
    assert!(
        calls(&addr, "token") >= 1,
        "the token came from the metadata server"
    );
    assert_eq!(
        calls(&addr, "aggregatedList"),
        3,
        "one aggregated call, three pages"
    );

    step(2, "zone_pattern, labels, public addresses");
    let o = discover(
        &addr,
        &format!("provider=gce {ep} tag_value=muster zone_pattern=\"us-central1-.*\""),
    );
    assert_eq!(sorted_lines(&o), [b.ip(11), b.ip(12)], "{}", stderr(&o));
    let o = discover(
        &addr,
        &format!("provider=gce {ep} labels=\"role=server,env=test\""),
    );
    assert_eq!(sorted_lines(&o), [b.ip(15)], "{}", stderr(&o));
    let o = discover(
        &addr,
        &format!("provider=gce {ep} tag_value=muster zone_pattern=europe addr_type=public_v4"),
    );
    assert_eq!(sorted_lines(&o), [b.ip_in(1, 13)], "{}", stderr(&o));
    let o = discover(&addr, &format!("provider=gce {ep} tag_value=nobody"));
    assert!(
        o.status.code() == Some(2) && stdout(&o).is_empty(),
        "nothing matched: exit 2, not an error"
    );

    step(
        3,
        "a service-account key file instead of the metadata server",
    );
    let d = tempfile::tempdir().unwrap();
    let key = service_account_key(d.path());
    let o = discover(
        &format!("{}:1", b.ip(99)),
        &format!(
            "provider=gce {ep} project_name=muster-test tag_value=muster credentials_file={}",
            key.display()
        ),
    );
    assert_eq!(sorted_lines(&o).len(), 3, "{}", stderr(&o));

    step(4, "the provider conformance suite, against the fake");
    let good = format!(
        "provider=gce {ep} project_name=muster-test tag_value=muster credentials_file={}",
        key.display()
    );
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(muster_provider_core::conformance::check(
            std::sync::Arc::new(muster_provider_gce::Gce),
            &good,
        ));

    step(
        5,
        "typed errors: unknown project, no metadata server, unreachable API",
    );
    let o = discover(
        &addr,
        &format!("provider=gce {ep} project_name=nope tag_value=muster"),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no such project"), "{}", stderr(&o));
    let o = discover(
        &format!("{}:1", b.ip(99)),
        &format!("provider=gce {ep} tag_value=muster"),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("metadata server"), "{}", stderr(&o));
    assert!(stderr(&o).contains("project_name"), "{}", stderr(&o));
    let o = discover(
        &addr,
        &format!(
            "provider=gce endpoint=http://{}:1 project_name=muster-test tag_value=muster",
            b.ip(99)
        ),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unreachable"), "{}", stderr(&o));

    step(6, "an agent joins the servers it discovers in GCE");
    let (_a, gce_b) = pair(b, &ep, &key);
    wait_until(T, "gce-b joined gce-a through GCE discovery", || {
        gce_b.alive_count() == 2
    });
}

#[test]
fn a_throttled_compute_api_slows_the_loop_down_and_it_still_joins() {
    let b = Block::GceThrottled;
    let (_fake, addr) = fake(b, 2);
    let ep = format!("endpoint=http://{addr}");
    let o = discover(&addr, &format!("provider=gce {ep} tag_value=muster"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("throttled") && stderr(&o).contains("would retry"),
        "{}",
        stderr(&o)
    );
    let d = tempfile::tempdir().unwrap();
    let key = service_account_key(d.path());
    let (_a, gce_b) = pair(b, &ep, &key);
    wait_until(T, "gce-b joined after being throttled", || {
        gce_b.alive_count() == 2
    });
    assert!(gce_b.log().contains("throttled"), "{}", gce_b.log());
    assert_eq!(calls(&addr, "throttled"), 2);
}

#[test]
fn consul_legacy_gce_flags_become_a_gce_provider_string() {
    // Consul's -retry-join-gce-* flags turn into `provider=gce …` (docs/reference/consul.md §2.3). A
    // missing key file stops the attempt before any network call, so the test reaches no cloud.
    let a = Agent::start(
        "legacy",
        &Block::GceLegacyFlags.ip(20),
        &[
            "-retry-join-gce-tag-value",
            "muster",
            "-retry-join-gce-project-name",
            "muster-test",
            "-retry-join-gce-zone-pattern",
            "us-central1-.*",
            "-retry-join-gce-credentials-file",
            "/nonexistent/sa.json",
        ],
    );
    wait_until(
        T,
        "the first attempt is logged with the provider's error",
        || a.log().contains("no credentials"),
    );
    let log = a.log();
    assert!(log.contains("provider=gce"), "{log}");
    assert!(log.contains("/nonexistent/sa.json"), "{log}");
}
