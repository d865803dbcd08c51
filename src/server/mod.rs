//! Server mode: Raft (openraft) with durable storage, the server RPC port, the bootstrap gate
//! and the leader's duties. See docs/servers.md.
//!
//! # Layout
//! - [`types`]: the Raft type configuration.
//! - [`store`]: log and state machine in redb.

pub mod store;
pub mod types;
