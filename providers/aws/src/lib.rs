//! `provider=aws`: EC2 instances by tags, through aws-sdk-ec2 and aws-config.
//!
//! One `DescribeInstances` query (every page read) with a `tag:K=V` filter per tag (ANDed, unlike
//! go-discover's single tag) and `instance-state-name=running`. Credentials:
//! `access_key_id` + `secret_access_key` if given, else the standard chain (environment, profile,
//! web identity, ECS, IMDSv2). Region: `region`, else the SDK's chain (environment, profile,
//! instance metadata). Answers stay fresh for 10 s, so a fleet's retry loops never query the API
//! more than once per 10 s per agent, and throttling is reported as such.

use std::time::Duration;

use aws_config::meta::ProviderChainError;
use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::Filter;
use futures::future::BoxFuture;
use futures::FutureExt;
use muster_provider_core::{Candidates, KeySpec, Provider, ProviderArgs, ProviderError};

/// The EC2 provider.
pub struct Aws;

const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "region",
        help: "AWS region; default: AWS_REGION, the profile, or the instance metadata service",
        required: false,
        secret: false,
    },
    KeySpec {
        name: "tag_key",
        help: "tag key the servers carry (with tag_value)",
        required: false,
        secret: false,
    },
    KeySpec {
        name: "tag_value",
        help: "value of tag_key",
        required: false,
        secret: false,
    },
    KeySpec {
        name: "tags",
        help: "several tags, all required: \"k=v,k2=v2\" (ANDed with tag_key/tag_value)",
        required: false,
        secret: false,
    },
    KeySpec {
        name: "addr_type",
        help: "private_v4 (default), public_v4 or public_v6",
        required: false,
        secret: false,
    },
    KeySpec {
        name: "access_key_id",
        help: "static credentials (with secret_access_key); default: the standard credential chain",
        required: false,
        secret: true,
    },
    KeySpec {
        name: "secret_access_key",
        help: "static credentials (with access_key_id)",
        required: false,
        secret: true,
    },
    KeySpec {
        name: "endpoint",
        help: "EC2 endpoint URL override (VPC endpoints, tests)",
        required: false,
        secret: false,
    },
    KeySpec {
        name: "page_size",
        help: "instances per DescribeInstances page, 5 to 1000 (default: 1000, the API's largest); every page is read",
        required: false,
        secret: false,
    },
];

fn page_size(args: &ProviderArgs) -> Result<i32, ProviderError> {
    match args.get("page_size") {
        None => Ok(1000),
        Some(s) => match s.parse::<i32>() {
            Ok(n) if (5..=1000).contains(&n) => Ok(n),
            _ => Err(ProviderError::BadArgs(format!(
                "page_size={s:?}: use a number from 5 to 1000 (the API's limits)"
            ))),
        },
    }
}

