//! The state machine in redb: an in-memory copy for reads, written through on every apply,
//! and the snapshots openraft builds and installs.

// openraft's StorageError (320 bytes) is the error type its storage traits require.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::{Arc, RwLock};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{AnyError, EntryPayload, OptionalSend, RaftSnapshotBuilder, StorageIOError};
use redb::{Database, ReadableDatabase};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use super::{decode, encode, Io, Result, SM};
use crate::server::state::{Changes, SnapshotBody, State};
use crate::server::types::{
    Command, CommandResult, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

/// The state machine: what has been applied, and the replicated state itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SmState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub cluster_id: Option<Uuid>,
    pub data: State,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
}

/// The state machine: an in-memory copy for reads, written through to redb on every apply.
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<Database>,
    /// Shared with the server for reads (KV, catalog, cluster id, applied index).
    pub state: Arc<RwLock<SmState>>,
    /// Bumped to the applied index after every apply: blocking queries wait on it.
    pub applied: Arc<watch::Sender<u64>>,
}

impl StateMachineStore {
    /// The state machine lives in memory and is made durable by the log and the snapshots:
    /// at start it is the last snapshot, and openraft re-applies the committed log after it.
    pub(super) fn load(db: Arc<Database>) -> std::result::Result<Self, redb::Error> {
        let mut state = SmState::default();
        {
            let txn = db.begin_read()?;
            let sm = txn.open_table(SM)?;
            if let Some(v) = sm.get("snapshot")? {
                let corrupt = |e: postcard::Error| redb::Error::Corrupted(e.to_string());
                let stored: StoredSnapshot = postcard::from_bytes(v.value()).map_err(corrupt)?;
                let body = SnapshotBody::decode(&stored.data).map_err(corrupt)?;
                state = SmState {
                    last_applied: stored.meta.last_log_id,
                    membership: stored.meta.last_membership,
                    cluster_id: body.cluster_id,
                    data: body.data,
                };
            }
        }
        let applied = state.last_applied.map(|l| l.index).unwrap_or(0);
        Ok(Self {
            db,
            state: Arc::new(RwLock::new(state)),
            applied: Arc::new(watch::channel(applied).0),
        })
    }

    /// Writes a snapshot durably: the log behind it may be purged as soon as this returns.
    fn persist_snapshot(&self, snapshot: &StoredSnapshot) -> Result<()> {
        let bytes = encode(snapshot)?;
        let txn = self.db.begin_write().wr()?;
        {
            let mut sm = txn.open_table(SM).wr()?;
            sm.insert("snapshot", bytes.as_slice()).wr()?;
        }
        txn.commit().wr()
    }

    fn read_snapshot(&self) -> Result<Option<StoredSnapshot>> {
        let txn = self.db.begin_read().rd()?;
        let t = txn.open_table(SM).rd()?;
        match t.get("snapshot").rd()? {
            None => Ok(None),
            Some(v) => decode(v.value()).map(Some),
        }
    }

    /// The snapshot body of the current state (also used by `muster snapshot save`).
    ///
    /// Encoded straight from the live state under the read lock: a deep copy first took longer
    /// than the encoding (a map of 64,000 keys: one allocation per key and per value), and
    /// applies wait for the lock meanwhile.
    pub fn snapshot_body(&self) -> (Option<LogId>, Vec<u8>) {
        let (last, _, data) = self.encode_state();
        (last, data)
    }

    /// The applied position, membership and encoded body, all read under one lock so that
    /// they agree.
    fn encode_state(&self) -> (Option<LogId>, StoredMembership, Vec<u8>) {
        /// `SnapshotBody` by reference: the same fields in the same order, so the same bytes.
        #[derive(Serialize)]
        struct BodyRef<'a> {
            cluster_id: Option<Uuid>,
            data: &'a State,
        }
        let s = self.state.read().expect("sm lock");
        let body = BodyRef {
            cluster_id: s.cluster_id,
            data: &s.data,
        };
        let bytes = postcard::to_allocvec(&body).expect("in-memory state encodes");
        (s.last_applied, s.membership.clone(), bytes)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        // Encoding and committing a large state takes milliseconds of CPU and disk: off the
        // tokio workers, which serve Raft and the HTTP API meanwhile.
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.build_snapshot_blocking())
            .await
            .map_err(|e| {
                StorageError::from(StorageIOError::write_snapshot(
                    None,
                    AnyError::error(format!("snapshot builder stopped: {e}")),
                ))
            })?
    }
}

impl StateMachineStore {
    fn build_snapshot_blocking(&self) -> Result<Snapshot<TypeConfig>> {
        let (last, membership, data) = self.encode_state();
        let id = match last {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, Uuid::new_v4().simple()),
            None => format!("empty-{}", Uuid::new_v4().simple()),
        };
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: membership,
            snapshot_id: id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        self.persist_snapshot(&stored)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership)> {
        let s = self.state.read().expect("sm lock");
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // docs/metrics.md: the time to apply one batch of entries.
        let started = std::time::Instant::now();
        let mut results = Vec::new();
        // Which rows changed is of no use to an in-memory state machine.
        let mut changes = Changes::default();
        // Applied in place under the write lock; readers see whole batches only.
        let mut s = self.state.write().expect("sm lock");
        for e in entries {
            s.last_applied = Some(e.log_id);
            let index = e.log_id.index;
            let mut oks = Vec::new();
            let mut outcomes = Vec::new();
            let ok = match e.payload {
                EntryPayload::Blank | EntryPayload::Normal(Command::Noop) => true,
                EntryPayload::Normal(Command::SetClusterId(id)) => {
                    if s.cluster_id.is_none() {
                        s.cluster_id = Some(id);
                    }
                    true
                }
                EntryPayload::Normal(Command::State(cmd)) => {
                    s.data.apply(index, &cmd, &mut changes)
                }
                EntryPayload::Normal(Command::Batch(cmds)) => {
                    oks = cmds
                        .iter()
                        .map(|cmd| s.data.apply(index, cmd, &mut changes))
                        .collect();
                    true
                }
                EntryPayload::Normal(Command::Writes { stamp_ms, writes }) => {
                    outcomes = s.data.apply_writes(index, stamp_ms, &writes, &mut changes);
                    true
                }
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(e.log_id), m);
                    true
                }
            };
            results.push(CommandResult {
                cluster_id: s.cluster_id,
                ok,
                index,
                oks,
                outcomes,
            });
        }
        let applied = s.last_applied.map(|l| l.index).unwrap_or(0);
        drop(s);
        self.applied.send_replace(applied);
        metrics::histogram!("muster.raft.fsm.apply")
            .record(started.elapsed().as_secs_f64() * 1000.0);
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<()> {
        let data = snapshot.into_inner();
        let body = SnapshotBody::decode(&data).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::error(format!("the leader's snapshot does not decode: {e}")),
            ))
        })?;
        let state = SmState {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            cluster_id: body.cluster_id,
            data: body.data,
        };
        tracing::info!(index = ?meta.last_log_id.map(|l| l.index), bytes = data.len(), "installing a snapshot from the leader");
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.persist_snapshot(&stored)?;
        let applied = state.last_applied.map(|l| l.index).unwrap_or(0);
        *self.state.write().expect("sm lock") = state;
        self.applied.send_replace(applied);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        Ok(self.read_snapshot()?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
