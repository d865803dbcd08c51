//! `/v1/operator/autopilot/*`: autopilot's settings and its view of the servers, in Consul's
//! JSON shapes (durations as Go duration strings, as Consul's API writes them).

use crate::acl::{AccessLevel, Resource};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::ApiError;
use crate::agent::Agent;
use crate::duration::{format_go_duration, parse_go_duration};
use crate::server::autopilot::AutopilotConfig;
use crate::server::state::StateCommand;

pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
        .route(
            "/v1/operator/autopilot/configuration",
            get(get_config).put(set_config),
        )
        .route("/v1/operator/autopilot/health", get(health))
        .route("/v1/operator/autopilot/state", get(state))
}

fn server_only(agent: &Agent) -> Result<&Arc<crate::server::Server>, ApiError> {
    agent.server.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "this agent is a client; ask a server (muster operator autopilot … -http-addr SERVER:8500)"
                .into(),
        )
    })
}

fn config_json(c: &AutopilotConfig, index: u64) -> Value {
    json!({
        "CleanupDeadServers": c.cleanup_dead_servers,
        "LastContactThreshold": format_go_duration(c.last_contact_threshold),
        "MaxTrailingLogs": c.max_trailing_logs,
        "MinQuorum": c.min_quorum,
        "ServerStabilizationTime": format_go_duration(c.server_stabilization_time),
        "RedundancyZoneTag": "",
        "DisableUpgradeMigration": false,
        "UpgradeVersionTag": "",
        "CreateIndex": index,
        "ModifyIndex": index,
    })
}

async fn get_config(State(agent): State<Arc<Agent>>) -> Result<Json<Value>, ApiError> {
    let s = server_only(&agent)?;
    super::authorize::require(&agent, Resource::Operator, AccessLevel::Read, "").await?;
    let (c, index) = s.autopilot_config();
    Ok(Json(config_json(&c, index)))
}

fn bad(msg: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, msg)
}

/// Why an autopilot setting in a request body is refused. The answer is a 400 with this
/// message; the caller fixes the field it names and sends the request again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("CleanupDeadServers must be true or false")]
    NotABool,
    /// A duration field written as a string that is not a Go duration.
    #[error("{field}: {reason}")]
    BadDuration {
        field: String,
        reason: crate::duration::DurationError,
    },
    /// A duration field that is neither a string nor a whole number of nanoseconds.
    #[error("{field}: use a duration such as \"200ms\"")]
    NotADuration { field: String },
    /// A zero duration, which would make autopilot's checks meaningless.
    #[error("{field}: must be more than 0")]
    ZeroDuration { field: String },
    #[error("MaxTrailingLogs must be a count of log entries, 0 or more")]
    BadTrailingLogs,
    #[error("MinQuorum must be a number of voters, 0 (no floor) or more")]
    BadMinQuorum,
    /// A field neither muster nor Consul (Enterprise) knows.
    #[error(
        "unknown field {0:?}; known: CleanupDeadServers, LastContactThreshold, \
         MaxTrailingLogs, MinQuorum, ServerStabilizationTime"
    )]
    Unknown(String),
}

/// Applies the fields present in `body` on top of `c`; every field is checked and named.
pub fn apply_fields(
    c: &mut AutopilotConfig,
    body: &Map<String, Value>,
) -> Result<(), SettingError> {
    for (key, v) in body {
        match key.as_str() {
            "CleanupDeadServers" => {
                c.cleanup_dead_servers = v.as_bool().ok_or(SettingError::NotABool)?
            }
            "LastContactThreshold" | "ServerStabilizationTime" => {
                let field = || key.to_string();
                let d = match v {
                    Value::String(s) => {
                        parse_go_duration(s).map_err(|reason| SettingError::BadDuration {
                            field: field(),
                            reason,
                        })?
                    }
                    // Consul's API also takes nanoseconds as a number.
                    Value::Number(n) => std::time::Duration::from_nanos(
                        n.as_u64()
                            .ok_or_else(|| SettingError::NotADuration { field: field() })?,
                    ),
                    _ => return Err(SettingError::NotADuration { field: field() }),
                };
                if d.is_zero() {
                    return Err(SettingError::ZeroDuration { field: field() });
                }
                if key == "LastContactThreshold" {
                    c.last_contact_threshold = d;
                } else {
                    c.server_stabilization_time = d;
                }
            }
            "MaxTrailingLogs" => {
                c.max_trailing_logs = v.as_u64().ok_or(SettingError::BadTrailingLogs)?
            }
            "MinQuorum" => {
                c.min_quorum = v
                    .as_u64()
                    .filter(|n| *n <= u64::from(u16::MAX))
                    .ok_or(SettingError::BadMinQuorum)? as u32
            }
            // Consul Enterprise fields and read-only indexes: accepted, not used.
            "RedundancyZoneTag"
            | "DisableUpgradeMigration"
            | "UpgradeVersionTag"
            | "CreateIndex"
            | "ModifyIndex" => {}
            other => return Err(SettingError::Unknown(other.to_string())),
        }
    }
    Ok(())
}

async fn set_config(
    State(agent): State<Arc<Agent>>,
    body: axum::body::Bytes,
) -> Result<Json<bool>, ApiError> {
    let s = server_only(&agent)?;
    super::authorize::require(&agent, Resource::Operator, AccessLevel::Write, "").await?;
    let fields: Map<String, Value> = serde_json::from_slice(&body).map_err(|e| {
        bad(format!(
            "the body must be a JSON object of autopilot settings: {e}"
        ))
    })?;
    let (mut c, _) = s.autopilot_config();
    apply_fields(&mut c, &fields).map_err(|e| bad(e.to_string()))?;
    agent
        .client
        .write(StateCommand::AutopilotSet(c))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(true))
}

async fn report(agent: &Agent) -> Result<crate::server::autopilot::AutopilotReport, ApiError> {
    let s = server_only(agent)?;
    super::authorize::require(agent, Resource::Operator, AccessLevel::Read, "").await?;
    Ok(s.autopilot_state().await?)
}

fn server_json(s: &crate::server::autopilot::ServerReport) -> Value {
    json!({
        "ID": s.id,
        "Name": s.name,
        "Address": s.address,
        "SerfStatus": s.serf_status,
        "NodeStatus": s.serf_status,
        "Version": env!("CARGO_PKG_VERSION"),
        "Leader": s.leader,
        "Voter": s.voter,
        "Status": if s.leader { "leader" } else if s.voter { "voter" } else { "non-voter" },
        "Healthy": s.healthy,
        "LastContact": s.last_contact_ms.map(|m| format!("{m}ms")).unwrap_or_else(|| "never".into()),
        "LastIndex": s.last_index,
        "StableForMs": s.stable_for_ms,
    })
}

async fn health(State(agent): State<Arc<Agent>>) -> Result<Json<Value>, ApiError> {
    let r = report(&agent).await?;
    Ok(Json(json!({
        "Healthy": r.healthy,
        "FailureTolerance": r.failure_tolerance,
        "Servers": r.servers.iter().map(server_json).collect::<Vec<_>>(),
    })))
}

async fn state(State(agent): State<Arc<Agent>>) -> Result<Json<Value>, ApiError> {
    let r = report(&agent).await?;
    let servers: Map<String, Value> = r
        .servers
        .iter()
        .map(|s| (s.id.clone(), server_json(s)))
        .collect();
    Ok(Json(json!({
        "Healthy": r.healthy,
        "FailureTolerance": r.failure_tolerance,
        "Leader": r.leader,
        "Voters": r.voters,
        "Servers": servers,
        "Kept": r.kept,
    })))
}
