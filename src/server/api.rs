//! The requests a server answers for the HTTP API — KV reads and writes, catalog, operator
//! snapshots — with Consul's consistency modes and leader forwarding (docs/state.md).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::ServerState;
use rand::RngExt;

use super::batch::BatchError;
use super::error::ServerError;
use super::protocol::{
    Answer, ApiFailure, Consistency, KvAnswer, KvQuery, ReadMeta, ReadRequest, Request,
    SavedSnapshot, WriteOutcome,
};
use super::state::{CatalogNode, KvScope, Write};
use super::Server;

/// Longest blocking wait (Consul's max_query_time).
pub const MAX_WAIT: Duration = Duration::from_secs(600);
/// Blocking wait when none is given (Consul's default_query_time).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(300);
/// Deadline of a forwarded request beyond its own wait.
const FORWARD_SLACK: Duration = Duration::from_secs(5);
/// How long the leader waits for a write it proposed to commit. Below the 10 s deadline of a
/// forwarded write, so the forwarder hears the answer; with the callers' 7 s hold
/// ([`crate::client::HOLD`]) it bounds a write that cannot commit to 12 s (docs/servers.md,
/// "Leadership under a lost quorum"); openraft itself would wait forever.
pub const COMMIT_WAIT: Duration = Duration::from_secs(5);
/// Most bytes one write may carry (its key and value, or a restore piece). With values capped
/// at 512 KiB and restores sent in 512 KiB pieces, every entry fits the network layer's 1 MiB
/// AppendEntries cap, which cannot split an entry (docs/state.md, "A restore travels in
/// pieces").
pub const MAX_WRITE_BYTES: usize = 1 << 20;

/// Refuses a write larger than one entry may carry ([`MAX_WRITE_BYTES`]).
fn check_write_size(cmd: &super::state::StateCommand) -> Result<(), ApiFailure> {
    let bytes = super::batch::weight(cmd);
    if bytes > MAX_WRITE_BYTES {
        return Err(ApiFailure::TooLarge(format!(
            "a write of {bytes} bytes exceeds the {MAX_WRITE_BYTES}-byte limit of one Raft \
             entry; nothing was written (a snapshot restore from an agent of an earlier \
             version? restore through an agent of this version, which sends it in pieces)"
        )));
    }
    Ok(())
}

/// `wait` clamped to [`MAX_WAIT`], plus up to 1/16 of random jitter, as Consul does so that
/// many watchers do not all return in the same instant.
pub fn blocking_wait(wait: Option<Duration>) -> Duration {
    let w = wait.unwrap_or(DEFAULT_WAIT).min(MAX_WAIT);
    let jitter_ms = (w.as_millis() as u64) / 16;
    w + Duration::from_millis(if jitter_ms > 0 {
        rand::rng().random_range(0..=jitter_ms)
    } else {
        0
    })
}

/// The part of the state a query watches.
fn scope(query: &KvQuery) -> KvScope {
    match query {
        KvQuery::Get(k) => KvScope::Key(k.clone()),
        KvQuery::Recurse(p) | KvQuery::Keys { prefix: p, .. } => KvScope::Prefix(p.clone()),
    }
}

/// Who answers a request meant for the leader, as this server sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Leadership {
    /// Another server leads, or none is known: forward (or answer "No cluster leader").
    Elsewhere,
    /// openraft says Leader, but no quorum has confirmed the lease
    /// ([`Server::leads_with_lease`]): restarted alone, partitioned, or just elected. Answer
    /// "No cluster leader"; the callers retry for a while.
    Unconfirmed,
    /// This server leads with a confirmed lease: it answers.
    Here,
}

/// Counts a blocking query for as long as it waits (`muster info`: consul.blocking_queries).
struct WaiterGuard<'a>(&'a AtomicU64);

