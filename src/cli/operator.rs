//! `muster operator raft list-peers | remove-peer | transfer-leader | recover` and `muster operator autopilot
//! get-config | set-config | state`: the Raft configuration and autopilot, through a server's
//! HTTP API (`recover` works offline on a data directory).

use clap::{Args, Subcommand};
use serde_json::Value;

use super::client::{encode_segment, succeeded, GetFailure, HttpArgs};
use super::members::table;

#[derive(Debug, Args)]
pub struct OperatorCmd {
    #[command(subcommand)]
    pub area: OperatorArea,
}

#[derive(Debug, Subcommand)]
pub enum OperatorArea {
    /// Inspect and change the Raft configuration.
    Raft(RaftCmd),
    /// Autopilot: settings and health of the servers.
    Autopilot(AutopilotCmd),
}

#[derive(Debug, Args)]
pub struct AutopilotCmd {
    #[command(subcommand)]
    pub action: AutopilotAction,
}

#[derive(Debug, Subcommand)]
pub enum AutopilotAction {
    /// Show the autopilot settings in force.
    GetConfig {
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Change autopilot settings (only the ones given).
    SetConfig {
        #[command(flatten)]
        http: HttpArgs,
        /// Remove dead servers automatically (true|false).
        #[arg(long, value_name = "BOOL")]
        cleanup_dead_servers: Option<bool>,
        /// A server not heard from for longer than this is unhealthy (e.g. 200ms).
        #[arg(long, value_name = "DURATION")]
        last_contact_threshold: Option<String>,
        /// A server more entries behind than this is unhealthy.
        #[arg(long, value_name = "N")]
        max_trailing_logs: Option<u64>,
        /// Never remove voters below this count.
        #[arg(long, value_name = "N")]
        min_quorum: Option<u64>,
        /// How long a new server must be healthy before it is promoted (e.g. 10s).
        #[arg(long, value_name = "DURATION")]
        server_stabilization_time: Option<String>,
    },
    /// Autopilot's view of every server, and the dead ones it keeps and why.
    State {
        #[command(flatten)]
        http: HttpArgs,
    },
}

#[derive(Debug, Args)]
pub struct RaftCmd {
    #[command(subcommand)]
    pub action: RaftAction,
}

#[derive(Debug, Subcommand)]
pub enum RaftAction {
    /// List the servers of the Raft configuration.
    ListPeers {
        #[command(flatten)]
        http: HttpArgs,
    },
    /// Outage recovery, offline: give a stopped server a new Raft configuration
    /// (docs/operations.md). Run it on every survivor with the same peers file, then start them.
    Recover {
        /// The stopped server's data directory.
        #[arg(long, value_name = "DIR")]
        data_dir: std::path::PathBuf,
        /// Consul's peers.json: [{"id": UUID, "address": "ip:8300", "non_voter": false}, …]
        #[arg(long, value_name = "FILE")]
        peers_file: std::path::PathBuf,
    },
    /// Remove a server from the Raft configuration.
    RemovePeer {
        #[command(flatten)]
        http: HttpArgs,
        /// The server's ID (its node UUID).
        #[arg(long)]
        id: Option<String>,
        /// The server's Raft address, ip:port.
        #[arg(long)]
        address: Option<String>,
    },
    /// Hand leadership to another voter: the one named, or the most up-to-date one
    /// (docs/servers.md, "Transferring leadership").
    TransferLeader {
        #[command(flatten)]
        http: HttpArgs,
        /// The new leader's ID (its node UUID, as list-peers shows it).
        #[arg(long)]
        id: Option<String>,
    },
}

pub async fn run(cmd: OperatorCmd) -> u8 {
    let raft = match cmd.area {
        OperatorArea::Raft(raft) => raft,
        OperatorArea::Autopilot(a) => return autopilot(a.action).await,
    };
    match raft.action {
        RaftAction::ListPeers { http } => list_peers(http).await,
        RaftAction::Recover {
            data_dir,
            peers_file,
        } => {
            let text = match std::fs::read_to_string(&peers_file) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("Error: cannot read {}: {e}", peers_file.display());
                    return 1;
                }
            };
            match crate::server::recovery::recover_data_dir(
                &data_dir,
                &text,
                &peers_file.display().to_string(),
            ) {
                Ok(summary) => {
                    println!("{summary}");
                    println!("Start the server now; do the same on every other survivor.");
                    0
                }
                Err(e) => {
                    eprintln!("Error recovering: {e}");
                    1
                }
            }
        }
        RaftAction::RemovePeer { http, id, address } => remove_peer(http, id, address).await,
        RaftAction::TransferLeader { http, id } => transfer_leader(http, id).await,
    }
}

async fn list_peers(http: HttpArgs) -> u8 {
    let v: Value = match http
        .client()
        .get_json("/v1/operator/raft/configuration")
        .await
    {
        Ok(v) => v,
        Err(failure @ GetFailure::Refused { .. }) => {
            return failure.report("Error getting peers: Failed to retrieve raft configuration")
        }
        Err(failure) => return failure.report("Error getting peers"),
    };
    let mut rows = vec![["Node", "ID", "Address", "State", "Voter", "RaftProtocol"]
        .map(String::from)
        .to_vec()];
    for s in v["Servers"].as_array().into_iter().flatten() {
        let text = |k: &str| s[k].as_str().unwrap_or("").to_string();
        let state = if s["Leader"].as_bool() == Some(true) {
            "leader"
        } else {
            "follower"
        };
        rows.push(vec![
            text("Node"),
            text("ID"),
            text("Address"),
            state.into(),
            s["Voter"].as_bool().unwrap_or(false).to_string(),
            text("ProtocolVersion"),
        ]);
    }
    print!("{}", table(&rows));
    0
}

