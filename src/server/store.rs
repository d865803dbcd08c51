//! Raft's durable state in one redb file: the log, the vote, and the state machine.
//!
//! Durability rules (docs/servers.md), enforced here:
//! - `save_vote` commits with `Durability::Immediate`: the vote is on disk before it is used.
//! - `append` commits with `Durability::Immediate` and only then reports the entries flushed, so
//!   an entry counted towards a quorum is on that server's disk.
//! - state-machine writes commit with `Durability::None` and become durable with the next
//!   immediate commit of the same file; a crash can only leave the state machine *behind* its
//!   log, and openraft re-applies from the recorded last-applied id.

// openraft's StorageError (320 bytes) is the error type its storage traits require.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, StorageIOError,
};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::types::{
    Command, CommandResult, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
    Vote,
};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SM: TableDefinition<&str, &[u8]> = TableDefinition::new("sm");

type Result<T> = std::result::Result<T, StorageError>;

/// Turns any storage-layer error into openraft's, tagged read or write.
trait Io<T> {
    fn rd(self) -> Result<T>;
    fn wr(self) -> Result<T>;
}

impl<T, E: std::error::Error + 'static> Io<T> for std::result::Result<T, E> {
    fn rd(self) -> Result<T> {
        self.map_err(|e| {
            StorageIOError::new(ErrorSubject::Store, ErrorVerb::Read, AnyError::new(&e)).into()
        })
    }
    fn wr(self) -> Result<T> {
        self.map_err(|e| {
            StorageIOError::new(ErrorSubject::Store, ErrorVerb::Write, AnyError::new(&e)).into()
        })
    }
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(v).wr()
}

fn decode<T: for<'a> Deserialize<'a>>(b: &[u8]) -> Result<T> {
    postcard::from_bytes(b).rd()
}

/// Opens (creating if needed) `<dir>/raft.redb` and returns the two halves openraft needs.
pub fn open(dir: &Path) -> std::result::Result<(LogStore, StateMachineStore), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join("raft.redb");
    let db = Database::create(&path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let init = || -> std::result::Result<(), redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.open_table(SM)?;
        txn.commit()?;
        Ok(())
    };
    init().map_err(|e| format!("cannot initialise {}: {e}", path.display()))?;
    let db = Arc::new(db);
    let sm = StateMachineStore::load(db.clone())
        .map_err(|e| format!("cannot read the state machine in {}: {e}", path.display()))?;
    Ok((LogStore { db }, sm))
}