impl<'a> WaiterGuard<'a> {
    fn enter(c: &'a AtomicU64) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        Self(c)
    }
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Server {
    /// Blocking queries waiting on this server now.
    pub fn blocking_queries(&self) -> u64 {
        self.blocking_queries.load(Ordering::Relaxed)
    }

    pub(super) fn leadership(&self) -> Leadership {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        if m.state != ServerState::Leader {
            Leadership::Elsewhere
        } else if self.lease_confirmed(&m) {
            Leadership::Here
        } else {
            Leadership::Unconfirmed
        }
    }

    /// `X-Consul-*` values of this server now. `KnownLeader` is false on a leader whose lease
    /// is not confirmed, and its `LastContact` is then the time since a quorum last answered
    /// it (never: as a follower that never heard from a leader).
    fn read_meta(&self, index: u64) -> ReadMeta {
        let m = self.raft.metrics().borrow().clone();
        let never = u64::MAX / 2;
        let last_contact_ms = if m.state == ServerState::Leader {
            if self.lease_confirmed(&m) {
                0
            } else {
                m.millis_since_quorum_ack.unwrap_or(never)
            }
        } else {
            self.last_contact
                .lock()
                .expect("contact lock")
                .map(|t| t.elapsed().as_millis() as u64)
                .unwrap_or(never)
        };
        ReadMeta {
            index: index.max(1),
            known_leader: self.known_leader(&m).is_some(),
            last_contact_ms,
        }
    }

    /// Sends `request` to the leader and returns its answer, of the kind the caller expects:
    /// for requests only the leader answers. `needs` completes "there is no leader; …".
    pub(crate) async fn on_leader<A: Answer>(
        &self,
        needs: &'static str,
        request: Request,
        deadline: Duration,
    ) -> Result<A, ServerError> {
        let addr = self.leader_addr().ok_or(ServerError::NoLeader { needs })?;
        // The leader checks the caller's token, not this server's (docs/acl.md).
        self.rpc
            .ask(&addr, super::acl_check::with_caller(request), deadline)
            .await
            .map_err(ServerError::Unreachable)
    }

    /// [`Self::on_leader`] for the HTTP API's requests, whose answers carry an [`ApiFailure`].
    pub(super) async fn forward<T>(
        &self,
        request: Request,
        deadline: Duration,
    ) -> Result<T, ApiFailure>
    where
        Result<T, ApiFailure>: Answer,
    {
        match self.on_leader("the API needs one", request, deadline).await {
            Ok(answer) => answer,
            Err(ServerError::NoLeader { .. }) => Err(ApiFailure::NoLeader),
            Err(e) => Err(ApiFailure::Unreachable(e.to_string())),
        }
    }

    /// A KV read under Consul's consistency modes, blocking if asked. Default and consistent
    /// reads are answered only by a leader whose lease is confirmed, else forwarded to the
    /// leader, or refused with "No cluster leader" rather than served from possibly stale
    /// state; `?stale` reads are answered from this server's state whatever its role.
    pub async fn kv_read(&self, req: ReadRequest) -> Result<(KvAnswer, ReadMeta), ApiFailure> {
        if req.consistency != Consistency::Stale {
            match self.leadership() {
                Leadership::Elsewhere => {
                    let timeout = Duration::from_millis(req.wait_ms) + FORWARD_SLACK;
                    return self.forward(Request::KvRead(req), timeout).await;
                }
                Leadership::Unconfirmed => return Err(ApiFailure::NoLeader),
                Leadership::Here => {}
            }
        }
        if req.consistency == Consistency::Consistent {
            self.confirm_leadership().await?;
        }
        let scope = scope(&req.query);
        if req.min_index > 0 {
            let _waiting = WaiterGuard::enter(&self.blocking_queries);
            let deadline = Instant::now() + Duration::from_millis(req.wait_ms);
            let mut applied = self.sm.applied.subscribe();
            loop {
                let idx = self
                    .sm
                    .state
                    .read()
                    .expect("sm lock")
                    .data
                    .watch_index(&scope);
                if idx > req.min_index || Instant::now() >= deadline {
                    break;
                }
                let _ = tokio::time::timeout_at(deadline.into(), applied.changed()).await;
            }
        }
        let s = self.sm.state.read().expect("sm lock");
        let answer = match &req.query {
            KvQuery::Get(k) => KvAnswer::Entries(
                s.data
                    .kv
                    .get(k)
                    .map(|e| (k.clone(), e.clone()))
                    .into_iter()
                    .collect(),
            ),
            KvQuery::Recurse(p) => KvAnswer::Entries(s.data.list(p)),
            KvQuery::Keys { prefix, separator } => {
                KvAnswer::Keys(s.data.keys(prefix, separator.as_deref()))
            }
        };
        let index = s.data.kv_index;
        drop(s);
        Ok((answer, self.read_meta(index)))
    }

    async fn confirm_leadership(&self) -> Result<(), ApiFailure> {
        match tokio::time::timeout(Duration::from_secs(5), self.raft.ensure_linearizable()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ApiFailure::NoLeader),
            Err(_) => Err(ApiFailure::Unconfirmed(
                "leadership could not be confirmed with a quorum within 5 s".into(),
            )),
        }
    }

