//! The HTTP API, in Consul's shapes so that tools written for Consul work against muster.
//!
//! # Layout
//! - [`acl`]: `/v1/acl/*` — bootstrap, policies, tokens (docs/acl.md).
//! - [`authorize`]: the agent's own endpoints checked against the caller's token.
//! - [`agent`]: `/v1/agent/*` — members, join, leave, force-leave, self.
//! - [`autopilot`]: `/v1/operator/autopilot/*` — settings, health, state.
//! - [`keyring`]: `/v1/operator/keyring` — the gossip keyring on every member.
//! - [`metrics`]: `/v1/agent/metrics` — Consul's JSON, or Prometheus text (docs/metrics.md).
//! - [`kv`]: `/v1/kv/*` — Consul's KV API with blocking queries and consistency modes.
//! - [`catalog`]: `/v1/catalog/nodes`, the catalog of nodes.
//! - [`host_check`]: the Host check in front of every endpoint (DNS rebinding).
//! - [`https`]: the same API over TLS (`ports.https`), handshakes off the accept loop.
//! - [`snapshot`]: `/v1/snapshot` — operator backup and restore.
//! - [`token`]: the caller's ACL token (header, bearer, query), for the ACLs of docs/acl.md.
//! - [`status`]: `/v1/status/*` and `/v1/operator/raft/*` — leader, peers, configuration.
//!
//! Errors are plain text with a 4xx (the request is wrong) or 5xx (the agent could not do it)
//! status, one line that names the culprit, as Consul answers.

pub mod acl;
pub mod agent;
pub mod authorize;
pub mod autopilot;
pub mod catalog;
pub mod host_check;
pub mod https;
pub mod keyring;
pub mod kv;
pub mod metrics;
pub mod monitor;
pub mod snapshot;
pub mod status;
pub mod token;

use std::sync::Arc;

use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::net::TcpListener;

use crate::agent::Agent;

/// An error answer: status and one line of text.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

/// A server operation that failed (remove a peer, autopilot's report): the agent could not
/// do it, so a 500 with the error's one line.
impl From<crate::server::ServerError> for ApiError {
    fn from(e: crate::server::ServerError) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, format!("{}\n", self.1)).into_response()
    }
}

/// The whole API.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .merge(agent::routes())
        .merge(acl::routes())
        .merge(status::routes())
        .merge(autopilot::routes())
        .merge(keyring::routes())
        .merge(kv::routes())
        .merge(metrics::routes())
        .merge(monitor::routes())
        .merge(catalog::routes())
        .merge(snapshot::routes())
        .fallback(unknown_endpoint)
        .method_not_allowed_fallback(wrong_method)
        .layer(axum::middleware::from_fn_with_state(
            agent.clone(),
            token::scope,
        ))
        .layer(axum::middleware::from_fn_with_state(
            agent.clone(),
            host_check::check,
        ))
        .with_state(agent)
}

async fn unknown_endpoint(uri: Uri) -> ApiError {
    ApiError(
        StatusCode::NOT_FOUND,
        format!("unknown endpoint {}", uri.path()),
    )
}

async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    ApiError(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

/// Serves the API on `listener` until the agent stops; in-flight requests finish first.
pub fn serve(agent: Arc<Agent>, listener: TcpListener) {
    let app = router(agent.clone());
    tokio::spawn(async move {
        let stop = async move {
            agent.stopped().await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "HTTP API stopped");
        }
    });
}
