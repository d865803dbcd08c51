//! Answering "may this token do that?" from a token's policies, merged, and the cluster's
//! default policy.
//!
//! Consul's documented rules, which this follows:
//! - For `key`, `node` and `agent`, an exact rule (`key "foo"`) applies only to that name and
//!   takes precedence over every prefix rule for it; otherwise the longest matching prefix rule
//!   decides (`key_prefix ""` matches every name).
//! - `write` grants read (and list) too; `read` grants list but not write; `list` grants only
//!   listing keys (not reading their values); `deny` grants nothing.
//! - The policies of one token are merged rule by rule: for the same resource and the same
//!   segment of the same kind (exact or prefix), deny wins over write, write over read, read
//!   over list. Rules for different segments are not merged: the longer prefix still decides.
//! - No rule matches: `acl.default_policy` (allow or deny) decides.
//! - The global-management policy allows everything.

use std::collections::HashMap;
use std::fmt;

use super::policy::{Disposition, Policy, Resource, Scope};

/// `acl.default_policy`: what happens when no rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultPolicy {
    Allow,
    Deny,
}

/// The access a request needs, in Consul's permission words (`key:list`, `key:read`,
/// `key:write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessLevel {
    List,
    Read,
    Write,
}

impl AccessLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLevel::List => "list",
            AccessLevel::Read => "read",
            AccessLevel::Write => "write",
        }
    }
}

impl fmt::Display for AccessLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a rule's disposition grants a needed access level.
fn grants(disposition: Disposition, needed: AccessLevel) -> bool {
    match disposition {
        Disposition::Write => true,
        Disposition::Read => needed != AccessLevel::Write,
        Disposition::List => needed == AccessLevel::List,
        Disposition::Deny => false,
    }
}

/// The merged rules of one segmented resource: exact names and prefixes kept apart, since an
/// exact rule and a prefix rule for the same string are different rules.
#[derive(Debug, Clone, Default)]
struct SegmentRules {
    exact: HashMap<String, Disposition>,
    prefix: HashMap<String, Disposition>,
}

impl SegmentRules {
    /// The longest prefix rule matching `name`, if any: tries `name` and each of its shorter
    /// prefixes down to `""`.
    fn longest_prefix(&self, name: &str) -> Option<Disposition> {
        (0..=name.len())
            .rev()
            .filter(|&end| name.is_char_boundary(end))
            .find_map(|end| self.prefix.get(&name[..end]).copied())
    }

    /// The rule that decides for `name`: its exact rule, else its longest prefix rule.
    fn deciding(&self, name: &str) -> Option<Disposition> {
        self.exact
            .get(name)
            .copied()
            .or_else(|| self.longest_prefix(name))
    }
}

/// A token's merged rules and the default policy: answers every access question muster asks.
#[derive(Debug, Clone)]
pub struct Authorizer {
    management: bool,
    default: DefaultPolicy,
    key: SegmentRules,
    node: SegmentRules,
    agent: SegmentRules,
    operator: Option<Disposition>,
    acl: Option<Disposition>,
    keyring: Option<Disposition>,
}

impl Authorizer {
    /// The authorizer of a token whose policies have these rule texts: management (the
    /// global-management policy) allows everything; otherwise each text parsed, and one that
    /// does not parse denies everything rather than being skipped (skipping could drop a
    /// `deny`; rules are checked when set, so only a later, stricter parser gets here). Servers
    /// and client agents both build a token's authorizer with this.
    pub fn from_rules(rules: &[String], default: DefaultPolicy, management: bool) -> Authorizer {
        if management {
            return Authorizer::management();
        }
        let parsed: Vec<Policy> = rules
            .iter()
            .map(|r| super::parse(r).unwrap_or_else(|_| Policy::deny_everything()))
            .collect();
        Authorizer::new(&parsed, default, false)
    }

