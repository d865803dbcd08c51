//! `provider=dns name=consul.internal port=8301`: every A and AAAA record of a name, looked up
//! through the system resolver at every attempt (so the resolver's TTLs decide freshness).
//! SRV records are not read yet (see docs/providers.md).

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::args::ProviderArgs;
use crate::provider::{Candidates, KeySpec, Provider, ProviderError};

pub struct Dns;

const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "name",
        help: "the DNS name to resolve (every A/AAAA record is used)",
        required: true,
        secret: false,
    },
    KeySpec {
        name: "port",
        help: "port to join on each address; default: the gossip port",
        required: false,
        secret: false,
    },
];

fn port(args: &ProviderArgs) -> Result<Option<u16>, ProviderError> {
    match args.get("port") {
        None => Ok(None),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(ProviderError::BadArgs(format!(
                "port={p:?} is not a port; use 1 to 65535"
            ))),
        },
    }
}

impl Provider for Dns {
    fn name(&self) -> &'static str {
        "dns"
    }
    fn keys(&self) -> &'static [KeySpec] {
        KEYS
    }
    fn help(&self) -> &'static str {
        "Resolves the name at every attempt through the system resolver. No permissions needed.\n\
         Example: provider=dns name=consul-servers.service.internal\n"
    }
    fn validate(&self, args: &ProviderArgs) -> Result<(), ProviderError> {
        port(args)?;
        let name = args.get("name").unwrap_or_default();
        if name.is_empty()
            || name
                .chars()
                .any(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        {
            return Err(ProviderError::BadArgs(format!(
                "name={name:?} is not a DNS name"
            )));
        }
        Ok(())
    }
    fn addrs<'a>(
        &'a self,
        args: &'a ProviderArgs,
    ) -> BoxFuture<'a, Result<Candidates, ProviderError>> {
        async move {
            let name = args.get("name").unwrap_or_default();
            let p = port(args)?;
            let found = tokio::net::lookup_host((name, p.unwrap_or(1)))
                .await
                .map_err(|e| ProviderError::Unreachable(format!("cannot resolve {name:?}: {e}")))?;
            let mut out: Vec<String> = Vec::new();
            for sa in found {
                let s = match p {
                    Some(_) => sa.to_string(),
                    None if sa.is_ipv6() => format!("[{}]", sa.ip()),
                    None => sa.ip().to_string(),
                };
                if !out.contains(&s) {
                    out.push(s);
                }
            }
            Ok(out)
        }
        .boxed()
    }
}
