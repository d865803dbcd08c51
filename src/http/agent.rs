//! `/v1/agent/*`: the local agent's view and its membership commands.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{authorize, ApiError};
use crate::acl::{AccessLevel, Resource};
use crate::agent::Agent;
use crate::gossip::{ForceLeaveError, Member, MemberStatus};

pub fn routes() -> Router<Arc<Agent>> {
    Router::new()
        .route("/v1/agent/members", get(members))
        .route("/v1/agent/self", get(agent_self))
        .route("/v1/agent/join/{address}", put(join))
        .route("/v1/agent/leave", put(leave))
        .route("/v1/agent/reload", put(reload))
        .route("/v1/agent/force-leave/{node}", put(force_leave))
}

/// A member in Serf's JSON shape, as Consul's `/v1/agent/members` returns it.
#[derive(Debug, Serialize, Deserialize, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct MemberJson {
    pub name: String,
    pub addr: String,
    pub port: u16,
    pub tags: BTreeMap<String, String>,
    pub status: u8,
    pub protocol_min: u8,
    pub protocol_max: u8,
    pub protocol_cur: u8,
    pub delegate_min: u8,
    pub delegate_max: u8,
    pub delegate_cur: u8,
}

impl From<&Member> for MemberJson {
    fn from(m: &Member) -> Self {
        MemberJson {
            name: m.name.clone(),
            addr: m.addr.ip().to_string(),
            port: m.addr.port(),
            tags: m.tags.clone(),
            status: m.status as u8,
            protocol_min: 1,
            protocol_max: 1,
            protocol_cur: 1,
            delegate_min: 1,
            delegate_max: 1,
            delegate_cur: 1,
        }
    }
}

/// Refuses unless the caller may `level` on this agent (`agent:<level>` on its node name).
async fn require_agent(agent: &Agent, level: AccessLevel) -> Result<(), ApiError> {
    authorize::require(agent, Resource::Agent, level, &agent.config.node_name).await
}

/// Filtered to the members the caller may read (`node:read`), as Consul does.
async fn members(State(agent): State<Arc<Agent>>) -> Result<Json<Vec<MemberJson>>, ApiError> {
    let caller = authorize::caller(&agent).await?;
    Ok(Json(
        agent
            .gossip
            .members()
            .iter()
            .filter(|m| {
                caller
                    .as_ref()
                    .is_none_or(|r| r.authorizer.node_read(&m.name))
            })
            .map(MemberJson::from)
            .collect(),
    ))
}

async fn join(
    State(agent): State<Arc<Agent>>,
    Path(address): Path<String>,
) -> Result<StatusCode, ApiError> {
    require_agent(&agent, AccessLevel::Write).await?;
    if let Err(e) = muster_provider_core::JoinAddr::parse(&address) {
        return Err(ApiError(StatusCode::BAD_REQUEST, e.to_string()));
    }
    let report = crate::join::join_entries(
        &agent.gossip,
        std::slice::from_ref(&address),
        agent.config.ports.serf_lan,
    )
    .await;
    // Joining this agent's own address "contacts" it, as memberlist does for Consul: the
    // bootstrapping guide's `join a b c` run on `a` reports 3 nodes.
    if !report.only_self.is_empty() {
        return Ok(StatusCode::OK);
    }
    if report.joined.is_empty() {
        return Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            report.failures(),
        ));
    }
    Ok(StatusCode::OK)
}

/// 200 with an empty body as Consul's; muster adds one line per warning (a leave that cost
/// the cluster its quorum) for `muster leave` to show.
async fn leave(State(agent): State<Arc<Agent>>) -> Result<(StatusCode, String), ApiError> {
    require_agent(&agent, AccessLevel::Write).await?;
    let warnings = agent.leave().await;
    Ok((StatusCode::OK, warnings.join("\n")))
}

/// `PUT /v1/agent/reload` (agent:write, as Consul's): the configuration files read again and
/// what can change live applied (docs/configuration.md, "Reload"). Success is 200 with the
/// reload's summary line (Consul's body is empty; its clients ignore it); a configuration
/// with an error changes nothing and is a 500 with the reason, as in Consul.
async fn reload(State(agent): State<Arc<Agent>>) -> Result<(StatusCode, String), ApiError> {
    require_agent(&agent, AccessLevel::Write).await?;
    match agent.reload().await {
        Ok(r) => {
            tracing::info!("reload asked over the API: {}", r.summary());
            Ok((StatusCode::OK, r.summary()))
        }
        Err(e) => {
            tracing::error!(
                "reload asked over the API: {e}; the agent carries on with what it had"
            );
            Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))
        }
    }
}

#[derive(Deserialize)]
struct ForceLeaveQuery {
    prune: Option<String>,
}