    /// The authorizer of a token holding `policies`. `management` is the global-management
    /// policy: when set, every question is answered "allowed" whatever the rules say.
    pub fn new<'a>(
        policies: impl IntoIterator<Item = &'a Policy>,
        default: DefaultPolicy,
        management: bool,
    ) -> Authorizer {
        let mut authorizer = Authorizer {
            management,
            default,
            key: SegmentRules::default(),
            node: SegmentRules::default(),
            agent: SegmentRules::default(),
            operator: None,
            acl: None,
            keyring: None,
        };
        for policy in policies {
            for rule in &policy.rules {
                let merge = |slot: &mut Option<Disposition>| {
                    *slot = Some(slot.map_or(rule.disposition, |d| d.merge(rule.disposition)));
                };
                match (&rule.scope, rule.resource) {
                    (Scope::Whole, Resource::Operator) => merge(&mut authorizer.operator),
                    (Scope::Whole, Resource::Acl) => merge(&mut authorizer.acl),
                    (Scope::Whole, Resource::Keyring) => merge(&mut authorizer.keyring),
                    (Scope::Whole, _) => {}
                    (Scope::Exact(name) | Scope::Prefix(name), resource) => {
                        let Some(rules) = authorizer.segment_rules_mut(resource) else {
                            continue;
                        };
                        let map = if matches!(rule.scope, Scope::Exact(_)) {
                            &mut rules.exact
                        } else {
                            &mut rules.prefix
                        };
                        map.entry(name.clone())
                            .and_modify(|d| *d = d.merge(rule.disposition))
                            .or_insert(rule.disposition);
                    }
                }
            }
        }
        authorizer
    }

    /// A global-management authorizer: everything allowed.
    pub fn management() -> Authorizer {
        Authorizer::new([], DefaultPolicy::Deny, true)
    }

    fn segment_rules(&self, resource: Resource) -> Option<&SegmentRules> {
        match resource {
            Resource::Key => Some(&self.key),
            Resource::Node => Some(&self.node),
            Resource::Agent => Some(&self.agent),
            _ => None,
        }
    }

    fn segment_rules_mut(&mut self, resource: Resource) -> Option<&mut SegmentRules> {
        match resource {
            Resource::Key => Some(&mut self.key),
            Resource::Node => Some(&mut self.node),
            Resource::Agent => Some(&mut self.agent),
            _ => None,
        }
    }

    fn default_allows(&self) -> bool {
        self.default == DefaultPolicy::Allow
    }

    /// The general question: may `needed` be done on `resource`, at `segment` for a segmented
    /// resource (ignored for the others)? The named methods below are this with their arguments
    /// filled in.
    pub fn allowed(&self, resource: Resource, needed: AccessLevel, segment: &str) -> bool {
        if self.management {
            return true;
        }
        let deciding = match resource {
            Resource::Operator => self.operator,
            Resource::Acl => self.acl,
            Resource::Keyring => self.keyring,
            segmented => self
                .segment_rules(segmented)
                .and_then(|rules| rules.deciding(segment)),
        };
        match deciding {
            Some(disposition) => grants(disposition, needed),
            None => self.default_allows(),
        }
    }

    /// Reading the value of `key`.
    pub fn key_read(&self, key: &str) -> bool {
        self.allowed(Resource::Key, AccessLevel::Read, key)
    }

    /// Writing (or deleting) the single key `key`.
    pub fn key_write(&self, key: &str) -> bool {
        self.allowed(Resource::Key, AccessLevel::Write, key)
    }

    /// Listing the keys under `prefix`: granted by `list` on a key_prefix rule, or by read or
    /// write (Consul's documented meaning of `list`).
    pub fn key_list(&self, prefix: &str) -> bool {
        self.allowed(Resource::Key, AccessLevel::List, prefix)
    }

    /// Writing every key under `prefix` at once (a recursive delete). Consul's `KeyWritePrefix`:
    /// the longest prefix rule covering `prefix` must grant write, and no rule, exact or prefix,
    /// at or under `prefix` may grant less than write (a deny or a read-only rule underneath
    /// refuses the whole operation, since it would otherwise delete keys the token may not
    /// write). With no covering prefix rule and nothing less than write underneath, the default
    /// policy decides.
    pub fn key_write_prefix(&self, prefix: &str) -> bool {
        if self.management {
            return true;
        }
        let covering = self.key.longest_prefix(prefix);
        if covering.is_some_and(|d| d != Disposition::Write) {
            return false;
        }
        let under = |rules: &HashMap<String, Disposition>| {
            rules
                .iter()
                .any(|(name, d)| name.starts_with(prefix) && *d != Disposition::Write)
        };
        if under(&self.key.exact) || under(&self.key.prefix) {
            return false;
        }
        covering.is_some() || self.default_allows()
    }

    /// Reading the catalog entry of the node `name`.
    pub fn node_read(&self, name: &str) -> bool {
        self.allowed(Resource::Node, AccessLevel::Read, name)
    }

    /// Registering or changing the node `name`.
    pub fn node_write(&self, name: &str) -> bool {
        self.allowed(Resource::Node, AccessLevel::Write, name)
    }

    /// Reading the agent `name`'s own state (its configuration, members view).
    pub fn agent_read(&self, name: &str) -> bool {
        self.allowed(Resource::Agent, AccessLevel::Read, name)
    }

    /// Acting on the agent `name` (join, leave, reload).
    pub fn agent_write(&self, name: &str) -> bool {
        self.allowed(Resource::Agent, AccessLevel::Write, name)
    }

    pub fn operator_read(&self) -> bool {
        self.allowed(Resource::Operator, AccessLevel::Read, "")
    }

    pub fn operator_write(&self) -> bool {
        self.allowed(Resource::Operator, AccessLevel::Write, "")
    }

    pub fn acl_read(&self) -> bool {
        self.allowed(Resource::Acl, AccessLevel::Read, "")
    }

    pub fn acl_write(&self) -> bool {
        self.allowed(Resource::Acl, AccessLevel::Write, "")
    }

    pub fn keyring_read(&self) -> bool {
        self.allowed(Resource::Keyring, AccessLevel::Read, "")
    }

    pub fn keyring_write(&self) -> bool {
        self.allowed(Resource::Keyring, AccessLevel::Write, "")
    }
}

/// A denial in Consul's words, so clients that match on them keep working:
/// `Permission denied: token with AccessorID '<id>' lacks permission 'key:write' on "foo"`.
/// Unsegmented resources have no `on "…"` part, and `segment` is ignored for them. Only the
/// accessor id appears, never the token's secret.
pub fn permission_denied(
    accessor_id: &str,
    resource: Resource,
    level: AccessLevel,
    segment: &str,
) -> String {
    let mut text =
        format!("Permission denied: token with AccessorID '{accessor_id}' lacks permission '{resource}:{level}'");
    if resource.is_segmented() {
        text.push_str(&format!(" on {segment:?}"));
    }
    text
}
