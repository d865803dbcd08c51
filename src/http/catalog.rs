//! `/v1/catalog/nodes`: the catalog in Consul's JSON shape.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::kv::{failure, meta_headers};
use super::ApiError;
use crate::agent::Agent;
use crate::server::protocol::Consistency;

pub fn routes() -> Router<Arc<Agent>> {
    Router::new().route("/v1/catalog/nodes", get(nodes))
}

async fn nodes(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let c = if q.contains_key("stale") {
        Consistency::Stale
    } else if q.contains_key("consistent") {
        Consistency::Consistent
    } else {
        Consistency::Default
    };
    let (nodes, meta) = agent.client.catalog_nodes(c).await.map_err(failure)?;
    let out: Vec<_> = nodes
        .iter()
        .map(|n| {
            // The operator's node_meta (docs/configuration.md), then the agent's own keys,
            // under prefixes node_meta may not use.
            let mut m: serde_json::Map<String, serde_json::Value> =
                crate::gossip::meta::node_meta(&n.tags)
                    .map(|(k, v)| (k.to_string(), json!(v)))
                    .collect();
            m.insert("consul-network-segment".into(), json!(""));
            m.insert(
                "consul-version".into(),
                json!(n.tags.get("build").cloned().unwrap_or_default()),
            );
            m.insert("muster-status".into(), json!(n.status));
            if let Some(role) = n.tags.get("role") {
                m.insert("muster-role".into(), json!(role));
            }
            json!({
                "ID": n.id.to_string(),
                "Node": n.name,
                "Address": n.address,
                "Datacenter": n.datacenter,
                "TaggedAddresses": { "lan": n.address, "lan_ipv4": n.address, "wan": n.address, "wan_ipv4": n.address },
                "Meta": m,
                "CreateIndex": n.create_index,
                "ModifyIndex": n.modify_index,
            })
        })
        .collect();
    let mut headers = HeaderMap::new();
    meta_headers(&mut headers, &meta);
    Ok((headers, Json(out)).into_response())
}
