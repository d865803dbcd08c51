//! `provider=gce`: Compute Engine instances by network tag and labels, through
//! google-cloud-compute-v1 and google-cloud-auth.
//!
//! One `instances.aggregatedList` call per attempt (every page read) rather than one `list` per
//! zone: a project with 40 zones costs one request, not 40. Zones are then
//! kept by `zone_pattern`, a regular expression searched in the zone name as go-discover does
//! (`us-west1-.*`, `us-(west|east).*`). Only `RUNNING` instances count (go-discover also returns
//! stopped ones, docs/reference/consul.md). Credentials: `credentials_file` (a service-account key),
//! else Application Default Credentials, the metadata server included (`GCE_METADATA_HOST`
//! honoured). Project: `project_name`, else the metadata server's project id.
//!
//! The client does not retry on its own (`NeverRetry`): muster's retry loop owns retries, and a
//! 429 / RESOURCE_EXHAUSTED is reported as throttling so that the loop slows down.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use google_cloud_compute_v1::client::Instances;
use google_cloud_compute_v1::model::instance::Status;
use google_cloud_compute_v1::model::Instance;
use google_cloud_gax::error::rpc::Code;
use muster_provider_core::{Candidates, KeySpec, Provider, ProviderArgs, ProviderError};

/// The Compute Engine provider.
pub struct Gce;

const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "project_name",
        help: "GCP project id; default: the metadata server's project",
        required: false,
        secret: false,
    },
    KeySpec {
        name: "zone_pattern",
        help: "regular expression searched in zone names (e.g. us-west1-.*); default: every zone",
        required: false,
        secret: false,
    },
    KeySpec {
        name: "tag_value",
        help: "network tag the servers carry",
        required: false,
        secret: false,
    },
    KeySpec {
        name: "labels",
        help: "labels the servers carry, all required: \"k=v,k2=v2\"",
        required: false,
        secret: false,
    },
    KeySpec {
        name: "addr_type",
        help: "private_v4 (default) or public_v4",
        required: false,
        secret: false,
    },
    KeySpec {
        name: "credentials_file",
        help: "service-account key file; default: Application Default Credentials (metadata server included)",
        required: false,
        secret: false,
    },
    KeySpec {
        name: "endpoint",
        help: "Compute API endpoint override (Private Service Connect, tests)",
        required: false,
        secret: false,
    },
];

/// How long one attempt may take, every page included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, PartialEq, Eq)]
enum AddrType {
    PrivateV4,
    PublicV4,
}

fn addr_type(args: &ProviderArgs) -> Result<AddrType, ProviderError> {
    Ok(
        match args.one_of("addr_type", "private_v4", &["private_v4", "public_v4"])? {
            "public_v4" => AddrType::PublicV4,
            _ => AddrType::PrivateV4,
        },
    )
}

fn labels(args: &ProviderArgs) -> Result<BTreeMap<String, String>, ProviderError> {
    Ok(args.key_values("labels")?.into_iter().collect())
}

fn zone_pattern(args: &ProviderArgs) -> Result<Option<regex::Regex>, ProviderError> {
    args.get("zone_pattern")
        .map(|p| {
            regex::Regex::new(p).map_err(|e| {
                ProviderError::BadArgs(format!(
                    "zone_pattern={p:?} is not a regular expression: {e}"
                ))
            })
        })
        .transpose()
}

/// The metadata server's host: `GCE_METADATA_HOST` (as the Google libraries), else the
/// well-known name.
fn metadata_host() -> String {
    std::env::var("GCE_METADATA_HOST").unwrap_or_else(|_| "metadata.google.internal".into())
}

/// The project id from the metadata server (only on GCE, or with `GCE_METADATA_HOST`).
async fn metadata_project() -> Result<String, ProviderError> {
    let host = metadata_host();
    let url = format!("http://{host}/computeMetadata/v1/project/project-id");
    let fail = |why: String| {
        ProviderError::Unreachable(format!(
            "no project_name given and the metadata server ({host}) did not give one: {why}; \
             set project_name=… outside GCE"
        ))
    };
    let resp = reqwest::Client::new()
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let id = resp.text().await.map_err(|e| fail(e.to_string()))?;
    let id = id.trim().to_string();
    if id.is_empty() {
        return Err(fail("an empty answer".into()));
    }
    Ok(id)
}

