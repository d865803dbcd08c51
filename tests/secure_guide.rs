//! docs/secure-datacenter.md, run as written: every `sh` block of the page, in order, in one
//! bash with `set -euo pipefail`, on this test's loopback addresses. A command of the guide
//! that fails fails the test, so the guide stays true.

mod support;

use support::guide::{self, run_guide};
use support::*;

#[test]
fn the_secure_datacenter_guide_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let (out, logs) = run_guide(
        "secure-datacenter.md",
        8,
        Block::SecureGuide,
        4,
        dir.path(),
        &["s1", "s2", "s3", "c1"],
    );
    let text = guide::succeeded(&out, &logs);
    assert!(
        text.contains("world"),
        "kv get did not print the value:\n{text}"
    );
    assert_eq!(
        text.lines().filter(|l| l.contains(" alive ")).count(),
        4,
        "members:\n{text}"
    );
    assert!(
        text.contains("alert certificate required"),
        "openssl was not refused:\n{text}"
    );
}
