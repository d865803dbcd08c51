//! The agent's own endpoints checked against the caller's token (docs/acl.md, "Where it is
//! enforced"): members, self, join, leave, force-leave, the keyring, and the operator
//! endpoints a server agent answers from its own Raft view. What lives on the servers (KV,
//! the catalog, snapshots, ACL objects) is checked there instead.
//!
//! A server agent resolves the token from its own replicated state; a client agent asks a
//! server (`AclResolve`) and keeps the answer for `acl.token_ttl` in its `TokenCache`, and
//! when no server answers, `acl.down_policy` decides (`crate::acl::cache`).

use std::time::Instant;

use axum::http::StatusCode;

use super::ApiError;
use crate::acl::cache::{Lookup, ResolveFailure, Resolved};
use crate::acl::{permission_denied, AccessLevel, Authorizer, Resource};
use crate::agent::Agent;
use crate::server::protocol::caller_token;

/// The secret that names the anonymous token.
const ANONYMOUS: &str = "anonymous";

fn forbidden(text: String) -> ApiError {
    ApiError(StatusCode::FORBIDDEN, text)
}

/// The caller's token resolved, or `None` when ACLs are off on this agent.
pub async fn caller(agent: &Agent) -> Result<Option<Resolved>, ApiError> {
    if !agent.config.acl.enabled {
        return Ok(None);
    }
    let secret = caller_token().unwrap_or_else(|| ANONYMOUS.to_string());
    if let Some(s) = &agent.server {
        let r = s.resolve_caller(&secret).map_err(forbidden)?;
        return Ok(Some(Resolved {
            accessor_id: r.accessor_id.to_string(),
            authorizer: r.authorizer,
        }));
    }
    let now = Instant::now();
    if let Lookup::Fresh(r) = agent
        .acl_cache
        .lock()
        .expect("acl cache lock")
        .lookup(&secret, now)
    {
        return Ok(Some(*r));
    }
    let answer = match agent.client.acl_resolve(&secret).await {
        Ok(Ok(t)) => Ok(Resolved {
            authorizer: Authorizer::from_rules(
                &t.rules,
                agent.config.acl.default_policy,
                t.management,
            ),
            accessor_id: t.accessor_id,
        }),
        Ok(Err(text)) if text == "ACL not found" => Err(ResolveFailure::NotFound),
        Ok(Err(other)) => Err(ResolveFailure::Unreachable(other)),
        Err(e) => Err(ResolveFailure::Unreachable(e.to_string())),
    };
    let settled = agent.acl_cache.lock().expect("acl cache lock").settle(
        &secret,
        answer,
        agent.config.acl.down_policy,
        now,
    );
    settled
        .map(Some)
        .ok_or_else(|| forbidden("ACL not found".into()))
}

/// Refuses with Consul's words unless the caller may `level` on `resource` (at `segment`).
pub async fn require(
    agent: &Agent,
    resource: Resource,
    level: AccessLevel,
    segment: &str,
) -> Result<(), ApiError> {
    match caller(agent).await? {
        None => Ok(()),
        Some(r) if r.authorizer.allowed(resource, level, segment) => Ok(()),
        Some(r) => Err(forbidden(permission_denied(
            &r.accessor_id,
            resource,
            level,
            segment,
        ))),
    }
}