async fn credentials(
    args: &ProviderArgs,
) -> Result<google_cloud_auth::credentials::Credentials, ProviderError> {
    match args.get("credentials_file") {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                ProviderError::NoCredentials(format!("credentials_file {path:?}: {e}"))
            })?;
            let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                ProviderError::BadArgs(format!(
                    "credentials_file {path:?} is not a JSON key file: {e}"
                ))
            })?;
            google_cloud_auth::credentials::service_account::Builder::new(json)
                .build()
                .map_err(|e| {
                    ProviderError::BadArgs(format!(
                        "credentials_file {path:?} is not a service-account key: {e}"
                    ))
                })
        }
        None => google_cloud_auth::credentials::Builder::default()
            .build()
            .map_err(|e| {
                ProviderError::NoCredentials(format!(
                    "Application Default Credentials: {e}; give credentials_file=… or run on GCE \
                     with a service account"
                ))
            }),
    }
}

/// Sorts a Compute error into the loop's categories, naming the call and the IAM permission.
fn classify(e: &google_cloud_compute_v1::Error, project: &str) -> ProviderError {
    let context = format!("compute.instances.aggregatedList in project {project}");
    let code = e.http_status_code();
    // The loop's decision (slow down, wait for a grant, retry) follows the typed status code,
    // never the error's text.
    let status = e.status().map(|s| s.code);
    if code == Some(429) || status == Some(Code::ResourceExhausted) {
        ProviderError::Throttled(format!("{context}: rate limited (429): {e}"))
    } else if code == Some(403) || status == Some(Code::PermissionDenied) {
        ProviderError::PermissionDenied(format!(
            "{context}: the credentials lack compute.instances.list (roles/compute.viewer): {e}"
        ))
    } else if code == Some(401) || status == Some(Code::Unauthenticated) || e.is_authentication() {
        ProviderError::NoCredentials(format!("{context}: the credentials were refused: {e}"))
    } else if code == Some(404) {
        ProviderError::Other(format!(
            "{context}: no such project (or the Compute API is not enabled): {e}"
        ))
    } else if e.is_connect() || e.is_io() || e.is_timeout() || e.is_transport() {
        ProviderError::Unreachable(format!("{context}: {e}"))
    } else {
        ProviderError::Other(format!("{context}: {e}"))
    }
}

/// The zone's short name from the instance's zone URL.
fn zone_name(inst: &Instance, key: &str) -> String {
    inst.zone
        .as_deref()
        .or(Some(key))
        .and_then(|z| z.rsplit('/').next())
        .unwrap_or_default()
        .to_string()
}

/// Whether `inst` is wanted, and its address.
fn pick(
    inst: &Instance,
    zone: &str,
    pattern: Option<&regex::Regex>,
    tag: Option<&str>,
    want_labels: &BTreeMap<String, String>,
    kind: AddrType,
) -> Option<String> {
    if inst.status != Some(Status::Running) {
        return None;
    }
    if pattern.is_some_and(|p| !p.is_match(zone)) {
        return None;
    }
    if let Some(t) = tag {
        let tags = inst
            .tags
            .as_ref()
            .map(|t| t.items.as_slice())
            .unwrap_or(&[]);
        if !tags.iter().any(|x| x == t) {
            return None;
        }
    }
    if want_labels
        .iter()
        .any(|(k, v)| inst.labels.get(k) != Some(v))
    {
        return None;
    }
    let nic = inst.network_interfaces.first()?;
    match kind {
        AddrType::PrivateV4 => nic.network_ip.clone(),
        AddrType::PublicV4 => nic.access_configs.iter().find_map(|a| a.nat_ip.clone()),
    }
}

