//! ACLs on the server's two doors (docs/acl.md, "On the server port"): a request from the
//! port (with its caller's token, or none: anonymous) and a request of this agent's own HTTP
//! API ([`Server::call_local`], the caller's token in [`CALLER`]) pass the same check before
//! they reach their room, and a filtered read's answer is filtered on the way out. The rules
//! are `acl_check`'s; the tokens are the replicated state's.

use std::sync::Arc;

use crate::acl::DefaultPolicy;

use super::acl_check::{caller_token, needs, visible_keys, Needs, CALLER};
use super::acl_state::{Resolved, ANONYMOUS_SECRET};
use super::api::Leadership;
use super::protocol::{
    AclAnswer, AclQuery, Answer, ApiFailure, KvAnswer, Request, ResolvedToken, Response,
};
use super::Server;

/// A server's ACL settings (from `acl` in the configuration, when enabled).
#[derive(Clone)]
pub struct AclServerConfig {
    /// `acl.default_policy`: what a token gets where no rule matches.
    pub default_policy: DefaultPolicy,
    /// `acl.enable_key_list_policy`: `list` rules let a token list key names.
    pub enable_key_list_policy: bool,
    /// `acl.tokens.initial_management`: the leader creates a management token with it.
    pub initial_management: Option<String>,
    /// `acl.tokens.agent`: the token of this server's own requests to the leader (its
    /// removal from the Raft configuration when it leaves).
    pub agent_token: Option<String>,
}

impl std::fmt::Debug for AclServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclServerConfig")
            .field("default_policy", &self.default_policy)
            .field("enable_key_list_policy", &self.enable_key_list_policy)
            .field(
                "initial_management",
                &self.initial_management.as_ref().map(|_| "hidden"),
            )
            .field("agent_token", &self.agent_token.as_ref().map(|_| "hidden"))
            .finish()
    }
}

/// The answer to `req` that refuses it with `text` (a `Permission denied: …` or `ACL not
/// found`), in the answer type its caller waits for.
pub(super) fn denied(req: &Request, text: String) -> Response {
    match req {
        Request::KvRead(_) => Response::KvRead(Err(ApiFailure::Denied(text))),
        Request::Write(_) | Request::WriteOnce(_) => Response::Write(Err(ApiFailure::Denied(text))),
        Request::CatalogNodes(_) => Response::CatalogNodes(Err(ApiFailure::Denied(text))),
        Request::SnapshotSave => Response::SnapshotSave(Err(ApiFailure::Denied(text))),
        Request::AutopilotState => Response::AutopilotState(Err(text)),
        Request::AclResolve { .. } => Response::AclResolved(Err(text)),
        Request::AclRead(_) => Response::AclRead(Err(ApiFailure::Denied(text))),
        Request::WithToken { request, .. } => denied(request, text),
        // Raft's and the gate's requests need no token and are never refused here; an
        // operator request answers `Done`.
        _ => Response::Done(Err(text)),
    }
}

