//! Shared ground for muster and its discovery providers.
//!
//! # Layout
//! - [`addr`]: the grammar of a join address (`host`, `host:port`, `[v6]:port`) and its resolution
//!   into socket addresses, repeated at every attempt so that DNS changes are seen.
//!
//! The provider trait and the `provider=x key=value` grammar join this crate with the discovery
//! providers (see docs/architecture.md); join addresses live here already because every provider
//! ends by handing addresses of exactly this form to the join loop.

pub mod addr;

pub use addr::{AddrError, JoinAddr};
