//! The replicated state: the KV store, the catalog and the ACL state (its own module,
//! `acl_state`), and how each command changes them.
//! Pure: `apply` is deterministic in (state, index, command), which every server relies on.
//! Formats and semantics: docs/state.md.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::acl_state::{AclPolicy, AclRefusal, AclState, AclToken};

/// Longest key, in bytes.
pub const MAX_KEY: usize = 1024;
/// Largest value, in bytes (Consul's `kv_max_value_size`).
pub const MAX_VALUE: usize = 512 * 1024;
/// Largest operator snapshot a restore accepts, in bytes of data (docs/state.md).
pub const MAX_RESTORE: usize = 48 << 20;
/// Most bytes of snapshot in one [`StateCommand::RestorePiece`]: a piece weighs what the
/// largest value does, so every entry fits one AppendEntries (docs/state.md, "A restore
/// travels in pieces").
pub const RESTORE_PIECE: usize = 512 * 1024;

/// One KV entry, with Consul's indexes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// Bytes, not a sequence of numbers: the same postcard encoding (length, then the bytes),
    /// copied at once instead of one element at a time.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
    pub flags: u64,
    pub create_index: u64,
    pub modify_index: u64,
    pub lock_index: u64,
}

/// A node of the catalog, as the leader last saw it in gossip.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogNode {
    pub name: String,
    pub id: Uuid,
    /// Its gossip IP.
    pub address: String,
    pub datacenter: String,
    /// Gossip status: alive, leaving, failed.
    pub status: String,
    pub tags: BTreeMap<String, String>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A change to the replicated state (part of [`super::types::Command`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateCommand {
    KvSet {
        key: String,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        flags: u64,
        cas: Option<u64>,
    },
    KvDelete {
        key: String,
        recurse: bool,
        cas: Option<u64>,
    },
    CatalogUpsert(CatalogNode),
    CatalogRemove(String),
    /// Replace the KV store, the catalog and the ACL state by a snapshot's (postcard of
    /// [`SnapshotBody`]).
    Restore(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Replace the autopilot settings (`muster operator autopilot set-config`; the first
    /// leader also writes its configuration file's settings here once).
    AutopilotSet(super::autopilot::AutopilotConfig),
    /// One piece of operator snapshot `id`, to go at `offset` of its data; offset 0 starts the
    /// restore (docs/state.md, "A restore travels in pieces").
    RestorePiece {
        id: Uuid,
        offset: u64,
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Snapshot `id` is complete at `size` bytes: replace the KV store, the catalog and the
    /// ACL state by it.
    RestoreEnd {
        id: Uuid,
        size: u64,
    },
    /// Remove the KV tombstones whose index is ≤ `upto`: the leader's collection once they
    /// have outlived the TTL (docs/state.md, "Tombstones and their collection"). Keep it after
    /// every variant that existed before it: postcard numbers variants in order.
    KvReapTombstones {
        upto: u64,
    },
    /// Create the built-in global-management policy and anonymous token if they are missing;
    /// changes nothing otherwise. The leader writes it when ACLs are enabled (docs/acl.md).
    /// This and the ACL commands below follow every variant that existed before them
    /// (postcard numbers variants in order): keep new ones after them.
    AclInit,
    /// Bootstrap ACLs, once: the built-ins if missing and `token` linked to global-management.
    /// Refused once bootstrapped ([`AclState::check_bootstrap`]).
    AclBootstrap {
        token: AclToken,
    },
    /// Create or update a policy by its ID ([`AclState::check_policy_set`]).
    AclPolicySet(AclPolicy),
    /// Delete a policy by its ID; tokens keep their links to it, which resolution skips.
    AclPolicyDelete(Uuid),
    /// Create or update a token by its accessor ID ([`AclState::check_token_set`]).
    AclTokenSet(AclToken),
    /// Delete a token by its accessor ID.
    AclTokenDelete(Uuid),
}

/// A client request's id: made once by the agent that received the HTTP request and kept
/// through every retry and forward, so that the state machine applies the write once
/// (docs/state.md, "Request ids").
pub type RequestId = Uuid;

/// One write as the leader batches it: the change, and the id of the request that asked for
/// it (`None` for the leader's own writes and for agents of an older version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Write {
    pub id: Option<RequestId>,
    pub cmd: StateCommand,
}

/// What a write's first application gave: whether it took effect, and the entry's index.
/// A retry of the same request is answered with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub ok: bool,
    pub index: u64,
}

/// How far behind the horizon (the newest leader stamp applied) a request id is kept. Every
/// copy of a request leaves its agent within 30 s of the first (the client's retry window and
/// one connect timeout); the rest is margin for network delay and the leaders' clock skew
/// (docs/state.md, "Why the bound is safe").
pub const RETAIN_MS: u64 = 60_000;
/// Most request ids kept, whatever their age: bounds the table's memory (about 70 bytes an id)
/// and its share of a snapshot (about 18) under a sustained write rate.
pub const MAX_IDS: usize = 1 << 19;

/// The ids of one entry's first-applied writes, with the entry's stamp and index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Recent {
    stamp_ms: u64,
    index: u64,
    ids: Vec<(RequestId, bool)>,
}

/// The request ids of recent writes and their first outcomes, in apply order. Part of the
/// replicated state: it changes only by applying entries, and its eviction depends only on
/// what the entries carry, so every replica and every snapshot holds the same table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecentWrites {
    /// The highest leader stamp applied (ms since the epoch); never goes back.
    horizon_ms: u64,
    /// Entries in apply order, the oldest first: the eviction order.
    entries: VecDeque<Recent>,
    /// Every id of `entries`, for the lookup on each write.
    outcomes: HashMap<RequestId, Outcome>,
}

/// [`RecentWrites`] as stored: the horizon and the entries; the lookup map is rebuilt.
#[derive(Serialize)]
struct RecentWritesRef<'a> {
    horizon_ms: u64,
    entries: &'a VecDeque<Recent>,
}

#[derive(Deserialize)]
struct RecentWritesOwned {
    horizon_ms: u64,
    entries: VecDeque<Recent>,
}

