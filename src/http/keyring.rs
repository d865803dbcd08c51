//! `/v1/operator/keyring`: list, install, use and remove gossip keys on every member, in
//! Consul's shapes (docs/gossip.md, Keyring).
//!
//! The keys appear only in the answer of `GET`, which the operator asked for; an invalid key in
//! a request is refused without being echoed.

use crate::acl::{AccessLevel, Resource};
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::ApiError;
use crate::agent::Agent;
use crate::gossip::keyring::{encode, key_problem};
use crate::gossip::{GossipKey, KeyringError, KeyringOp, KeyringReport};

pub fn routes() -> Router<Arc<Agent>> {
    Router::new().route(
        "/v1/operator/keyring",
        get(list).post(install).put(use_key).delete(remove),
    )
}

/// One pool's keys, as Consul's `GET /v1/operator/keyring` answers them.
#[derive(Debug, Serialize, Deserialize, Clone, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct KeyringPool {
    #[serde(rename = "WAN")]
    pub wan: bool,
    pub datacenter: String,
    pub segment: String,
    /// Key → how many members hold it.
    pub keys: BTreeMap<String, usize>,
    /// Key → how many members use it as primary.
    pub primary_keys: BTreeMap<String, usize>,
    /// Members asked, this agent included.
    pub num_nodes: usize,
    /// Member → why it failed.
    pub messages: BTreeMap<String, String>,
}

impl From<KeyringError> for ApiError {
    /// Refused at the asked agent before anyone else is asked: the request is wrong for it.
    fn from(e: KeyringError) -> Self {
        ApiError(StatusCode::BAD_REQUEST, e.to_string())
    }
}

async fn list(State(agent): State<Arc<Agent>>) -> Result<Json<Vec<KeyringPool>>, ApiError> {
    super::authorize::require(&agent, Resource::Keyring, AccessLevel::Read, "").await?;
    let report = agent.gossip.keyring(KeyringOp::List).await?;
    let mut pool = KeyringPool {
        wan: false,
        datacenter: agent.config.datacenter.clone(),
        segment: String::new(),
        keys: BTreeMap::new(),
        primary_keys: BTreeMap::new(),
        num_nodes: report.answers.len(),
        messages: BTreeMap::new(),
    };
    for a in report.answers {
        match a.result {
            Ok(ring) => {
                *pool.primary_keys.entry(encode(ring.primary())).or_default() += 1;
                for k in ring.keys() {
                    *pool.keys.entry(encode(k)).or_default() += 1;
                }
            }
            Err(e) => {
                pool.messages.insert(a.node, e);
            }
        }
    }
    Ok(Json(vec![pool]))
}

async fn install(State(agent): State<Arc<Agent>>, body: Bytes) -> Result<StatusCode, ApiError> {
    change(&agent, KeyringOp::Install(key_of(&body)?)).await
}

async fn use_key(State(agent): State<Arc<Agent>>, body: Bytes) -> Result<StatusCode, ApiError> {
    change(&agent, KeyringOp::Use(key_of(&body)?)).await
}

async fn remove(State(agent): State<Arc<Agent>>, body: Bytes) -> Result<StatusCode, ApiError> {
    change(&agent, KeyringOp::Remove(key_of(&body)?)).await
}

/// 200 when every member applied `op`; otherwise a 500 naming each failed member and why.
async fn change(agent: &Agent, op: KeyringOp) -> Result<StatusCode, ApiError> {
    super::authorize::require(agent, Resource::Keyring, AccessLevel::Write, "").await?;
    let report: KeyringReport = agent.gossip.keyring(op).await?;
    match report.failure() {
        None => Ok(StatusCode::OK),
        Some(why) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, why)),
    }
}

#[derive(Deserialize)]
struct KeyBody {
    #[serde(rename = "Key")]
    key: String,
}

/// The key of a `{"Key": "…"}` body. The errors never quote the body: it holds a key.
fn key_of(body: &[u8]) -> Result<GossipKey, ApiError> {
    let bad = |why: String| ApiError(StatusCode::BAD_REQUEST, why);
    let KeyBody { key } = serde_json::from_slice(body)
        .map_err(|_| bad(r#"the body must be JSON {"Key": "<base64 gossip key>"}"#.to_string()))?;
    GossipKey::from_base64(&key).map_err(|e| {
        bad(format!(
            "invalid key: {}; generate one with `muster keygen`",
            key_problem(&e)
        ))
    })
}
