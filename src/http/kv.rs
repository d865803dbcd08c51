//! `/v1/kv/*`: Consul's KV API (docs/reference/consul.md, docs/state.md).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use base64::Engine;
use serde_json::json;

use super::ApiError;
use crate::agent::Agent;
use crate::duration::parse_go_duration;
use crate::server::api::blocking_wait;
use crate::server::protocol::{ApiFailure, Consistency, KvAnswer, KvQuery, ReadMeta, ReadRequest};
use crate::server::state::{check_sizes, StateCommand, MAX_VALUE};

pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
        .route("/v1/kv/", any(kv_root))
        .route("/v1/kv/{*key}", any(kv))
}

type Params = HashMap<String, String>;

async fn kv_root(
    state: State<Arc<Agent>>,
    method: Method,
    q: Query<Params>,
    body: Body,
) -> Response {
    kv(state, method, Path(String::new()), q, body).await
}

async fn kv(
    State(agent): State<Arc<Agent>>,
    method: Method,
    Path(key): Path<String>,
    Query(q): Query<Params>,
    body: Body,
) -> Response {
    let started = std::time::Instant::now();
    let label: &'static str = match method {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        _ => "other",
    };
    let r = match method {
        Method::GET => get(&agent, key, &q).await,
        Method::PUT => put(&agent, key, &q, body).await,
        Method::DELETE => delete(&agent, key, &q).await,
        m => Err(ApiError(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("method {m} is not allowed on /v1/kv/"),
        )),
    };
    let answer = r.unwrap_or_else(|e| e.into_response());
    // docs/metrics.md: Consul's `kvs` names, by method and answer code.
    let code = answer.status().as_u16().to_string();
    metrics::counter!("muster.kvs.request", "method" => label, "code" => code).increment(1);
    metrics::histogram!("muster.kvs.request_time", "method" => label)
        .record(started.elapsed().as_secs_f64() * 1000.0);
    answer
}

/// A query flag is on when present without a value, or with a true-ish one (Consul's rule).
fn flag(q: &Params, name: &str) -> bool {
    q.get(name)
        .is_some_and(|v| v.is_empty() || v == "true" || v == "1")
}

fn number(q: &Params, name: &str) -> Result<Option<u64>, ApiError> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("Invalid {name} parameter: {v:?} is not a number"),
            )
        }),
    }
}

fn consistency(q: &Params) -> Result<Consistency, ApiError> {
    match (flag(q, "stale"), flag(q, "consistent")) {
        (true, true) => Err(ApiError(
            StatusCode::BAD_REQUEST,
            "Cannot specify ?stale with ?consistent, conflicting semantics.".into(),
        )),
        (true, false) => Ok(Consistency::Stale),
        (false, true) => Ok(Consistency::Consistent),
        (false, false) => Ok(Consistency::Default),
    }
}

/// A request the cluster could not serve: a 500 with the failure's one line.
pub fn failure(e: ApiFailure) -> ApiError {
    let status = match e {
        ApiFailure::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        ApiFailure::Denied(_) => StatusCode::FORBIDDEN,
        ApiFailure::Refused(_) => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    ApiError(status, e.to_string())
}

/// Sets `X-Consul-Index`, `X-Consul-KnownLeader` and `X-Consul-LastContact`.
pub fn meta_headers(h: &mut HeaderMap, m: &ReadMeta) {
    let put = |h: &mut HeaderMap, k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    put(h, "X-Consul-Index", m.index.max(1).to_string());
    put(h, "X-Consul-KnownLeader", m.known_leader.to_string());
    put(h, "X-Consul-LastContact", m.last_contact_ms.to_string());
}

/// The blocking-query parameters: the index to pass and how long to wait for it.
pub fn blocking(q: &Params) -> Result<(u64, u64), ApiError> {
    let index = number(q, "index")?.unwrap_or(0);
    let wait = match q.get("wait") {
        None => None,
        Some(w) => Some(parse_go_duration(w).map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("Invalid wait parameter: {e}"),
            )
        })?),
    };
    let wait_ms = if index > 0 {
        blocking_wait(wait).as_millis() as u64
    } else {
        0
    };
    Ok((index, wait_ms))
}

