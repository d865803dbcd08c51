//! The ACL part of the replicated state: policies, tokens, the bootstrap flag, the checks every
//! change must pass, and resolving a secret into an [`Authorizer`]. Pure and deterministic, like
//! the rest of `state.rs`: every server applies the same commands to the same state and decides
//! the same way. The design is docs/acl.md; the snapshot section is docs/state.md ("ACL state").
//!
//! The checks are public so that a proposer (the HTTP layer, the leader's own duties) runs them
//! before proposing and can tell its caller why a change is refused; `State::apply` runs them
//! again on the state the entry meets, since another write may have come first. A refused
//! command changes nothing and applies as `false`, as a failed CAS does; its reason is what
//! [`super::state::State::check_acl`] says on the state at hand.

use std::collections::btree_map::Entry;
use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::acl::{Authorizer, DefaultPolicy};

/// The ID of the built-in `global-management` policy (Consul's fixed ID).
pub const GLOBAL_MANAGEMENT_ID: Uuid = Uuid::from_u128(1);
/// The name of the built-in management policy; no other policy may take it.
pub const GLOBAL_MANAGEMENT_NAME: &str = "global-management";
/// The built-in management policy's description (Consul's wording, so tools that show it match).
pub const GLOBAL_MANAGEMENT_DESCRIPTION: &str = "Builtin Policy that grants unlimited access";
/// The built-in management policy's rules: write on every resource muster enforces. They are
/// shown to operators, not read for meaning: a token holding this policy is a management token
/// and every question is answered "allowed" ([`AclState::resolve`]).
pub const GLOBAL_MANAGEMENT_RULES: &str = r#"acl = "write"
agent_prefix "" {
  policy = "write"
}
key_prefix "" {
  policy = "write"
}
keyring = "write"
node_prefix "" {
  policy = "write"
}
operator = "write"
"#;

/// The AccessorID of the built-in `anonymous` token (Consul's fixed ID): what a request that
/// carries no token is.
pub const ANONYMOUS_ID: Uuid = Uuid::from_u128(2);
/// The SecretID of the anonymous token (Consul's): not a secret, the name of "no token".
pub const ANONYMOUS_SECRET: &str = "anonymous";
/// The anonymous token's description when first created (Consul's wording).
pub const ANONYMOUS_DESCRIPTION: &str = "Anonymous Token";

/// Longest policy name, in characters (Consul's documented limit).
pub const MAX_POLICY_NAME: usize = 128;
/// Longest secret, in bytes. A secret travels in an HTTP header, so it is also limited to
/// visible ASCII ([`AclState::check_token_set`]).
pub const MAX_SECRET: usize = 256;

/// One policy, as stored and replicated. `create_index` and `modify_index` are set by
/// `apply` (the entry's index), whatever the command carried.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclPolicy {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// Consul's rule language, HCL or JSON (docs/acl-rules.md); checked to parse on every set.
    pub rules: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl AclPolicy {
    /// The built-in `global-management` policy, created at `index`.
    pub fn global_management(index: u64) -> AclPolicy {
        AclPolicy {
            id: GLOBAL_MANAGEMENT_ID,
            name: GLOBAL_MANAGEMENT_NAME.to_string(),
            description: GLOBAL_MANAGEMENT_DESCRIPTION.to_string(),
            rules: GLOBAL_MANAGEMENT_RULES.to_string(),
            create_index: index,
            modify_index: index,
        }
    }
}

/// One token, as stored and replicated. Its `Debug` hides `secret_id`, so a token can be
/// logged or shown in a test failure.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclToken {
    /// Public: logs and denials name a token by it.
    pub accessor_id: Uuid,
    /// The bearer secret. Never in an error, a log line or a `Debug`.
    pub secret_id: String,
    pub description: String,
    /// Policy IDs. A link to a policy deleted since stays here and is skipped by resolution
    /// (Consul's behaviour: it reports such links as deleted); setting a token needs every
    /// link to exist, so a proposer updating a token drops the dangling ones first.
    pub policies: Vec<Uuid>,
    /// When the token was created, unix ms, stamped by the proposer in the command so that
    /// `apply` needs no clock; kept on update.
    pub create_time_ms: u64,
    pub create_index: u64,
    pub modify_index: u64,
}

