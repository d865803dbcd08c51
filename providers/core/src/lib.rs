//! The discovery-provider contract of muster, and its built-in providers.
//!
//! # Layout
//! - [`addr`]: the grammar of a join address and its resolution at every attempt.
//! - [`args`]: the `provider=x key=value` grammar, canonical form with secrets redacted.
//! - [`provider`]: the [`Provider`] trait, key specs, typed errors that say whether to retry.
//! - [`registry`]: providers by name, strict argument checking with suggestions, help texts.
//! - [`static_provider`], [`dns`], [`exec`]: built-in providers.
//! - [`conformance`]: the checks every provider passes.
//!
//! Cloud providers (AWS, GCE) live in their own crates behind cargo features of `muster`.

pub mod addr;
pub mod args;
pub mod conformance;
pub mod dns;
pub mod exec;
pub mod provider;
pub mod registry;
pub mod static_provider;

pub use addr::{AddrError, JoinAddr};
pub use args::{is_provider_string, looks_secret, redact, ProviderArgs};
pub use provider::{Candidates, KeySpec, Provider, ProviderError};
pub use registry::{EntryError, Registry};
