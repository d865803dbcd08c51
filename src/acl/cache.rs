//! A client agent's cache of resolved tokens, and what `down_policy` does when no server can
//! resolve one (docs/acl.md, Resolution). Pure: the caller passes the time and what the
//! servers answered; nothing here asks anyone.
//!
//! Consul's rules, as documented: a resolved token is used for `token_ttl`, then resolved
//! again; when that fails because no server answers, `down_policy` decides: `extend-cache`
//! (and `async-cache`) keeps using the last resolution, however old, and denies a token never
//! resolved; `allow` allows everything; `deny` denies everything. A server's definite answer
//! ("ACL not found") is never overridden by the cache: a deleted token stops working at the
//! next resolution.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Authorizer, DefaultPolicy};

/// What a client agent does when no server can resolve a token (Consul's `down_policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DownPolicy {
    Allow,
    Deny,
    /// Keep using what was resolved before; deny what never was (Consul's default).
    #[default]
    ExtendCache,
    /// Consul's background refresh of the same; muster treats it as `extend-cache`.
    AsyncCache,
}

/// A token resolved by a server: whose it is and what it may do.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The token's public id (denials and logs name it, never the secret).
    pub accessor_id: String,
    pub authorizer: Authorizer,
}

/// What the cache says about a secret before anyone is asked.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Resolved within the TTL: use it.
    Fresh(Box<Resolved>),
    /// Never resolved, or resolved longer ago than the TTL: ask a server.
    Ask,
}

/// Why a server did not give a resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveFailure {
    /// A server answered that no such token exists: definite, never overridden.
    NotFound,
    /// No server could be asked (or none answered): `down_policy` decides.
    Unreachable(String),
}

/// Resolved tokens by secret, with when each was resolved.
#[derive(Debug, Default)]
pub struct TokenCache {
    ttl: Duration,
    entries: HashMap<String, (Resolved, Instant)>,
}

/// Entries beyond this are dropped oldest first, so a caller sending random secrets cannot
/// grow the cache without bound.
pub const MAX_CACHED_TOKENS: usize = 4096;

impl TokenCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: HashMap::new(),
        }
    }

    /// The cached resolution of `secret` if it is younger than the TTL.
    pub fn lookup(&self, secret: &str, now: Instant) -> Lookup {
        match self.entries.get(secret) {
            Some((r, at)) if now.duration_since(*at) < self.ttl => {
                Lookup::Fresh(Box::new(r.clone()))
            }
            _ => Lookup::Ask,
        }
    }

    /// What to use after asking: the server's resolution (kept), or on a failure what
    /// `down` says (`None`: the token is refused, with the failure as the reason).
    pub fn settle(
        &mut self,
        secret: &str,
        answer: Result<Resolved, ResolveFailure>,
        down: DownPolicy,
        now: Instant,
    ) -> Option<Resolved> {
        match answer {
            Ok(r) => {
                if self.entries.len() >= MAX_CACHED_TOKENS && !self.entries.contains_key(secret) {
                    if let Some(oldest) = self
                        .entries
                        .iter()
                        .min_by_key(|(_, (_, at))| *at)
                        .map(|(k, _)| k.clone())
                    {
                        self.entries.remove(&oldest);
                    }
                }
                self.entries.insert(secret.to_string(), (r.clone(), now));
                Some(r)
            }
            Err(ResolveFailure::NotFound) => {
                self.entries.remove(secret);
                None
            }
            Err(ResolveFailure::Unreachable(_)) => match down {
                DownPolicy::ExtendCache | DownPolicy::AsyncCache => {
                    self.entries.get(secret).map(|(r, _)| r.clone())
                }
                DownPolicy::Allow => Some(Resolved {
                    accessor_id: String::new(),
                    authorizer: Authorizer::new([], DefaultPolicy::Allow, false),
                }),
                DownPolicy::Deny => None,
            },
        }
    }

    /// Forgets every resolution (the servers' ACL state changed, or a reload).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(id: &str, rules: &str) -> Resolved {
        let p = super::super::policy::parse(rules).unwrap();
        Resolved {
            accessor_id: id.into(),
            authorizer: Authorizer::new([&p], DefaultPolicy::Deny, false),
        }
    }

    #[test]
    fn fresh_within_the_ttl_then_asked_again() {
        let t0 = Instant::now();
        let mut c = TokenCache::new(Duration::from_secs(30));
        assert!(matches!(c.lookup("s", t0), Lookup::Ask));
        let r = resolved("a1", r#"key_prefix "app/" { policy = "write" }"#);
        assert!(c.settle("s", Ok(r), DownPolicy::ExtendCache, t0).is_some());
        assert!(
            matches!(c.lookup("s", t0 + Duration::from_secs(29)), Lookup::Fresh(r) if r.accessor_id == "a1")
        );
        assert!(matches!(
            c.lookup("s", t0 + Duration::from_secs(30)),
            Lookup::Ask
        ));
    }

    #[test]
    fn down_policy_decides_only_when_no_server_answers() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(600);
        let gone = || Err(ResolveFailure::Unreachable("no server".into()));
        let mut c = TokenCache::new(Duration::from_secs(30));
        c.settle(
            "known",
            Ok(resolved("a1", r#"key "k" { policy = "read" }"#)),
            DownPolicy::ExtendCache,
            t0,
        );
        // extend-cache: the last resolution, however old; a never-resolved token is refused.
        let kept = c
            .settle("known", gone(), DownPolicy::ExtendCache, later)
            .unwrap();
        assert!(kept.authorizer.key_read("k") && !kept.authorizer.key_write("k"));
        assert!(c
            .settle("never", gone(), DownPolicy::ExtendCache, later)
            .is_none());
        assert!(c
            .settle("known", gone(), DownPolicy::AsyncCache, later)
            .is_some());
        // allow and deny: everything, or nothing, cached or not.
        let open = c.settle("never", gone(), DownPolicy::Allow, later).unwrap();
        assert!(open.authorizer.key_write("anything") && open.authorizer.operator_write());
        assert!(c.settle("known", gone(), DownPolicy::Deny, later).is_none());
        // A definite "not found" is never overridden by what was cached.
        assert!(c
            .settle(
                "known",
                Err(ResolveFailure::NotFound),
                DownPolicy::ExtendCache,
                later
            )
            .is_none());
        assert!(c
            .settle("known", gone(), DownPolicy::ExtendCache, later)
            .is_none());
    }

    #[test]
    fn the_cache_is_bounded() {
        let t0 = Instant::now();
        let mut c = TokenCache::new(Duration::from_secs(30));
        for i in 0..MAX_CACHED_TOKENS + 10 {
            let at = t0 + Duration::from_millis(i as u64);
            c.settle(
                &format!("s{i}"),
                Ok(resolved("a", r#"operator = "read""#)),
                DownPolicy::Deny,
                at,
            );
        }
        assert_eq!(c.entries.len(), MAX_CACHED_TOKENS);
        assert!(
            matches!(c.lookup("s0", t0), Lookup::Ask),
            "the oldest went first"
        );
    }
}
