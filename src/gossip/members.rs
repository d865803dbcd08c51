//! The member list as operators see it: one row per node name, with Serf's statuses.

use std::net::SocketAddr;

use serde::Serialize;
use uuid::Uuid;

use super::identity::NodeIdentity;
use super::meta::Tags;

/// A member's status, numbered as Serf numbers them in Consul's HTTP API
/// (docs/reference/consul.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MemberStatus {
    Alive = 1,
    /// Announced a graceful leave, not yet gone.
    Leaving = 2,
    /// Left gracefully.
    Left = 3,
    /// Stopped answering probes (or was declared down without a leave).
    Failed = 4,
}

impl MemberStatus {
    /// The word `muster members` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Leaving => "leaving",
            Self::Left => "left",
            Self::Failed => "failed",
        }
    }
}

/// One row of the member list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub node_id: Uuid,
    pub addr: SocketAddr,
    pub generation: u64,
    pub status: MemberStatus,
    pub tags: Tags,
}

impl Member {
    pub fn identity(&self) -> NodeIdentity {
        NodeIdentity {
            name: self.name.clone(),
            node_id: self.node_id,
            addr: self.addr,
            generation: self.generation,
        }
    }

    /// `server` for servers (Consul's `role=consul` tag), `client` for clients.
    pub fn kind(&self) -> &'static str {
        match self.tags.get("role").map(String::as_str) {
            Some("consul") => "server",
            Some("node") => "client",
            _ => "unknown",
        }
    }
}