impl Serialize for RecentWrites {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        RecentWritesRef {
            horizon_ms: self.horizon_ms,
            entries: &self.entries,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for RecentWrites {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let RecentWritesOwned {
            horizon_ms,
            entries,
        } = RecentWritesOwned::deserialize(d)?;
        let outcomes = entries
            .iter()
            .flat_map(|e| {
                e.ids
                    .iter()
                    .map(move |&(id, ok)| (id, Outcome { ok, index: e.index }))
            })
            .collect();
        Ok(RecentWrites {
            horizon_ms,
            entries,
            outcomes,
        })
    }
}

impl RecentWrites {
    /// The first outcome of request `id`, if it is still remembered.
    pub fn get(&self, id: &RequestId) -> Option<Outcome> {
        self.outcomes.get(id).copied()
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.outcomes.len()
    }

    /// No id is remembered.
    pub fn is_empty(&self) -> bool {
        self.outcomes.is_empty()
    }

    /// Records the ids first applied by the entry at `index`, stamped `stamp_ms`, then evicts:
    /// in apply order, entries more than [`RETAIN_MS`] behind the horizon (stopping at the
    /// first younger one), then the oldest while more than [`MAX_IDS`] ids are kept.
    fn record(&mut self, index: u64, stamp_ms: u64, ids: Vec<(RequestId, bool)>) {
        self.horizon_ms = self.horizon_ms.max(stamp_ms);
        if !ids.is_empty() {
            self.entries.push_back(Recent {
                stamp_ms,
                index,
                ids,
            });
        }
        while let Some(front) = self.entries.front() {
            let old = front.stamp_ms.saturating_add(RETAIN_MS) < self.horizon_ms;
            if !old && self.outcomes.len() <= MAX_IDS {
                break;
            }
            if let Some(gone) = self.entries.pop_front() {
                for (id, _) in gone.ids {
                    self.outcomes.remove(&id);
                }
            }
        }
    }
}

/// The KV store, the catalog and the ACL state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub kv: BTreeMap<String, KvEntry>,
    /// Deleted keys and the index of their deletion, so that blocking queries on them wake.
    pub tombstones: BTreeMap<String, u64>,
    /// Highest index that changed any key.
    pub kv_index: u64,
    pub catalog: BTreeMap<String, CatalogNode>,
    /// Highest index that changed the catalog.
    pub catalog_index: u64,
    /// Autopilot settings and the index that last set them (None until the first leader).
    pub autopilot: Option<(super::autopilot::AutopilotConfig, u64)>,
    /// Recent request ids and their first outcomes.
    pub recent: RecentWrites,
    /// The operator snapshot being restored, piece by piece, if any.
    pub restoring: Option<Restoring>,
    /// The highest index of any tombstone reaped (0: none yet): the floor of every watch
    /// index but a present key's, so that collecting tombstones never lowers one
    /// ([`State::watch_index`]). Keep it the last field: a snapshot written before it and
    /// `restoring` existed is this struct's bytes without them. `default` is for
    /// self-describing formats; postcard cannot skip a field, so [`SnapshotBody::decode`]
    /// reads such a snapshot explicitly.
    #[serde(default)]
    pub reaped_index: u64,
    /// Policies, tokens and the bootstrap flag (docs/state.md, "ACL state"). Keep it the last
    /// field: a snapshot written before ACLs is this struct's bytes without it, which
    /// [`SnapshotBody::decode`] reads as no ACL state.
    #[serde(default)]
    pub acl: AclState,
}

/// An operator snapshot arriving in pieces: which restore, and its data so far.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restoring {
    pub id: Uuid,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Restoring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Restoring {{ id: {}, {} bytes }}",
            self.id,
            self.data.len()
        )
    }
}

/// [`State`] as snapshots wrote it before ACLs: every field up to `reaped_index`.
#[derive(Deserialize)]
struct StateBeforeAcl {
    kv: BTreeMap<String, KvEntry>,
    tombstones: BTreeMap<String, u64>,
    kv_index: u64,
    catalog: BTreeMap<String, CatalogNode>,
    catalog_index: u64,
    autopilot: Option<(super::autopilot::AutopilotConfig, u64)>,
    recent: RecentWrites,
    restoring: Option<Restoring>,
    reaped_index: u64,
}

#[derive(Deserialize)]
struct SnapshotBodyBeforeAcl {
    cluster_id: Option<Uuid>,
    data: StateBeforeAcl,
}

/// [`State`] as snapshots wrote it before restores in pieces and tombstone reaping: every
/// field up to `recent`.
#[derive(Deserialize)]
struct StateBeforeReap {
    kv: BTreeMap<String, KvEntry>,
    tombstones: BTreeMap<String, u64>,
    kv_index: u64,
    catalog: BTreeMap<String, CatalogNode>,
    catalog_index: u64,
    autopilot: Option<(super::autopilot::AutopilotConfig, u64)>,
    recent: RecentWrites,
}

#[derive(Deserialize)]
struct SnapshotBodyBeforeReap {
    cluster_id: Option<Uuid>,
    data: StateBeforeReap,
}

/// [`State`] as snapshots wrote it before request ids: every field up to `autopilot`.
#[derive(Deserialize)]
struct StateBeforeIds {
    kv: BTreeMap<String, KvEntry>,
    tombstones: BTreeMap<String, u64>,
    kv_index: u64,
    catalog: BTreeMap<String, CatalogNode>,
    catalog_index: u64,
    autopilot: Option<(super::autopilot::AutopilotConfig, u64)>,
}

#[derive(Deserialize)]
struct SnapshotBodyBeforeIds {
    cluster_id: Option<Uuid>,
    data: StateBeforeIds,
}

/// The bytes of a Raft snapshot and of an operator snapshot's data: the whole replicated state
/// but its log position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBody {
    pub cluster_id: Option<Uuid>,
    pub data: State,
}

