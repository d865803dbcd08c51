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
use tokio::sync::watch;
use uuid::Uuid;

use super::state::{Changes, SnapshotBody, State};
use super::types::{
    Command, CommandResult, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
    Vote,
};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SM: TableDefinition<&str, &[u8]> = TableDefinition::new("sm");
const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const TOMB: TableDefinition<&str, u64> = TableDefinition::new("tomb");
const CATALOG: TableDefinition<&str, &[u8]> = TableDefinition::new("catalog");

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
        txn.open_table(KV)?;
        txn.open_table(TOMB)?;
        txn.open_table(CATALOG)?;
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

/// The state machine: what has been applied, and the replicated state itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SmState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
    pub cluster_id: Option<Uuid>,
    pub data: State,
}

/// The `sm/meta` row: everything but the tables.
#[derive(Serialize, Deserialize)]
struct SmMeta {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    cluster_id: Option<Uuid>,
    kv_index: u64,
    catalog_index: u64,
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
    /// Shared with the server for reads (KV, catalog, cluster id, applied index).
    pub state: Arc<RwLock<SmState>>,
    /// Bumped to the applied index after every apply: blocking queries wait on it.
    pub applied: Arc<watch::Sender<u64>>,
}

impl StateMachineStore {
    fn load(db: Arc<Database>) -> std::result::Result<Self, redb::Error> {
        let mut state = SmState::default();
        {
            let corrupt = |e: postcard::Error| redb::Error::Corrupted(e.to_string());
            let txn = db.begin_read()?;
            let sm = txn.open_table(SM)?;
            if let Some(v) = sm.get("meta")? {
                let m: SmMeta = postcard::from_bytes(v.value()).map_err(corrupt)?;
                state.last_applied = m.last_applied;
                state.membership = m.membership;
                state.cluster_id = m.cluster_id;
                state.data.kv_index = m.kv_index;
                state.data.catalog_index = m.catalog_index;
            }
            for row in txn.open_table(KV)?.iter()? {
                let (k, v) = row?;
                state.data.kv.insert(
                    k.value().to_string(),
                    postcard::from_bytes(v.value()).map_err(corrupt)?,
                );
            }
            for row in txn.open_table(TOMB)?.iter()? {
                let (k, v) = row?;
                state
                    .data
                    .tombstones
                    .insert(k.value().to_string(), v.value());
            }
            for row in txn.open_table(CATALOG)?.iter()? {
                let (k, v) = row?;
                state.data.catalog.insert(
                    k.value().to_string(),
                    postcard::from_bytes(v.value()).map_err(corrupt)?,
                );
            }
        }
        let applied = state.last_applied.map(|l| l.index).unwrap_or(0);
        Ok(Self {
            db,
            state: Arc::new(RwLock::new(state)),
            applied: Arc::new(watch::channel(applied).0),
        })
    }

    /// Writes what `changes` names (or everything) and the meta row, in one transaction.
    fn persist(
        &self,
        state: &SmState,
        changes: &Changes,
        snapshot: Option<&StoredSnapshot>,
    ) -> Result<()> {
        let meta = encode(&SmMeta {
            last_applied: state.last_applied,
            membership: state.membership.clone(),
            cluster_id: state.cluster_id,
            kv_index: state.data.kv_index,
            catalog_index: state.data.catalog_index,
        })?;
        let snap = snapshot.map(encode).transpose()?;
        let mut txn = self.db.begin_write().wr()?;
        // Durable with the next log append (same file); see the module docs. A snapshot is
        // written durably at once, since log entries behind it may be purged.
        let durability = if snap.is_some() || changes.all {
            Durability::Immediate
        } else {
            Durability::None
        };
        txn.set_durability(durability).wr()?;
        {
            let mut sm = txn.open_table(SM).wr()?;
            sm.insert("meta", meta.as_slice()).wr()?;
            if let Some(s) = &snap {
                sm.insert("snapshot", s.as_slice()).wr()?;
            }
            let mut kv = txn.open_table(KV).wr()?;
            let mut tomb = txn.open_table(TOMB).wr()?;
            let mut cat = txn.open_table(CATALOG).wr()?;
            if changes.all {
                kv.retain(|_, _| false).wr()?;
                tomb.retain(|_, _| false).wr()?;
                cat.retain(|_, _| false).wr()?;
            }
            let all = changes.all;
            let kv_keys: Vec<&String> = if all {
                state.data.kv.keys().collect()
            } else {
                changes.kv.iter().collect()
            };
            for k in kv_keys {
                match state.data.kv.get(k) {
                    Some(e) => {
                        kv.insert(k.as_str(), encode(e)?.as_slice()).wr()?;
                    }
                    None => {
                        kv.remove(k.as_str()).wr()?;
                    }
                }
            }
            let tomb_keys: Vec<&String> = if all {
                state.data.tombstones.keys().collect()
            } else {
                changes.tombstones.iter().collect()
            };
            for k in tomb_keys {
                match state.data.tombstones.get(k) {
                    Some(i) => {
                        tomb.insert(k.as_str(), *i).wr()?;
                    }
                    None => {
                        tomb.remove(k.as_str()).wr()?;
                    }
                }
            }
            let nodes: Vec<&String> = if all {
                state.data.catalog.keys().collect()
            } else {
                changes.catalog.iter().collect()
            };
            for n in nodes {
                match state.data.catalog.get(n) {
                    Some(node) => {
                        cat.insert(n.as_str(), encode(node)?.as_slice()).wr()?;
                    }
                    None => {
                        cat.remove(n.as_str()).wr()?;
                    }
                }
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

    /// The snapshot body of the current state (also used by `muster snapshot save`).
    pub fn snapshot_body(&self) -> (Option<LogId>, Vec<u8>) {
        let s = self.state.read().expect("sm lock");
        let body = SnapshotBody {
            cluster_id: s.cluster_id,
            data: s.data.clone(),
        };
        (
            s.last_applied,
            postcard::to_allocvec(&body).expect("in-memory state encodes"),
        )
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>> {
        let (last, membership) = {
            let s = self.state.read().expect("sm lock");
            (s.last_applied, s.membership.clone())
        };
        let (_, data) = self.snapshot_body();
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
        let state = self.state.read().expect("sm lock").clone();
        self.persist(&state, &Changes::default(), Some(&stored))?;
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
        let mut results = Vec::new();
        let mut changes = Changes::default();
        // Applied in place under the write lock; readers see whole batches only.
        let mut s = self.state.write().expect("sm lock");
        for e in entries {
            s.last_applied = Some(e.log_id);
            let index = e.log_id.index;
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
                EntryPayload::Membership(m) => {
                    s.membership = StoredMembership::new(Some(e.log_id), m);
                    true
                }
            };
            results.push(CommandResult {
                cluster_id: s.cluster_id,
                ok,
                index,
            });
        }
        self.persist(&s, &changes, None)?;
        let applied = s.last_applied.map(|l| l.index).unwrap_or(0);
        drop(s);
        self.applied.send_replace(applied);
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
        let body: SnapshotBody = decode(&data)?;
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
        self.persist(
            &state,
            &Changes {
                all: true,
                ..Default::default()
            },
            Some(&stored),
        )?;
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
