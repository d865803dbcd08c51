//! Outage recovery as an offline edit of `raft.redb` (docs/operations.md).

use std::path::Path;

use openraft::EntryPayload;
use redb::{Database, ReadableTable};

use super::{LOG, META};
use crate::server::error::RecoveryError;
use crate::server::types::{Entry, LogId, Vote};

/// What `muster operator raft recover` did to one data directory.
#[derive(Debug)]
pub struct Recovered {
    /// The index and term of the configuration entry written.
    pub index: u64,
    pub term: u64,
    /// The servers of the Raft configuration it replaced.
    pub previous: Vec<crate::server::types::ServerNode>,
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
    self_id: crate::server::types::NodeId,
    mut nodes: std::collections::BTreeMap<
        crate::server::types::NodeId,
        crate::server::types::ServerNode,
    >,
    voters: std::collections::BTreeSet<crate::server::types::NodeId>,
) -> std::result::Result<Recovered, RecoveryError> {
    use crate::server::types::ServerNode;
    let path = dir.join("raft.redb");
    if !path.exists() {
        return Err(RecoveryError::DataDir(format!(
            "{} does not exist: this data directory holds no Raft state to recover",
            path.display()
        )));
    }
    let db = Database::open(&path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => RecoveryError::DataDir(format!(
            "{} is in use: stop the muster agent on this data directory first",
            path.display()
        )),
        other => RecoveryError::Storage(format!("cannot open {}: {other}", path.display())),
    })?;
    let io = |e: redb::Error| RecoveryError::Storage(format!("{}: {e}", path.display()));
    let txn = db.begin_write().map_err(|e| io(e.into()))?;
    let (recovered, entry, vote) = {
        let meta = txn.open_table(META).map_err(|e| io(e.into()))?;
        let log = txn.open_table(LOG).map_err(|e| io(e.into()))?;
        let get = |key: &str| -> std::result::Result<Option<Vec<u8>>, RecoveryError> {
            Ok(meta
                .get(key)
                .map_err(|e| io(e.into()))?
                .map(|v| v.value().to_vec()))
        };
        let vote: Option<Vote> = match get("vote")? {
            Some(b) => Some(
                postcard::from_bytes(&b)
                    .map_err(|e| RecoveryError::Storage(format!("corrupt vote: {e}")))?,
            ),
            None => None,
        };
        let purged: Option<LogId> = match get("last_purged")? {
            Some(b) => Some(
                postcard::from_bytes(&b)
                    .map_err(|e| RecoveryError::Storage(format!("corrupt purge mark: {e}")))?,
            ),
            None => None,
        };
        let last_entry: Option<Entry> = match log.last().map_err(|e| io(e.into()))? {
            Some((_, v)) => Some(
                postcard::from_bytes(v.value())
                    .map_err(|e| RecoveryError::Storage(format!("corrupt log entry: {e}")))?,
            ),
            None => None,
        };
        let last = last_entry.as_ref().map(|e| e.log_id).or(purged);
        if last.is_none() && vote.is_none() {
            return Err(RecoveryError::DataDir(format!(
                "{} holds no Raft state: a new server needs no recovery, it joins",
                path.display()
            )));
        }
        // The configuration it replaces: the last membership entry in the log, else the
        // snapshot's.
        let mut previous: Vec<ServerNode> = Vec::new();
        for item in log.iter().map_err(|e| io(e.into()))?.rev() {
            let (_, v) = item.map_err(|e| io(e.into()))?;
            let e: Entry = postcard::from_bytes(v.value())
                .map_err(|e| RecoveryError::Storage(format!("corrupt log entry: {e}")))?;
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
                n.name = crate::server::types::node_uuid(*id).to_string();
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
        let bytes =
            postcard::to_allocvec(&entry).map_err(|e| RecoveryError::Storage(e.to_string()))?;
        log.insert(entry.log_id.index, bytes.as_slice())
            .map_err(|e| io(e.into()))?;
        let mut meta = txn.open_table(META).map_err(|e| io(e.into()))?;
        let bytes =
            postcard::to_allocvec(&vote).map_err(|e| RecoveryError::Storage(e.to_string()))?;
        meta.insert("vote", bytes.as_slice())
            .map_err(|e| io(e.into()))?;
    }
    txn.commit().map_err(|e| io(e.into()))?;
    Ok(recovered)
}
