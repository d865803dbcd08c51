//! Raft's durable state in one redb file: the log, the vote, and the state machine.
//!
//! Durability rules (docs/servers.md), enforced here:
//! - `save_vote` commits with `Durability::Immediate`: the vote is on disk before it is used.
//! - `append` hands entries to the log writer thread, which commits them with
//!   `Durability::Immediate` (consecutive appends share one commit: group commit) and only then
//!   reports them flushed, so an entry counted towards a quorum is on that server's disk. Until
//!   then they are readable from memory, as openraft requires.
//! - the state machine lives in memory; it is durable through the log and the snapshots. A
//!   snapshot is committed with `Durability::Immediate` before openraft may purge the log behind
//!   it, and at start the state machine is the last snapshot, with openraft re-applying the
//!   committed log after it (at most 4,096 + 1,024 entries, docs/state.md).

// openraft's StorageError (320 bytes) is the error type its storage traits require.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

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
    let pending: Pending = Arc::new(Mutex::new(BTreeMap::new()));
    let (tx, rx) = std::sync::mpsc::channel::<WriteOp>();
    let (wdb, wpending) = (db.clone(), pending.clone());
    std::thread::Builder::new()
        .name("raft-log-writer".into())
        .spawn(move || log_writer(wdb, wpending, rx))
        .map_err(|e| format!("cannot start the log writer thread: {e}"))?;
    Ok((
        LogStore {
            db,
            pending,
            writer: tx,
        },
        sm,
    ))
}

/// Entries handed to `append` whose commit has not yet returned: readable at once, as openraft
/// requires, and dropped from here once on disk.
type Pending = Arc<Mutex<BTreeMap<u64, Entry>>>;

/// Work for the log writer thread, carried out in the order sent.
enum WriteOp {
    Append(Vec<Entry>, LogFlushed<TypeConfig>),
    Truncate(u64, tokio::sync::oneshot::Sender<Result<()>>),
    Purge(LogId, tokio::sync::oneshot::Sender<Result<()>>),
    Meta(
        &'static str,
        Vec<u8>,
        Durability,
        tokio::sync::oneshot::Sender<Result<()>>,
    ),
    /// The commit index (encoded), written in the same transaction as the next appends and
    /// never waited for: openraft awaits `save_committed` on every commit, and a round trip to
    /// this thread there held the Raft core behind the disk (docs/performance.md).
    Committed(Vec<u8>),
}

