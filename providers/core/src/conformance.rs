//! The checks every provider passes, built-in or not (examples/ runs them on its own provider).

use crate::addr::JoinAddr;
use crate::provider::Provider;
use crate::registry::Registry;

/// Runs the contract checks on `p` with a working argument string `good` (which must name it).
/// Panics, naming the broken rule, on failure.
pub async fn check(p: std::sync::Arc<dyn Provider>, good: &str) {
    let name = p.name();
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{name}: names are lowercase words"
    );
    assert!(!p.help().trim().is_empty(), "{name}: help text is empty");
    let keys: Vec<&str> = p.keys().iter().map(|k| k.name).collect();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "{name}: duplicate key names");
    assert!(
        p.keys().iter().all(|k| !k.help.is_empty()),
        "{name}: every key has help"
    );
    let mut r = Registry::new();
    r.register(p.clone());
    let (_, args) = r
        .parse(good)
        .unwrap_or_else(|e| panic!("{name}: the good arguments are refused: {e}"));
    let unknown = format!("{good} surely_not_a_key=1");
    assert!(
        r.parse(&unknown).is_err(),
        "{name}: an unknown key must be refused"
    );
    for k in p.keys().iter().filter(|k| k.required) {
        let mut without = args.clone();
        without.args.remove(k.name);
        assert!(
            r.parse(&without.to_string()).is_err(),
            "{name}: missing required key {} must be refused",
            k.name
        );
    }
    let shown = args.to_string();
    for k in p.keys().iter().filter(|k| k.secret) {
        if let Some(v) = args.get(k.name) {
            assert!(
                !shown.contains(v) || v == "hidden",
                "{name}: secret {} shown in the canonical form",
                k.name
            );
        }
    }
    let found = p
        .addrs(&args)
        .await
        .unwrap_or_else(|e| panic!("{name}: lookup failed: {e}"));
    for a in &found {
        JoinAddr::parse(a)
            .unwrap_or_else(|e| panic!("{name}: returned {a:?}, not a join address: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::check;
    use crate::{dns::Dns, exec::Exec, static_provider::Static};

    #[tokio::test]
    async fn builtins_conform() {
        check(
            Arc::new(Static),
            "provider=static addrs=\"127.0.0.1 [::1]:8301,localhost\"",
        )
        .await;
        check(
            Arc::new(Dns::default()),
            "provider=dns name=localhost port=8301",
        )
        .await;
        check(Arc::new(Exec), "provider=exec command=\"echo 127.0.0.2; echo '# a comment'; echo; echo 127.0.0.3:8301\" timeout=2s").await;
    }
}