async fn force_leave(
    State(agent): State<Arc<Agent>>,
    Path(node): Path<String>,
    Query(q): Query<ForceLeaveQuery>,
) -> Result<StatusCode, ApiError> {
    authorize::require(&agent, Resource::Operator, AccessLevel::Write, "").await?;
    // Consul treats a present `?prune` (with or without a value) as true.
    let prune = q
        .prune
        .is_some_and(|v| v.is_empty() || v == "true" || v == "1");
    agent.gossip.force_leave(&node, prune).await.map_err(|e| {
        let status = if matches!(e, ForceLeaveError::NoSuchMember(_)) {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError(status, e.to_string())
    })?;
    Ok(StatusCode::OK)
}

async fn agent_self(State(agent): State<Arc<Agent>>) -> Result<Json<Value>, ApiError> {
    require_agent(&agent, AccessLevel::Read).await?;
    let c = &agent.config;
    let members = agent.gossip.members();
    let me = members
        .iter()
        .find(|m| m.node_id == agent.node_id && m.name == c.node_name)
        .map(MemberJson::from);
    let count = |s: MemberStatus| members.iter().filter(|m| m.status == s).count().to_string();
    let mut serf_lan: BTreeMap<String, String> = BTreeMap::new();
    serf_lan.insert("members".into(), members.len().to_string());
    serf_lan.insert("alive".into(), count(MemberStatus::Alive));
    serf_lan.insert("failed".into(), count(MemberStatus::Failed));
    serf_lan.insert("left".into(), count(MemberStatus::Left));
    serf_lan.insert("encrypted".into(), agent.gossip.encrypted().to_string());
    for (k, v) in agent.gossip.stats() {
        serf_lan.insert(k.into(), v.to_string());
    }
    let mut consul: BTreeMap<String, String> = BTreeMap::new();
    consul.insert("server".into(), c.server.to_string());
    let mut raft: Option<BTreeMap<String, String>> = None;
    let mut kv: Option<BTreeMap<String, String>> = None;
    if let Some(s) = &agent.server {
        let leader = s.leader_addr();
        consul.insert(
            "leader".into(),
            (leader.as_deref() == Some(s.node.addr.as_str())).to_string(),
        );
        consul.insert("leader_addr".into(), leader.unwrap_or_default());
        consul.insert("bootstrap".into(), c.bootstrap.to_string());
        consul.insert("bootstrap_expect".into(), c.bootstrap_expect.to_string());
        consul.insert("blocking_queries".into(), s.blocking_queries().to_string());
        raft = Some(s.info());
        kv = Some(s.kv_info());
    } else {
        let known = crate::server::server_views(&members)
            .iter()
            .filter(|v| v.alive)
            .count();
        consul.insert("known_servers".into(), known.to_string());
    }
    let mut stats = json!({
        "agent": {
            "server": c.server.to_string(),
            "node_name": c.node_name,
            "node_id": agent.node_id.to_string(),
            "datacenter": c.datacenter,
            "uptime": format!("{}s", agent.started.elapsed().as_secs()),
        },
        "build": { "version": crate::VERSION, "prerelease": "", "revision": "" },
        "serf_lan": serf_lan,
        "runtime": {
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
            "cpu_count": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).to_string(),
        },
        "consul": consul,
    });
    if let Some(r) = raft {
        stats["raft"] = json!(r);
    }
    if let Some(k) = kv {
        stats["kv"] = json!(k);
    }
    if let Some(st) = agent.join_status.lock().expect("join status lock").as_ref() {
        stats["retry_join"] = json!(st.lock().expect("join status lock").section());
    }
    Ok(Json(json!({
        "Config": {
            "Datacenter": c.datacenter,
            "NodeName": c.node_name,
            "NodeID": agent.node_id.to_string(),
            "Server": c.server,
            "Revision": "",
            "Version": crate::VERSION,
        },
        // Sanitised: no key material, only whether encryption is on.
        "DebugConfig": {
            "Bootstrap": c.bootstrap,
            "BootstrapExpect": c.bootstrap_expect,
            "BindAddr": c.bind_addr.to_string(),
            "AdvertiseAddrLAN": c.advertise_addr.to_string(),
            "ClientAddrs": [c.client_addr.to_string()],
            "DataDir": agent.data_dir.display().to_string(),
            "EncryptKey": if c.encrypt.is_some() { "hidden" } else { "" },
            "RetryJoinLAN": c.retry_join.iter().map(|e| redact_provider(e)).collect::<Vec<_>>(),
            "StartJoinAddrsLAN": c.start_join,
            "RetryJoinIntervalLAN": crate::duration::format_go_duration(c.retry_interval),
            "RetryJoinMaxAttemptsLAN": c.retry_max,
            "ReconnectTimeoutLAN": crate::duration::format_go_duration(c.reconnect_timeout),
            "TombstoneTimeoutLAN": crate::duration::format_go_duration(c.tombstone_timeout),
            "SerfPortLAN": c.ports.serf_lan,
            "ServerPort": c.ports.server,
            // -1 for a listener that is off, as Consul shows it.
            "HTTPPort": c.ports.http.map_or(-1, i32::from),
            "HTTPSPort": c.ports.https.map_or(-1, i32::from),
            "LeaveOnTerm": c.leave_on_terminate,
            "SkipLeaveOnInt": c.skip_leave_on_interrupt,
            "DevMode": c.dev,
        },
        "Coord": null,
        "Member": me,
        "Stats": stats,
        "Meta": {},
    })))
}

/// Hides secret values (`secret_access_key=…`, `credentials_file=…`) of a provider string.
fn redact_provider(entry: &str) -> String {
    if muster_provider_core::is_provider_string(entry) {
        muster_provider_core::redact(entry)
    } else {
        entry.to_string()
    }
}
