//! Group commit of concurrent writes on the leader (docs/state.md, "Batched writes").
//!
//! openraft 0.9 turns every `client_write` into its own log entry and, inside its single core
//! task, waits for that entry to reach the leader's disk before it takes the next request
//! (`RaftCore::append_to_log` awaits the flush). With one entry per write, a leader therefore
//! commits one write per fsync, serially, while its followers and its own CPU sit idle. Here
//! writes that arrive while earlier ones are in flight queue up, and the queue goes into the
//! next entry as one `Command::Writes`: the fsync, the AppendEntries round trip and the apply are
//! shared by the whole batch. This is the proposal batching etcd's raft loop and hashicorp/raft's
//! `applyCh` draining do, moved above openraft because its 0.9 API takes one entry per call.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use super::protocol::WriteOutcome;
use super::state::{StateCommand, Write};
use super::types::{Command, Raft};

/// Entries in flight at once. One would leave the leader idle while a batch is applied and
/// answered; more than two splits the queue into smaller batches for no gain (measured with
/// `kv_bench`, docs/performance.md).
const MAX_IN_FLIGHT: usize = 2;
/// Most commands in one entry.
const MAX_BATCH_COMMANDS: usize = 1024;
/// Most key and value bytes in one entry (a larger single write still goes, alone).
const MAX_BATCH_BYTES: usize = 1 << 20;
/// What the leader holds of writes not yet answered, queued or in flight, in permits of
/// [`permits`]: 65,536 writes, or 64 MiB of keys and values, whichever is reached first. A
/// leader whose disk or followers fall behind would otherwise buffer every write sent to it
/// until it runs out of memory (docs/state.md, "Batched writes").
const MAX_HELD_PERMITS: usize = 1 << 16;
/// How long a write waits for room in a full queue before it is refused, unapplied.
const ADMISSION_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Why a batched write did not commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// This server is not (or no longer) the leader: send the write to the leader.
    NotLeader,
    /// Raft refused or failed the write.
    Failed(String),
    /// The queue stayed full for 2 s (`ADMISSION_WAIT`): the write was not queued, so it is
    /// certainly not applied.
    Full,
}

/// Permits a write of `weight` bytes holds while it is queued or in flight: one for the
/// write, one for each KiB it carries.
fn permits(weight: usize) -> u32 {
    (1 + weight / 1024).min(MAX_HELD_PERMITS) as u32
}

struct Queued {
    write: Write,
    /// The leader's wall clock when the write arrived, in ms since the epoch: the entry's
    /// stamp is its newest write's (docs/state.md, "Request ids", why arrival and not proposal).
    arrived_ms: u64,
    reply: oneshot::Sender<Result<WriteOutcome, BatchError>>,
    /// Its room in the queue, given back once it is answered (even if its caller gave up).
    room: OwnedSemaphorePermit,
}

/// The leader's write queue. Cheap to share; the batching task stops when it is dropped.
pub struct WriteBatcher {
    tx: mpsc::UnboundedSender<Queued>,
    /// Room for writes not yet answered (the channel itself is unbounded: this bounds it).
    room: Room,
}

/// Room for writes not yet answered: [`MAX_HELD_PERMITS`] permits, [`permits`] per write.
#[derive(Clone)]
struct Room(Arc<Semaphore>);

impl Room {
    fn new() -> Self {
        Room(Arc::new(Semaphore::new(MAX_HELD_PERMITS)))
    }

    /// Room for a write of `weight` bytes, waiting at most [`ADMISSION_WAIT`] for it.
    async fn admit(&self, weight: usize) -> Result<OwnedSemaphorePermit, BatchError> {
        match tokio::time::timeout(
            ADMISSION_WAIT,
            self.0.clone().acquire_many_owned(permits(weight)),
        )
        .await
        {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(BatchError::Failed("the server is shutting down".into())),
            Err(_) => Err(BatchError::Full),
        }
    }
}

impl WriteBatcher {
    /// Starts the batching task for `raft`.
    pub fn start(raft: Raft) -> (WriteBatcher, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(raft, rx));
        (
            WriteBatcher {
                tx,
                room: Room::new(),
            },
            task,
        )
    }

    /// Commits `write` in the next entry; answers once a quorum has it and it is applied
    /// (with the first outcome, if its request id was applied before).
    pub async fn write(&self, write: Write) -> Result<WriteOutcome, BatchError> {
        let room = self.room.admit(weight(&write.cmd)).await?;
        let (reply, answer) = oneshot::channel();
        // Before the epoch only with a broken clock; the stamp then ages nothing.
        let arrived_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.tx
            .send(Queued {
                write,
                arrived_ms,
                reply,
                room,
            })
            .map_err(|_| BatchError::Failed("the server is shutting down".into()))?;
        answer
            .await
            .unwrap_or_else(|_| Err(BatchError::Failed("the server is shutting down".into())))
    }
}

