//! `provider=static addrs="10.0.0.1 10.0.0.2:8301"`: a fixed list, checked at start. Host names
//! in it are resolved at every join attempt, like any join address.

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::addr::JoinAddr;
use crate::args::ProviderArgs;
use crate::provider::{Candidates, KeySpec, Provider, ProviderError};

pub struct Static;

const KEYS: &[KeySpec] = &[KeySpec {
    name: "addrs",
    help: "addresses separated by spaces or commas: IPv4, [IPv6]:port, host or host:port",
    required: true,
    secret: false,
}];

fn list(args: &ProviderArgs) -> Result<Vec<String>, ProviderError> {
    let raw = args.get("addrs").unwrap_or_default();
    let items: Vec<String> = raw
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    for i in &items {
        JoinAddr::parse(i).map_err(|e| ProviderError::BadArgs(format!("addrs: {e}")))?;
    }
    Ok(items)
}

impl Provider for Static {
    fn name(&self) -> &'static str {
        "static"
    }
    fn keys(&self) -> &'static [KeySpec] {
        KEYS
    }
    fn help(&self) -> &'static str {
        "Returns the listed addresses. No permissions needed.\nExample: provider=static addrs=\"10.0.0.1,10.0.0.2\"\n"
    }
    fn validate(&self, args: &ProviderArgs) -> Result<(), ProviderError> {
        list(args).map(|_| ())
    }
    fn addrs<'a>(
        &'a self,
        args: &'a ProviderArgs,
    ) -> BoxFuture<'a, Result<Candidates, ProviderError>> {
        async move { list(args) }.boxed()
    }
}