/// The tag filters, ANDed.
fn tag_filters(args: &ProviderArgs) -> Result<Vec<(String, String)>, ProviderError> {
    let mut out = Vec::new();
    match (args.get("tag_key"), args.get("tag_value")) {
        (Some(k), Some(v)) if !k.is_empty() => out.push((k.to_string(), v.to_string())),
        (None, None) => {}
        _ => {
            return Err(ProviderError::BadArgs(
                "tag_key and tag_value go together".into(),
            ))
        }
    }
    out.extend(args.key_values("tags")?);
    if out.is_empty() {
        return Err(ProviderError::BadArgs(
            "give tag_key and tag_value (or tags=\"k=v,…\"): discovering every instance of an account is never what you want".into(),
        ));
    }
    Ok(out)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AddrType {
    PrivateV4,
    PublicV4,
    PublicV6,
}

fn addr_type(args: &ProviderArgs) -> Result<AddrType, ProviderError> {
    Ok(
        match args.one_of(
            "addr_type",
            "private_v4",
            &["private_v4", "public_v4", "public_v6"],
        )? {
            "public_v4" => AddrType::PublicV4,
            "public_v6" => AddrType::PublicV6,
            _ => AddrType::PrivateV4,
        },
    )
}

/// Sorts an SDK error into the loop's categories, naming the call and the IAM action, in one
/// line that says the cause and the fix. The SDK's own rendering of an error ends with its
/// `Debug` form (kilobytes of nested structs, raw HTTP included); that goes to the trace level
/// only.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    e: SdkError<E>,
    region: &str,
) -> ProviderError {
    tracing::trace!(error = ?e, "ec2:DescribeInstances failed; the SDK's error in full");
    let context = format!("ec2:DescribeInstances in {region}");
    match &e {
        SdkError::ServiceError(se) => {
            let msg = se.err().message().unwrap_or("").to_string();
            match se.err().code() {
                Some(code @ ("RequestLimitExceeded" | "Throttling" | "ThrottlingException")) => {
                    ProviderError::Throttled(format!("{context}: {code}: {msg}"))
                }
                Some("UnauthorizedOperation") => ProviderError::PermissionDenied(format!(
                    "{context}: the credentials lack ec2:DescribeInstances: {msg}; grant it to \
                     the role or user"
                )),
                Some(code @ ("AuthFailure" | "InvalidClientTokenId" | "SignatureDoesNotMatch")) => {
                    ProviderError::NoCredentials(format!(
                        "{context}: the credentials were rejected ({code}); check the keys or \
                         the role"
                    ))
                }
                Some(code) => ProviderError::Other(format!("{context}: {code}: {msg}")),
                None => not_an_ec2_answer(&context, region, se.raw()),
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            match credentials_error(&e) {
                Some(ce) => classify_credentials(ce),
                None => ProviderError::Unreachable(format!("{context}: {}", causes(&e))),
            }
        }
        _ => ProviderError::Other(format!("{context}: {}", causes(&e))),
    }
}

/// An answer that is not an EC2 error document (no error code): typically a web server's error
/// page, which is what an endpoint for a region that does not exist, or a wrong `endpoint=`,
/// answers. Says the HTTP status and the start of the page as text.
fn not_an_ec2_answer(
    context: &str,
    region: &str,
    raw: &aws_sdk_ec2::config::http::HttpResponse,
) -> ProviderError {
    let status = raw.status().as_u16();
    let page = raw.body().bytes().map(page_excerpt).unwrap_or_default();
    let page = if page.is_empty() {
        String::new()
    } else {
        format!(" ({page})")
    };
    let text = format!(
        "{context}: the endpoint answered HTTP {status} without an EC2 error{page}; check that \
         region={region} is an EC2 region and that endpoint=, if set, is an EC2 endpoint"
    );
    if status >= 500 {
        ProviderError::Unreachable(text)
    } else {
        ProviderError::Misconfigured(text)
    }
}

/// The first words of an HTML or text page: tags dropped, whitespace folded, at most 120
/// characters, printable ASCII only (a log line must not carry a page's control characters).
fn page_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            _ if in_tag => {}
            c if c.is_ascii_graphic() => out.push(c),
            _ => out.push(' '),
        }
    }
    let folded = out.split_whitespace().collect::<Vec<_>>().join(" ");
    match folded.char_indices().nth(120) {
        Some((i, _)) => format!("{}…", &folded[..i]),
        None => folded,
    }
}

/// The error's sources in one line, "a: b: c", each said once (the SDK repeats itself across
/// layers), without the `Debug` form the SDK's own context display appends.
fn causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        let text = c.to_string().replace('\n', " ");
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cause = c.source();
    }
    parts.join(": ")
}

/// The credential chain's error, when the SDK failed because of it (it is wrapped in the
/// dispatch failure). Found by type, never by text.
fn credentials_error<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e CredentialsError> {
    let mut cause = e.source();
    while let Some(c) = cause {
        if let Some(ce) = c.downcast_ref::<CredentialsError>() {
            return Some(ce);
        }
        cause = c.source();
    }
    None
}