impl SnapshotBody {
    /// Reads a snapshot body of this version, of one written before ACLs (then with no ACL
    /// state: no policies, no tokens, not bootstrapped), of one written before restores in
    /// pieces and tombstone reaping (then also with no restore under way and `reaped_index`
    /// 0), or of one written before request ids (then with an empty table too). Newest first:
    /// each older version is a strict prefix of the next, which fails to read it only where
    /// its first missing field should begin, while an older reading of a newer body would
    /// succeed (postcard ignores trailing bytes).
    pub fn decode(bytes: &[u8]) -> Result<SnapshotBody, postcard::Error> {
        let e = match postcard::from_bytes::<SnapshotBody>(bytes) {
            Ok(body) => return Ok(body),
            Err(e) => e,
        };
        if let Ok(old) = postcard::from_bytes::<SnapshotBodyBeforeAcl>(bytes) {
            let d = old.data;
            return Ok(SnapshotBody {
                cluster_id: old.cluster_id,
                data: State {
                    kv: d.kv,
                    tombstones: d.tombstones,
                    kv_index: d.kv_index,
                    catalog: d.catalog,
                    catalog_index: d.catalog_index,
                    autopilot: d.autopilot,
                    recent: d.recent,
                    restoring: d.restoring,
                    reaped_index: d.reaped_index,
                    acl: AclState::default(),
                },
            });
        }
        if let Ok(old) = postcard::from_bytes::<SnapshotBodyBeforeReap>(bytes) {
            let d = old.data;
            return Ok(SnapshotBody {
                cluster_id: old.cluster_id,
                data: State {
                    kv: d.kv,
                    tombstones: d.tombstones,
                    kv_index: d.kv_index,
                    catalog: d.catalog,
                    catalog_index: d.catalog_index,
                    autopilot: d.autopilot,
                    recent: d.recent,
                    restoring: None,
                    reaped_index: 0,
                    acl: AclState::default(),
                },
            });
        }
        match postcard::from_bytes::<SnapshotBodyBeforeIds>(bytes) {
            Ok(old) => Ok(SnapshotBody {
                cluster_id: old.cluster_id,
                data: State {
                    kv: old.data.kv,
                    tombstones: old.data.tombstones,
                    kv_index: old.data.kv_index,
                    catalog: old.data.catalog,
                    catalog_index: old.data.catalog_index,
                    autopilot: old.data.autopilot,
                    recent: RecentWrites::default(),
                    restoring: None,
                    reaped_index: 0,
                    acl: AclState::default(),
                },
            }),
            Err(_) => Err(e),
        }
    }
}

/// Rows one apply touched, so that storage writes only those.
#[derive(Debug, Default)]
pub struct Changes {
    pub kv: BTreeSet<String>,
    pub tombstones: BTreeSet<String>,
    pub catalog: BTreeSet<String>,
    /// Everything was replaced (restore, snapshot install).
    pub all: bool,
}

/// What a watched read depends on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvScope {
    Key(String),
    Prefix(String),
}

impl State {
    /// Why the ACL checks would refuse `cmd` on this state, if they would. A proposer runs it
    /// before proposing an ACL command (and again when one applied as `false`: another write
    /// came first) to tell its caller why; [`State::apply`] runs the same checks and answers
    /// only `false`. Every other command passes.
    pub fn check_acl(&self, cmd: &StateCommand) -> Result<(), AclRefusal> {
        match cmd {
            StateCommand::AclBootstrap { token } => self.acl.check_bootstrap(token),
            StateCommand::AclPolicySet(policy) => self.acl.check_policy_set(policy),
            StateCommand::AclPolicyDelete(id) => self.acl.check_policy_delete(*id),
            StateCommand::AclTokenSet(token) => self.acl.check_token_set(token),
            StateCommand::AclTokenDelete(id) => self.acl.check_token_delete(*id),
            _ => Ok(()),
        }
    }

    /// Applies `cmd` as the entry at `index`. Returns whether it took effect (false: a failed
    /// CAS, a restore whose pieces do not follow, an ACL change the checks refuse; a command
    /// that does not take effect changes nothing).
    pub fn apply(&mut self, index: u64, cmd: &StateCommand, ch: &mut Changes) -> bool {
        match cmd {
            StateCommand::KvSet {
                key,
                value,
                flags,
                cas,
            } => {
                let current = self.kv.get(key);
                let allowed = match (cas, current) {
                    (None, _) => true,
                    (Some(0), None) => true,
                    (Some(0), Some(_)) => false,
                    (Some(n), Some(e)) => e.modify_index == *n,
                    (Some(_), None) => false,
                };
                if !allowed {
                    return false;
                }
                let create_index = current.map(|e| e.create_index).unwrap_or(index);
                let lock_index = current.map(|e| e.lock_index).unwrap_or(0);
                self.kv.insert(
                    key.clone(),
                    KvEntry {
                        value: value.clone(),
                        flags: *flags,
                        create_index,
                        modify_index: index,
                        lock_index,
                    },
                );
                if self.tombstones.remove(key).is_some() {
                    ch.tombstones.insert(key.clone());
                }
                ch.kv.insert(key.clone());
                self.kv_index = index;
                true
            }
            StateCommand::KvDelete { key, recurse, cas } => {
                if let Some(n) = cas {
                    match self.kv.get(key) {
                        Some(e) if e.modify_index == *n => {}
                        // Consul: a CAS delete of a missing key with index 0 succeeds.
                        None if *n == 0 => return true,
                        _ => return false,
                    }
                }
                let doomed: Vec<String> = if *recurse {
                    self.kv
                        .range(key.clone()..)
                        .take_while(|(k, _)| k.starts_with(key.as_str()))
                        .map(|(k, _)| k.clone())
                        .collect()
                } else {
                    self.kv
                        .contains_key(key)
                        .then(|| key.clone())
                        .into_iter()
                        .collect()
                };
                for k in doomed {
                    self.kv.remove(&k);
                    self.tombstones.insert(k.clone(), index);
                    ch.kv.insert(k.clone());
                    ch.tombstones.insert(k);
                    self.kv_index = index;
                }
                true
            }
            StateCommand::CatalogUpsert(node) => {
                let create_index = self
                    .catalog
                    .get(&node.name)
                    .map(|n| n.create_index)
                    .unwrap_or(index);
                let node = CatalogNode {
                    create_index,
                    modify_index: index,
                    ..node.clone()
                };
                ch.catalog.insert(node.name.clone());
                self.catalog.insert(node.name.clone(), node);
                self.catalog_index = index;
                true
            }
            StateCommand::CatalogRemove(name) => {
                if self.catalog.remove(name).is_some() {
                    ch.catalog.insert(name.clone());
                    self.catalog_index = index;
                }
                true
            }
            StateCommand::AutopilotSet(cfg) => {
                self.autopilot = Some((cfg.clone(), index));
                true
            }
            StateCommand::KvReapTombstones { upto } => {
                self.reap_tombstones(*upto, ch);
                true
            }
            StateCommand::Restore(bytes) => self.restore(index, bytes, ch),
            StateCommand::RestorePiece { id, offset, bytes } => {
                let follows = match &self.restoring {
                    _ if *offset == 0 => true,
                    Some(r) => r.id == *id && r.data.len() as u64 == *offset,
                    None => false,
                };
                let fits = (*offset as usize).saturating_add(bytes.len()) <= MAX_RESTORE;
                if !follows || !fits {
                    return false;
                }
                match &mut self.restoring {
                    Some(r) if *offset != 0 => r.data.extend_from_slice(bytes),
                    _ => {
                        self.restoring = Some(Restoring {
                            id: *id,
                            data: bytes.clone(),
                        })
                    }
                }
                true
            }
            StateCommand::AclInit => {
                self.acl.init(index);
                true
            }
            StateCommand::AclBootstrap { token } => self.acl.bootstrap(index, token).is_ok(),
            StateCommand::AclPolicySet(policy) => self.acl.set_policy(index, policy).is_ok(),
            StateCommand::AclPolicyDelete(id) => self.acl.delete_policy(index, *id).is_ok(),
            StateCommand::AclTokenSet(token) => self.acl.set_token(index, token).is_ok(),
            StateCommand::AclTokenDelete(id) => self.acl.delete_token(index, *id).is_ok(),
            StateCommand::RestoreEnd { id, size } => match self.restoring.take() {
                Some(r) if r.id == *id => {
                    r.data.len() as u64 == *size && self.restore(index, &r.data, ch)
                }
                other => {
                    // Another restore's pieces: not this one's to end.
                    self.restoring = other;
                    false
                }
            },
        }
    }