impl Provider for Gce {
    fn name(&self) -> &'static str {
        "gce"
    }

    fn keys(&self) -> &'static [KeySpec] {
        KEYS
    }

    fn help(&self) -> &'static str {
        "Discovers RUNNING Compute Engine instances with a network tag and/or labels.\n\
         IAM permission needed: compute.instances.list (e.g. roles/compute.viewer).\n\
         Example: provider=gce project_name=my-project zone_pattern=\"us-central1-.*\" tag_value=consul-server\n\
         Labels: provider=gce labels=\"role=server,cluster=prod\"\n"
    }

    fn cache_for(&self) -> Duration {
        Duration::from_secs(10)
    }

    fn validate(&self, args: &ProviderArgs) -> Result<(), ProviderError> {
        addr_type(args)?;
        zone_pattern(args)?;
        let l = labels(args)?;
        if args.get("tag_value").is_none_or(str::is_empty) && l.is_empty() {
            return Err(ProviderError::BadArgs(
                "give tag_value (a network tag) or labels=\"k=v,…\": discovering every instance of a project is never what you want".into(),
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
            match tokio::time::timeout(ATTEMPT_TIMEOUT, discover(args)).await {
                Ok(r) => r,
                Err(_) => Err(ProviderError::Unreachable(format!(
                    "the Compute API did not answer within {ATTEMPT_TIMEOUT:?}"
                ))),
            }
        }
        .boxed()
    }
}

async fn discover(args: &ProviderArgs) -> Result<Candidates, ProviderError> {
    let kind = addr_type(args)?;
    let pattern = zone_pattern(args)?;
    let want_labels = labels(args)?;
    let tag = args.get("tag_value").filter(|t| !t.is_empty());
    let project = match args.get("project_name") {
        Some(p) => p.to_string(),
        None => metadata_project().await?,
    };
    let mut builder = Instances::builder()
        .with_credentials(credentials(args).await?)
        .with_retry_policy(google_cloud_gax::retry_policy::NeverRetry);
    if let Some(ep) = args.get("endpoint") {
        builder = builder.with_endpoint(ep.trim_end_matches('/'));
    }
    let client = builder
        .build()
        .await
        .map_err(|e| ProviderError::Other(format!("cannot set up the Compute client: {e}")))?;
    // The server keeps only RUNNING instances (less to page through); `pick` checks again.
    let request = client
        .aggregated_list()
        .set_project(project.clone())
        .set_filter("status = \"RUNNING\"")
        .set_return_partial_success(true);
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let page = request
            .clone()
            .set_page_token(token.clone())
            .send()
            .await
            .map_err(|e| classify(&e, &project))?;
        let mut zones: Vec<_> = page.items.iter().collect();
        zones.sort_by(|a, b| a.0.cmp(b.0));
        for (key, scoped) in zones {
            for inst in &scoped.instances {
                let zone = zone_name(inst, key);
                if let Some(a) = pick(inst, &zone, pattern.as_ref(), tag, &want_labels, kind) {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
        }
        match page.next_page_token {
            Some(t) if !t.is_empty() && t != token => token = t,
            _ => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_provider_core::Registry;

    fn parse(s: &str) -> Result<ProviderArgs, ProviderError> {
        let mut r = Registry::new();
        r.register(std::sync::Arc::new(Gce));
        r.parse(s).map(|(_, a)| a)
    }

    #[test]
    fn arguments_are_checked_strictly() {
        assert!(parse("provider=gce tag_value=consul").is_ok());
        assert!(parse("provider=gce labels=\"role=server,env=prod\" zone_pattern=us-.*").is_ok());
        for (bad, needle) in [
            ("provider=gce", "give tag_value"),
            ("provider=gce labels=roleserver", "not key=value"),
            (
                "provider=gce tag_value=a zone_pattern=\"us-(\"",
                "not a regular expression",
            ),
            ("provider=gce tag_value=a addr_type=public_v6", "addr_type"),
            ("provider=gce tag_value=a endpoint=localhost:1", "http://"),
            ("provider=gce tag_value=a zone=us", "zone"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn running_instances_with_the_tag_labels_and_zone_only() {
        let mut inst = Instance::new()
            .set_status(Status::Running)
            .set_zone("https://compute/projects/p/zones/us-central1-a")
            .set_tags(google_cloud_compute_v1::model::Tags::new().set_items(["muster"]))
            .set_labels([("role", "server")])
            .set_network_interfaces([google_cloud_compute_v1::model::NetworkInterface::new()
                .set_network_ip("10.0.0.2")
                .set_access_configs([
                    google_cloud_compute_v1::model::AccessConfig::new().set_nat_ip("34.0.0.2")
                ])]);
        let l: BTreeMap<String, String> = [("role".to_string(), "server".to_string())].into();
        let us = regex::Regex::new("us-central1-.*").unwrap();
        let eu = regex::Regex::new("europe-.*").unwrap();
        let zone = zone_name(&inst, "zones/x");
        assert_eq!(zone, "us-central1-a");
        let p = |inst: &Instance, pat, tag, kind| pick(inst, &zone, pat, tag, &l, kind);
        assert_eq!(
            p(&inst, Some(&us), Some("muster"), AddrType::PrivateV4).as_deref(),
            Some("10.0.0.2")
        );
        assert_eq!(
            p(&inst, None, None, AddrType::PublicV4).as_deref(),
            Some("34.0.0.2")
        );
        assert_eq!(p(&inst, Some(&eu), None, AddrType::PrivateV4), None);
        assert_eq!(p(&inst, None, Some("other"), AddrType::PrivateV4), None);
        inst.labels.insert("role".into(), "client".into());
        assert_eq!(p(&inst, None, None, AddrType::PrivateV4), None);
        inst.labels.insert("role".into(), "server".into());
        inst.status = Some(Status::Terminated);
        assert_eq!(p(&inst, None, None, AddrType::PrivateV4), None);
    }
}
