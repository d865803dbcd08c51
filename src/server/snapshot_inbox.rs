//! Receiving a snapshot from the leader, chunk by chunk (docs/servers.md, "A hostile network").
//!
//! openraft 0.9's own receiver (`Raft::install_snapshot`) seeks to whatever offset a chunk
//! names and writes there, so one chunk with an offset of 2^40 makes it grow a buffer to a
//! terabyte; and it hands the finished snapshot to the store, whose `install_snapshot` failing
//! (a snapshot that does not decode) stops Raft for good. So muster receives the chunks here:
//! each one must start at or before the bytes already received and end within
//! [`MAX_SNAPSHOT_BYTES`], checked before anything is allocated; and a finished snapshot is
//! decoded before it goes to openraft (`Raft::install_full_snapshot`), so the store installs
//! only one that decodes, and a garbage one is an error answer to its sender.

use std::io::Cursor;

use openraft::error::{Fatal, InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse};
use openraft::storage::Snapshot;
use openraft::{AnyError, SnapshotSegmentId, StorageIOError};

use super::state::SnapshotBody;
use super::types::{NodeId, Raft, StorageError, TypeConfig};

/// The largest snapshot this server receives: the whole state lives in memory, and this is
/// twenty times the largest operator restore (`state::MAX_RESTORE`, 48 MiB). Since a chunk may
/// not leave a hole, a sender makes the server hold only bytes it has really sent.
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 30;

type Answer = Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>;

/// The snapshot being received, if any: its id and the bytes so far.
#[derive(Default)]
pub(crate) struct SnapshotInbox {
    current: tokio::sync::Mutex<Option<(String, Vec<u8>)>>,
}

/// Where a chunk goes, or why it is refused (pure, for the tests).
#[derive(Debug, PartialEq, Eq)]
enum Place {
    /// A new snapshot: the bytes received of another one are dropped.
    Start,
    /// The received bytes are cut at the chunk's offset and the chunk appended (a resent
    /// chunk replaces itself).
    At(usize),
    /// The chunk would leave a hole, or starts a new snapshot elsewhere than at 0: the sender
    /// is told to start again from `expect`.
    Mismatch { expect: u64 },
    /// The chunk ends past [`MAX_SNAPSHOT_BYTES`].
    TooLarge,
}

/// Where a chunk of snapshot `id` at `offset` with `len` bytes goes, given the snapshot being
/// received (`current`: its id and how many bytes it holds).
fn place(current: Option<(&str, usize)>, id: &str, offset: u64, len: usize) -> Place {
    let fits = offset
        .checked_add(len as u64)
        .is_some_and(|end| end <= MAX_SNAPSHOT_BYTES);
    if !fits {
        return Place::TooLarge;
    }
    match current {
        Some((cur, have)) if cur == id => {
            if offset <= have as u64 {
                Place::At(offset as usize)
            } else {
                Place::Mismatch {
                    expect: have as u64,
                }
            }
        }
        _ if offset == 0 => Place::Start,
        _ => Place::Mismatch { expect: 0 },
    }
}

/// An error answer that stops this transfer on the sender's side without making it start
/// over at once (openraft's sender retries a mismatch at once, any other error later).
fn refuse(
    meta: &super::types::SnapshotMeta,
    why: String,
) -> RaftError<NodeId, InstallSnapshotError> {
    let e = StorageError::from(StorageIOError::write_snapshot(
        Some(meta.signature()),
        AnyError::error(why),
    ));
    RaftError::Fatal(Fatal::StorageError(e))
}