/// The names the SDK gives the default chain's links, in the words of the fix.
fn link_name(sdk_name: &str) -> &str {
    match sdk_name {
        "Environment" => "environment",
        "Profile" => "profile",
        "WebIdentityToken" => "web identity",
        "EcsContainer" => "ECS",
        "Ec2InstanceMetadata" => "instance metadata",
        other => other,
    }
}

const CREDENTIALS_FIX: &str = "set AWS_PROFILE (or AWS_ACCESS_KEY_ID and \
    AWS_SECRET_ACCESS_KEY), attach an instance role, or give access_key_id= and \
    secret_access_key=";

/// What the credential chain's failure means for the operator. Every link "not loaded" (none
/// is set up) is a configuration error; a link that timed out (the metadata service slow at
/// boot) is a reachability problem, retried as such.
fn classify_credentials(ce: &CredentialsError) -> ProviderError {
    match ce {
        CredentialsError::CredentialsNotLoaded(_) => {
            let chain = std::error::Error::source(ce)
                .and_then(|s| s.downcast_ref::<ProviderChainError<CredentialsError>>());
            match chain {
                Some(chain) if !chain.attempts().is_empty() => {
                    let tried: Vec<&str> = chain
                        .attempts()
                        .iter()
                        .map(|a| link_name(a.name()))
                        .collect();
                    ProviderError::Misconfigured(format!(
                        "no AWS credentials found (tried {}); {CREDENTIALS_FIX}",
                        tried.join(", ")
                    ))
                }
                _ => ProviderError::Misconfigured(format!(
                    "no AWS credentials found ({}); {CREDENTIALS_FIX}",
                    causes(ce)
                )),
            }
        }
        CredentialsError::InvalidConfiguration(_) => ProviderError::Misconfigured(format!(
            "the AWS credential settings are invalid: {}; fix the profile or the variables",
            causes(ce)
        )),
        CredentialsError::ProviderTimedOut(_) => {
            ProviderError::Unreachable(format!("loading AWS credentials timed out: {}", causes(ce)))
        }
        _ => {
            ProviderError::NoCredentials(format!("loading AWS credentials failed: {}", causes(ce)))
        }
    }
}