async fn get(agent: &Agent, key: String, q: &Params) -> Result<Response, ApiError> {
    let recurse = flag(q, "recurse");
    let keys = q.contains_key("keys");
    if key.is_empty() && !recurse && !keys {
        return Err(ApiError(StatusCode::BAD_REQUEST, "Missing key name".into()));
    }
    let separator = q.get("separator").or_else(|| q.get("seperator")).cloned();
    let query = if keys {
        KvQuery::Keys {
            prefix: key.clone(),
            separator,
        }
    } else if recurse {
        KvQuery::Recurse(key.clone())
    } else {
        KvQuery::Get(key.clone())
    };
    let (min_index, wait_ms) = blocking(q)?;
    let req = ReadRequest {
        query,
        consistency: consistency(q)?,
        min_index,
        wait_ms,
    };
    let (answer, meta) = agent.client.kv_read(req).await.map_err(failure)?;
    let mut headers = HeaderMap::new();
    meta_headers(&mut headers, &meta);
    let resp = match answer {
        KvAnswer::Keys(list) => {
            // Consul: `[]` at the root, 404 for an empty non-root prefix.
            if list.is_empty() && !key.is_empty() {
                (StatusCode::NOT_FOUND, headers, "").into_response()
            } else {
                (headers, axum::Json(list)).into_response()
            }
        }
        KvAnswer::Entries(entries) if entries.is_empty() => {
            (StatusCode::NOT_FOUND, headers, "").into_response()
        }
        KvAnswer::Entries(entries) if flag(q, "raw") && !recurse => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            headers.insert(
                "X-Content-Type-Options",
                HeaderValue::from_static("nosniff"),
            );
            headers.insert(
                "Content-Security-Policy",
                HeaderValue::from_static("sandbox"),
            );
            (headers, entries[0].1.value.clone()).into_response()
        }
        KvAnswer::Entries(entries) => {
            let b64 = base64::engine::general_purpose::STANDARD;
            let out: Vec<_> = entries
                .iter()
                .map(|(k, e)| {
                    json!({
                        "LockIndex": e.lock_index,
                        "Key": k,
                        "Flags": e.flags,
                        "Value": if e.value.is_empty() { serde_json::Value::Null } else { json!(b64.encode(&e.value)) },
                        "CreateIndex": e.create_index,
                        "ModifyIndex": e.modify_index,
                    })
                })
                .collect();
            (headers, axum::Json(out)).into_response()
        }
    };
    Ok(resp)
}

/// Reads at most `limit` bytes of body; more is a 413 naming both sizes.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body too large, max size: {limit} bytes"),
        )
    })
}

async fn put(agent: &Agent, key: String, q: &Params, body: Body) -> Result<Response, ApiError> {
    for conflicting in ["acquire", "release"] {
        if q.contains_key(conflicting) {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("?{conflicting} needs sessions, which muster does not implement"),
            ));
        }
    }
    if key.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "Missing key name".into()));
    }
    let value = read_body(body, MAX_VALUE).await?;
    check_sizes(&key, value.len())
        .map_err(|e| ApiError(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))?;
    let flags = number(q, "flags")?.unwrap_or(0);
    let cas = number(q, "cas")?;
    let outcome = agent
        .client
        .write(StateCommand::KvSet {
            key,
            value: value.to_vec(),
            flags,
            cas,
        })
        .await
        .map_err(failure)?;
    Ok(axum::Json(outcome.ok).into_response())
}

async fn delete(agent: &Agent, key: String, q: &Params) -> Result<Response, ApiError> {
    let recurse = flag(q, "recurse");
    let cas = number(q, "cas")?;
    if recurse && cas.is_some() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "Conflicting flags: cas=, recurse".into(),
        ));
    }
    if key.is_empty() && !recurse {
        return Err(ApiError(StatusCode::BAD_REQUEST, "Missing key name".into()));
    }
    let outcome = agent
        .client
        .write(StateCommand::KvDelete { key, recurse, cas })
        .await
        .map_err(failure)?;
    Ok(axum::Json(outcome.ok).into_response())
}
