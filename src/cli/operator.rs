//! `muster operator raft list-peers | remove-peer`: the Raft configuration, through a server's
//! HTTP API.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::client::{encode_segment, HttpArgs};
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
}

pub async fn run(cmd: OperatorCmd) -> u8 {
    let OperatorArea::Raft(raft) = cmd.area;
    match raft.action {
        RaftAction::ListPeers { http } => list_peers(http).await,
        RaftAction::RemovePeer { http, id, address } => remove_peer(http, id, address).await,
    }
}

async fn list_peers(http: HttpArgs) -> u8 {
    let reply = match http.client().get("/v1/operator/raft/configuration").await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    if !reply.status.is_success() {
        eprintln!(
            "Error getting peers: Failed to retrieve raft configuration: {}",
            reply.body.trim()
        );
        return 1;
    }
    let v: Value = match serde_json::from_str(&reply.body) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("Error getting peers: unexpected answer: {e}");
            return 1;
        }
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
    let client = http.client();
    match client
        .delete(&format!("/v1/operator/raft/peer?{query}"))
        .await
    {
        Err(e) => {
            eprintln!("{e}");
            1
        }
        Ok(r) if r.status.is_success() => {
            match (id, address) {
                (Some(i), _) => println!("Removed peer with id \"{i}\""),
                (_, Some(a)) => println!("Removed peer with address \"{a}\""),
                _ => {}
            }
            0
        }
        Ok(r) => {
            eprintln!("Error removing peer: {}", r.body.trim());
            1
        }
    }
}
