//! `/v1/status/*` and `/v1/operator/raft/*`: who leads, who is in the Raft configuration, and
//! the operator's changes to both (remove a peer, transfer leadership).
//!
//! A server answers from its own Raft state; a client asks a live server over the RPC port
//! (status only), as Consul's clients forward these requests.

use crate::acl::{AccessLevel, Resource};
use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::ApiError;
use crate::agent::Agent;
use crate::server::id::{node_id, NodeId};
use crate::server::protocol::PeerStatus;

pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
        .route("/v1/status/leader", get(leader))
        .route("/v1/status/peers", get(peers))
        .route("/v1/operator/raft/configuration", get(configuration))
        .route("/v1/operator/raft/peer", delete(remove_peer))
        .route("/v1/operator/raft/transfer-leader", post(transfer_leader))
}

/// A client's view through a live server: its status, and the id → address map of servers.
async fn ask_a_server(agent: &Agent) -> Result<(PeerStatus, HashMap<NodeId, String>), ApiError> {
    agent
        .client
        .server_status()
        .await
        .map_err(super::kv::failure)
}

async fn leader(State(agent): State<Arc<Agent>>) -> Result<Json<String>, ApiError> {
    if let Some(s) = &agent.server {
        return Ok(Json(s.leader_addr().unwrap_or_default()));
    }
    let (st, addrs) = ask_a_server(&agent).await?;
    Ok(Json(
        st.leader
            .and_then(|l| addrs.get(&l).cloned())
            .unwrap_or_default(),
    ))
}

async fn peers(State(agent): State<Arc<Agent>>) -> Result<Json<Vec<String>>, ApiError> {
    if let Some(s) = &agent.server {
        return Ok(Json(
            s.configuration().into_iter().map(|p| p.address).collect(),
        ));
    }
    let (st, addrs) = ask_a_server(&agent).await?;
    Ok(Json(
        st.members
            .iter()
            .filter_map(|m| addrs.get(m).cloned())
            .collect(),
    ))
}

fn server_only(agent: &Agent) -> Result<&Arc<crate::server::Server>, ApiError> {
    agent.server.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "this agent is a client; ask a server (muster operator raft … -http-addr SERVER:8500)"
                .into(),
        )
    })
}

async fn configuration(State(agent): State<Arc<Agent>>) -> Result<Json<Value>, ApiError> {
    let s = server_only(&agent)?;
    super::authorize::require(&agent, Resource::Operator, AccessLevel::Read, "").await?;
    let servers = s.configuration();
    let index = s.membership_index();
    Ok(Json(json!({ "Servers": servers, "Index": index })))
}

#[derive(Deserialize)]
struct PeerQuery {
    id: Option<String>,
    address: Option<String>,
}

async fn remove_peer(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<PeerQuery>,
) -> Result<StatusCode, ApiError> {
    let s = server_only(&agent)?;
    super::authorize::require(&agent, Resource::Operator, AccessLevel::Write, "").await?;
    let id = match (q.id, q.address) {
        (None, None) => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "Must specify either ?id with the server's ID or ?address with IP:port of peer to remove".into(),
            ))
        }
        (Some(_), Some(_)) => return Err(ApiError(StatusCode::BAD_REQUEST, "Must specify only one of ?id or ?address".into())),
        (Some(id), None) => match uuid::Uuid::parse_str(&id) {
            Ok(u) => node_id(u),
            Err(_) => return Err(ApiError(StatusCode::BAD_REQUEST, format!("id {id:?} is not a server ID (a UUID)"))),
        },
        (None, Some(addr)) => match s.configuration().into_iter().find(|p| p.address == addr) {
            Some(p) => node_id(uuid::Uuid::parse_str(&p.id).expect("ids are UUIDs")),
            None => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("address {addr:?} was not found in the Raft configuration"),
                ))
            }
        },
    };
    s.remove_peer(id).await?;
    Ok(StatusCode::OK)
}

#[derive(Deserialize)]
struct TransferQuery {
    id: Option<String>,
}

/// Consul's `POST /v1/operator/raft/transfer-leader[?id=ID]`: answers `{"Success": true}` once
/// another server leads (the named one, when `id` is given). docs/servers.md, "Transferring
/// leadership", says what it cannot do.
async fn transfer_leader(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<TransferQuery>,
) -> Result<Json<Value>, ApiError> {
    let s = server_only(&agent)?;
    super::authorize::require(&agent, Resource::Operator, AccessLevel::Write, "").await?;
    let to = match q.id.filter(|id| !id.is_empty()) {
        None => None,
        Some(id) => match uuid::Uuid::parse_str(&id) {
            Ok(u) => Some(node_id(u)),
            Err(_) => {
                return Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "id {id:?} is not a server ID (a UUID): take one from the ID column of \
                         muster operator raft list-peers"
                    ),
                ))
            }
        },
    };
    s.transfer_leader(to).await?;
    Ok(Json(json!({ "Success": true })))
}