impl AclToken {
    /// The built-in anonymous token, created at `index`: no policies, so the default policy
    /// decides everything until an operator links some.
    pub fn anonymous(index: u64) -> AclToken {
        AclToken {
            accessor_id: ANONYMOUS_ID,
            secret_id: ANONYMOUS_SECRET.to_string(),
            description: ANONYMOUS_DESCRIPTION.to_string(),
            policies: Vec::new(),
            create_time_ms: 0,
            create_index: index,
            modify_index: index,
        }
    }
}

impl fmt::Debug for AclToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Destructured without `..`: a new field does not compile until someone decides how
        // it is shown.
        let AclToken {
            accessor_id,
            secret_id: _,
            description,
            policies,
            create_time_ms,
            create_index,
            modify_index,
        } = self;
        f.debug_struct("AclToken")
            .field("accessor_id", accessor_id)
            .field("secret_id", &"hidden")
            .field("description", description)
            .field("policies", policies)
            .field("create_time_ms", create_time_ms)
            .field("create_index", create_index)
            .field("modify_index", modify_index)
            .finish()
    }
}

/// Policies, tokens and the bootstrap flag: the `acl` section of the replicated state. Its
/// `Debug` shows tokens through [`AclToken`]'s, so no secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclState {
    pub policies: BTreeMap<Uuid, AclPolicy>,
    /// By accessor ID.
    pub tokens: BTreeMap<Uuid, AclToken>,
    /// The index of the entry that bootstrapped ACLs (`AclBootstrap`); once set, bootstrap is
    /// refused.
    pub bootstrapped_at: Option<u64>,
    /// Highest index that changed any policy or token (or the bootstrap flag).
    pub index: u64,
}

/// Why an ACL change is refused. Each message names the object and the fix, and never holds a
/// secret (a token is named by its accessor ID).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclRefusal {
    #[error("ACL bootstrap no longer allowed: ACLs were bootstrapped at index {index}; create tokens with a management token instead")]
    AlreadyBootstrapped { index: u64 },
    #[error("token {accessor} already exists; bootstrap with a new accessor ID")]
    AccessorTaken { accessor: Uuid },
    #[error("policy name {name:?} is not valid: use 1 to {MAX_POLICY_NAME} characters, each an ASCII letter, a digit, '-' or '_'")]
    BadPolicyName { name: String },
    #[error("policy name {name:?} is already taken by policy {other}; choose another name or update that policy")]
    PolicyNameTaken { name: String, other: Uuid },
    #[error("policy name {GLOBAL_MANAGEMENT_NAME:?} is reserved for the built-in management policy; choose another name")]
    ReservedPolicyName,
    #[error("policy {name:?} has rules that cannot be used: {message}")]
    BadRules { name: String, message: String },
    #[error("the built-in global-management policy cannot be changed, only its description; leave its name and rules as they are")]
    GlobalManagementChanged,
    #[error("the built-in global-management policy cannot be deleted")]
    GlobalManagementUndeletable,
    #[error("{what} ID must not be the nil UUID; generate a random one")]
    NilId { what: &'static str },
    #[error(
        "token {accessor}: policy {policy} does not exist; create it first or remove the link"
    )]
    MissingPolicy { accessor: Uuid, policy: Uuid },
    #[error("token {accessor}: its secret is the one of token {other}; generate another secret")]
    SecretTaken { accessor: Uuid, other: Uuid },
    #[error("token {accessor}: the secret {ANONYMOUS_SECRET:?} belongs to the anonymous token; generate another secret")]
    AnonymousSecretReserved { accessor: Uuid },
    #[error("token {accessor}: the secret must be 1 to {MAX_SECRET} visible ASCII characters (no spaces); generate a UUID")]
    BadSecret { accessor: Uuid },
    #[error("token {accessor}: a token's secret cannot be changed; create a new token and delete this one")]
    SecretChanged { accessor: Uuid },
    #[error("the anonymous token's secret must stay {ANONYMOUS_SECRET:?}; change only its policies and description")]
    AnonymousSecretChanged,
    #[error("the anonymous token cannot be deleted; remove its policies to take its access away")]
    AnonymousUndeletable,
}