    /// Commits a change through the leader; acknowledged once a quorum has it. A write whose
    /// request id was applied before is not applied again: the answer is its first outcome.
    ///
    /// A leader without a confirmed lease proposes nothing and answers "No cluster leader" at
    /// once (the write is then certainly not applied, and the callers' hold retries it). A
    /// proposed write that has not committed after [`COMMIT_WAIT`] is answered with a failure
    /// saying it may still commit.
    pub async fn write(&self, w: Write) -> Result<WriteOutcome, ApiFailure> {
        check_write_size(&w.cmd)?;
        // Leadership can move between the check and the write: retry once through the new one.
        for _ in 0..2 {
            match self.leadership() {
                Leadership::Elsewhere => {
                    return self
                        .forward(Request::WriteOnce(w), Duration::from_secs(10))
                        .await
                }
                Leadership::Unconfirmed => return Err(ApiFailure::NoLeader),
                Leadership::Here => {}
            }
            // An ACL change the state's checks would refuse is answered with the reason
            // before it is proposed (apply would only say `false`).
            if let Err(why) = self
                .sm
                .state
                .read()
                .expect("sm lock")
                .data
                .check_acl(&w.cmd)
            {
                return Err(ApiFailure::Refused(why.to_string()));
            }
            match tokio::time::timeout(COMMIT_WAIT, self.batcher.write(w.clone())).await {
                Ok(Ok(outcome)) => return Ok(outcome),
                Ok(Err(BatchError::NotLeader)) => continue,
                Ok(Err(BatchError::Failed(e))) => return Err(ApiFailure::Unavailable(e)),
                Ok(Err(BatchError::Full)) => {
                    return Err(ApiFailure::Unavailable(
                        "the leader's write queue is full (its disk or followers are behind); \
                         the write was not applied, retry later"
                            .into(),
                    ))
                }
                Err(_) => {
                    let why = if self.leads_with_lease() {
                        "the leader is overloaded or its disk is slow"
                    } else {
                        "the leader has lost its quorum"
                    };
                    return Err(ApiFailure::Unavailable(format!(
                        "the write was not committed within {} s ({why}); it may still commit",
                        COMMIT_WAIT.as_secs()
                    )));
                }
            }
        }
        Err(ApiFailure::NoLeader)
    }

    /// The catalog's nodes, under the same rule as [`Self::kv_read`].
    pub async fn catalog_nodes(
        &self,
        consistency: Consistency,
    ) -> Result<(Vec<CatalogNode>, ReadMeta), ApiFailure> {
        if consistency != Consistency::Stale {
            match self.leadership() {
                Leadership::Elsewhere => {
                    return self
                        .forward(Request::CatalogNodes(consistency), FORWARD_SLACK)
                        .await
                }
                Leadership::Unconfirmed => return Err(ApiFailure::NoLeader),
                Leadership::Here => {}
            }
        }
        if consistency == Consistency::Consistent {
            self.confirm_leadership().await?;
        }
        let s = self.sm.state.read().expect("sm lock");
        let nodes = s.data.catalog.values().cloned().collect();
        let index = s.data.catalog_index;
        drop(s);
        Ok((nodes, self.read_meta(index)))
    }

    /// The state machine as the leader has applied it, for `muster snapshot save`: like a
    /// default read, only a leader whose lease is confirmed answers.
    pub async fn snapshot_save(&self) -> Result<SavedSnapshot, ApiFailure> {
        match self.leadership() {
            Leadership::Elsewhere => {
                return self
                    .forward(Request::SnapshotSave, Duration::from_secs(30))
                    .await
            }
            Leadership::Unconfirmed => return Err(ApiFailure::NoLeader),
            Leadership::Here => {}
        }
        let (last, data) = self.sm.snapshot_body();
        let cluster_id = self.cluster_id();
        Ok(SavedSnapshot {
            index: last.map(|l| l.index).unwrap_or(0),
            term: last.map(|l| l.leader_id.term).unwrap_or(0),
            cluster_id,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::state::{StateCommand, MAX_VALUE, RESTORE_PIECE};

    #[test]
    fn a_write_larger_than_one_entry_is_refused_and_named() {
        let set = |n: usize| StateCommand::KvSet {
            key: "k".repeat(1024),
            value: vec![0; n],
            flags: 0,
            cas: None,
        };
        assert!(check_write_size(&set(MAX_VALUE)).is_ok());
        let piece = StateCommand::RestorePiece {
            id: uuid::Uuid::nil(),
            offset: 0,
            bytes: vec![0; RESTORE_PIECE],
        };
        assert!(check_write_size(&piece).is_ok());
        let e = check_write_size(&StateCommand::Restore(vec![0; 40 << 20])).unwrap_err();
        assert!(matches!(e, ApiFailure::TooLarge(_)));
        assert!(
            e.to_string()
                .contains("41943040 bytes exceeds the 1048576-byte limit"),
            "{e}"
        );
    }
}