impl Provider for Aws {
    fn name(&self) -> &'static str {
        "aws"
    }

    fn keys(&self) -> &'static [KeySpec] {
        KEYS
    }

    fn help(&self) -> &'static str {
        "Discovers running EC2 instances that carry every given tag.\n\
         IAM permission needed: ec2:DescribeInstances.\n\
         Example: provider=aws region=eu-west-1 tag_key=role tag_value=consul-server\n\
         Several tags: provider=aws tags=\"role=consul-server,cluster=prod\"\n"
    }

    fn cache_for(&self) -> Duration {
        Duration::from_secs(10)
    }

    fn validate(&self, args: &ProviderArgs) -> Result<(), ProviderError> {
        tag_filters(args)?;
        addr_type(args)?;
        page_size(args)?;
        if args.get("access_key_id").is_some() != args.get("secret_access_key").is_some() {
            return Err(ProviderError::BadArgs(
                "access_key_id and secret_access_key go together".into(),
            ));
        }
        args.http_url("endpoint")?;
        Ok(())
    }

    fn addrs<'a>(
        &'a self,
        args: &'a ProviderArgs,
    ) -> BoxFuture<'a, Result<Candidates, ProviderError>> {
        async move {
            let tags = tag_filters(args)?;
            let want = addr_type(args)?;
            // The SDK's own retries off: muster's retry loop decides when to ask again (its
            // backoff, jitter and throttling rules), so one lookup is one DescribeInstances
            // call per page and a throttled account is not asked three times in a row.
            let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
                .retry_config(aws_config::retry::RetryConfig::disabled());
            if let Some(r) = args.get("region") {
                loader = loader.region(aws_config::Region::new(r.to_string()));
            }
            if let (Some(k), Some(s)) = (args.get("access_key_id"), args.get("secret_access_key")) {
                loader = loader.credentials_provider(aws_sdk_ec2::config::Credentials::new(k, s, None, None, "muster-static"));
            }
            if let Some(ep) = args.get("endpoint") {
                loader = loader.endpoint_url(ep);
            }
            let sdk = loader.load().await;
            let region = match sdk.region() {
                Some(r) => r.to_string(),
                None => {
                    return Err(ProviderError::Misconfigured(
                        "no AWS region found (tried region=, AWS_REGION, the profile, instance metadata); set region=… or AWS_REGION".into(),
                    ))
                }
            };
            let client = aws_sdk_ec2::Client::new(&sdk);
            let mut filters: Vec<Filter> = tags
                .iter()
                .map(|(k, v)| Filter::builder().name(format!("tag:{k}")).values(v).build())
                .collect();
            filters.push(Filter::builder().name("instance-state-name").values("running").build());
            let mut pages = client
                .describe_instances()
                .set_filters(Some(filters))
                .max_results(page_size(args)?)
                .into_paginator()
                .send();
            let mut out = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify(e, &region))?;
                for r in page.reservations() {
                    for i in r.instances() {
                        let found: Vec<String> = match want {
                            AddrType::PrivateV4 => i.private_ip_address().map(str::to_string).into_iter().collect(),
                            AddrType::PublicV4 => i.public_ip_address().map(str::to_string).into_iter().collect(),
                            AddrType::PublicV6 => i
                                .network_interfaces()
                                .iter()
                                .flat_map(|n| n.ipv6_addresses())
                                .filter_map(|a| a.ipv6_address())
                                .map(|a| format!("[{a}]"))
                                .take(1)
                                .collect(),
                        };
                        for a in found {
                            if !out.contains(&a) {
                                out.push(a);
                            }
                        }
                    }
                }
            }
            Ok(out)
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_provider_core::Registry;

    fn parse(s: &str) -> Result<ProviderArgs, ProviderError> {
        let mut r = Registry::new();
        r.register(std::sync::Arc::new(Aws));
        r.parse(s).map(|(_, a)| a)
    }

    #[test]
    fn arguments_are_checked_strictly() {
        assert!(parse("provider=aws tag_key=role tag_value=consul").is_ok());
        assert!(parse("provider=aws tags=\"role=consul,env=prod\"").is_ok());
        for (bad, needle) in [
            ("provider=aws", "give tag_key and tag_value"),
            ("provider=aws tag_key=role", "go together"),
            ("provider=aws tags=roleconsul", "not key=value"),
            (
                "provider=aws tag_key=a tag_value=b addr_type=private",
                "addr_type",
            ),
            (
                "provider=aws tag_key=a tag_value=b access_key_id=x",
                "go together",
            ),
            (
                "provider=aws tag_key=a tag_value=b endpoint=localhost:5000",
                "http://",
            ),
            (
                "provider=aws tag_key=a tag_value=b page_size=3",
                "page_size",
            ),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn an_error_page_becomes_a_short_printable_excerpt() {
        let page = b"<html><title>Oops</title>\n<body>\x1b[31mbad\x07 gateway</body></html>";
        // Control characters become spaces (folded); printable text stays.
        assert_eq!(page_excerpt(page), "Oops [31mbad gateway");
        let long = format!("<p>{}</p>", "word ".repeat(100));
        let e = page_excerpt(long.as_bytes());
        assert!(e.ends_with('…') && e.chars().count() == 121, "{e}");
        assert_eq!(page_excerpt(b""), "");
    }

    #[test]
    fn secrets_are_hidden_in_the_canonical_form() {
        let a = parse("provider=aws tag_key=r tag_value=c access_key_id=AKIAEXAMPLE secret_access_key=SUPERSECRET").unwrap();
        let shown = a.to_string();
        assert!(
            !shown.contains("AKIAEXAMPLE") && !shown.contains("SUPERSECRET"),
            "{shown}"
        );
    }
}