impl Server {
    /// Serves `req` for the caller holding `secret` (none: the anonymous token): with ACLs,
    /// refused unless the token may do it, and a list answered with what the token may see.
    pub(super) async fn handle_as(
        self: Arc<Self>,
        secret: Option<String>,
        req: Request,
    ) -> Response {
        let Some(acl) = self.cfg.acl.clone() else {
            return CALLER.scope(secret, self.dispatch(req)).await;
        };
        let mut need = needs(&req);
        if let Needs::RemoveServer { id, name } = &mut need {
            *name = self.membership().get_node(&*id).map(|n| n.name.clone());
        }
        let resolved = if need == Needs::Nothing {
            None
        } else {
            match self.resolve(secret.as_deref(), acl.default_policy) {
                Ok(r) => Some(r),
                Err(text) => return denied(&req, text),
            }
        };
        if let Some(r) = &resolved {
            if let Err(text) = need.check(&r.authorizer, &r.accessor_id.to_string()) {
                return denied(&req, text);
            }
            // Consul's list policy: listing a prefix needs `key:list` on it (403 otherwise),
            // then the entries are filtered as without it.
            if let Needs::FilteredKv { prefix, .. } = &need {
                if acl.enable_key_list_policy && !r.authorizer.key_list(prefix) {
                    let p = super::acl_check::Permission {
                        resource: crate::acl::Resource::Key,
                        level: crate::acl::AccessLevel::List,
                        segment: prefix.clone(),
                    };
                    return denied(&req, p.denied(&r.accessor_id.to_string()));
                }
            }
        }
        let answer = CALLER.scope(secret, self.dispatch(req)).await;
        match (resolved, need) {
            (Some(r), Needs::FilteredKv { names_only, .. }) => {
                filter_kv(answer, &r, names_only, acl.enable_key_list_policy)
            }
            (Some(r), Needs::FilteredNodes) => match answer {
                Response::CatalogNodes(Ok((nodes, meta))) => Response::CatalogNodes(Ok((
                    nodes
                        .into_iter()
                        .filter(|n| r.authorizer.node_read(&n.name))
                        .collect(),
                    meta,
                ))),
                other => other,
            },
            _ => answer,
        }
    }

    /// A request of this agent's own HTTP API, checked as the port checks one, for the caller
    /// whose token this task carries ([`CALLER`]).
    pub async fn call_local<A: Answer>(self: &Arc<Self>, req: Request) -> Result<A, ApiFailure> {
        let response = self.clone().handle_as(caller_token(), req).await;
        A::from_response(response)
            .ok_or_else(|| ApiFailure::Unavailable("the server gave an unexpected answer".into()))
    }

    /// The token of `secret` (none: anonymous), from this server's replicated state, through
    /// the cache of resolved tokens: parsing a token's policies is the costly part of a
    /// request with ACLs, and it changes only when the ACL state does.
    fn resolve(&self, secret: Option<&str>, default: DefaultPolicy) -> Result<Resolved, String> {
        let secret = secret.unwrap_or(ANONYMOUS_SECRET);
        let state = self.sm.state.read().expect("sm lock");
        let acl = &state.data.acl;
        let mut cache = self.acl_resolved.lock().expect("acl cache lock");
        if let Some(r) = cache.get(acl.index, secret) {
            return Ok(r);
        }
        let r = acl.resolve(secret, default).map_err(|e| e.to_string())?;
        cache.put(acl.index, secret, r.clone());
        Ok(r)
    }

    /// `AclRead`: policies and tokens, from the leader's state (forwarded there, with the
    /// caller's token, from any other server).
    pub(super) async fn acl_read(&self, q: AclQuery) -> Result<AclAnswer, ApiFailure> {
        if self.cfg.acl.is_none() {
            return Err(ApiFailure::Refused("ACL support disabled".into()));
        }
        match self.leadership() {
            Leadership::Elsewhere => {
                return self
                    .forward(Request::AclRead(q), std::time::Duration::from_secs(10))
                    .await
            }
            Leadership::Unconfirmed => return Err(ApiFailure::NoLeader),
            Leadership::Here => {}
        }
        let state = self.sm.state.read().expect("sm lock");
        let acl = &state.data.acl;
        Ok(match q {
            AclQuery::Policies => AclAnswer::Policies(acl.policies.values().cloned().collect()),
            AclQuery::Policy(id) => AclAnswer::Policy(acl.policies.get(&id).cloned()),
            AclQuery::PolicyByName(name) => {
                AclAnswer::Policy(acl.policies.values().find(|p| p.name == name).cloned())
            }
            AclQuery::Tokens => AclAnswer::Tokens(acl.tokens.values().cloned().collect()),
            AclQuery::Token(id) => AclAnswer::Token(acl.tokens.get(&id).cloned()),
            AclQuery::TokenSelf => {
                let secret = caller_token().unwrap_or_else(|| ANONYMOUS_SECRET.to_string());
                match acl.token_by_secret(&secret) {
                    Some(t) => AclAnswer::Token(Some(t.clone())),
                    None => return Err(ApiFailure::Denied("ACL not found".into())),
                }
            }
        })
    }

