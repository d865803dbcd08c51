//! Raft's durable state in one redb file: the log, the vote, and the state machine.
//!
//! # Layout
//! - this module: the tables, the encoding, and [`open`];
//! - `log`: the log and the vote ([`LogStore`]) and the one thread that writes them;
//! - `machine`: the state machine ([`StateMachineStore`]) and its snapshots;
//! - `recover`: outage recovery, an offline edit of the file ([`recover`]).
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

use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageIOError};
use redb::{Database, TableDefinition};
use serde::{Deserialize, Serialize};

use super::types::StorageError;

mod log;
mod machine;
mod recover;

pub use log::LogStore;
pub use machine::{SmState, StateMachineStore};
pub use recover::{recover, Recovered};

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

/// Why the store could not be opened. Each stops the server: the operator fixes the data
/// directory (or stops the agent that holds it), then starts again.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory could not be created: check its path and permissions.
    #[error("cannot create {}: {source}", .path.display())]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `raft.redb` could not be opened: another agent holds it (stop that one first), or it is
    /// not a redb file.
    #[error("cannot open {}: {source}", .path.display())]
    Open {
        path: PathBuf,
        source: redb::DatabaseError,
    },
    /// The tables could not be created or read: check the disk.
    #[error("cannot initialise {}: {source}", .path.display())]
    Initialise { path: PathBuf, source: redb::Error },
    /// The stored state machine could not be read: the file is damaged; restore a snapshot.
    #[error("cannot read the state machine in {}: {source}", .path.display())]
    StateMachine { path: PathBuf, source: redb::Error },
    /// The log writer thread could not be started: the process is out of resources.
    #[error("cannot start the log writer thread: {0}")]
    WriterThread(std::io::Error),
}

/// Opens (creating if needed) `<dir>/raft.redb` and returns the two halves openraft needs.
pub fn open(dir: &Path) -> std::result::Result<(LogStore, StateMachineStore), OpenError> {
    std::fs::create_dir_all(dir).map_err(|source| OpenError::Create {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join("raft.redb");
    let db = Database::create(&path).map_err(|source| OpenError::Open {
        path: path.clone(),
        source,
    })?;
    let init = || -> std::result::Result<(), redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(LOG)?;
        txn.open_table(META)?;
        txn.open_table(SM)?;
        txn.commit()?;
        Ok(())
    };
    init().map_err(|source| OpenError::Initialise {
        path: path.clone(),
        source,
    })?;
    let db = Arc::new(db);
    let sm = StateMachineStore::load(db.clone())
        .map_err(|source| OpenError::StateMachine { path, source })?;
    Ok((LogStore::start(db)?, sm))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::types::{TypeConfig, Vote};
    use openraft::storage::RaftLogStorage;
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
                Err(OpenError::Open {
                    source: redb::DatabaseError::DatabaseAlreadyOpen,
                    ..
                }) if std::time::Instant::now() < deadline => {
                    tokio::task::yield_now().await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 7)));
        assert!(log.has_state().unwrap());
    }
}
