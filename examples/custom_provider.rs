//! A discovery provider of your own, plugged into muster without changing muster.
//!
//! `provider=envlist var=NAME` returns the addresses listed (comma-separated) in an environment
//! variable. This program registers it and then runs muster's own command line, so that
//!
//! ```sh
//! SEEDS=127.0.0.2,127.0.0.3 custom_provider discover "provider=envlist var=SEEDS"
//! custom_provider agent -data-dir /tmp/a -bind 127.0.0.1 -retry-join "provider=envlist var=SEEDS"
//! ```
//!
//! both work. `cargo test` builds it, and tests/providers.rs runs it.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use muster_provider_core::{Candidates, KeySpec, Provider, ProviderArgs, ProviderError};

struct EnvList;

const KEYS: &[KeySpec] = &[KeySpec {
    name: "var",
    help: "the environment variable holding comma-separated addresses",
    required: true,
    secret: false,
}];

impl Provider for EnvList {
    fn name(&self) -> &'static str {
        "envlist"
    }

    fn keys(&self) -> &'static [KeySpec] {
        KEYS
    }

    fn help(&self) -> &'static str {
        "Reads addresses from an environment variable of the agent's process.\n"
    }

    fn validate(&self, args: &ProviderArgs) -> Result<(), ProviderError> {
        let var = args.get("var").unwrap_or_default();
        if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ProviderError::BadArgs(format!(
                "var={var:?} is not an environment variable name"
            )));
        }
        Ok(())
    }

    fn addrs<'a>(
        &'a self,
        args: &'a ProviderArgs,
    ) -> BoxFuture<'a, Result<Candidates, ProviderError>> {
        async move {
            let var = args.get("var").unwrap_or_default();
            let value = std::env::var(var).unwrap_or_default();
            Ok(value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect())
        }
        .boxed()
    }
}

fn main() -> std::process::ExitCode {
    muster::join::register_provider(Arc::new(EnvList));
    muster::cli::run(std::env::args_os().collect())
}