    /// Replaces the KV store, the catalog and the ACL state by those of snapshot data `bytes`,
    /// as the entry at `index`. False (and nothing changed) when the bytes do not decode.
    fn restore(&mut self, index: u64, bytes: &[u8], ch: &mut Changes) -> bool {
        match SnapshotBody::decode(bytes) {
            Ok(SnapshotBody {
                data: mut restored, ..
            }) => {
                restored.kv_index = index;
                restored.catalog_index = index;
                // The snapshot's policies, tokens and bootstrap flag, as Consul's restore
                // does. If ACLs were initialized here, the built-ins the snapshot lacks (one
                // from before ACLs) are put back, as Consul's leader does when it takes up
                // leadership again after a restore.
                let initialized = self
                    .acl
                    .policies
                    .contains_key(&super::acl_state::GLOBAL_MANAGEMENT_ID);
                restored.acl.index = index;
                if initialized {
                    restored.acl.init(index);
                }
                // The table is about requests to this cluster, not about the data: a write
                // acknowledged before the restore stays acknowledged once.
                restored.recent = std::mem::take(&mut self.recent);
                // A snapshot's own unfinished restore is not this cluster's.
                restored.restoring = None;
                // Everything changed here: no watch index may read lower than this entry
                // (the snapshot's tombstones and floor are older than what it replaced).
                restored.reaped_index = restored.reaped_index.max(index);
                *self = restored;
                ch.all = true;
                true
            }
            // Checked by the leader before proposing; a corrupt entry changes nothing.
            Err(_) => false,
        }
    }

    /// Applies the writes of one entry at `index`, stamped `stamp_ms` by its leader, in order:
    /// a write whose request id is remembered changes nothing and gets its first outcome
    /// (docs/state.md, "Request ids"). Returns one outcome per write.
    pub fn apply_writes(
        &mut self,
        index: u64,
        stamp_ms: u64,
        writes: &[Write],
        ch: &mut Changes,
    ) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(writes.len());
        let mut first = Vec::new();
        for w in writes {
            if let Some(seen) = w.id.and_then(|id| self.recent.get(&id)) {
                outcomes.push(seen);
                continue;
            }
            let outcome = Outcome {
                ok: self.apply(index, &w.cmd, ch),
                index,
            };
            if let Some(id) = w.id {
                // At once, so that the same id later in this entry applies once too.
                self.recent.outcomes.insert(id, outcome);
                first.push((id, outcome.ok));
            }
            outcomes.push(outcome);
        }
        self.recent.record(index, stamp_ms, first);
        outcomes
    }

    /// Removes the tombstones whose index is ≤ `upto` and raises [`State::reaped_index`] to
    /// the highest of them. Returns how many were removed. Changes no key, so not `kv_index`.
    fn reap_tombstones(&mut self, upto: u64, ch: &mut Changes) -> usize {
        let mut highest = 0;
        let before = self.tombstones.len();
        self.tombstones.retain(|key, index| {
            if *index > upto {
                return true;
            }
            highest = highest.max(*index);
            ch.tombstones.insert(key.clone());
            false
        });
        self.reaped_index = self.reaped_index.max(highest);
        before - self.tombstones.len()
    }

    /// How many tombstones have an index ≤ `upto`: what a reap up to it would remove.
    pub fn tombstones_upto(&self, upto: u64) -> usize {
        self.tombstones.values().filter(|i| **i <= upto).count()
    }

    /// The index a blocking query on `scope` waits to see pass. Never lowered by a reap: a
    /// missing key's and a prefix's are at least [`State::reaped_index`], the highest index
    /// reaped (a present key's tombstone, if it had one, was older than its ModifyIndex).
    pub fn watch_index(&self, scope: &KvScope) -> u64 {
        match scope {
            KvScope::Key(k) => match self.kv.get(k) {
                Some(e) => e.modify_index,
                None => self
                    .tombstones
                    .get(k)
                    .copied()
                    .unwrap_or(0)
                    .max(self.reaped_index),
            },
            KvScope::Prefix(p) => {
                let live = self
                    .kv
                    .range(p.clone()..)
                    .take_while(|(k, _)| k.starts_with(p.as_str()))
                    .map(|(_, e)| e.modify_index);
                let dead = self
                    .tombstones
                    .range(p.clone()..)
                    .take_while(|(k, _)| k.starts_with(p.as_str()))
                    .map(|(_, i)| *i);
                live.chain(dead).max().unwrap_or(0).max(self.reaped_index)
            }
        }
    }

    /// Entries whose key starts with `prefix`, in key order.
    pub fn list(&self, prefix: &str) -> Vec<(String, KvEntry)> {
        self.kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect()
    }

    /// Keys under `prefix`; with a separator, each key is cut after the first separator that
    /// follows the prefix, and duplicates are folded (Consul's `?keys&separator=/`).
    pub fn keys(&self, prefix: &str, separator: Option<&str>) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (k, _) in self
            .kv
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            let key = match separator.filter(|s| !s.is_empty()) {
                Some(sep) => match k[prefix.len()..].find(sep) {
                    Some(pos) => k[..prefix.len() + pos + sep.len()].to_string(),
                    None => k.clone(),
                },
                None => k.clone(),
            };
            if out.last() != Some(&key) {
                out.push(key);
            }
        }
        out
    }
}

