//! The provider contract: a name, a help text that lists every key, and an async call that turns
//! arguments into candidate addresses. Object-safe, so one registry holds built-in and user
//! providers alike.

use std::time::Duration;

use futures::future::BoxFuture;

use crate::args::ProviderArgs;

/// One key a provider understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpec {
    pub name: &'static str,
    /// What it does, its default, and its accepted values.
    pub help: &'static str,
    pub required: bool,
    /// Redacted in logs and in the canonical form.
    pub secret: bool,
}

/// What a discovery source returned: addresses to hand to the gossip join (`host`, `host:port`
/// or `[v6]:port`; without a port the gossip port is used).
pub type Candidates = Vec<String>;

/// Why a lookup failed, and what the retry loop should do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The arguments are wrong; retrying cannot help. Fix the configuration.
    #[error("bad arguments: {0}")]
    BadArgs(String),
    /// No credentials were found; retried (an instance role may appear a little later).
    #[error("no credentials: {0}")]
    NoCredentials(String),
    /// The credentials lack a permission; retried slowly, an operator must grant it.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// The API or command could not be reached or did not answer; retried.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The API asked us to slow down; retried after at least twice the usual wait.
    #[error("throttled: {0}")]
    Throttled(String),
    /// The environment lacks what only an operator can supply: no region, no credentials
    /// anywhere in the chain, an invalid profile. Said as a configuration error with its fix.
    /// The retry loop still asks again on its schedule, because the fix is often made outside
    /// muster without a restart (an instance role attached, a profile written, the metadata
    /// service reachable a moment after boot) and an agent must heal on its own.
    #[error("configuration error: {0}")]
    Misconfigured(String),
    /// Anything else; retried.
    #[error("{0}")]
    Other(String),
}

impl ProviderError {
    /// Whether the retry loop should try again.
    pub fn retryable(&self) -> bool {
        !matches!(self, ProviderError::BadArgs(_))
    }

    /// Whether an operator must change something for a lookup to succeed (the message says
    /// what); such a lookup is still retried, see [`ProviderError::Misconfigured`].
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            ProviderError::BadArgs(_)
                | ProviderError::Misconfigured(_)
                | ProviderError::PermissionDenied(_)
        )
    }

    /// Whether the loop must slow down beyond its usual schedule.
    pub fn throttled(&self) -> bool {
        matches!(self, ProviderError::Throttled(_))
    }
}

/// A discovery source.
pub trait Provider: Send + Sync {
    /// The `provider=` name.
    fn name(&self) -> &'static str;

    /// Every key, with its meaning, default and constraints.
    fn keys(&self) -> &'static [KeySpec];

    /// Free text shown after the keys: permissions needed, examples.
    fn help(&self) -> &'static str;

    /// How long an answer stays fresh: the loop does not ask again sooner (a cloud API is never
    /// asked more than once per interval while its last answer is fresh).
    fn cache_for(&self) -> Duration {
        Duration::ZERO
    }

    /// Checks values beyond what [`Provider::keys`] says (formats, ranges). Called at start, so
    /// a bad value stops the agent before it binds anything.
    fn validate(&self, _args: &ProviderArgs) -> Result<(), ProviderError> {
        Ok(())
    }

    /// Looks up candidates. "Nothing matched" is `Ok(vec![])`, not an error.
    fn addrs<'a>(
        &'a self,
        args: &'a ProviderArgs,
    ) -> BoxFuture<'a, Result<Candidates, ProviderError>>;
}
