//! The `acl` stanza and Consul's older `acl_*` keys (docs/acl.md, Configuration): as written
//! per layer ([`AclLayer`]), how layers combine, and the checked [`AclConfig`]. Tokens are
//! secrets: they may come from the file, from a `*_file` of their own or from a `MUSTER_ACL_*`
//! variable, and their `Debug` is `hidden`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::acl::{DefaultPolicy, DownPolicy};
use crate::duration::parse_go_duration;

/// A secret string (an ACL token). `Debug` never shows it; [`Secret::expose`] does, for the
/// one place that must send it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Self(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hidden")
    }
}

/// `acl.tokens` as written.
#[derive(Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclTokensLayer {
    pub initial_management: Option<String>,
    /// Consul's name before 1.11 for `initial_management`.
    pub master: Option<String>,
    pub agent: Option<String>,
    pub default: Option<String>,
    /// muster's own: a file whose first line is the token.
    pub initial_management_file: Option<PathBuf>,
    pub agent_file: Option<PathBuf>,
    pub default_file: Option<PathBuf>,
    /// Consul tokens for what muster does not have (accepted with a warning).
    pub agent_recovery: Option<String>,
    pub agent_master: Option<String>,
    pub replication: Option<String>,
    pub dns: Option<String>,
    pub config_file_service_registration: Option<String>,
}

/// The `acl` stanza as written in one layer (with Consul's older top-level `acl_*` keys folded
/// in by the file reader).
#[derive(Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclLayer {
    pub enabled: Option<bool>,
    pub default_policy: Option<String>,
    pub down_policy: Option<String>,
    pub token_ttl: Option<String>,
    pub policy_ttl: Option<String>,
    pub enable_token_persistence: Option<bool>,
    pub enable_key_list_policy: Option<bool>,
    /// Consul settings for roles and replication, which muster does not have.
    pub role_ttl: Option<String>,
    pub enable_token_replication: Option<bool>,
    pub msp_disable_bootstrap: Option<bool>,
    pub tokens: Option<AclTokensLayer>,
}

impl std::fmt::Debug for AclLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only whether each token is set: they are secrets.
        let tokens = self.tokens.as_ref().map(|t| {
            [
                (
                    "initial_management",
                    t.initial_management.is_some() || t.master.is_some(),
                ),
                ("agent", t.agent.is_some()),
                ("default", t.default.is_some()),
            ]
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(k, _)| k)
            .collect::<Vec<_>>()
        });
        f.debug_struct("AclLayer")
            .field("enabled", &self.enabled)
            .field("default_policy", &self.default_policy)
            .field("down_policy", &self.down_policy)
            .field("token_ttl", &self.token_ttl)
            .field("policy_ttl", &self.policy_ttl)
            .field("tokens_set", &tokens)
            .finish_non_exhaustive()
    }
}

impl AclLayer {
    /// Applies `later` on top: its values win, key by key (tokens too).
    pub fn merge(&mut self, later: AclLayer) {
        macro_rules! take {
            ($from:expr, $into:expr, $($f:ident),*) => { $( if $from.$f.is_some() { $into.$f = $from.$f; } )* };
        }
        take!(
            later,
            self,
            enabled,
            default_policy,
            down_policy,
            token_ttl,
            policy_ttl,
            enable_token_persistence,
            enable_key_list_policy,
            role_ttl,
            enable_token_replication,
            msp_disable_bootstrap
        );
        if let Some(t) = later.tokens {
            let mine = self.tokens.get_or_insert_with(Default::default);
            take!(
                t,
                mine,
                initial_management,
                master,
                agent,
                default,
                initial_management_file,
                agent_file,
                default_file,
                agent_recovery,
                agent_master,
                replication,
                dns,
                config_file_service_registration
            );
        }
    }
}

/// The checked ACL settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclConfig {
    pub enabled: bool,
    pub default_policy: DefaultPolicy,
    pub down_policy: DownPolicy,
    pub token_ttl: Duration,
    pub policy_ttl: Duration,
    pub enable_token_persistence: bool,
    pub enable_key_list_policy: bool,
    pub initial_management: Option<Secret>,
    pub agent_token: Option<Secret>,
    pub default_token: Option<Secret>,
}

