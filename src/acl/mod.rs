//! The ACL policy engine: Consul's rule language parsed into policies, and the questions the
//! agent asks of a token ("may it write `app/config`?") answered from them.
//!
//! This module is pure: no I/O, no clock, no async, and it names no other muster module. Tokens,
//! policy storage, replication and the HTTP and CLI surfaces are other modules' business; they
//! hand this one rule texts and get back an [`Authorizer`].
//!
//! # Layout
//! - [`policy`]: one policy's rules, in HCL or JSON, into a [`Policy`]: the rules muster enforces
//!   (`key`/`key_prefix`, `node`/`node_prefix`, `agent`/`agent_prefix`, `operator`, `acl`,
//!   `keyring`) and the Consul rules it accepts but ignores ([`IgnoredRule`]), or a
//!   [`PolicyError`] naming the culprit and the fix.
//! - [`authorizer`]: several policies merged with the default policy (and the global-management
//!   flag) into an [`Authorizer`], and Consul's "Permission denied" wording
//!   ([`permission_denied`]).
//! - [`cache`]: a client agent's resolved tokens for `token_ttl`, and `down_policy` when no
//!   server answers ([`TokenCache`], [`DownPolicy`]).
//!
//! docs/acl-rules.md describes the rule language as muster reads it.

pub mod authorizer;
pub mod cache;
pub mod policy;

pub use authorizer::{permission_denied, AccessLevel, Authorizer, DefaultPolicy};
pub use cache::{DownPolicy, TokenCache};
pub use policy::{parse, Disposition, IgnoredRule, Policy, PolicyError, Resource, Rule, Scope};

#[cfg(test)]
mod tests;
