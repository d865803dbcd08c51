//! The replicated state: the KV store and the catalog, and how each command changes them.
//! Pure: `apply` is deterministic in (state, index, command), which every server relies on.
//! Formats and semantics: docs/state.md.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest key, in bytes.
pub const MAX_KEY: usize = 1024;
/// Largest value, in bytes (Consul's `kv_max_value_size`).
pub const MAX_VALUE: usize = 512 * 1024;

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
    /// Replace the KV store and the catalog by a snapshot's (postcard of [`SnapshotBody`]).
    Restore(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Replace the autopilot settings (`muster operator autopilot set-config`; the first
    /// leader also writes its configuration file's settings here once).
    AutopilotSet(super::autopilot::AutopilotConfig),
}

/// The KV store and catalog.
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
}

/// The bytes of a Raft snapshot and of an operator snapshot's data: the whole replicated state
/// but its log position.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotBody {
    pub cluster_id: Option<Uuid>,
    pub data: State,
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
    /// Applies `cmd` as the entry at `index`. Returns whether it took effect (false: failed CAS).
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
            StateCommand::Restore(bytes) => match postcard::from_bytes::<SnapshotBody>(bytes) {
                Ok(SnapshotBody {
                    data: mut restored, ..
                }) => {
                    restored.kv_index = index;
                    restored.catalog_index = index;
                    *self = restored;
                    ch.all = true;
                    true
                }
                // Checked by the leader before proposing; a corrupt entry changes nothing.
                Err(_) => false,
            },
        }
    }

    /// The index a blocking query on `scope` waits to see pass.
    pub fn watch_index(&self, scope: &KvScope) -> u64 {
        match scope {
            KvScope::Key(k) => self
                .kv
                .get(k)
                .map(|e| e.modify_index)
                .or_else(|| self.tombstones.get(k).copied())
                .unwrap_or(0),
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
                live.chain(dead).max().unwrap_or(0)
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