/// Why a key or value is refused before it is written. The caller answers the request with
/// the message (it names the limit) and does not retry: the same input fails the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    /// An empty key: the caller must name one.
    #[error("Missing key name")]
    MissingKey,
    /// A key longer than [`MAX_KEY`] bytes: the caller must shorten it.
    #[error("Key ({len} bytes) too large, max size: {MAX_KEY} bytes")]
    KeyTooLarge { len: usize },
    /// A key with a NUL byte, which the store's key order cannot hold.
    #[error("Key contains a NUL byte")]
    KeyHasNul,
    /// A value over [`MAX_VALUE`] bytes (Consul's `kv_max_value_size`).
    #[error("Request body({len} bytes) too large, max size: {MAX_VALUE} bytes")]
    ValueTooLarge { len: usize },
}

/// Checks a key and value against the limits.
pub fn check_sizes(key: &str, value_len: usize) -> Result<(), SizeError> {
    if key.is_empty() {
        return Err(SizeError::MissingKey);
    }
    if key.len() > MAX_KEY {
        return Err(SizeError::KeyTooLarge { len: key.len() });
    }
    if key.contains('\0') {
        return Err(SizeError::KeyHasNul);
    }
    if value_len > MAX_VALUE {
        return Err(SizeError::ValueTooLarge { len: value_len });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values are serialized with serde_bytes; under postcard that is byte for byte the encoding
    /// of a plain `Vec<u8>`, so logs and snapshots written before read the same.
    #[test]
    fn values_encode_as_before_serde_bytes() {
        #[derive(Serialize)]
        enum Before {
            KvSet {
                key: String,
                value: Vec<u8>,
                flags: u64,
                cas: Option<u64>,
            },
        }
        let value: Vec<u8> = (0..=255).collect();
        let before = postcard::to_allocvec(&Before::KvSet {
            key: "k".into(),
            value: value.clone(),
            flags: 7,
            cas: Some(3),
        })
        .unwrap();
        let now = StateCommand::KvSet {
            key: "k".into(),
            value,
            flags: 7,
            cas: Some(3),
        };
        assert_eq!(postcard::to_allocvec(&now).unwrap(), before);
        assert_eq!(postcard::from_bytes::<StateCommand>(&before).unwrap(), now);
    }

    fn set(s: &mut State, i: u64, k: &str, v: &str, cas: Option<u64>) -> bool {
        s.apply(
            i,
            &StateCommand::KvSet {
                key: k.into(),
                value: v.into(),
                flags: 0,
                cas,
            },
            &mut Changes::default(),
        )
    }

    #[test]
    fn indexes_follow_consul() {
        let mut s = State::default();
        assert!(set(&mut s, 5, "a", "1", None));
        assert!(set(&mut s, 9, "a", "2", None));
        let e = &s.kv["a"];
        assert_eq!((e.create_index, e.modify_index), (5, 9));
        assert_eq!(s.kv_index, 9);
    }

    #[test]
    fn cas_zero_creates_only_and_cas_n_matches_modify_index() {
        let mut s = State::default();
        assert!(set(&mut s, 3, "k", "v", Some(0)));
        assert!(!set(&mut s, 4, "k", "w", Some(0)));
        assert!(!set(&mut s, 5, "k", "w", Some(2)));
        assert!(set(&mut s, 6, "k", "w", Some(3)));
        assert_eq!(s.kv["k"].value, b"w");
    }

    #[test]
    fn deletes_leave_tombstones_that_wake_watchers() {
        let mut s = State::default();
        set(&mut s, 1, "a/b", "1", None);
        set(&mut s, 2, "a/c", "1", None);
        set(&mut s, 3, "b", "1", None);
        let mut ch = Changes::default();
        assert!(s.apply(
            7,
            &StateCommand::KvDelete {
                key: "a/".into(),
                recurse: true,
                cas: None
            },
            &mut ch
        ));
        assert_eq!(s.kv.keys().collect::<Vec<_>>(), vec!["b"]);
        assert_eq!(s.watch_index(&KvScope::Key("a/b".into())), 7);
        assert_eq!(s.watch_index(&KvScope::Prefix("a/".into())), 7);
        assert_eq!(s.watch_index(&KvScope::Key("b".into())), 3);
        assert!(!s.apply(
            8,
            &StateCommand::KvDelete {
                key: "b".into(),
                recurse: false,
                cas: Some(2)
            },
            &mut ch
        ));
        assert!(s.apply(
            8,
            &StateCommand::KvDelete {
                key: "b".into(),
                recurse: false,
                cas: Some(3)
            },
            &mut ch
        ));
    }

    fn del(s: &mut State, i: u64, k: &str, recurse: bool) {
        assert!(s.apply(
            i,
            &StateCommand::KvDelete {
                key: k.into(),
                recurse,
                cas: None
            },
            &mut Changes::default(),
        ));
    }

    fn reap(s: &mut State, i: u64, upto: u64) -> Changes {
        let mut ch = Changes::default();
        assert!(s.apply(i, &StateCommand::KvReapTombstones { upto }, &mut ch));
        ch
    }

    /// Every key and every prefix of every key (and a few that match nothing).
    fn scopes(keys: &[&str]) -> Vec<KvScope> {
        let mut out = vec![
            KvScope::Prefix(String::new()),
            KvScope::Prefix("zz".into()),
            KvScope::Key("zz".into()),
        ];
        for k in keys {
            out.push(KvScope::Key(k.to_string()));
            for end in 1..=k.len() {
                out.push(KvScope::Prefix(k[..end].to_string()));
            }
        }
        out
    }

    fn watch_all(s: &State, scopes: &[KvScope]) -> Vec<u64> {
        scopes.iter().map(|sc| s.watch_index(sc)).collect()
    }

    /// A reap removes exactly the tombstones at or below its index, records the highest of
    /// them as the floor, moves no key and not `kv_index`, and lowers no watch index.
    #[test]
    fn a_reap_removes_only_tombstones_up_to_its_index_and_lowers_no_watch_index() {
        let keys = ["a/1", "a/2", "a/3", "b/1"];
        let sc = scopes(&keys);
        let mut s = State::default();
        for (i, k) in keys.iter().enumerate() {
            set(&mut s, i as u64 + 1, k, "v", None);
        }
        del(&mut s, 5, "a/1", false);
        del(&mut s, 6, "a/2", false);
        del(&mut s, 7, "b/1", false);
        set(&mut s, 8, "a/3", "w", None);
        let before = watch_all(&s, &sc);
        assert_eq!(s.watch_index(&KvScope::Prefix("b/".into())), 7);
        assert_eq!(s.tombstones_upto(6), 2);

        let ch = reap(&mut s, 9, 6);
        assert_eq!(
            s.tombstones,
            BTreeMap::from([("b/1".to_string(), 7)]),
            "only the tombstones at or below 6 are gone"
        );
        assert_eq!(ch.tombstones, BTreeSet::from(["a/1".into(), "a/2".into()]));
        assert!(ch.kv.is_empty());
        assert_eq!((s.reaped_index, s.kv_index), (6, 8));
        assert_eq!(s.kv.keys().collect::<Vec<_>>(), ["a/3"]);
        let after = watch_all(&s, &sc);
        for ((scope, b), a) in sc.iter().zip(&before).zip(&after) {
            assert!(a >= b, "{scope:?}: {b} before the reap, {a} after");
        }
        assert_eq!(s.watch_index(&KvScope::Key("a/1".into())), 6);
        assert_eq!(
            s.watch_index(&KvScope::Key("a/3".into())),
            8,
            "a live key keeps its own"
        );

        // Nothing at or below: nothing changes, the floor included.
        let same = s.clone();
        reap(&mut s, 10, 4);
        assert_eq!(s, same);

        // The floor is the highest index reaped, not the reap's `upto`.
        reap(&mut s, 11, 100);
        assert!(s.tombstones.is_empty());
        assert_eq!(s.reaped_index, 7);
        assert_eq!(s.watch_index(&KvScope::Prefix("b/".into())), 7);
        for ((scope, b), a) in sc.iter().zip(&before).zip(&watch_all(&s, &sc)) {
            assert!(a >= b, "{scope:?}: {b} before the reaps, {a} after");
        }
        // A later write passes any index a watcher can hold from before.
        set(&mut s, 12, "b/2", "v", None);
        assert_eq!(s.watch_index(&KvScope::Prefix("b/".into())), 12);
    }

    /// Under a random mix of sets, deletes and reaps, no watch index ever goes down, and a
    /// watch index that rose past X before a reap is still past X after it.
    #[test]
    fn no_watch_index_goes_down_under_sets_deletes_and_reaps() {
        let keys = ["a", "a/b", "a/c", "ab", "b/x", "b/y/z", "c"];
        let sc = scopes(&keys);
        let mut s = State::default();
        let mut last = watch_all(&s, &sc);
        let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
        for index in 1..=3_000u64 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let k = keys[(rng % keys.len() as u64) as usize];
            match (rng >> 8) % 10 {
                0..=3 => {
                    set(&mut s, index, k, "v", None);
                }
                4..=6 => del(&mut s, index, k, (rng >> 16) % 4 == 0),
                _ => {
                    let upto = index.saturating_sub((rng >> 20) % 50);
                    reap(&mut s, index, upto);
                }
            }
            let now = watch_all(&s, &sc);
            for ((scope, b), a) in sc.iter().zip(&last).zip(&now) {
                assert!(a >= b, "entry {index}: {scope:?} went from {b} to {a}");
            }
            last = now;
        }
        assert!(s.reaped_index > 0);
    }

    /// The reap is the last variant: every command written before keeps its encoding.
    #[test]
    fn the_reap_command_is_appended_to_the_encoding() {
        let tag = |c: &StateCommand| postcard::to_allocvec(c).unwrap()[0];
        assert_eq!(tag(&StateCommand::CatalogRemove("n".into())), 3);
        assert_eq!(tag(&StateCommand::Restore(vec![])), 4);
        let piece = StateCommand::RestorePiece {
            id: Uuid::nil(),
            offset: 0,
            bytes: vec![],
        };
        assert_eq!(tag(&piece), 6);
        let end = StateCommand::RestoreEnd {
            id: Uuid::nil(),
            size: 0,
        };
        assert_eq!(tag(&end), 7);
        let reap = StateCommand::KvReapTombstones { upto: 300 };
        let bytes = postcard::to_allocvec(&reap).unwrap();
        assert_eq!(bytes, [8, 0xac, 0x02]);
        assert_eq!(postcard::from_bytes::<StateCommand>(&bytes).unwrap(), reap);
    }

    /// The floor is in the snapshot body and comes back; a body written before the floor (a
    /// strict prefix of this version's) still reads, with floor 0 and everything else as
    /// written, where postcard alone (`#[serde(default)]` notwithstanding) refuses it.
    #[test]
    fn snapshots_keep_the_reaped_index_and_bodies_from_before_it_still_read() {
        let mut s = State::default();
        s.apply_writes(3, 1_000, &[lock(1, "q/1", "x")], &mut Changes::default());
        del(&mut s, 4, "q/1", false);
        set(&mut s, 5, "q/2", "y", None);
        del(&mut s, 6, "q/2", false);
        reap(&mut s, 7, 4);
        assert_eq!(s.reaped_index, 4);
        let body = SnapshotBody {
            cluster_id: Some(Uuid::from_u128(7)),
            data: s.clone(),
        };
        let bytes = postcard::to_allocvec(&body).unwrap();
        assert_eq!(SnapshotBody::decode(&bytes).unwrap(), body);

        #[derive(Serialize)]
        struct BeforeReap<'a> {
            kv: &'a BTreeMap<String, KvEntry>,
            tombstones: &'a BTreeMap<String, u64>,
            kv_index: u64,
            catalog: &'a BTreeMap<String, CatalogNode>,
            catalog_index: u64,
            autopilot: &'a Option<(super::super::autopilot::AutopilotConfig, u64)>,
            recent: &'a RecentWrites,
        }
        #[derive(Serialize)]
        struct OldBody<'a> {
            cluster_id: Option<Uuid>,
            data: BeforeReap<'a>,
        }
        let old = postcard::to_allocvec(&OldBody {
            cluster_id: body.cluster_id,
            data: BeforeReap {
                kv: &s.kv,
                tombstones: &s.tombstones,
                kv_index: s.kv_index,
                catalog: &s.catalog,
                catalog_index: s.catalog_index,
                autopilot: &s.autopilot,
                recent: &s.recent,
            },
        })
        .unwrap();
        assert!(
            bytes.starts_with(&old),
            "the old body is a prefix of the new"
        );
        assert!(postcard::from_bytes::<SnapshotBody>(&old).is_err());
        let read = SnapshotBody::decode(&old).unwrap();
        assert_eq!(read.cluster_id, body.cluster_id);
        assert_eq!(
            read.data,
            State {
                reaped_index: 0,
                ..s.clone()
            }
        );
        assert_eq!(
            read.data.recent.get(&Uuid::from_u128(1)).map(|o| o.index),
            Some(3)
        );
    }

    #[test]
    fn keys_with_separator_fold_like_consul() {
        let mut s = State::default();
        for (i, k) in ["web/a", "web/sub/x", "web/sub/y", "web/z", "x"]
            .iter()
            .enumerate()
        {
            set(&mut s, i as u64 + 1, k, "", None);
        }
        assert_eq!(
            s.keys("web/", Some("/")),
            vec!["web/a", "web/sub/", "web/z"]
        );
        assert_eq!(s.keys("", Some("/")), vec!["web/", "x"]);
        assert_eq!(s.keys("web/s", None), vec!["web/sub/x", "web/sub/y"]);
    }

    #[test]
    fn restore_replaces_everything_and_bumps_indexes() {
        let mut a = State::default();
        set(&mut a, 1, "x", "1", None);
        let snap = postcard::to_allocvec(&SnapshotBody {
            cluster_id: None,
            data: a,
        })
        .unwrap();
        let mut b = State::default();
        set(&mut b, 1, "y", "1", None);
        let mut ch = Changes::default();
        assert!(b.apply(10, &StateCommand::Restore(snap), &mut ch));
        assert!(ch.all && b.kv.contains_key("x") && !b.kv.contains_key("y"));
        assert_eq!(b.kv_index, 10);
        assert!(!b.apply(11, &StateCommand::Restore(vec![0xff; 3]), &mut ch));
    }

    fn lock(id: u128, key: &str, value: &str) -> Write {
        Write {
            id: Some(Uuid::from_u128(id)),
            cmd: StateCommand::KvSet {
                key: key.into(),
                value: value.into(),
                flags: 0,
                cas: Some(0),
            },
        }
    }

    /// A retried request (the same id, in a later entry or later in the same one) changes
    /// nothing and gets the first outcome: a `?cas=0` lock that applied answers true.
    #[test]
    fn a_request_id_applies_once_and_answers_its_first_outcome() {
        let mut s = State::default();
        let mut ch = Changes::default();
        let first = s.apply_writes(5, 1_000, &[lock(1, "lock", "me")], &mut ch);
        assert_eq!(first, vec![Outcome { ok: true, index: 5 }]);
        let before = s.clone();
        let again = s.apply_writes(9, 2_000, &[lock(1, "lock", "me")], &mut ch);
        assert_eq!(
            again, first,
            "the retry gets the first outcome, index included"
        );
        assert_eq!(s.kv, before.kv, "the retry changed nothing");
        assert_eq!(s.kv_index, 5);
        // Another request for the same lock is refused as before; twice in one entry, once.
        let other = s.apply_writes(
            10,
            2_000,
            &[lock(2, "lock", "you"), lock(3, "x", "1"), lock(3, "x", "1")],
            &mut ch,
        );
        assert_eq!(
            other,
            vec![
                Outcome {
                    ok: false,
                    index: 10
                },
                Outcome {
                    ok: true,
                    index: 10
                },
                Outcome {
                    ok: true,
                    index: 10
                },
            ]
        );
        assert_eq!(s.recent.get(&Uuid::from_u128(2)), Some(other[0]));
        // A write without an id (the leader's own, an older agent's) applies every time.
        let plain = Write {
            id: None,
            ..lock(0, "lock", "")
        };
        assert!(!s.apply_writes(11, 2_000, &[plain], &mut ch)[0].ok);
        assert_eq!(s.recent.len(), 3);
    }

    /// Ids leave in apply order once [`RETAIN_MS`] behind the horizon; a stamp from a clock
    /// behind neither moves the horizon back nor evicts anything; replicas applying the same
    /// entries hold the same table.
    #[test]
    fn ids_are_evicted_by_the_stamps_alike_on_every_replica() {
        let entries: Vec<(u64, u64, Vec<Write>)> = vec![
            (1, 10_000, vec![lock(1, "a", "1"), lock(2, "b", "1")]),
            (2, 20_000, vec![lock(3, "c", "1")]),
            (3, 5_000, vec![lock(4, "d", "1")]),
            (4, 10_000 + RETAIN_MS, vec![]),
            (5, 10_001 + RETAIN_MS, vec![lock(5, "e", "1")]),
        ];
        let replay = |upto: usize| {
            let mut s = State::default();
            for (index, stamp, writes) in &entries[..upto] {
                s.apply_writes(*index, *stamp, writes, &mut Changes::default());
            }
            s
        };
        let at4 = replay(4);
        assert_eq!(at4.recent.len(), 4, "exactly RETAIN_MS behind is kept");
        let s = replay(5);
        assert_eq!(s, replay(5), "the same entries give the same table");
        // Entry 1 is evicted; entry 2 is younger, so entry 3 (an older stamp) stays behind it.
        for (id, kept) in [(1, false), (2, false), (3, true), (4, true), (5, true)] {
            assert_eq!(
                s.recent.get(&Uuid::from_u128(id)).is_some(),
                kept,
                "id {id}"
            );
        }
        assert_eq!(s.recent.horizon_ms, 10_001 + RETAIN_MS);
        // An evicted id is a new request again (the retry window is long past).
        let mut s = s;
        let late = s.apply_writes(
            6,
            10_001 + RETAIN_MS,
            &[lock(1, "a", "2")],
            &mut Changes::default(),
        );
        assert!(!late[0].ok, "a applied again, its CAS refused");
    }

    #[test]
    fn the_count_cap_evicts_the_oldest_entries() {
        let mut r = RecentWrites::default();
        let per = 1024;
        let entries = MAX_IDS / per + 2;
        for e in 0..entries {
            let ids: Vec<(RequestId, bool)> = (0..per)
                .map(|i| (Uuid::from_u128((e * per + i) as u128), true))
                .collect();
            for (id, ok) in &ids {
                r.outcomes.insert(
                    *id,
                    Outcome {
                        ok: *ok,
                        index: e as u64,
                    },
                );
            }
            r.record(e as u64, 1, ids);
        }
        assert!(r.len() <= MAX_IDS && r.len() > MAX_IDS - per, "{}", r.len());
        assert_eq!(r.entries.front().map(|e| e.index), Some(2));
        assert!(r.get(&Uuid::from_u128(0)).is_none());
        assert!(r
            .get(&Uuid::from_u128((entries * per - 1) as u128))
            .is_some());
    }

    /// The table is in the snapshot body and comes back whole (its lookup map rebuilt); a body
    /// written before request ids still reads, with an empty table; a restore keeps the table.
    #[test]
    fn snapshots_keep_the_table_and_old_ones_still_read() {
        let mut s = State::default();
        s.apply_writes(7, 1_000, &[lock(1, "lock", "me")], &mut Changes::default());
        let body = SnapshotBody {
            cluster_id: Some(Uuid::from_u128(42)),
            data: s.clone(),
        };
        let bytes = postcard::to_allocvec(&body).unwrap();
        let back = SnapshotBody::decode(&bytes).unwrap();
        assert_eq!(back, body);
        assert_eq!(
            back.data.recent.get(&Uuid::from_u128(1)),
            Some(Outcome { ok: true, index: 7 })
        );

        #[derive(Serialize)]
        struct OldState<'a> {
            kv: &'a BTreeMap<String, KvEntry>,
            tombstones: &'a BTreeMap<String, u64>,
            kv_index: u64,
            catalog: &'a BTreeMap<String, CatalogNode>,
            catalog_index: u64,
            autopilot: &'a Option<(super::super::autopilot::AutopilotConfig, u64)>,
        }
        #[derive(Serialize)]
        struct OldBody<'a> {
            cluster_id: Option<Uuid>,
            data: OldState<'a>,
        }
        let old = postcard::to_allocvec(&OldBody {
            cluster_id: Some(Uuid::from_u128(42)),
            data: OldState {
                kv: &s.kv,
                tombstones: &s.tombstones,
                kv_index: s.kv_index,
                catalog: &s.catalog,
                catalog_index: s.catalog_index,
                autopilot: &s.autopilot,
            },
        })
        .unwrap();
        assert!(
            bytes.starts_with(&old),
            "the old body is a prefix of the new"
        );
        let read = SnapshotBody::decode(&old).unwrap();
        assert_eq!(read.data.kv, s.kv);
        assert!(read.data.recent.is_empty());
        assert!(SnapshotBody::decode(&[0xff; 3]).is_err());

        // Restoring the table-less snapshot keeps this state's table: the retry still answers
        // with its first outcome.
        let mut ch = Changes::default();
        let restored = s.apply_writes(
            8,
            1_000,
            &[Write {
                id: Some(Uuid::from_u128(9)),
                cmd: StateCommand::Restore(old),
            }],
            &mut ch,
        );
        assert!(restored[0].ok && ch.all);
        let retry = s.apply_writes(9, 1_000, &[lock(1, "lock", "me")], &mut ch);
        assert_eq!(retry, vec![Outcome { ok: true, index: 7 }]);
        assert_eq!(s.recent.get(&Uuid::from_u128(9)).map(|o| o.index), Some(8));
    }

    /// A restore in pieces: nothing changes until its end, pieces must follow each other, a
    /// new restore drops an unfinished one, and the pieces survive a snapshot taken between
    /// them (a follower that installs it assembles the same bytes).
    #[test]
    fn a_restore_in_pieces_replaces_everything_at_its_end() {
        let mut a = State::default();
        set(&mut a, 1, "x", "1", None);
        let snap = postcard::to_allocvec(&SnapshotBody {
            cluster_id: None,
            data: a,
        })
        .unwrap();
        let (id, other) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let piece = |id, offset: usize, bytes: &[u8]| StateCommand::RestorePiece {
            id,
            offset: offset as u64,
            bytes: bytes.to_vec(),
        };
        let end = |id, size: usize| StateCommand::RestoreEnd {
            id,
            size: size as u64,
        };
        let mut b = State::default();
        set(&mut b, 1, "y", "1", None);
        let mut ch = Changes::default();
        let half = snap.len() / 2;

        assert!(!b.apply(2, &piece(id, 5, &snap[5..]), &mut ch), "no start");
        assert!(b.apply(2, &piece(id, 0, &snap[..half]), &mut ch));
        assert!(b.kv.contains_key("y") && !ch.all, "nothing visible yet");
        assert!(!b.apply(3, &piece(other, half, &snap[half..]), &mut ch));
        assert!(!b.apply(3, &piece(id, half + 1, &snap[half + 1..]), &mut ch));
        assert!(!b.apply(3, &end(id, snap.len()), &mut ch), "incomplete");
        assert!(b.restoring.is_none(), "an end that fails drops the pieces");

        assert!(b.apply(4, &piece(id, 0, &snap[..half]), &mut ch));
        // A snapshot between the pieces holds them: a follower installing it goes on.
        let taken = postcard::to_allocvec(&SnapshotBody {
            cluster_id: None,
            data: b.clone(),
        })
        .unwrap();
        let mut f = SnapshotBody::decode(&taken).unwrap().data;
        assert_eq!(f, b);
        for s in [&mut b, &mut f] {
            assert!(s.apply(5, &piece(id, half, &snap[half..]), &mut ch));
            assert!(!s.apply(6, &end(other, snap.len()), &mut ch), "not its end");
            assert!(s.apply(6, &end(id, snap.len()), &mut ch));
            assert!(s.kv.contains_key("x") && !s.kv.contains_key("y"));
            assert_eq!((s.kv_index, s.restoring.as_ref()), (6, None));
        }
        assert_eq!(f, b);

        // A second restore started over an unfinished one wins; the first's pieces are refused.
        assert!(b.apply(7, &piece(id, 0, &snap[..half]), &mut ch));
        assert!(b.apply(8, &piece(other, 0, &snap[..half]), &mut ch));
        assert!(!b.apply(9, &piece(id, half, &snap[half..]), &mut ch));
        assert!(!b.apply(9, &end(id, half), &mut ch));
        assert!(b.apply(10, &piece(other, half, &snap[half..]), &mut ch));
        assert!(b.apply(11, &end(other, snap.len()), &mut ch));
        // Nothing beyond the restore limit is kept.
        assert!(!b.apply(12, &piece(id, MAX_RESTORE, b"x"), &mut ch));
    }

    #[test]
    fn limits_are_named() {
        assert!(check_sizes(&"k".repeat(MAX_KEY + 1), 0)
            .unwrap_err()
            .to_string()
            .contains("too large"));
        assert!(check_sizes("k", MAX_VALUE + 1)
            .unwrap_err()
            .to_string()
            .contains("Request body"));
        assert_eq!(check_sizes("", 0), Err(SizeError::MissingKey));
        assert_eq!(check_sizes("a\0b", 0), Err(SizeError::KeyHasNul));
        assert!(check_sizes("k", MAX_VALUE).is_ok());
    }
}
