//! `/v1/agent/metrics`: the agent's metrics in Consul's JSON shape, or with
//! `?format=prometheus` in the Prometheus text format (docs/metrics.md). `agent:read`, as
//! Consul requires.
//!
//! The gauges are read here, when asked, from what the layers already keep (membership,
//! gossip's counters, Raft's metrics, the gate, autopilot, retry-join); the counters and
//! latencies the layers record themselves through the `metrics` facade.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::{authorize, ApiError};
use crate::acl::{AccessLevel, Resource};
use crate::agent::Agent;
use crate::gossip::MemberStatus;
use crate::server::gate::GatePhase;
use crate::server::gauges::RAFT_STATES;

pub fn routes() -> Router<Arc<Agent>> {
    Router::new().route("/v1/agent/metrics", get(metrics))
}

/// The Prometheus text format's content type (version 0.0.4).
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn metrics(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    authorize::require(
        &agent,
        Resource::Agent,
        AccessLevel::Read,
        &agent.config.node_name,
    )
    .await?;
    if q.get("format").is_some_and(|f| f == "prometheus") {
        // Consul's answer when `telemetry.prometheus_retention_time` is not set.
        if agent.config.telemetry.prometheus_retention_time.is_zero() {
            return Err(ApiError(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Prometheus is not enabled since its retention time is not positive".into(),
            ));
        }
        sample(&agent);
        let text = agent.telemetry.prometheus().unwrap_or_default();
        return Ok(([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response());
    }
    sample(&agent);
    Ok(Json(agent.telemetry.summary()).into_response())
}

/// Sets every gauge from the agent's state now; gossip's totals go in as counters' absolute
/// values.
fn sample(agent: &Agent) {
    let t = &agent.telemetry;
    let gauge = |name: &'static str, v: f64| metrics::gauge!(t.gauge_name(name)).set(v);
    let flag = |b: bool| if b { 1.0 } else { 0.0 };

    let members = agent.gossip.members();
    for status in [
        MemberStatus::Alive,
        MemberStatus::Leaving,
        MemberStatus::Left,
        MemberStatus::Failed,
    ] {
        let n = members.iter().filter(|m| m.status == status).count();
        metrics::gauge!(t.gauge_name("muster.serf.members"), "status" => status.as_str())
            .set(n as f64);
    }
    for (name, value) in agent.gossip.stats() {
        if let Some(reason) = name.strip_prefix("dropped_") {
            metrics::counter!("muster.memberlist.dropped", "reason" => reason).absolute(value);
            continue;
        }
        let metric = match name {
            "bytes_sent" => "muster.memberlist.udp.sent",
            "bytes_received" => "muster.memberlist.udp.received",
            "packets_sent" => "muster.memberlist.udp.packets_sent",
            "packets_received" => "muster.memberlist.udp.packets_received",
            "probes" => "muster.memberlist.probes",
            "suspicions" => "muster.memberlist.suspicions",
            _ => continue,
        };
        metrics::counter!(metric).absolute(value);
    }

    if let Some(status) = agent.join_status.lock().expect("join status lock").as_ref() {
        let st = status.lock().expect("join status lock");
        gauge("muster.retry_join.joined", flag(st.state == "joined"));
    }

    let Some(server) = &agent.server else {
        return;
    };
    let g = server.gauges();
    gauge("muster.raft.leader", flag(g.state == "leader"));
    gauge("muster.raft.leader.lease", flag(g.lease));
    for state in RAFT_STATES {
        metrics::gauge!(t.gauge_name("muster.raft.state"), "state" => state)
            .set(flag(g.state == state));
    }
    gauge("muster.raft.term", g.term as f64);
    gauge("muster.raft.last_log_index", g.last_log_index as f64);
    gauge("muster.raft.applied_index", g.applied_index as f64);
    gauge(
        "muster.raft.last_snapshot_index",
        g.last_snapshot_index as f64,
    );
    gauge("muster.raft.voters", g.voters as f64);
    if let Some(ms) = g.last_contact_ms {
        gauge("muster.raft.leader.lastContact", ms);
    }
    for phase in GatePhase::ALL {
        metrics::gauge!(t.gauge_name("muster.bootstrap.gate"), "state" => phase.as_str())
            .set(flag(g.gate == phase));
    }
    if let Some(ap) = g.autopilot {
        gauge("muster.autopilot.healthy", flag(ap.healthy));
        gauge(
            "muster.autopilot.failure_tolerance",
            ap.failure_tolerance as f64,
        );
    }
}
