//! Outage recovery: when quorum is lost for good, the survivors are given a new Raft
//! configuration by hand (docs/operations.md, "Recovering from a lost quorum").
//!
//! Two ways in, one effect ([`super::store::recover`]):
//! - `muster operator raft recover -data-dir DIR -peers-file FILE`, with the agent stopped:
//!   applied at once, and it prints what it replaced;
//! - Consul's way: a `peers.json` in `<data_dir>/raft/` is applied when the server starts, then
//!   deleted (docs/reference/consul.md), so that runbooks written for Consul work.
//!
//! The file is Consul's peers.json for Raft protocol 3: a JSON array of
//! `{"id": UUID, "address": "ip:port", "non_voter": false}`, with an optional `"name"`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;
use uuid::Uuid;

use super::error::RecoveryError;
use super::types::{node_id, node_uuid, NodeId, ServerNode};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerEntry {
    id: String,
    address: String,
    #[serde(default)]
    non_voter: bool,
    #[serde(default)]
    name: Option<String>,
}

/// The servers and the voters a peers file names, each entry checked and named on error.
pub fn parse_peers(
    text: &str,
    origin: &str,
) -> Result<(BTreeMap<NodeId, ServerNode>, BTreeSet<NodeId>), RecoveryError> {
    let bad = RecoveryError::PeersFile;
    let entries: Vec<PeerEntry> = serde_json::from_str(text).map_err(|e| {
        bad(format!(
            "{origin}: not a peers file ({e}); expected a JSON array such as \
             [{{\"id\": \"<node UUID>\", \"address\": \"10.0.0.1:8300\", \"non_voter\": false}}]"
        ))
    })?;
    let mut nodes = BTreeMap::new();
    let mut voters = BTreeSet::new();
    for (i, e) in entries.iter().enumerate() {
        let id = Uuid::parse_str(&e.id)
            .map(node_id)
            .map_err(|_| bad(format!("{origin}: entry {i}: id {:?} is not a node UUID (see `muster operator raft list-peers` or <data_dir>/node-id)", e.id)))?;
        e.address.parse::<SocketAddr>().map_err(|_| {
            bad(format!(
                "{origin}: entry {i}: address {:?} is not ip:port (the server port, 8300 by default)",
                e.address
            ))
        })?;
        let node = ServerNode {
            addr: e.address.clone(),
            name: e.name.clone().unwrap_or_default(),
        };
        if nodes.insert(id, node).is_some() {
            return Err(bad(format!("{origin}: id {} is listed twice", e.id)));
        }
        if !e.non_voter {
            voters.insert(id);
        }
    }
    if voters.is_empty() {
        return Err(bad(format!(
            "{origin}: no voter listed; name at least this server"
        )));
    }
    Ok((nodes, voters))
}

/// Applies a peers file to the stopped server whose data is in `data_dir`; returns a summary.
pub fn recover_data_dir(
    data_dir: &Path,
    text: &str,
    origin: &str,
) -> Result<String, RecoveryError> {
    let (nodes, voters) = parse_peers(text, origin)?;
    let id_path = data_dir.join("node-id");
    let self_uuid = std::fs::read_to_string(&id_path)
        .ok()
        .and_then(|t| Uuid::parse_str(t.trim()).ok())
        .ok_or_else(|| {
            RecoveryError::DataDir(format!(
                "{} is missing or not a UUID: is {} a muster server's data directory?",
                id_path.display(),
                data_dir.display()
            ))
        })?;
    let self_id = node_id(self_uuid);
    if !voters.contains(&self_id) {
        return Err(RecoveryError::PeersFile(format!(
            "{origin}: this server ({self_uuid}) is not listed as a voter; list every survivor \
             you recover, this one included"
        )));
    }
    let names: Vec<String> = voters
        .iter()
        .map(|v| {
            let n = &nodes[v];
            if n.name.is_empty() {
                format!("{}@{}", node_uuid(*v), n.addr)
            } else {
                format!("{}@{}", n.name, n.addr)
            }
        })
        .collect();
    let done = super::store::recover(&data_dir.join("raft"), self_id, nodes, voters)?;
    let before: Vec<String> = done.previous.iter().map(|n| n.to_string()).collect();
    Ok(format!(
        "recovered the Raft configuration at index {} (term {}): voters {} (was: {})",
        done.index,
        done.term,
        names.join(", "),
        if before.is_empty() {
            "unknown".to_string()
        } else {
            before.join(", ")
        }
    ))
}

/// Consul's peers.json at start: applied, then deleted. `Ok(None)` when there is none.
pub fn recover_at_start(data_dir: &Path) -> Result<Option<String>, RecoveryError> {
    let path = data_dir.join("raft").join("peers.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(RecoveryError::Read { path, source }),
    };
    tracing::warn!("found peers.json file, recovering Raft configuration...");
    let summary = recover_data_dir(data_dir, &text, &path.display().to_string())?;
    std::fs::remove_file(&path).map_err(|source| RecoveryError::NotDeleted {
        path: path.clone(),
        source,
    })?;
    tracing::warn!("deleted peers.json file after successful recovery");
    Ok(Some(summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_files_are_checked_entry_by_entry() {
        let id = "0b7a6b3c-52e4-4a8b-9c61-6f1f3b8f2a10";
        let ok = format!(r#"[{{"id":"{id}","address":"127.0.0.1:8300","non_voter":false}}]"#);
        let (nodes, voters) = parse_peers(&ok, "f").unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(voters.len(), 1);
        let e = parse_peers(r#"[{"id":"x","address":"127.0.0.1:8300"}]"#, "f")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("entry 0") && e.contains("not a node UUID"),
            "{e}"
        );
        let e = parse_peers(&ok.replace("127.0.0.1:8300", "nowhere"), "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not ip:port"), "{e}");
        let e = parse_peers(&ok.replace("false", "true"), "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no voter"), "{e}");
        let e = parse_peers(r#"{"id":1}"#, "f").unwrap_err().to_string();
        assert!(e.contains("expected a JSON array"), "{e}");
        let e = parse_peers(&ok.replace("non_voter", "nonvoter"), "f")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
    }
}
