//! A server's Raft id, and its conversions to and from the node UUID. A leaf: the pure rules
//! (autopilot, the gate) use it without depending on the Raft type configuration.

use uuid::Uuid;

/// A server's Raft id: its node UUID as a 128-bit integer (docs/servers.md).
pub type NodeId = u128;

/// The node id of a UUID.
pub fn node_id(u: Uuid) -> NodeId {
    u.as_u128()
}

/// The UUID of a node id.
pub fn node_uuid(id: NodeId) -> Uuid {
    Uuid::from_u128(id)
}