async fn remove_peer(http: HttpArgs, id: Option<String>, address: Option<String>) -> u8 {
    let query = match (&id, &address) {
        (None, None) => {
            eprintln!("Error removing peer: an address or id is required for the peer to remove (-id ID or -address IP:PORT)");
            return 1;
        }
        (Some(_), Some(_)) => {
            eprintln!("Error removing peer: cannot give both an address and id");
            return 1;
        }
        (Some(i), None) => format!("id={}", encode_segment(i)),
        (None, Some(a)) => format!("address={}", encode_segment(a)),
    };
    let reply = http
        .client()
        .delete(&format!("/v1/operator/raft/peer?{query}"))
        .await;
    if let Err(code) = succeeded(reply, "Error removing peer") {
        return code;
    }
    match (id, address) {
        (Some(i), _) => println!("Removed peer with id \"{i}\""),
        (_, Some(a)) => println!("Removed peer with address \"{a}\""),
        _ => {}
    }
    0
}

async fn transfer_leader(http: HttpArgs, id: Option<String>) -> u8 {
    let path = match &id {
        Some(i) => format!("/v1/operator/raft/transfer-leader?id={}", encode_segment(i)),
        None => "/v1/operator/raft/transfer-leader".to_string(),
    };
    let reply = http
        .client()
        .with_body(reqwest::Method::POST, &path, Vec::new())
        .await;
    if let Err(code) = succeeded(reply, "Error transferring leadership") {
        return code;
    }
    println!("Success");
    0
}

async fn autopilot(action: AutopilotAction) -> u8 {
    match action {
        AutopilotAction::GetConfig { http } => {
            let v: Value = match http
                .client()
                .get_json("/v1/operator/autopilot/configuration")
                .await
            {
                Ok(v) => v,
                Err(failure) => return failure.report("Error querying Autopilot configuration"),
            };
            for key in [
                "CleanupDeadServers",
                "LastContactThreshold",
                "MaxTrailingLogs",
                "MinQuorum",
                "ServerStabilizationTime",
            ] {
                let shown = match &v[key] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                println!("{key} = {shown}");
            }
            0
        }
        AutopilotAction::SetConfig {
            http,
            cleanup_dead_servers,
            last_contact_threshold,
            max_trailing_logs,
            min_quorum,
            server_stabilization_time,
        } => {
            let mut body = serde_json::Map::new();
            if let Some(b) = cleanup_dead_servers {
                body.insert("CleanupDeadServers".into(), b.into());
            }
            if let Some(d) = last_contact_threshold {
                body.insert("LastContactThreshold".into(), d.into());
            }
            if let Some(n) = max_trailing_logs {
                body.insert("MaxTrailingLogs".into(), n.into());
            }
            if let Some(n) = min_quorum {
                body.insert("MinQuorum".into(), n.into());
            }
            if let Some(d) = server_stabilization_time {
                body.insert("ServerStabilizationTime".into(), d.into());
            }
            if body.is_empty() {
                eprintln!("Error: nothing to change; give at least one of -cleanup-dead-servers, -last-contact-threshold, -max-trailing-logs, -min-quorum, -server-stabilization-time");
                return 1;
            }
            let bytes = Value::Object(body).to_string().into_bytes();
            let reply = http
                .client()
                .put_body("/v1/operator/autopilot/configuration", bytes)
                .await;
            if let Err(code) = succeeded(reply, "Error setting Autopilot configuration") {
                return code;
            }
            println!("Configuration updated!");
            0
        }
        AutopilotAction::State { http } => {
            let v: Value = match http.client().get_json("/v1/operator/autopilot/state").await {
                Ok(v) => v,
                Err(failure) => return failure.report("Error querying Autopilot state"),
            };
            println!("Healthy: {}", v["Healthy"]);
            println!("Failure Tolerance: {}", v["FailureTolerance"]);
            println!("Leader: {}", v["Leader"].as_str().unwrap_or(""));
            println!("Voters:");
            for id in v["Voters"].as_array().into_iter().flatten() {
                println!("   {}", id.as_str().unwrap_or(""));
            }
            println!("Servers:");
            let mut rows = vec![[
                "Node",
                "ID",
                "Address",
                "Status",
                "Serf",
                "Healthy",
                "LastContact",
                "LastIndex",
            ]
            .map(String::from)
            .to_vec()];
            for s in v["Servers"]
                .as_object()
                .into_iter()
                .flat_map(|o| o.values())
            {
                let text = |k: &str| match &s[k] {
                    Value::String(t) => t.clone(),
                    other => other.to_string(),
                };
                rows.push(vec![
                    text("Name"),
                    text("ID"),
                    text("Address"),
                    text("Status"),
                    text("SerfStatus"),
                    text("Healthy"),
                    text("LastContact"),
                    text("LastIndex"),
                ]);
            }
            print!("{}", table(&rows));
            for k in v["Kept"].as_array().into_iter().flatten() {
                println!("Note: {}", k.as_str().unwrap_or(""));
            }
            0
        }
    }
}
