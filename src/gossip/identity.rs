//! The identity a member carries in every SWIM message.
//!
//! foca keys members by [`foca::Identity::addr`]; muster keys them by **node name**, as Serf does
//! (docs/reference/consul.md),
//! so that a restarted node (same name, new process) replaces its previous incarnation instead of
//! appearing twice. `generation` tells the two apart: it is the start time of the process in
//! milliseconds, bumped when foca asks us to [`renew`](foca::Identity::renew) after being declared
//! down, and the higher generation wins a conflict.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Who a gossip member is and where to reach it. Small on purpose: it rides in every packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// Node name, unique among live members of the datacenter.
    pub name: String,
    /// Node ID, created once and kept in data_dir; survives restarts and address changes.
    pub node_id: Uuid,
    /// Gossip address (UDP and TCP).
    pub addr: SocketAddr,
    /// Start time of this incarnation of the process, in ms since the epoch; higher wins.
    pub generation: u64,
}

impl NodeIdentity {
    /// A fresh identity for a process starting now.
    pub fn new(name: String, node_id: Uuid, addr: SocketAddr) -> Self {
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        Self {
            name,
            node_id,
            addr,
            generation,
        }
    }
}

impl foca::Identity for NodeIdentity {
    type Addr = String;

    /// Rejoin automatically after a false "down" (a pause, a partition): same name and node id,
    /// a newer generation so the cluster prefers it over the identity it declared down.
    fn renew(&self) -> Option<Self> {
        let now = NodeIdentity::new(self.name.clone(), self.node_id, self.addr).generation;
        Some(Self {
            generation: now.max(self.generation + 1),
            ..self.clone()
        })
    }

    fn addr(&self) -> String {
        self.name.clone()
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, self.node_id) > (adversary.generation, adversary.node_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Identity;

    #[test]
    fn renewed_identity_wins_and_keeps_name_and_id() {
        let a = NodeIdentity::new(
            "n1".into(),
            Uuid::new_v4(),
            "127.0.0.1:8301".parse().unwrap(),
        );
        let b = a.renew().unwrap();
        assert!(b.win_addr_conflict(&a) && !a.win_addr_conflict(&b));
        assert_eq!((b.name.as_str(), b.node_id), (a.name.as_str(), a.node_id));
        assert_eq!(a.addr(), b.addr());
    }
}