/// The Raft log and vote.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    fn get_meta<T: for<'a> Deserialize<'a>>(&self, key: &str) -> Result<Option<T>> {
        let txn = self.db.begin_read().rd()?;
        let t = txn.open_table(META).rd()?;
        match t.get(key).rd()? {
            None => Ok(None),
            Some(v) => decode(v.value()).map(Some),
        }
    }

    fn put_meta<T: Serialize>(&self, key: &str, value: &T, durability: Durability) -> Result<()> {
        let bytes = encode(value)?;
        let mut txn = self.db.begin_write().wr()?;
        txn.set_durability(durability).wr()?;
        {
            let mut t = txn.open_table(META).wr()?;
            t.insert(key, bytes.as_slice()).wr()?;
        }
        txn.commit().wr()
    }

    /// Whether this server holds any Raft state (a vote or a log entry): such a server must
    /// never bootstrap a cluster again.
    pub fn has_state(&self) -> Result<bool> {
        if self.get_meta::<Vote>("vote")?.is_some() {
            return Ok(true);
        }
        let txn = self.db.begin_read().rd()?;
        let t = txn.open_table(LOG).rd()?;
        Ok(!t.is_empty().rd()?)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>> {
        let txn = self.db.begin_read().rd()?;
        let t = txn.open_table(LOG).rd()?;
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x + 1,
            Bound::Unbounded => 0,
        };
        let mut out = Vec::new();
        for item in t.range(start..).rd()? {
            let (k, v) = item.rd()?;
            if !range.contains(&k.value()) {
                break;
            }
            out.push(decode::<Entry>(v.value())?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let last_purged: Option<LogId> = self.get_meta("last_purged")?;
        let txn = self.db.begin_read().rd()?;
        let t = txn.open_table(LOG).rd()?;
        let last = match t.last().rd()? {
            Some((_, v)) => Some(decode::<Entry>(v.value())?.log_id),
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<()> {
        // Durable before it returns: a server must never vote twice in one term.
        self.put_meta("vote", vote, Durability::Immediate)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>> {
        self.get_meta("vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<()> {
        // Not required for safety (the commit index can be re-learned); written lazily.
        self.put_meta("committed", &committed, Durability::None)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>> {
        Ok(self.get_meta::<Option<LogId>>("committed")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let txn = self.db.begin_write().wr()?;
        {
            let mut t = txn.open_table(LOG).wr()?;
            for e in entries {
                let bytes = encode(&e)?;
                t.insert(e.log_id.index, bytes.as_slice()).wr()?;
            }
        }
        // Durability::Immediate (the default): fsynced when commit returns; only then flushed.
        let result = txn
            .commit()
            .map_err(|e| std::io::Error::other(e.to_string()));
        let ok = result.is_ok();
        callback.log_io_completed(result);
        if ok {
            Ok(())
        } else {
            Err(StorageIOError::write_logs(AnyError::error("log commit failed")).into())
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<()> {
        let txn = self.db.begin_write().wr()?;
        {
            let mut t = txn.open_table(LOG).wr()?;
            t.retain_in(log_id.index.., |_, _| false).wr()?;
        }
        txn.commit().wr()
    }

    async fn purge(&mut self, log_id: LogId) -> Result<()> {
        let bytes = encode(&log_id)?;
        let txn = self.db.begin_write().wr()?;
        {
            let mut m = txn.open_table(META).wr()?;
            m.insert("last_purged", bytes.as_slice()).wr()?;
            let mut t = txn.open_table(LOG).wr()?;
            t.retain_in(..=log_id.index, |_, _| false).wr()?;
        }
        txn.commit().wr()
    }
}

/// The replicated state (small for now; the catalog and KV store join it later).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SmState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub cluster_id: Option<Uuid>,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

/// The state machine: an in-memory copy for reads, written through to redb on every apply.
#[derive(Clone)]
pub struct StateMachineStore {
    db: Arc<Database>,
    /// Shared with the server for status reads (cluster id, applied index).
    pub state: Arc<RwLock<SmState>>,
}

impl StateMachineStore {
    fn load(db: Arc<Database>) -> std::result::Result<Self, redb::Error> {
        let mut state = SmState::default();
        {
            let txn = db.begin_read()?;
            let t = txn.open_table(SM)?;
            if let Some(v) = t.get("state")? {
                state = postcard::from_bytes(v.value())
                    .map_err(|e| redb::Error::Corrupted(e.to_string()))?;
            }
        }
        Ok(Self {
            db,
            state: Arc::new(RwLock::new(state)),
        })
    }

    fn persist(&self, state: &SmState, snapshot: Option<&StoredSnapshot>) -> Result<()> {
        let bytes = encode(state)?;
        let snap = snapshot.map(encode).transpose()?;
        let mut txn = self.db.begin_write().wr()?;
        // Durable with the next log append (same file); see the module docs.
        let durability = if snap.is_some() {
            Durability::Immediate
        } else {
            Durability::None
        };
        txn.set_durability(durability).wr()?;
        {
            let mut t = txn.open_table(SM).wr()?;
            t.insert("state", bytes.as_slice()).wr()?;
            if let Some(s) = &snap {
                t.insert("snapshot", s.as_slice()).wr()?;
            }
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
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let state = self.state.read().expect("sm lock").clone();
        let data = encode(&state)?;
        let id = match state.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, Uuid::new_v4().simple()),
            None => format!("empty-{}", Uuid::new_v4().simple()),
        };
        let meta = SnapshotMeta {
            last_log_id: state.last_applied,
            last_membership: state.membership.clone(),
            snapshot_id: id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        self.persist(&state, Some(&stored))?;
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
        let mut next = self.state.read().expect("sm lock").clone();
        let mut results = Vec::new();
        for e in entries {
            next.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(Command::Noop) => {}
                EntryPayload::Normal(Command::SetClusterId(id)) => {
                    if next.cluster_id.is_none() {
                        next.cluster_id = Some(id);
                    }
                }
                EntryPayload::Membership(m) => {
                    next.membership = StoredMembership::new(Some(e.log_id), m);
                }
            }
            results.push(CommandResult {
                cluster_id: next.cluster_id,
            });
        }
        self.persist(&next, None)?;
        *self.state.write().expect("sm lock") = next;
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
        let mut state: SmState = decode(&data)?;
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        self.persist(&state, Some(&stored))?;
        *self.state.write().expect("sm lock") = state;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>> {
        Ok(self.read_snapshot()?.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::testing::{StoreBuilder, Suite};

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore)> {
            let dir = tempfile::tempdir().expect("temp dir");
            let (log, sm) = open(dir.path()).expect("open store");
            Ok((dir, log, sm))
        }
    }

    /// openraft's own storage conformance suite, against the redb store.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).expect("storage suite");
    }

    #[tokio::test]
    async fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _sm) = open(dir.path()).unwrap();
            assert!(!log.has_state().unwrap());
            log.save_vote(&Vote::new(3, 7)).await.unwrap();
        }
        let (mut log, _sm) = open(dir.path()).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 7)));
        assert!(log.has_state().unwrap());
    }
}
