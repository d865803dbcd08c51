//! The aws provider against moto, a real, independent EC2 API implementation (installed by the
//! test command). Instances live in a 127.B.0.0/16 VPC so their addresses are loopback ones.
#![cfg(feature = "aws")]

mod support;

use std::process::Command;
use std::time::Duration;

use support::fixture::{self, aws_provider as provider, moto_counting};
use support::*;

const T: Duration = Duration::from_secs(30);

/// A moto server of its own on 127.B.0.1:5000, with tests/fixtures/moto_ec2.py's instances laid
/// out in 127.B.0.0/24; the fixture and its endpoint.
fn moto(block: Block) -> (Fixture, String) {
    let m = fixture::moto(block);
    let endpoint = format!("http://{}:5000", block.ip(1));
    fixture::run_script("moto_ec2.py", &[&endpoint, &block.prefix()]);
    (m, endpoint)
}

#[test]
fn ec2_discovery_by_several_tags_running_instances_only_and_joining() {
    let b = Block::Ec2Discovery;
    let (_moto, endpoint) = moto(b);
    step(1, "several tags ANDed, running instances only, every page");
    let o = muster(&[
        "discover",
        &provider(&endpoint, "tags=\"role=consul,env=prod\""),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(sorted_lines(&o), [b.ip(11), b.ip(12), b.ip(13)]);
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
    let a = Agent::start("ec2-a", &b.ip(11), &[]);
    a.wait_ready();
    let ec2_b = Agent::start(
        "ec2-b",
        &b.ip(12),
        &[
            "-retry-join",
            &provider(&endpoint, "tags=\"role=consul,env=prod\""),
        ],
    );
    wait_until(T, "ec2-b joined ec2-a through EC2 discovery", || {
        ec2_b.alive_count() == 2
    });

    step(
        4,
        "an unreachable endpoint is reported as such, and retried",
    );
    let o = muster(&[
        "discover",
        &provider(
            &format!("http://{}:5999", b.ip(99)),
            "tag_key=role tag_value=consul",
        ),
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
    let b = Block::Ec2LegacyFlags;
    let (_moto, endpoint) = moto(b);
    let a = Agent::start("legacy-a", &b.ip(13), &[]);
    a.wait_ready();
    let legacy = Agent::spec("legacy-b", &b.ip(14))
        .args(&[
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
        .start();
    wait_until(T, "the legacy flags found legacy-a through EC2", || {
        http(&legacy.http_addr(), "GET", "/v1/agent/members")
            .is_some_and(|(s, body)| s == 200 && body.contains("legacy-a"))
    });
}

#[test]
fn region_and_credentials_come_from_imdsv2_and_throttling_is_recognised() {
    // moto behind the counting front, throttling the first 3 EC2 requests as AWS does
    // (RequestLimitExceeded), and a fake IMDSv2 for the region and the instance-role keys.
    let b = Block::Ec2Imds;
    let _moto = moto_counting(b, 3);
    let moto_host = format!("{}:5000", b.ip(1));
    let describe_calls = || {
        fixture::moto_calls(&moto_host)["DescribeInstances"]
            .as_u64()
            .unwrap_or(0)
    };
    let endpoint = format!("http://{}:5000", b.ip(1));
    fixture::run_script("moto_ec2.py", &[&endpoint, &b.prefix()]);
    let imds_host = format!("{}:1338", b.ip(2));
    let _imds = Fixture::python("fake_imds.py", &[&b.ip(2), "1338", "us-east-1"])
        .wait_http(&imds_host, "/fake/calls");
    // No region, no keys: the standard chains, with only the instance metadata service to ask.
    let discover = || {
        Command::new(bin())
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

    // The SDK's own retries are off: one lookup, one call.
    assert_eq!(describe_calls(), 1, "one discover made more than one call");

    step(
        2,
        "once the API lets us through: region and keys from IMDSv2; one call per lookup",
    );
    let mut lookups = 1;
    let mut o = discover();
    lookups += 1;
    wait_until(T, "discovery succeeds once the throttling ends", || {
        if o.status.success() {
            return true;
        }
        o = discover();
        lookups += 1;
        o.status.success() || !stderr(&o).contains("throttled")
    });
    assert!(o.status.success(), "{}", stderr(&o));
    // Three throttled, the fourth answered: four lookups, four calls.
    assert_eq!((lookups, describe_calls()), (4, 4));
    assert_eq!(sorted_lines(&o), [b.ip(11), b.ip(12), b.ip(13)]);
    let (_, imds_calls) = http(&imds_host, "GET", "/fake/calls").unwrap();
    assert!(
        imds_calls.contains("/latest/meta-data/placement/region")
            && imds_calls.contains("/latest/meta-data/iam/security-credentials/muster-role"),
        "{imds_calls}"
    );
}
