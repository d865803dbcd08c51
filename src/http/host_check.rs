//! The Host check (docs/security.md, Host check): the API answers only requests whose `Host`
//! header is an IP literal, `localhost`, this agent's node name, or a name in
//! `http_allowed_hosts`. A web page the operator visits can make the browser send requests
//! to `127.0.0.1:8500`, but only under the page's own host name (DNS rebinding), which this
//! refuses; tools that dial an address (the CLI, curl, client libraries) send the address.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::agent::Agent;

/// The host part of a `Host` header value: without the port, IPv6 without its brackets,
/// lower case, without a trailing dot.
pub fn host_of(value: &str) -> String {
    let v = value.trim();
    let host = if let Some(rest) = v.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match v.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => h,
            _ => v,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `host` (as [`host_of`] gives it) may address this agent.
pub fn allowed(host: &str, node_name: &str, names: &[String]) -> bool {
    host.parse::<IpAddr>().is_ok()
        || host == "localhost"
        || host == node_name.to_ascii_lowercase()
        || names.iter().any(|n| n == host)
}

/// Refuses a request whose `Host` names this agent by no name it has (403, the fix named).
/// A request without a `Host` header (HTTP/1.0 tools) passes: browsers always send one.
pub async fn check(State(agent): State<Arc<Agent>>, req: Request, next: Next) -> Response {
    let Some(value) = req.headers().get(header::HOST) else {
        return next.run(req).await;
    };
    let Ok(value) = value.to_str() else {
        return ApiError(
            StatusCode::BAD_REQUEST,
            "the Host header is not text".into(),
        )
        .into_response();
    };
    let host = host_of(value);
    let c = &agent.config;
    if allowed(&host, &c.node_name, &c.http_allowed_hosts) {
        return next.run(req).await;
    }
    let shown: String = host.chars().take(100).collect();
    ApiError(
        StatusCode::FORBIDDEN,
        format!(
            "Host {shown:?} is not an IP address nor a name of this agent (localhost, {}); \
             to reach the agent under that name, add it to http_allowed_hosts \
             (-http-allowed-host)",
            c.node_name
        ),
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_localhost_the_node_name_and_listed_names_pass() {
        let names = vec!["muster.internal".to_string()];
        for (value, ok) in [
            ("127.0.0.1:8500", true),
            ("10.1.2.3", true),
            ("[::1]:8500", true),
            ("[fe80::1]", true),
            ("localhost:8500", true),
            ("LOCALHOST.", true),
            ("Node-1:8500", true),
            ("muster.internal:8501", true),
            ("attacker.example:8500", false),
            ("127.0.0.1.attacker.example", false),
            ("node-1.attacker.example", false),
            ("", false),
        ] {
            assert_eq!(
                allowed(&host_of(value), "node-1", &names),
                ok,
                "{value:?} → {:?}",
                host_of(value)
            );
        }
    }
}
