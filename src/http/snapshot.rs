//! `/v1/snapshot`: operator backups of the state machine (docs/state.md).
//!
//! File: `MUSTER-SNAPSHOT 1\n`, one JSON header line with the SHA-256 of the data, then the data.
//! A restore is checked in full (magic, header, size, digest, decodable state) before anything
//! is written, then committed through Raft like any other write.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::kv::{failure, read_body};
use super::ApiError;
use crate::agent::Agent;
use crate::server::state::{SnapshotBody, StateCommand};

const MAGIC: &[u8] = b"MUSTER-SNAPSHOT 1\n";
/// Largest snapshot a restore accepts (it travels as one Raft entry).
pub const MAX_RESTORE: usize = 48 << 20;

#[derive(Debug, Serialize, Deserialize)]
pub struct Header {
    pub index: u64,
    pub term: u64,
    pub sha256: String,
    pub size: usize,
    pub cluster_id: Option<uuid::Uuid>,
}

pub fn routes() -> Router<Arc<Agent>> {
    Router::new().route("/v1/snapshot", get(save).put(restore))
}

async fn save(State(agent): State<Arc<Agent>>) -> Result<Response, ApiError> {
    let snap = agent.client.snapshot_save().await.map_err(failure)?;
    let header = Header {
        index: snap.index,
        term: snap.term,
        sha256: hex::encode(Sha256::digest(&snap.data)),
        size: snap.data.len(),
        cluster_id: snap.cluster_id,
    };
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(
        serde_json::to_string(&header)
            .expect("header encodes")
            .as_bytes(),
    );
    out.push(b'\n');
    out.extend_from_slice(&snap.data);
    Ok(([("X-Consul-Index", snap.index.max(1).to_string())], out).into_response())
}

/// Checks a snapshot file and returns its data; every problem is named.
pub fn verify(file: &[u8]) -> Result<(Header, &[u8]), String> {
    let rest = file
        .strip_prefix(MAGIC)
        .ok_or("not a muster snapshot (bad magic line)")?;
    let nl = rest
        .iter()
        .position(|b| *b == b'\n')
        .ok_or("truncated snapshot: no header line")?;
    let header: Header =
        serde_json::from_slice(&rest[..nl]).map_err(|e| format!("bad snapshot header: {e}"))?;
    let data = &rest[nl + 1..];
    if data.len() != header.size {
        return Err(format!(
            "truncated snapshot: {} bytes of data, the header says {}",
            data.len(),
            header.size
        ));
    }
    let digest = hex::encode(Sha256::digest(data));
    if digest != header.sha256 {
        return Err("snapshot integrity check failed: SHA-256 mismatch (corrupted file)".into());
    }
    postcard::from_bytes::<SnapshotBody>(data)
        .map_err(|e| format!("snapshot data does not decode: {e}"))?;
    Ok((header, data))
}

async fn restore(State(agent): State<Arc<Agent>>, body: Body) -> Result<Response, ApiError> {
    let file = read_body(body, MAX_RESTORE + 4096).await?;
    let (_, data) = verify(&file).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e))?;
    let outcome = agent
        .client
        .write(StateCommand::Restore(data.to_vec()))
        .await
        .map_err(failure)?;
    if !outcome.ok {
        return Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the restore was not applied".into(),
        ));
    }
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_names_each_problem() {
        let data = postcard::to_allocvec(&SnapshotBody::default()).unwrap();
        let header = Header {
            index: 1,
            term: 1,
            sha256: hex::encode(Sha256::digest(&data)),
            size: data.len(),
            cluster_id: None,
        };
        let mut file = MAGIC.to_vec();
        file.extend_from_slice(serde_json::to_string(&header).unwrap().as_bytes());
        file.push(b'\n');
        file.extend_from_slice(&data);
        assert!(verify(&file).is_ok());
        assert!(verify(b"nope").unwrap_err().contains("magic"));
        assert!(verify(&file[..file.len() - 1])
            .unwrap_err()
            .contains("truncated"));
        let mut bad = file.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(verify(&bad).unwrap_err().contains("SHA-256"));
    }
}
