//! `provider=dns name=consul.internal port=8301`: every A and AAAA record of a name;
//! `type=srv name=_serf._tcp.consul.internal`: every SRV record, each target's addresses with the
//! record's port.
//!
//! A/AAAA without `nameserver` go through the system resolver (getaddrinfo: /etc/hosts, nsswitch,
//! the host's caching resolver), asked at every attempt. SRV lookups, and any lookup with
//! `nameserver=IP[:PORT]`, go through hickory-resolver, one per provider and name server, kept
//! across attempts: its cache keeps each answer for the TTL the zone gave it, so a name is asked
//! again only once its records expire (an answer with TTL 3600 is asked once an hour, one with
//! TTL 5 at most every 5 s). "No such name" and "no records" are an empty answer, not an error.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use futures::future::BoxFuture;
use futures::FutureExt;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;

use crate::args::ProviderArgs;
use crate::provider::{Candidates, KeySpec, Provider, ProviderError};

/// The dns provider, with its resolvers (one per name server; `None`: the system's).
#[derive(Default)]
pub struct Dns {
    resolvers: Mutex<HashMap<Option<SocketAddr>, TokioResolver>>,
}

const KEYS: &[KeySpec] = &[
    KeySpec {
        name: "name",
        help: "the DNS name to resolve (every A/AAAA record is used)",
        required: true,
        secret: false,
    },
    KeySpec {
        name: "port",
        help: "port to join on each address (A/AAAA); default: the gossip port",
        required: false,
        secret: false,
    },
    KeySpec {
        name: "type",
        help: "a (A and AAAA records, the default) or srv (SRV records: targets and ports)",
        required: false,
        secret: false,
    },
    KeySpec {
        name: "nameserver",
        help: "ask this server (IP or IP:PORT, port 53 by default) instead of the system resolver",
        required: false,
        secret: false,
    },
];

fn nameserver(args: &ProviderArgs) -> Result<Option<SocketAddr>, ProviderError> {
    match args.get("nameserver") {
        None => Ok(None),
        Some(s) => s
            .parse::<SocketAddr>()
            .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
            .map(Some)
            .map_err(|_| {
                ProviderError::BadArgs(format!(
                    "nameserver={s:?} is not an IP address (or IP:PORT)"
                ))
            }),
    }
}

fn srv(args: &ProviderArgs) -> Result<bool, ProviderError> {
    match args.get("type").unwrap_or("a") {
        "a" => Ok(false),
        "srv" => Ok(true),
        other => Err(ProviderError::BadArgs(format!(
            "type={other:?}: use a (A/AAAA records) or srv"
        ))),
    }
}

/// How to join `ip` with an optional port, as the join addresses are written.
fn join_addr(ip: IpAddr, port: Option<u16>) -> String {
    match (ip, port) {
        (IpAddr::V6(v6), Some(p)) => format!("[{v6}]:{p}"),
        (IpAddr::V6(v6), None) => format!("[{v6}]"),
        (ip, Some(p)) => format!("{ip}:{p}"),
        (ip, None) => ip.to_string(),
    }
}

fn lookup_failed(name: &str, e: &hickory_resolver::ResolveError) -> Option<ProviderError> {
    if e.is_no_records_found() || e.is_nx_domain() {
        None
    } else {
        Some(ProviderError::Unreachable(format!(
            "cannot resolve {name:?}: {e}"
        )))
    }
}

impl Dns {
    fn resolver(&self, server: Option<SocketAddr>) -> Result<TokioResolver, ProviderError> {
        let mut all = self.resolvers.lock().expect("resolver lock");
        if let Some(r) = all.get(&server) {
            return Ok(r.clone());
        }
        let r = match server {
            Some(sa) => TokioResolver::builder_with_config(
                ResolverConfig::from_parts(
                    None,
                    vec![],
                    NameServerConfigGroup::from_ips_clear(&[sa.ip()], sa.port(), true),
                ),
                TokioConnectionProvider::default(),
            )
            .build(),
            None => TokioResolver::builder_tokio()
                .map_err(|e| {
                    ProviderError::Other(format!(
                        "cannot read the system resolver configuration: {e}"
                    ))
                })?
                .build(),
        };
        all.insert(server, r.clone());
        Ok(r)
    }

    /// Through hickory: SRV, or A/AAAA from a chosen name server.
    async fn lookup(
        &self,
        name: &str,
        srv: bool,
        server: Option<SocketAddr>,
        port: Option<u16>,
    ) -> Result<Candidates, ProviderError> {
        let resolver = self.resolver(server)?;
        let mut out = Vec::new();
        if srv {
            let records = match resolver.srv_lookup(name).await {
                Ok(r) => r,
                Err(e) => return lookup_failed(name, &e).map_or(Ok(out), Err),
            };
            for rec in records.iter() {
                let target = rec.target().to_utf8();
                let ips = match resolver.lookup_ip(target.as_str()).await {
                    Ok(ips) => ips.iter().collect::<Vec<_>>(),
                    Err(e) => match lookup_failed(&target, &e) {
                        Some(err) => return Err(err),
                        None => Vec::new(),
                    },
                };
                for ip in ips {
                    let a = join_addr(ip, Some(rec.port()));
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
            }
        } else {
            match resolver.lookup_ip(name).await {
                Ok(ips) => {
                    for ip in ips.iter() {
                        let a = join_addr(ip, port);
                        if !out.contains(&a) {
                            out.push(a);
                        }
                    }
                }
                Err(e) => {
                    if let Some(err) = lookup_failed(name, &e) {
                        return Err(err);
                    }
                }
            }
        }
        Ok(out)
    }
}

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
        "Resolves a name's A/AAAA records (system resolver, asked at every attempt) or its SRV\n\
         records (type=srv: each target's addresses, the record's port). With nameserver=IP[:PORT],\n\
         or for SRV, answers are kept for their TTL. No permissions needed.\n\
         Example: provider=dns name=consul-servers.service.internal\n\
         SRV: provider=dns type=srv name=_serf._tcp.consul.internal\n"
    }
    fn validate(&self, args: &ProviderArgs) -> Result<(), ProviderError> {
        port(args)?;
        nameserver(args)?;
        if srv(args)? && args.get("port").is_some() {
            return Err(ProviderError::BadArgs(
                "port goes with A/AAAA records; SRV records carry their own port".into(),
            ));
        }
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
            let server = nameserver(args)?;
            let is_srv = srv(args)?;
            if is_srv || server.is_some() {
                return self.lookup(name, is_srv, server, p).await;
            }
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