/// The one thread that writes the log: consecutive appends share one transaction and one fsync
/// (group commit), and no tokio worker ever blocks on the disk.
fn log_writer(db: Arc<Database>, pending: Pending, rx: std::sync::mpsc::Receiver<WriteOp>) {
    while let Ok(first) = rx.recv() {
        let mut ops = vec![first];
        while ops.len() < 4096 {
            match rx.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let mut batch: Vec<(Vec<Entry>, LogFlushed<TypeConfig>)> = Vec::new();
        let mut committed = None;
        for op in ops {
            match op {
                WriteOp::Append(entries, cb) => batch.push((entries, cb)),
                WriteOp::Committed(bytes) => committed = Some(bytes),
                other => {
                    flush_appends(&db, &pending, std::mem::take(&mut batch), committed.take());
                    run_op(&db, other);
                }
            }
        }
        flush_appends(&db, &pending, batch, committed);
    }
}

/// Commits `batch` (and the latest commit index, if one came) in one transaction, then
/// reports each append flushed.
fn flush_appends(
    db: &Database,
    pending: &Pending,
    batch: Vec<(Vec<Entry>, LogFlushed<TypeConfig>)>,
    committed: Option<Vec<u8>>,
) {
    if batch.is_empty() && committed.is_none() {
        return;
    }
    let write = || -> std::result::Result<(), String> {
        let mut txn = db.begin_write().map_err(|e| e.to_string())?;
        if batch.is_empty() {
            // Only the commit index: it need not be durable at once (see `save_committed`).
            txn.set_durability(Durability::None)
                .map_err(|e| e.to_string())?;
        }
        if let Some(bytes) = &committed {
            txn.open_table(META)
                .map_err(|e| e.to_string())?
                .insert("committed", bytes.as_slice())
                .map_err(|e| e.to_string())?;
        }
        {
            let mut t = txn.open_table(LOG).map_err(|e| e.to_string())?;
            for (entries, _) in &batch {
                for e in entries {
                    let bytes = postcard::to_allocvec(e).map_err(|e| e.to_string())?;
                    t.insert(e.log_id.index, bytes.as_slice())
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        // Durability::Immediate (the default): on disk when commit returns; only then flushed.
        txn.commit().map_err(|e| e.to_string())
    };
    let result = write();
    {
        let mut p = pending.lock().expect("pending lock");
        for (entries, _) in &batch {
            for e in entries {
                if p.get(&e.log_id.index).is_some_and(|q| q.log_id == e.log_id) {
                    p.remove(&e.log_id.index);
                }
            }
        }
    }
    for (_, cb) in batch {
        cb.log_io_completed(result.clone().map_err(std::io::Error::other));
    }
}

fn run_op(db: &Database, op: WriteOp) {
    let run = |f: &dyn Fn(&redb::WriteTransaction) -> std::result::Result<(), redb::Error>,
               durability: Durability|
     -> Result<()> {
        let mut txn = db.begin_write().wr()?;
        txn.set_durability(durability).wr()?;
        f(&txn).wr()?;
        txn.commit().wr()
    };
    match op {
        WriteOp::Append(..) | WriteOp::Committed(..) => {
            unreachable!("appends and the commit index are batched")
        }
        WriteOp::Truncate(from, reply) => {
            let r = run(
                &|txn| {
                    txn.open_table(LOG)?.retain_in(from.., |_, _| false)?;
                    Ok(())
                },
                Durability::Immediate,
            );
            let _ = reply.send(r);
        }
        WriteOp::Purge(upto, reply) => {
            let r = encode(&upto).and_then(|bytes| {
                run(
                    &|txn| {
                        txn.open_table(META)?
                            .insert("last_purged", bytes.as_slice())?;
                        txn.open_table(LOG)?
                            .retain_in(..=upto.index, |_, _| false)?;
                        Ok(())
                    },
                    Durability::Immediate,
                )
            });
            let _ = reply.send(r);
        }
        WriteOp::Meta(key, bytes, durability, reply) => {
            let r = run(
                &|txn| {
                    txn.open_table(META)?.insert(key, bytes.as_slice())?;
                    Ok(())
                },
                durability,
            );
            let _ = reply.send(r);
        }
    }
}

/// The Raft log and vote.
/// What `muster operator raft recover` did to one data directory.
#[derive(Debug)]
pub struct Recovered {
    /// The index and term of the configuration entry written.
    pub index: u64,
    pub term: u64,
    /// The servers of the Raft configuration it replaced.
    pub previous: Vec<super::types::ServerNode>,
}

/// Outage recovery (docs/operations.md): with the server stopped, appends a configuration
/// entry naming exactly `voters` to the log in `<dir>/raft.redb`, as hashicorp/raft's
/// RecoverCluster does for Consul's peers.json.
///
/// The entry goes at the next index under a term above any the log or the vote has seen, and
/// the vote moves to that term (not committed). So when several survivors are recovered with
/// the same list, the one with the longest log wins the election (its last entry has the same
/// term and a higher index), and on the others the leader's entries at that index conflict by
/// term and overwrite theirs: Raft's log matching property holds.
pub fn recover(
    dir: &Path,
    self_id: super::types::NodeId,
    mut nodes: std::collections::BTreeMap<super::types::NodeId, super::types::ServerNode>,
    voters: std::collections::BTreeSet<super::types::NodeId>,
) -> std::result::Result<Recovered, String> {
    use super::types::ServerNode;
    let path = dir.join("raft.redb");
    if !path.exists() {
        return Err(format!(
            "{} does not exist: this data directory holds no Raft state to recover",
            path.display()
        ));
    }
    let db = Database::open(&path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => format!(
            "{} is in use: stop the muster agent on this data directory first",
            path.display()
        ),
        other => format!("cannot open {}: {other}", path.display()),
    })?;
    let io = |e: redb::Error| format!("{}: {e}", path.display());
    let txn = db.begin_write().map_err(|e| io(e.into()))?;
    let (recovered, entry, vote) = {
        let meta = txn.open_table(META).map_err(|e| io(e.into()))?;
        let log = txn.open_table(LOG).map_err(|e| io(e.into()))?;
        let get = |key: &str| -> std::result::Result<Option<Vec<u8>>, String> {
            Ok(meta
                .get(key)
                .map_err(|e| io(e.into()))?
                .map(|v| v.value().to_vec()))
        };
        let vote: Option<Vote> = match get("vote")? {
            Some(b) => Some(postcard::from_bytes(&b).map_err(|e| format!("corrupt vote: {e}"))?),
            None => None,
        };
        let purged: Option<LogId> = match get("last_purged")? {
            Some(b) => {
                Some(postcard::from_bytes(&b).map_err(|e| format!("corrupt purge mark: {e}"))?)
            }
            None => None,
        };
        let last_entry: Option<Entry> = match log.last().map_err(|e| io(e.into()))? {
            Some((_, v)) => Some(
                postcard::from_bytes(v.value()).map_err(|e| format!("corrupt log entry: {e}"))?,
            ),
            None => None,
        };
        let last = last_entry.as_ref().map(|e| e.log_id).or(purged);
        if last.is_none() && vote.is_none() {
            return Err(format!(
                "{} holds no Raft state: a new server needs no recovery, it joins",
                path.display()
            ));
        }
        // The configuration it replaces: the last membership entry in the log, else the
        // snapshot's.
        let mut previous: Vec<ServerNode> = Vec::new();
        for item in log.iter().map_err(|e| io(e.into()))?.rev() {
            let (_, v) = item.map_err(|e| io(e.into()))?;
            let e: Entry =
                postcard::from_bytes(v.value()).map_err(|e| format!("corrupt log entry: {e}"))?;
            if let EntryPayload::Membership(m) = e.payload {
                for (id, n) in m.nodes() {
                    // peers.json has no names: keep the ones this server knew.
                    if let Some(new) = nodes.get_mut(id) {
                        if new.name.is_empty() {
                            new.name = n.name.clone();
                        }
                    }
                    previous.push(n.clone());
                }
                break;
            }
        }
        let term = last
            .map(|l| l.leader_id.term)
            .unwrap_or(0)
            .max(vote.map(|v| v.leader_id().term).unwrap_or(0))
            + 1;
        let index = last.map(|l| l.index + 1).unwrap_or(1);
        for (id, n) in nodes.iter_mut() {
            if n.name.is_empty() {
                n.name = super::types::node_uuid(*id).to_string();
            }
        }
        let membership = openraft::Membership::new(vec![voters], nodes);
        let entry = Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(term, self_id), index),
            payload: EntryPayload::Membership(membership),
        };
        (
            Recovered {
                index,
                term,
                previous,
            },
            entry,
            Vote::new(term, self_id),
        )
    };
    {
        let mut log = txn.open_table(LOG).map_err(|e| io(e.into()))?;
        let bytes = postcard::to_allocvec(&entry).map_err(|e| e.to_string())?;
        log.insert(entry.log_id.index, bytes.as_slice())
            .map_err(|e| io(e.into()))?;
        let mut meta = txn.open_table(META).map_err(|e| io(e.into()))?;
        let bytes = postcard::to_allocvec(&vote).map_err(|e| e.to_string())?;
        meta.insert("vote", bytes.as_slice())
            .map_err(|e| io(e.into()))?;
    }
    txn.commit().map_err(|e| io(e.into()))?;
    Ok(recovered)
}

#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    pending: Pending,
    writer: std::sync::mpsc::Sender<WriteOp>,
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

    async fn put_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<()> {
        let bytes = encode(value)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(WriteOp::Meta(key, bytes, durability, tx))?;
        rx.await.map_err(|_| writer_gone())?
    }

    fn send(&self, op: WriteOp) -> Result<()> {
        self.writer.send(op).map_err(|_| writer_gone())
    }

    /// Whether this server holds any Raft state (a vote or a log entry): such a server must
    /// never bootstrap a cluster again.
    pub fn has_state(&self) -> Result<bool> {
        if self.get_meta::<Vote>("vote")?.is_some() {
            return Ok(true);
        }
        if !self.pending.lock().expect("pending lock").is_empty() {
            return Ok(true);
        }
        let txn = self.db.begin_read().rd()?;
        let t = txn.open_table(LOG).rd()?;
        Ok(!t.is_empty().rd()?)
    }
}

