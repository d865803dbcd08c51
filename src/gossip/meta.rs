//! Member metadata — tags and the leave intent — spread as foca custom broadcasts.
//!
//! SWIM only says who is alive. What a member *is* (role, datacenter, ports, expect…) rides
//! beside it as a [`MemberMeta`] record, versioned by its author: `(generation, version)` orders
//! records of one name, a newer one replaces an older one everywhere, and foca stops spreading a
//! record as soon as a newer one for the same name is known. A graceful leave is a record with
//! `leaving = true` sent *before* the member declares itself down, which is how everyone tells a
//! leave from a failure (Serf's "leave intent",
//! docs/reference/consul.md).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::identity::NodeIdentity;

/// Tags of a member, sorted by key.
pub type Tags = BTreeMap<String, String>;

/// The most a member's tags may take, encoded: Serf's cap on its tags (512 bytes), which keeps
/// a metadata record well inside one SWIM packet beside the messages it rides with
/// ([`super::MAX_SWIM_PACKET`]). Config checks it before the agent starts
/// (docs/configuration.md, `node_meta`).
pub const MAX_TAGS_BYTES: usize = 512;

/// Tags whose key starts with this carry the operator's `node_meta` (the rest of the key is
/// the meta key); the catalog shows them as the node's `Meta`.
pub const NODE_META_PREFIX: &str = "meta:";

/// How many bytes `tags` take in a metadata record.
pub fn tags_size(tags: &Tags) -> usize {
    postcard::to_allocvec(tags).map_or(usize::MAX, |b| b.len())
}

/// The `node_meta` pairs carried in `tags`.
pub fn node_meta(tags: &Tags) -> impl Iterator<Item = (&str, &str)> {
    tags.iter().filter_map(|(k, v)| {
        k.strip_prefix(NODE_META_PREFIX)
            .map(|key| (key, v.as_str()))
    })
}

/// One version of one member's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberMeta {
    pub name: String,
    pub node_id: Uuid,
    /// The identity generation this record belongs to.
    pub generation: u64,
    /// Bumped by the author on every change.
    pub version: u64,
    pub tags: Tags,
    /// The member announced a graceful leave.
    pub leaving: bool,
}

impl MemberMeta {
    fn order(&self) -> (u64, u64) {
        (self.generation, self.version)
    }

    /// Whether this record describes `id` (same name, node and incarnation of the process).
    pub fn describes(&self, id: &NodeIdentity) -> bool {
        self.name == id.name && self.node_id == id.node_id && self.generation == id.generation
    }
}

/// The key foca uses to decide which in-flight broadcast a new one replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaKey {
    name: String,
    order: (u64, u64),
}

impl foca::Invalidates for MetaKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.name == other.name && self.order >= other.order
    }
}

/// The newest record known for each name, shared between foca's broadcast handler and the task
/// that owns foca. `changed` lists names whose record changed since the owner last looked.
#[derive(Debug, Default)]
pub struct MetaStore {
    pub records: HashMap<String, MemberMeta>,
    pub changed: Vec<String>,
}

impl MetaStore {
    /// Keeps `meta` if it is newer than what we hold; says whether it was.
    pub fn offer(&mut self, meta: MemberMeta) -> bool {
        let newer = match self.records.get(&meta.name) {
            None => true,
            Some(old) => meta.order() > old.order(),
        };
        if newer {
            self.changed.push(meta.name.clone());
            self.records.insert(meta.name.clone(), meta);
        }
        newer
    }
}

/// Errors decoding a metadata broadcast: the packet is dropped and counted.
#[derive(Debug, thiserror::Error)]
#[error("malformed member metadata broadcast: {0}")]
pub struct MetaDecodeError(String);

/// foca's hook for our custom broadcasts.
pub struct MetaHandler {
    pub store: Arc<Mutex<MetaStore>>,
}

impl foca::BroadcastHandler<NodeIdentity> for MetaHandler {
    type Key = MetaKey;
    type Error = MetaDecodeError;

    fn receive_item(
        &mut self,
        data: &[u8],
        _sender: Option<&NodeIdentity>,
    ) -> Result<Option<MetaKey>, MetaDecodeError> {
        let meta: MemberMeta =
            postcard::from_bytes(data).map_err(|e| MetaDecodeError(e.to_string()))?;
        let key = MetaKey {
            name: meta.name.clone(),
            order: meta.order(),
        };
        if self.store.lock().expect("meta store lock").offer(meta) {
            Ok(Some(key))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::{BroadcastHandler, Invalidates};

    fn meta(version: u64) -> MemberMeta {
        MemberMeta {
            name: "a".into(),
            node_id: Uuid::nil(),
            generation: 1,
            version,
            tags: Tags::new(),
            leaving: false,
        }
    }

    #[test]
    fn node_meta_rides_in_prefixed_tags_and_is_measured() {
        let mut t = Tags::new();
        t.insert("role".into(), "node".into());
        t.insert("meta:rack".into(), "r1".into());
        assert_eq!(node_meta(&t).collect::<Vec<_>>(), [("rack", "r1")]);
        // postcard: a length byte for the map, then each string with its length byte.
        assert_eq!(tags_size(&t), 1 + (1 + 4 + 1 + 4) + (1 + 9 + 1 + 2));
    }

    #[test]
    fn newer_versions_win_and_stale_ones_stop_spreading() {
        let store = Arc::new(Mutex::new(MetaStore::default()));
        let mut h = MetaHandler {
            store: store.clone(),
        };
        let bytes = |m: &MemberMeta| postcard::to_allocvec(m).unwrap();
        let sender = NodeIdentity::new("b".into(), Uuid::nil(), "127.0.0.1:1".parse().unwrap());
        assert!(h
            .receive_item(&bytes(&meta(2)), Some(&sender))
            .unwrap()
            .is_some());
        assert!(h
            .receive_item(&bytes(&meta(1)), Some(&sender))
            .unwrap()
            .is_none());
        assert!(h
            .receive_item(&bytes(&meta(2)), Some(&sender))
            .unwrap()
            .is_none());
        assert_eq!(store.lock().unwrap().records["a"].version, 2);
        assert!(h.receive_item(b"\xff\xff", Some(&sender)).is_err());
        let k2 = MetaKey {
            name: "a".into(),
            order: (1, 2),
        };
        let k1 = MetaKey {
            name: "a".into(),
            order: (1, 1),
        };
        assert!(k2.invalidates(&k1) && !k1.invalidates(&k2));
    }
}