/// Bytes a command adds to an entry, near enough for the batch cap.
pub(crate) fn weight(cmd: &StateCommand) -> usize {
    match cmd {
        StateCommand::KvSet { key, value, .. } => key.len() + value.len(),
        StateCommand::KvDelete { key, .. } => key.len(),
        StateCommand::Restore(bytes) => bytes.len(),
        StateCommand::RestorePiece { bytes, .. } => bytes.len(),
        StateCommand::AclPolicySet(p) => 256 + p.name.len() + p.description.len() + p.rules.len(),
        StateCommand::AclTokenSet(t) | StateCommand::AclBootstrap { token: t } => {
            256 + t.secret_id.len() + t.description.len() + 16 * t.policies.len()
        }
        _ => 256,
    }
}

async fn run(raft: Raft, mut rx: mpsc::UnboundedReceiver<Queued>) {
    let n = std::env::var("MUSTER_BATCH_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MAX_IN_FLIGHT);
    let slots = Arc::new(Semaphore::new(n));
    let mut carried: Option<Queued> = None;
    loop {
        let first = match carried.take() {
            Some(q) => q,
            None => match rx.recv().await {
                Some(q) => q,
                None => return,
            },
        };
        // Waiting for a slot is what lets the queue grow into a batch under load.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut bytes = weight(&first.write.cmd);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_COMMANDS {
            match rx.try_recv() {
                Ok(q) => {
                    let w = weight(&q.write.cmd);
                    if bytes + w > MAX_BATCH_BYTES {
                        carried = Some(q);
                        break;
                    }
                    bytes += w;
                    batch.push(q);
                }
                Err(_) => break,
            }
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            commit(&raft, batch).await;
            drop(slot);
        });
    }
}

/// Writes one entry for `batch` and answers each of its writers.
async fn commit(raft: &Raft, batch: Vec<Queued>) {
    let stamp_ms = batch.iter().map(|q| q.arrived_ms).max().unwrap_or(0);
    // The room goes back when this function returns, after every writer has its answer.
    let mut rooms = Vec::with_capacity(batch.len());
    let (writes, replies): (Vec<Write>, Vec<_>) = batch
        .into_iter()
        .map(|q| {
            rooms.push(q.room);
            (q.write, q.reply)
        })
        .unzip();
    let started = std::time::Instant::now();
    let written = raft
        .client_write(Command::Writes { stamp_ms, writes })
        .await;
    // docs/metrics.md: from proposal to the leader's answer (committed and applied).
    metrics::histogram!("muster.raft.commitTime").record(started.elapsed().as_secs_f64() * 1000.0);
    match written {
        Ok(resp) => {
            let index = resp.data.index;
            for (i, reply) in replies.into_iter().enumerate() {
                let outcome = resp
                    .data
                    .outcomes
                    .get(i)
                    .map(|o| WriteOutcome {
                        ok: o.ok,
                        index: o.index,
                    })
                    .unwrap_or(WriteOutcome { ok: false, index });
                let _ = reply.send(Ok(outcome));
            }
        }
        Err(e) => {
            let err = match e {
                RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => BatchError::NotLeader,
                e => BatchError::Failed(format!("write failed: {e}")),
            };
            for reply in replies {
                let _ = reply.send(Err(err.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_batch_cap_counts_keys_and_values() {
        let set = StateCommand::KvSet {
            key: "k".repeat(10),
            value: vec![0; 100],
            flags: 0,
            cas: None,
        };
        assert_eq!(weight(&set), 110);
        let del = StateCommand::KvDelete {
            key: "abc".into(),
            recurse: true,
            cas: None,
        };
        assert_eq!(weight(&del), 3);
        assert_eq!(weight(&StateCommand::Restore(vec![0; 5000])), 5000);
    }

    /// The queue is bounded: 64 MiB of values fill it, the next write waits, and is refused
    /// as `Full` after [`ADMISSION_WAIT`] unless an answered write makes room.
    #[tokio::test(start_paused = true)]
    async fn a_full_queue_refuses_writes_after_a_wait_and_answered_ones_make_room() {
        assert_eq!(permits(10), 1);
        assert_eq!(permits(512 << 10), 513);
        let room = Room::new();
        let mut held = Vec::new();
        // 127 values of 512 KiB plus small writes fill 65,536 permits exactly.
        for _ in 0..127 {
            held.push(room.admit(512 << 10).await.expect("room"));
        }
        for _ in 0..(MAX_HELD_PERMITS - 127 * 513) {
            held.push(room.admit(3).await.expect("room"));
        }
        let started = tokio::time::Instant::now();
        assert!(matches!(room.admit(3).await, Err(BatchError::Full)));
        assert_eq!(started.elapsed(), ADMISSION_WAIT);
        // A write that waits gets in as soon as an earlier one is answered.
        let waiting = tokio::spawn({
            let room = room.clone();
            async move { room.admit(3).await.map(drop) }
        });
        tokio::time::sleep(ADMISSION_WAIT / 2).await;
        held.pop();
        assert!(waiting.await.unwrap().is_ok());
        // A write larger than the whole room still gets in once the room is empty.
        drop(held);
        assert!(room.admit(usize::MAX / 2).await.is_ok());
    }
}