/// Consul's default for both TTLs.
pub const DEFAULT_ACL_TTL: Duration = Duration::from_secs(30);

impl Default for AclConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            default_policy: DefaultPolicy::Allow,
            down_policy: DownPolicy::ExtendCache,
            token_ttl: DEFAULT_ACL_TTL,
            policy_ttl: DEFAULT_ACL_TTL,
            enable_token_persistence: false,
            enable_key_list_policy: false,
            initial_management: None,
            agent_token: None,
            default_token: None,
        }
    }
}

/// One token: the value in the file, else its `*_file`, else its `MUSTER_ACL_TOKEN_*`
/// variable. Two of the first two is an error; an unreadable or empty file is an error naming
/// the key and the file (never its content).
fn token(
    key: &str,
    value: &Option<String>,
    file: &Option<PathBuf>,
    env: &str,
    errors: &mut Vec<String>,
) -> Option<Secret> {
    match (value, file) {
        (Some(_), Some(_)) => {
            errors.push(format!(
                "acl.tokens.{key} and acl.tokens.{key}_file are both set: keep one"
            ));
            None
        }
        (Some(v), None) if v.trim().is_empty() => None,
        (Some(v), None) => Some(Secret::new(v.trim().to_string())),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Err(e) => {
                errors.push(format!(
                    "acl.tokens.{key}_file: cannot read {}: {e}",
                    path.display()
                ));
                None
            }
            Ok(text) => match text.lines().next().map(str::trim) {
                Some(t) if !t.is_empty() => Some(Secret::new(t.to_string())),
                _ => {
                    errors.push(format!(
                        "acl.tokens.{key}_file: {} is empty: put the token on its first line",
                        path.display()
                    ));
                    None
                }
            },
        },
        (None, None) => std::env::var(env)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(Secret::new),
    }
}

fn ttl(key: &str, v: &Option<String>, errors: &mut Vec<String>) -> Duration {
    match v {
        None => DEFAULT_ACL_TTL,
        Some(s) => match parse_go_duration(s) {
            Ok(d) if d >= Duration::from_secs(1) => d,
            Ok(_) => {
                errors.push(format!("acl.{key} {s:?} is too short: use at least 1s"));
                DEFAULT_ACL_TTL
            }
            Err(why) => {
                errors.push(format!("acl.{key}: {why}"));
                DEFAULT_ACL_TTL
            }
        },
    }
}

