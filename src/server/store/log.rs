//! The Raft log and the vote in redb, and the one thread that writes them (group commit).

// openraft's StorageError (320 bytes) is the error type its storage traits require.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, OptionalSend, RaftLogReader, StorageIOError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::{Deserialize, Serialize};

use super::{decode, encode, Io, Result, LOG, META};
use crate::server::types::{Entry, LogId, StorageError, TypeConfig, Vote};

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
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    pending: Pending,
    writer: std::sync::mpsc::Sender<WriteOp>,
}

impl LogStore {
    /// The log store over `db`, with its writer thread started.
    pub(super) fn start(db: Arc<Database>) -> std::result::Result<LogStore, super::OpenError> {
        let pending: Pending = Arc::new(Mutex::new(BTreeMap::new()));
        let (tx, rx) = std::sync::mpsc::channel::<WriteOp>();
        let (wdb, wpending) = (db.clone(), pending.clone());
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || log_writer(wdb, wpending, rx))
            .map_err(super::OpenError::WriterThread)?;
        Ok(LogStore {
            db,
            pending,
            writer: tx,
        })
    }

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
