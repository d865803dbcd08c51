//! `GET /v1/agent/monitor?loglevel=LEVEL[&logjson]` (Consul's; `agent:read` with ACLs): the
//! agent's log lines as they are logged, one per line, until the caller hangs up
//! (`crate::monitor`; docs/configuration.md, "Monitor"). Lines below the agent's own
//! `log_level` are not produced at all, so a monitor asking for more detail gets a first line
//! saying so and what to change.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tracing::Level;

use super::{authorize, ApiError};
use crate::acl::{AccessLevel, Resource};
use crate::agent::Agent;

pub fn routes() -> Router<Arc<Agent>> {
    Router::new().route("/v1/agent/monitor", get(monitor))
}

#[derive(Deserialize)]
struct MonitorQuery {
    loglevel: Option<String>,
    logjson: Option<String>,
}

/// A level's name as Consul's monitor takes it (`err` included), in any case.
fn level(name: &str) -> Option<Level> {
    match name.to_ascii_lowercase().as_str() {
        "trace" => Some(Level::TRACE),
        "debug" => Some(Level::DEBUG),
        "info" => Some(Level::INFO),
        "warn" | "warning" => Some(Level::WARN),
        "err" | "error" => Some(Level::ERROR),
        _ => None,
    }
}

async fn monitor(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<MonitorQuery>,
) -> Result<Response, ApiError> {
    authorize::require(
        &agent,
        Resource::Agent,
        AccessLevel::Read,
        &agent.config.node_name,
    )
    .await?;
    let wanted = match q.loglevel.as_deref().filter(|l| !l.is_empty()) {
        None => Level::INFO,
        Some(name) => level(name).ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("loglevel {name:?} is not a level; use trace, debug, info, warn or error"),
            )
        })?,
    };
    // Consul takes `?logjson` with or without a value.
    let json = q
        .logjson
        .as_deref()
        .is_some_and(|v| v.is_empty() || v == "true" || v == "1");
    let Some(rx) = crate::monitor::subscribe() else {
        return Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "this agent's logging was not set up by `muster agent`; no lines to stream".into(),
        ));
    };
    let produced = level(agent.config_in_force().log_level.as_directive()).unwrap_or(Level::INFO);
    let mut first = Vec::new();
    if wanted > produced {
        let (produced, wanted) = (
            produced.as_str().to_ascii_lowercase(),
            wanted.as_str().to_ascii_lowercase(),
        );
        first.push(format!(
            "(this agent logs at {produced} and above; {wanted} lines are not produced: set \
             log_level = \"{wanted}\" and reload to see them)\n"
        ));
    }
    let head = futures::stream::iter(first.into_iter().map(|l| Ok(Bytes::from(l))));
    let lines = futures::stream::unfold(rx, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(line) if line.level <= wanted => {
                    let mut text = if json { line.json() } else { line.text() };
                    text.push('\n');
                    return Some((Ok::<_, Infallible>(Bytes::from(text)), rx));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => {
                    let text = format!("({n} lines dropped: this monitor fell behind)\n");
                    return Some((Ok(Bytes::from(text)), rx));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    use futures::StreamExt;
    let body = Body::from_stream(head.chain(lines));
    Response::builder()
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