impl SnapshotInbox {
    /// Takes one chunk; once the last has come, decodes the snapshot and has openraft install
    /// it. The answer carries this server's vote, as openraft's own receiver's does.
    pub(crate) async fn receive(
        &self,
        raft: &Raft,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> Answer {
        let my_vote = raft
            .with_raft_state(|s| *s.vote_ref())
            .await
            .map_err(RaftError::Fatal)?;
        // openraft's own test: a vote below this server's, or not comparable with it.
        let current = matches!(
            req.vote.partial_cmp(&my_vote),
            Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
        );
        if !current {
            // A stale sender: it learns the newer vote from the answer, as from openraft.
            return Ok(InstallSnapshotResponse { vote: my_vote });
        }
        let id = req.meta.snapshot_id.clone();
        let finished = {
            let mut current = self.current.lock().await;
            let held = current.as_ref().map(|(i, d)| (i.as_str(), d.len()));
            match place(held, &id, req.offset, req.data.len()) {
                Place::TooLarge => {
                    *current = None;
                    let why = format!(
                        "refusing snapshot {id}: a chunk at offset {} of {} bytes ends past the \
                         {MAX_SNAPSHOT_BYTES}-byte limit of a snapshot",
                        req.offset,
                        req.data.len()
                    );
                    tracing::warn!("{why}");
                    return Err(refuse(&req.meta, why));
                }
                Place::Mismatch { expect } => {
                    return Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(
                        SnapshotMismatch {
                            expect: SnapshotSegmentId {
                                id: id.clone(),
                                offset: expect,
                            },
                            got: SnapshotSegmentId {
                                id,
                                offset: req.offset,
                            },
                        },
                    )));
                }
                Place::Start => *current = Some((id.clone(), req.data)),
                Place::At(at) => {
                    let data = &mut current.as_mut().expect("placed at a held snapshot").1;
                    data.truncate(at);
                    data.extend_from_slice(&req.data);
                }
            }
            if req.done {
                current.take().map(|(_, d)| d)
            } else {
                None
            }
        };
        let Some(data) = finished else {
            return Ok(InstallSnapshotResponse { vote: my_vote });
        };
        // Decoding a large state takes CPU: off the tokio workers.
        let (data, decoded) = tokio::task::spawn_blocking(move || {
            let decoded = SnapshotBody::decode(&data).map(|_| ());
            (data, decoded)
        })
        .await
        .map_err(|e| refuse(&req.meta, format!("the snapshot check stopped: {e}")))?;
        if let Err(e) = decoded {
            let why = format!(
                "refusing snapshot {id} of {} bytes from {}: it does not decode ({e}); nothing \
                 was installed and Raft goes on",
                data.len(),
                super::id::node_uuid(req.vote.leader_id().node_id)
            );
            tracing::warn!("{why}");
            return Err(refuse(&req.meta, why));
        }
        let snapshot = Snapshot {
            meta: req.meta,
            snapshot: Box::new(Cursor::new(data)),
        };
        let resp = raft
            .install_full_snapshot(req.vote, snapshot)
            .await
            .map_err(RaftError::Fatal)?;
        Ok(resp.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_start_at_zero_leave_no_hole_and_end_within_the_limit() {
        assert_eq!(place(None, "a", 0, 10), Place::Start);
        assert_eq!(place(None, "a", 5, 10), Place::Mismatch { expect: 0 });
        assert_eq!(place(Some(("a", 10)), "a", 10, 10), Place::At(10));
        // A resent chunk, and a sender that starts over.
        assert_eq!(place(Some(("a", 20)), "a", 10, 10), Place::At(10));
        assert_eq!(place(Some(("a", 20)), "a", 0, 10), Place::At(0));
        // A hole.
        assert_eq!(
            place(Some(("a", 10)), "a", 11, 1),
            Place::Mismatch { expect: 10 }
        );
        assert_eq!(place(Some(("a", 10)), "a", 1 << 40, 1), Place::TooLarge);
        // Another snapshot replaces the one being received, from 0 only.
        assert_eq!(place(Some(("a", 10)), "b", 0, 1), Place::Start);
        assert_eq!(
            place(Some(("a", 10)), "b", 10, 1),
            Place::Mismatch { expect: 0 }
        );
        // The end is checked, overflow included.
        assert_eq!(
            place(None, "a", 0, MAX_SNAPSHOT_BYTES as usize),
            Place::Start
        );
        assert_eq!(
            place(None, "a", 0, MAX_SNAPSHOT_BYTES as usize + 1),
            Place::TooLarge
        );
        assert_eq!(place(Some(("a", 10)), "a", u64::MAX, 2), Place::TooLarge);
    }
}