fn writer_gone() -> StorageError {
    StorageIOError::write_logs(AnyError::error("the log writer thread has stopped")).into()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => x + 1,
            Bound::Unbounded => 0,
        };
        // Snapshot the pending entries first: one that is committed meanwhile is then read from
        // disk below, so none is missed.
        let pending: Vec<Entry> = self
            .pending
            .lock()
            .expect("pending lock")
            .range(start..)
            .take_while(|(i, _)| range.contains(*i))
            .map(|(_, e)| e.clone())
            .collect();
        let mut out: BTreeMap<u64, Entry> = BTreeMap::new();
        let txn = self.db.begin_read().rd()?;
        let t = txn.open_table(LOG).rd()?;
        for item in t.range(start..).rd()? {
            let (k, v) = item.rd()?;
            if !range.contains(&k.value()) {
                break;
            }
            out.insert(k.value(), decode::<Entry>(v.value())?);
        }
        for e in pending {
            out.insert(e.log_id.index, e);
        }
        Ok(out.into_values().collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>> {
        let last_purged: Option<LogId> = self.get_meta("last_purged")?;
        let pending_last = self
            .pending
            .lock()
            .expect("pending lock")
            .values()
            .next_back()
            .map(|e| e.log_id);
        let txn = self.db.begin_read().rd()?;
        let t = txn.open_table(LOG).rd()?;
        let on_disk = match t.last().rd()? {
            Some((_, v)) => Some(decode::<Entry>(v.value())?.log_id),
            None => None,
        };
        let last = pending_last.max(on_disk).or(last_purged);
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
        self.put_meta("vote", vote, Durability::Immediate).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>> {
        self.get_meta("vote")
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<()> {
        // Not required for safety (the commit index can be re-learned): written with the next
        // appends, and not waited for.
        self.send(WriteOp::Committed(encode(&committed)?))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>> {
        Ok(self.get_meta::<Option<LogId>>("committed")?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        // Readable at once through `pending`; the writer thread reports the flush.
        let entries: Vec<Entry> = entries.into_iter().collect();
        {
            let mut p = self.pending.lock().expect("pending lock");
            for e in &entries {
                p.insert(e.log_id.index, e.clone());
            }
        }
        self.send(WriteOp::Append(entries, callback))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<()> {
        self.pending
            .lock()
            .expect("pending lock")
            .retain(|i, _| *i < log_id.index);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(WriteOp::Truncate(log_id.index, tx))?;
        rx.await.map_err(|_| writer_gone())?
    }

    async fn purge(&mut self, log_id: LogId) -> Result<()> {
        self.pending
            .lock()
            .expect("pending lock")
            .retain(|i, _| *i > log_id.index);
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(WriteOp::Purge(log_id, tx))?;
        rx.await.map_err(|_| writer_gone())?
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
    fn load(db: Arc<Database>) -> std::result::Result<Self, redb::Error> {
        let mut state = SmState::default();
        {
            let txn = db.begin_read()?;
            let sm = txn.open_table(SM)?;
            if let Some(v) = sm.get("snapshot")? {
                let corrupt = |e: postcard::Error| redb::Error::Corrupted(e.to_string());
                let stored: StoredSnapshot = postcard::from_bytes(v.value()).map_err(corrupt)?;
                let body: SnapshotBody = postcard::from_bytes(&stored.data).map_err(corrupt)?;
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
        let mut results = Vec::new();
        // Which rows changed is of no use to an in-memory state machine.
        let mut changes = Changes::default();
        // Applied in place under the write lock; readers see whole batches only.
        let mut s = self.state.write().expect("sm lock");
        for e in entries {
            s.last_applied = Some(e.log_id);
            let index = e.log_id.index;
            let mut oks = Vec::new();
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
            });
        }
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
        // The writer thread of the first store releases the file once it sees its channel
        // closed; wait for that (as a restarted process would not need to).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let (mut log, _sm) = loop {
            match open(dir.path()) {
                Ok(x) => break x,
                Err(e) if std::time::Instant::now() < deadline && e.contains("already open") => {
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 7)));
        assert!(log.has_state().unwrap());
    }
}
