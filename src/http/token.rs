//! The caller's ACL token (docs/acl.md, "Where a token comes from"): `?token=`, then the
//! `X-Consul-Token` header, then `Authorization: Bearer <secret>`, first found wins; none is
//! the default token or anonymous, which the resolver decides. The token is a secret: nothing
//! here logs it, and no error quotes it.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::Response;

use crate::agent::Agent;
use crate::server::acl_check::CALLER;

/// The header Consul's clients send the token in.
pub const TOKEN_HEADER: &str = "x-consul-token";

#[derive(serde::Deserialize)]
struct TokenParam {
    token: Option<String>,
}

/// The token a request carries, if any, in Consul's order (its `parseTokenInternal`):
/// `?token=`, then `X-Consul-Token`, then `Authorization: Bearer <secret>` (exactly a scheme
/// and one value). An empty value counts as none (Consul's clients send an empty header when
/// no token is configured).
pub fn request_token(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let nonempty = |s: &str| {
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_string())
    };
    if let Some(t) = Query::<TokenParam>::try_from_uri(uri)
        .ok()
        .and_then(|q| q.0.token)
        .as_deref()
        .and_then(nonempty)
    {
        return Some(t);
    }
    if let Some(t) = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(nonempty)
    {
        return Some(t);
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let mut parts = v.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(scheme), Some(value), None) if scheme.eq_ignore_ascii_case("bearer") => {
                    nonempty(value)
                }
                _ => None,
            }
        })
}

/// Runs the request as its caller: the token it carries, else the agent's
/// `acl.tokens.default`, else none (anonymous), in [`CALLER`] for every server it reaches.
pub async fn scope(State(agent): State<Arc<Agent>>, req: Request, next: Next) -> Response {
    let token = request_token(req.headers(), req.uri()).or_else(|| {
        agent
            .config
            .acl
            .default_token
            .as_ref()
            .map(|t| t.expose().to_string())
    });
    CALLER.scope(token, next.run(req)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn token(pairs: &[(&str, &str)], uri: &str) -> Option<String> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        request_token(&h, &uri.parse().unwrap())
    }

    #[test]
    fn query_then_header_then_bearer_and_empty_is_none() {
        assert_eq!(
            token(
                &[("X-Consul-Token", "h"), ("Authorization", "Bearer b")],
                "/v1/kv/x?token=q%2Fz"
            ),
            Some("q/z".into())
        );
        assert_eq!(
            token(
                &[("X-Consul-Token", "h"), ("Authorization", "Bearer b")],
                "/v1/kv/x"
            ),
            Some("h".into())
        );
        assert_eq!(
            token(&[("Authorization", "bearer b")], "/v1/kv/x?token="),
            Some("b".into())
        );
        // Not exactly a scheme and one value, or not Bearer: no token.
        assert_eq!(token(&[("Authorization", "Bearer  b")], "/v1/kv/x"), None);
        assert_eq!(
            token(&[("Authorization", "Basic dXNlcjpwdw==")], "/v1/kv/x"),
            None
        );
        assert_eq!(token(&[("X-Consul-Token", " ")], "/v1/kv/x?recurse"), None);
    }
}
