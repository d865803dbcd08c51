//! Providers by name, and strict argument checking: an unknown provider lists the known ones, an
//! unknown key names the nearest valid one, a missing required key says so. Nothing falls back
//! silently.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::args::{redact, ProviderArgs};
use crate::provider::{Provider, ProviderError};

/// Providers muster knows of but that this build does not contain (cargo features).
const NOT_COMPILED: &[(&str, &str)] = &[("aws", "aws"), ("gce", "gce")];

/// A `retry_join` provider string that the registry refuses. Not retryable: the operator fixes
/// the entry (the message names it, secrets hidden, and says why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("retry_join {entry:?}: {source}")]
pub struct EntryError {
    /// The entry as written, with secret-looking values hidden ([`redact`]).
    pub entry: String,
    /// Why it is refused (always [`ProviderError::BadArgs`] from [`Registry::parse`]).
    pub source: ProviderError,
}

/// A set of providers, keyed by name.
#[derive(Clone, Default)]
pub struct Registry {
    providers: BTreeMap<&'static str, Arc<dyn Provider>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in providers of this crate: static, dns, exec.
    pub fn with_builtins() -> Self {
        let mut r = Self::new();
        r.register(Arc::new(crate::static_provider::Static));
        r.register(Arc::new(crate::dns::Dns::default()));
        r.register(Arc::new(crate::exec::Exec));
        r
    }

    /// Adds (or replaces) a provider; a user's own crate calls this to plug one in.
    pub fn register(&mut self, p: Arc<dyn Provider>) {
        self.providers.insert(p.name(), p);
    }

    /// Names of the registered providers, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.providers.keys().copied().collect()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.get(name)
    }

    /// Parses and checks a provider string against its provider's keys.
    pub fn parse(&self, entry: &str) -> Result<(Arc<dyn Provider>, ProviderArgs), ProviderError> {
        let mut args =
            ProviderArgs::parse(entry).map_err(|e| ProviderError::BadArgs(e.to_string()))?;
        let Some(p) = self.providers.get(args.provider.as_str()).cloned() else {
            if let Some((_, feature)) = NOT_COMPILED.iter().find(|(n, _)| *n == args.provider) {
                return Err(ProviderError::BadArgs(format!(
                    "provider {:?} is not compiled into this build (cargo feature {feature:?}); known providers: {}",
                    args.provider,
                    self.names().join(", ")
                )));
            }
            return Err(ProviderError::BadArgs(format!(
                "unknown provider {:?}{}; known providers: {}",
                args.provider,
                nearest(&args.provider, &self.names()),
                self.names().join(", ")
            )));
        };
        let keys = p.keys();
        let valid: Vec<&str> = keys.iter().map(|k| k.name).collect();
        for k in args.args.keys() {
            if !valid.contains(&k.as_str()) {
                return Err(ProviderError::BadArgs(format!(
                    "provider {} has no key {k:?}{}; its keys: {} (see `muster discover -help-provider {}`)",
                    p.name(),
                    nearest(k, &valid),
                    valid.join(", "),
                    p.name()
                )));
            }
        }
        for k in keys.iter().filter(|k| k.required) {
            if !args.args.contains_key(k.name) {
                return Err(ProviderError::BadArgs(format!(
                    "provider {} needs {}=…: {}",
                    p.name(),
                    k.name,
                    k.help
                )));
            }
        }
        args.secret_keys = keys
            .iter()
            .filter(|k| k.secret)
            .map(|k| k.name.to_string())
            .collect();
        p.validate(&args)?;
        Ok((p, args))
    }

    /// [`Registry::parse`] for one `retry_join` entry: a refusal names the entry (redacted).
    pub fn parse_entry(
        &self,
        entry: &str,
    ) -> Result<(Arc<dyn Provider>, ProviderArgs), EntryError> {
        self.parse(entry).map_err(|source| EntryError {
            entry: redact(entry),
            source,
        })
    }

    /// The help of one provider: every key, then its free text.
    pub fn help(&self, name: &str) -> Option<String> {
        let p = self.providers.get(name)?;
        let mut out = format!("provider={}\n\n", p.name());
        for k in p.keys() {
            let flags = match (k.required, k.secret) {
                (true, true) => " (required, secret)",
                (true, false) => " (required)",
                (false, true) => " (secret)",
                (false, false) => "",
            };
            out.push_str(&format!("  {}{flags}\n      {}\n", k.name, k.help));
        }
        out.push('\n');
        out.push_str(p.help());
        Some(out)
    }
}

fn nearest(input: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(input, k), *k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 3))
        .min()
        .map(|(_, k)| format!(" (did you mean {k:?}?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parsing_suggests_the_fix() {
        let r = Registry::with_builtins();
        let e = r.parse("provider=dsn name=x").err().unwrap().to_string();
        assert!(
            e.contains("unknown provider \"dsn\"")
                && e.contains("did you mean \"dns\"")
                && e.contains("exec"),
            "{e}"
        );
        let e = r.parse("provider=dns nmae=x").err().unwrap().to_string();
        assert!(
            e.contains("no key \"nmae\"") && e.contains("did you mean \"name\""),
            "{e}"
        );
        let e = r.parse("provider=dns").err().unwrap().to_string();
        assert!(e.contains("needs name="), "{e}");
        let e = r
            .parse("provider=aws tag_key=a tag_value=b")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not compiled into this build"), "{e}");
        assert!(r.parse("provider=dns name=localhost").is_ok());
        let e = r
            .parse_entry("provider=nope secret_key=S3CR3T")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.starts_with(
                "retry_join \"provider=nope secret_key=hidden\": bad arguments: unknown provider"
            ),
            "{e}"
        );
        assert!(r.help("exec").unwrap().contains("command (required)"));
    }
}
