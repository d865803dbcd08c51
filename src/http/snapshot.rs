//! `/v1/snapshot`: operator backups of the state machine (docs/state.md).
//!
//! File: `MUSTER-SNAPSHOT 1\n`, one JSON header line with the SHA-256 of the data, then the data.
//! A restore is checked in full (magic, header, size, digest, decodable state) before anything
//! is written, then committed through Raft in pieces of at most 512 KiB and replaced at once by
//! a last entry (docs/state.md, "A restore travels in pieces").

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
pub use crate::server::state::MAX_RESTORE;
use crate::server::state::{SnapshotBody, StateCommand, RESTORE_PIECE};

const MAGIC: &[u8] = b"MUSTER-SNAPSHOT 1\n";

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

/// What is wrong with a snapshot file. Nothing is restored from it; the operator needs another
/// copy (a retry reads the same bytes and fails the same way).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    /// The file does not start with muster's magic line: not a snapshot of ours.
    #[error("not a muster snapshot (bad magic line)")]
    NotASnapshot,
    /// The file ends before its header line does.
    #[error("truncated snapshot: no header line")]
    NoHeader,
    /// The header line is not the JSON we write.
    #[error("bad snapshot header: {0}")]
    BadHeader(serde_json::Error),
    /// Fewer (or more) data bytes than the header promises: the copy was cut short.
    #[error("truncated snapshot: {actual} bytes of data, the header says {expected}")]
    Truncated { actual: usize, expected: usize },
    /// The data does not match the header's SHA-256: the file was damaged.
    #[error("snapshot integrity check failed: SHA-256 mismatch (corrupted file)")]
    Corrupted,
    /// The checksum matches but the data does not decode: written by an incompatible version.
    #[error("snapshot data does not decode: {0}")]
    Undecodable(postcard::Error),
}

/// Checks a snapshot file and returns its data; every problem is named.
pub fn verify(file: &[u8]) -> Result<(Header, &[u8]), SnapshotFileError> {
    let rest = file
        .strip_prefix(MAGIC)
        .ok_or(SnapshotFileError::NotASnapshot)?;
    let nl = rest
        .iter()
        .position(|b| *b == b'\n')
        .ok_or(SnapshotFileError::NoHeader)?;
    let header: Header =
        serde_json::from_slice(&rest[..nl]).map_err(SnapshotFileError::BadHeader)?;
    let data = &rest[nl + 1..];
    if data.len() != header.size {
        return Err(SnapshotFileError::Truncated {
            actual: data.len(),
            expected: header.size,
        });
    }
    let digest = hex::encode(Sha256::digest(data));
    if digest != header.sha256 {
        return Err(SnapshotFileError::Corrupted);
    }
    SnapshotBody::decode(data).map_err(SnapshotFileError::Undecodable)?;
    Ok((header, data))
}

async fn restore(State(agent): State<Arc<Agent>>, body: Body) -> Result<Response, ApiError> {
    let file = read_body(body, MAX_RESTORE + 4096).await?;
    let (_, data) = verify(&file).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    let id = uuid::Uuid::new_v4();
    // Each piece is acknowledged before the next goes: a piece must follow the last one
    // applied. An empty file still sends its one (empty) first piece.
    let pieces = data
        .chunks(RESTORE_PIECE)
        .chain(data.is_empty().then_some(&[][..]));
    for (i, piece) in pieces.enumerate() {
        let offset = (i * RESTORE_PIECE) as u64;
        let piece = StateCommand::RestorePiece {
            id,
            offset,
            bytes: piece.to_vec(),
        };
        let outcome = agent.client.write(piece).await.map_err(|e| {
            let mut e = failure(e);
            e.1 = format!(
                "{} (while sending the restore's piece at byte {offset} of {}; nothing was \
                 replaced)",
                e.1,
                data.len()
            );
            e
        })?;
        if !outcome.ok {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!(
                    "another restore started while this one was being sent (its piece at byte \
                     {offset} was refused); nothing was replaced by this one"
                ),
            ));
        }
    }
    let end = StateCommand::RestoreEnd {
        id,
        size: data.len() as u64,
    };
    let outcome = agent.client.write(end).await.map_err(failure)?;
    if !outcome.ok {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "another restore started while this one was being sent; nothing was replaced by \
             this one"
                .into(),
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
        assert!(verify(b"nope").unwrap_err().to_string().contains("magic"));
        assert!(verify(&file[..file.len() - 1])
            .unwrap_err()
            .to_string()
            .contains("truncated"));
        let mut bad = file.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(verify(&bad), Err(SnapshotFileError::Corrupted)));
    }
}