/// Checks the merged layers into [`AclConfig`].
pub fn finish_acl(
    layer: &AclLayer,
    errors: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> AclConfig {
    let enabled = layer.enabled.unwrap_or(false);
    if layer.enable_token_persistence == Some(true) {
        warnings.push(
            "acl.enable_token_persistence: muster has no `acl set-agent-token` yet, so there \
             is nothing to persist; tokens come from the configuration"
                .into(),
        );
    }
    let default_policy = match layer.default_policy.as_deref() {
        None | Some("allow") => DefaultPolicy::Allow,
        Some("deny") => DefaultPolicy::Deny,
        Some(other) => {
            errors.push(format!("acl.default_policy {other:?} is not allow or deny"));
            DefaultPolicy::Allow
        }
    };
    let down_policy = match layer.down_policy.as_deref() {
        None | Some("extend-cache") => DownPolicy::ExtendCache,
        Some("async-cache") => DownPolicy::AsyncCache,
        Some("allow") => DownPolicy::Allow,
        Some("deny") => DownPolicy::Deny,
        Some(other) => {
            errors.push(format!(
                "acl.down_policy {other:?} is not one of extend-cache, async-cache, allow, deny"
            ));
            DownPolicy::ExtendCache
        }
    };
    let t = layer.tokens.clone().unwrap_or_default();
    let initial = match (&t.initial_management, &t.master) {
        (Some(a), Some(b)) if a != b => {
            errors.push(
                "acl.tokens.initial_management and acl.tokens.master (its older name) disagree; \
                 keep only initial_management"
                    .into(),
            );
            None
        }
        (Some(a), _) | (None, Some(a)) => Some(a.clone()),
        (None, None) => None,
    };
    let initial_management = token(
        "initial_management",
        &initial,
        &t.initial_management_file,
        "MUSTER_ACL_TOKEN_INITIAL_MANAGEMENT",
        errors,
    );
    let agent_token = token(
        "agent",
        &t.agent,
        &t.agent_file,
        "MUSTER_ACL_TOKEN_AGENT",
        errors,
    );
    let default_token = token(
        "default",
        &t.default,
        &t.default_file,
        "MUSTER_ACL_TOKEN_DEFAULT",
        errors,
    );
    for (key, set) in [
        ("acl.role_ttl", layer.role_ttl.is_some()),
        (
            "acl.enable_token_replication",
            layer.enable_token_replication.is_some(),
        ),
        (
            "acl.msp_disable_bootstrap",
            layer.msp_disable_bootstrap.is_some(),
        ),
        ("acl.tokens.agent_recovery", t.agent_recovery.is_some()),
        ("acl.tokens.agent_master", t.agent_master.is_some()),
        ("acl.tokens.replication", t.replication.is_some()),
        ("acl.tokens.dns", t.dns.is_some()),
        (
            "acl.tokens.config_file_service_registration",
            t.config_file_service_registration.is_some(),
        ),
    ] {
        if set {
            warnings.push(format!(
                "{key} is a Consul setting for what muster does not have (roles, replication, \
                 DNS, service registration, the agent recovery token); it is ignored"
            ));
        }
    }
    AclConfig {
        enabled,
        default_policy,
        down_policy,
        token_ttl: ttl("token_ttl", &layer.token_ttl, errors),
        policy_ttl: ttl("policy_ttl", &layer.policy_ttl, errors),
        enable_token_persistence: layer.enable_token_persistence.unwrap_or(false),
        enable_key_list_policy: layer.enable_key_list_policy.unwrap_or(false),
        initial_management,
        agent_token,
        default_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finish(layer: AclLayer) -> (AclConfig, Vec<String>, Vec<String>) {
        let (mut e, mut w) = (Vec::new(), Vec::new());
        let c = finish_acl(&layer, &mut e, &mut w);
        (c, e, w)
    }

    #[test]
    fn consul_defaults_and_checked_values() {
        let (c, e, w) = finish(AclLayer::default());
        assert_eq!(c, AclConfig::default());
        assert!(e.is_empty() && w.is_empty());
        let (c, e, _) = finish(AclLayer {
            default_policy: Some("deny".into()),
            down_policy: Some("allow".into()),
            token_ttl: Some("45s".into()),
            ..Default::default()
        });
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            (c.default_policy, c.down_policy, c.token_ttl),
            (
                DefaultPolicy::Deny,
                DownPolicy::Allow,
                Duration::from_secs(45)
            )
        );
        let (_, e, _) = finish(AclLayer {
            default_policy: Some("dney".into()),
            down_policy: Some("cache".into()),
            policy_ttl: Some("10ms".into()),
            ..Default::default()
        });
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains("\"dney\" is not allow or deny"));
    }

    #[test]
    fn enabling_acls_is_checked_like_the_rest() {
        let (c, e, _) = finish(AclLayer {
            enabled: Some(true),
            default_policy: Some("deny".into()),
            ..Default::default()
        });
        assert!(e.is_empty(), "{e:?}");
        assert!(c.enabled && c.default_policy == DefaultPolicy::Deny);
    }

    #[test]
    fn tokens_come_from_the_file_a_token_file_or_the_environment_and_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("agent.token");
        std::fs::write(&f, "s3cr3t-agent\nignored\n").unwrap();
        let (c, e, w) = finish(AclLayer {
            tokens: Some(AclTokensLayer {
                master: Some("s3cr3t-mgmt".into()),
                agent_file: Some(f.clone()),
                dns: Some("x".into()),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(
            c.initial_management.as_ref().unwrap().expose(),
            "s3cr3t-mgmt"
        );
        assert_eq!(c.agent_token.as_ref().unwrap().expose(), "s3cr3t-agent");
        assert!(w[0].contains("acl.tokens.dns"), "{w:?}");
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        let (_, e, _) = finish(AclLayer {
            tokens: Some(AclTokensLayer {
                agent: Some("a".into()),
                agent_file: Some(f),
                default_file: Some(dir.path().join("missing")),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(e[0].contains("both set"), "{e:?}");
        assert!(
            e[1].starts_with("acl.tokens.default_file: cannot read"),
            "{e:?}"
        );
    }
}