    /// The token of `secret` for this agent's own endpoints (`http::authorize`); ACLs must
    /// be on (the caller checks its own configuration first).
    pub fn resolve_caller(&self, secret: &str) -> Result<Resolved, String> {
        let default = self
            .cfg
            .acl
            .as_ref()
            .map_or(DefaultPolicy::Deny, |a| a.default_policy);
        self.resolve(Some(secret), default)
    }

    /// `AclResolve`: the token of `secret` for a client agent, without the secret.
    pub(super) fn acl_resolve(&self, secret: &str) -> Result<ResolvedToken, String> {
        if self.cfg.acl.is_none() {
            return Err("ACL support disabled".into());
        }
        let state = self.sm.state.read().expect("sm lock");
        let (accessor, management, rules) =
            state.data.acl.describe(secret).map_err(|e| e.to_string())?;
        Ok(ResolvedToken {
            accessor_id: accessor.to_string(),
            management,
            rules,
        })
    }
}

/// Resolved tokens by secret, all of them valid for one ACL state index: a change to any
/// policy or token (a higher index) empties the cache, so a deleted token or a narrowed
/// policy takes effect on the next request. Unknown secrets are not kept, and the cache is
/// emptied when it reaches `ResolvedCache::MAX` entries, so a caller trying secrets cannot
/// grow it without bound.
#[derive(Default)]
pub(crate) struct ResolvedCache {
    index: u64,
    tokens: std::collections::HashMap<String, Resolved>,
}

impl ResolvedCache {
    const MAX: usize = 4096;

    fn get(&mut self, index: u64, secret: &str) -> Option<Resolved> {
        if index != self.index {
            self.tokens.clear();
            self.index = index;
            return None;
        }
        self.tokens.get(secret).cloned()
    }

    fn put(&mut self, index: u64, secret: &str, r: Resolved) {
        if index != self.index || self.tokens.len() >= Self::MAX {
            self.tokens.clear();
            self.index = index;
        }
        self.tokens.insert(secret.to_string(), r);
    }
}

/// A KV read's answer with only what `r`'s token may see.
fn filter_kv(answer: Response, r: &Resolved, names_only: bool, list_policy: bool) -> Response {
    match answer {
        Response::KvRead(Ok((KvAnswer::Entries(entries), meta))) => {
            let items = entries
                .iter()
                .map(|(k, _)| k.as_str())
                .zip(entries.iter().cloned());
            let kept = visible_keys(&r.authorizer, items, names_only, list_policy);
            Response::KvRead(Ok((KvAnswer::Entries(kept), meta)))
        }
        Response::KvRead(Ok((KvAnswer::Keys(keys), meta))) => {
            let items = keys.iter().map(|k| k.as_str()).zip(keys.iter().cloned());
            let kept = visible_keys(&r.authorizer, items, names_only, list_policy);
            Response::KvRead(Ok((KvAnswer::Keys(kept), meta)))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::Authorizer;

    fn resolved(n: u128) -> Resolved {
        Resolved {
            accessor_id: uuid::Uuid::from_u128(n),
            authorizer: Authorizer::management(),
            management: true,
        }
    }

    #[test]
    fn the_cache_holds_for_one_acl_index_and_is_bounded() {
        let mut c = ResolvedCache::default();
        assert!(c.get(5, "s").is_none());
        c.put(5, "s", resolved(1));
        assert_eq!(c.get(5, "s").unwrap().accessor_id.as_u128(), 1);
        // Any ACL change (a higher index) forgets every resolution.
        assert!(c.get(6, "s").is_none());
        assert!(c.get(6, "s").is_none());
        for i in 0..ResolvedCache::MAX + 10 {
            c.put(6, &format!("s{i}"), resolved(i as u128));
            assert!(c.tokens.len() <= ResolvedCache::MAX);
        }
    }
}
