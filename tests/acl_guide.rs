//! docs/acl-guide.md, run as written (every `sh` block, in order, in one bash with
//! `set -euo pipefail`, on this test's loopback addresses): ACLs bootstrapped with the CLI, a
//! policy and a token for `app/`, a client agent forwarding with it, the refusals the page
//! shows, and an agent token that makes the client agent leave. A command of the guide that fails fails the test.

mod support;

use support::guide::{self, run_guide};
use support::*;

#[test]
fn the_acl_guide_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let (out, logs) = run_guide(
        "acl-guide.md",
        7,
        Block::AclGuide,
        2,
        dir.path(),
        &["s1", "c1"],
    );
    let text = guide::succeeded(&out, &logs);
    assert!(
        text.contains("hello"),
        "kv get did not print the value:\n{text}"
    );
    assert!(
        text.contains("Graceful leave complete"),
        "the agent token did not make c1 leave:\n{text}"
    );
    // The token list at the end shows no secret.
    for file in ["app.token", "management.token"] {
        let secret = std::fs::read_to_string(dir.path().join(file)).unwrap();
        let secret = secret.trim();
        assert!(!secret.is_empty(), "{file} is empty");
        let listed = text.split("Policies:").count() > 1;
        assert!(listed, "no token list in:\n{text}");
        let list_part = text.rsplit("Permission denied").next().unwrap_or("");
        assert!(
            !list_part.contains(secret),
            "{file}'s secret listed:\n{list_part}"
        );
    }
}
