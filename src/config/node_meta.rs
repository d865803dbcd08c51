//! `node_meta` (and `-node-meta KEY:VALUE`), checked as Consul checks it, and the size of the
//! gossip tags it rides in (docs/configuration.md, Identity and storage).

use std::collections::BTreeMap;

use super::{ConfigError, RuntimeConfig};
use crate::gossip::meta::tags_size;
use crate::gossip::MAX_TAGS_BYTES;

/// Consul's limits (`structs.ValidateNodeMetadata`).
pub const MAX_PAIRS: usize = 64;
pub const MAX_KEY_LEN: usize = 128;
pub const MAX_VALUE_LEN: usize = 512;
/// Consul reserves `consul-`; muster puts its own keys (`muster-status`, `muster-role`) beside
/// the operator's in the catalog's `Meta`, so `muster-` is reserved too.
pub const RESERVED_PREFIXES: &[&str] = &["consul-", "muster-"];

/// The pairs as one map (a later pair for a key wins), each problem named.
pub(super) fn finish_node_meta(
    pairs: &[(String, String)],
    errors: &mut Vec<String>,
) -> BTreeMap<String, String> {
    let meta: BTreeMap<String, String> = pairs.iter().cloned().collect();
    if meta.len() > MAX_PAIRS {
        errors.push(format!(
            "node_meta has {} pairs: at most {MAX_PAIRS} are allowed",
            meta.len()
        ));
    }
    for (k, v) in &meta {
        if k.is_empty() {
            errors.push("node_meta: a pair has an empty key (-node-meta takes KEY:VALUE)".into());
        } else if k.len() > MAX_KEY_LEN {
            errors.push(format!(
                "node_meta: key {k:?} is too long ({} bytes; the limit is {MAX_KEY_LEN})",
                k.len()
            ));
        } else if !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            errors.push(format!(
                "node_meta: key {k:?} may hold only letters, digits, '-' and '_'"
            ));
        } else if let Some(prefix) = RESERVED_PREFIXES.iter().find(|p| k.starts_with(*p)) {
            errors.push(format!(
                "node_meta: key {k:?} starts with {prefix:?}, which is reserved for the agent's \
                 own keys; rename it"
            ));
        }
        if v.len() > MAX_VALUE_LEN {
            errors.push(format!(
                "node_meta: the value of {k:?} is too long ({} bytes; the limit is {MAX_VALUE_LEN})",
                v.len()
            ));
        }
    }
    meta
}

/// Whether this agent's gossip tags, `node_meta` included, fit in [`MAX_TAGS_BYTES`]; measured
/// as a server measures them once it names the cluster (a `cluster` tag more).
pub(super) fn check_tags_fit(config: &RuntimeConfig) -> Option<ConfigError> {
    if config.node_meta.is_empty() {
        return None;
    }
    let mut tags = config.gossip_tags(uuid::Uuid::nil());
    if config.server {
        tags.insert("cluster".into(), uuid::Uuid::nil().to_string());
    }
    let total = tags_size(&tags);
    if total <= MAX_TAGS_BYTES {
        return None;
    }
    let meta_only: crate::gossip::Tags = tags
        .into_iter()
        .filter(|(k, _)| k.starts_with(crate::gossip::NODE_META_PREFIX))
        .collect();
    Some(ConfigError::new(format!(
        "node_meta does not fit in the gossip tags: with the agent's own tags they take {total} \
         bytes, and a member's tags may take at most {MAX_TAGS_BYTES} (Serf's limit; node_meta \
         takes {} of them): shorten or drop node_meta pairs",
        tags_size(&meta_only)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(pairs: &[(&str, &str)]) -> Vec<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut e = Vec::new();
        finish_node_meta(&pairs, &mut e);
        e
    }

    #[test]
    fn consuls_rules_each_named() {
        assert!(errors(&[("rack", "r1"), ("zone_a-1", "")]).is_empty());
        let long_key = "k".repeat(129);
        let long_value = "v".repeat(513);
        for (pairs, want) in [
            (vec![("", "x")], "empty key"),
            (vec![(long_key.as_str(), "x")], "too long (129 bytes"),
            (vec![("a.b", "x")], "only letters, digits"),
            (vec![("consul-x", "x")], "reserved"),
            (vec![("muster-status", "x")], "reserved"),
            (
                vec![("k", long_value.as_str())],
                "value of \"k\" is too long",
            ),
        ] {
            let e = errors(&pairs);
            assert!(e.len() == 1 && e[0].contains(want), "{pairs:?}: {e:?}");
        }
        let many: Vec<(String, String)> = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert!(errors(&many)[0].contains("65 pairs"));
        // A later pair for the same key wins.
        let mut e = Vec::new();
        let m = finish_node_meta(
            &[("a".into(), "1".into()), ("a".into(), "2".into())],
            &mut e,
        );
        assert_eq!(m["a"], "2");
    }
}