/// The answer to "which token is this secret, and what may it do?".
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The token's public ID, for denials and logs.
    pub accessor_id: Uuid,
    pub authorizer: Authorizer,
    /// The token holds global-management: everything is allowed.
    pub management: bool,
}

/// No token has this secret. Consul answers it `403 ACL not found`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("ACL not found")]
pub struct AclNotFound;

/// Consul's documented rule for a policy name: 1 to 128 of `A-Z a-z 0-9 - _`.
fn valid_policy_name(name: &str) -> bool {
    (1..=MAX_POLICY_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What an HTTP header can carry without quoting: visible ASCII, no space.
fn valid_secret(secret: &str) -> bool {
    (1..=MAX_SECRET).contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_graphic())
}

/// Equal secrets, in a time that depends on the lengths only, not on where the bytes differ,
/// so that timing a lookup tells nothing about a stored secret's content.
fn secrets_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl AclState {
    /// The token whose secret is `secret`, compared with every stored secret in full.
    pub fn token_by_secret(&self, secret: &str) -> Option<&AclToken> {
        // Every secret is compared, not only up to the first match.
        self.tokens.values().fold(None, |found, t| {
            if secrets_equal(&t.secret_id, secret) {
                Some(t)
            } else {
                found
            }
        })
    }

    /// Creates the built-ins that are missing: the global-management policy and the anonymous
    /// token, at `index`. Returns whether anything was created; existing ones (an operator
    /// may have changed the anonymous token's policies) are left as they are.
    pub fn init(&mut self, index: u64) -> bool {
        let mut changed = false;
        if let Entry::Vacant(slot) = self.policies.entry(GLOBAL_MANAGEMENT_ID) {
            slot.insert(AclPolicy::global_management(index));
            changed = true;
        }
        if let Entry::Vacant(slot) = self.tokens.entry(ANONYMOUS_ID) {
            slot.insert(AclToken::anonymous(index));
            changed = true;
        }
        if changed {
            self.index = index;
        }
        changed
    }

    /// The token a bootstrap would create: `token` linked to global-management only.
    fn bootstrap_token(token: &AclToken) -> AclToken {
        AclToken {
            policies: vec![GLOBAL_MANAGEMENT_ID],
            ..token.clone()
        }
    }

    /// Whether the built-ins (global-management, anonymous) are all here.
    pub fn has_builtins(&self) -> bool {
        self.policies.contains_key(&GLOBAL_MANAGEMENT_ID) && self.tokens.contains_key(&ANONYMOUS_ID)
    }

    /// Whether some token has this secret.
    pub fn has_secret(&self, secret: &str) -> bool {
        self.token_by_secret(secret).is_some()
    }

    /// Whether `token` may bootstrap ACLs now: only once, and as a new token.
    pub fn check_bootstrap(&self, token: &AclToken) -> Result<(), AclRefusal> {
        if let Some(index) = self.bootstrapped_at {
            return Err(AclRefusal::AlreadyBootstrapped { index });
        }
        if token.accessor_id == ANONYMOUS_ID || self.tokens.contains_key(&token.accessor_id) {
            return Err(AclRefusal::AccessorTaken {
                accessor: token.accessor_id,
            });
        }
        // The built-ins are created first, so the token is checked as it would be after that.
        let mut with_builtins = self.clone();
        with_builtins.init(0);
        with_builtins.check_token_set(&Self::bootstrap_token(token))
    }

    /// Bootstraps ACLs at `index`: the built-ins if missing, and `token` linked to
    /// global-management (whatever policies the command carried).
    pub fn bootstrap(&mut self, index: u64, token: &AclToken) -> Result<(), AclRefusal> {
        self.check_bootstrap(token)?;
        self.init(index);
        self.store_token(index, Self::bootstrap_token(token));
        self.bootstrapped_at = Some(index);
        self.index = index;
        Ok(())
    }

    /// Whether `policy` may be created or updated (by its ID) now.
    pub fn check_policy_set(&self, policy: &AclPolicy) -> Result<(), AclRefusal> {
        if policy.id.is_nil() {
            return Err(AclRefusal::NilId { what: "a policy" });
        }
        if policy.id == GLOBAL_MANAGEMENT_ID {
            if policy.name != GLOBAL_MANAGEMENT_NAME || policy.rules != GLOBAL_MANAGEMENT_RULES {
                return Err(AclRefusal::GlobalManagementChanged);
            }
            return Ok(());
        }
        if !valid_policy_name(&policy.name) {
            return Err(AclRefusal::BadPolicyName {
                name: policy.name.clone(),
            });
        }
        if policy.name == GLOBAL_MANAGEMENT_NAME {
            return Err(AclRefusal::ReservedPolicyName);
        }
        if let Some(other) = self
            .policies
            .values()
            .find(|p| p.name == policy.name && p.id != policy.id)
        {
            return Err(AclRefusal::PolicyNameTaken {
                name: policy.name.clone(),
                other: other.id,
            });
        }
        crate::acl::parse(&policy.rules).map_err(|e| AclRefusal::BadRules {
            name: policy.name.clone(),
            message: e.to_string(),
        })?;
        Ok(())
    }

    /// Creates or updates `policy` at `index`; an update keeps the policy's `create_index`.
    pub fn set_policy(&mut self, index: u64, policy: &AclPolicy) -> Result<(), AclRefusal> {
        self.check_policy_set(policy)?;
        let create_index = self
            .policies
            .get(&policy.id)
            .map_or(index, |p| p.create_index);
        self.policies.insert(
            policy.id,
            AclPolicy {
                create_index,
                modify_index: index,
                ..policy.clone()
            },
        );
        self.index = index;
        Ok(())
    }

    /// Whether policy `id` may be deleted now: any but global-management.
    pub fn check_policy_delete(&self, id: Uuid) -> Result<(), AclRefusal> {
        if id == GLOBAL_MANAGEMENT_ID {
            return Err(AclRefusal::GlobalManagementUndeletable);
        }
        Ok(())
    }

    /// Deletes policy `id` at `index`. Tokens linked to it keep the link, which resolution
    /// skips (Consul's behaviour). Deleting a policy that does not exist changes nothing and
    /// succeeds, as a KV delete of a missing key does.
    pub fn delete_policy(&mut self, index: u64, id: Uuid) -> Result<(), AclRefusal> {
        self.check_policy_delete(id)?;
        if self.policies.remove(&id).is_some() {
            self.index = index;
        }
        Ok(())
    }

    /// Whether `token` may be created or updated (by its accessor ID) now.
    pub fn check_token_set(&self, token: &AclToken) -> Result<(), AclRefusal> {
        let accessor = token.accessor_id;
        if accessor.is_nil() {
            return Err(AclRefusal::NilId {
                what: "a token's accessor",
            });
        }
        if accessor == ANONYMOUS_ID {
            if token.secret_id != ANONYMOUS_SECRET {
                return Err(AclRefusal::AnonymousSecretChanged);
            }
        } else {
            if !valid_secret(&token.secret_id) {
                return Err(AclRefusal::BadSecret { accessor });
            }
            if token.secret_id == ANONYMOUS_SECRET {
                return Err(AclRefusal::AnonymousSecretReserved { accessor });
            }
            if let Some(old) = self.tokens.get(&accessor) {
                if !secrets_equal(&old.secret_id, &token.secret_id) {
                    return Err(AclRefusal::SecretChanged { accessor });
                }
            }
            if let Some(other) = self
                .token_by_secret(&token.secret_id)
                .filter(|t| t.accessor_id != accessor)
            {
                return Err(AclRefusal::SecretTaken {
                    accessor,
                    other: other.accessor_id,
                });
            }
        }
        if let Some(policy) = token
            .policies
            .iter()
            .find(|id| !self.policies.contains_key(id))
        {
            return Err(AclRefusal::MissingPolicy {
                accessor,
                policy: *policy,
            });
        }
        Ok(())
    }

    /// Creates or updates `token` at `index`. An update keeps the token's `create_index` and
    /// `create_time_ms`; a policy linked twice is kept once, in its first place (Consul does
    /// the same).
    pub fn set_token(&mut self, index: u64, token: &AclToken) -> Result<(), AclRefusal> {
        self.check_token_set(token)?;
        self.store_token(index, token.clone());
        self.index = index;
        Ok(())
    }

    /// Stores a checked token at `index`.
    fn store_token(&mut self, index: u64, mut token: AclToken) {
        if let Some(old) = self.tokens.get(&token.accessor_id) {
            token.create_index = old.create_index;
            token.create_time_ms = old.create_time_ms;
        } else {
            token.create_index = index;
        }
        token.modify_index = index;
        let mut seen = std::collections::BTreeSet::new();
        token.policies.retain(|id| seen.insert(*id));
        self.tokens.insert(token.accessor_id, token);
    }

    /// Whether token `accessor` may be deleted now: any but anonymous.
    pub fn check_token_delete(&self, accessor: Uuid) -> Result<(), AclRefusal> {
        if accessor == ANONYMOUS_ID {
            return Err(AclRefusal::AnonymousUndeletable);
        }
        Ok(())
    }

    /// Deletes token `accessor` at `index`; a token that does not exist changes nothing and
    /// succeeds.
    pub fn delete_token(&mut self, index: u64, accessor: Uuid) -> Result<(), AclRefusal> {
        self.check_token_delete(accessor)?;
        if self.tokens.remove(&accessor).is_some() {
            self.index = index;
        }
        Ok(())
    }

    /// The token of `secret` as a client agent needs it to build its own authorizer: its
    /// accessor id, whether it is management (linked to global-management), and the rules of
    /// its existing policies (never the secret). Links to policies deleted since are skipped
    /// (Consul's behaviour). [`ANONYMOUS_SECRET`] before the anonymous token exists (ACLs
    /// enabled, the leader's `AclInit` not yet applied) is the built-in anonymous token: no
    /// policies. Any other unknown secret is [`AclNotFound`].
    pub fn describe(&self, secret: &str) -> Result<(Uuid, bool, Vec<String>), AclNotFound> {
        let anonymous;
        let token = match self.token_by_secret(secret) {
            Some(token) => token,
            None if secret == ANONYMOUS_SECRET => {
                anonymous = AclToken::anonymous(0);
                &anonymous
            }
            None => return Err(AclNotFound),
        };
        let linked: Vec<&AclPolicy> = token
            .policies
            .iter()
            .filter_map(|id| self.policies.get(id))
            .collect();
        let management = linked.iter().any(|p| p.id == GLOBAL_MANAGEMENT_ID);
        let rules = linked.iter().map(|p| p.rules.clone()).collect();
        Ok((token.accessor_id, management, rules))
    }

    /// Which token `secret` is ([`AclState::describe`]) and what it may do under `default`
    /// (`acl.default_policy`), by [`Authorizer::from_rules`]: the very rule a client agent
    /// applies to the same answer.
    ///
    /// Each policy's rules are parsed on every call; a cache by secret, dropped when
    /// [`AclState::index`] moves, is for later (docs/acl.md, "Resolution").
    pub fn resolve(&self, secret: &str, default: DefaultPolicy) -> Result<Resolved, AclNotFound> {
        let (accessor_id, management, rules) = self.describe(secret)?;
        Ok(Resolved {
            accessor_id,
            authorizer: Authorizer::from_rules(&rules, default, management),
            management,
        })
    }
}

#[cfg(test)]
#[path = "acl_state_tests.rs"]
mod tests;
