//! The caller's ACL token (docs/acl.md, "Where a token comes from"): the `X-Consul-Token`
//! header, then `Authorization: Bearer <secret>`, then `?token=`, first found wins; none is
//! the default token or anonymous, which the resolver decides. The token is a secret: nothing
//! here logs it, and no error quotes it.

use axum::extract::Query;
use axum::http::{header, HeaderMap, Uri};

/// The header Consul's clients send the token in.
pub const TOKEN_HEADER: &str = "x-consul-token";

#[derive(serde::Deserialize)]
struct TokenParam {
    token: Option<String>,
}

/// The token a request carries, if any. An empty value counts as none (Consul's clients send
/// an empty header when no token is configured).
pub fn request_token(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    let nonempty = |s: &str| {
        let s = s.trim();
        (!s.is_empty()).then(|| s.to_string())
    };
    if let Some(t) = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(nonempty)
    {
        return Some(t);
    }
    if let Some(t) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(rest)
        })
        .and_then(nonempty)
    {
        return Some(t);
    }
    Query::<TokenParam>::try_from_uri(uri)
        .ok()
        .and_then(|q| q.0.token)
        .as_deref()
        .and_then(nonempty)
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
    fn header_then_bearer_then_query_and_empty_is_none() {
        assert_eq!(
            token(
                &[("X-Consul-Token", "h"), ("Authorization", "Bearer b")],
                "/v1/kv/x?token=q"
            ),
            Some("h".into())
        );
        assert_eq!(
            token(&[("Authorization", "bearer  b ")], "/v1/kv/x?token=q"),
            Some("b".into())
        );
        assert_eq!(
            token(
                &[("Authorization", "Basic dXNlcjpwdw==")],
                "/v1/kv/x?token=q%2Fz"
            ),
            Some("q/z".into())
        );
        assert_eq!(token(&[("X-Consul-Token", " ")], "/v1/kv/x?token="), None);
        assert_eq!(token(&[], "/v1/kv/x?recurse"), None);
    }
}
