//! docs/secure-datacenter.md, run as written: every `sh` block of the page, in order, in one
//! bash with `set -euo pipefail`, on this test's loopback addresses. A command of the guide
//! that fails fails the test, so the guide stays true.

mod support;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use support::*;

/// The `sh` blocks of a Markdown page, in order.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```sh") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Kills the guide's process group (its background agents) however the test ends.
struct Group(i32);

impl Drop for Group {
    fn drop(&mut self) {
        unsafe {
            libc::killpg(self.0, libc::SIGKILL);
        }
    }
}

#[test]
fn the_secure_datacenter_guide_runs_as_written() {
    let block = Block::SecureGuide;
    let guide = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/secure-datacenter.md"),
    )
    .unwrap();
    let blocks = sh_blocks(&guide);
    assert!(blocks.len() >= 8, "found {} sh blocks", blocks.len());
    let script = format!("set -euo pipefail\n{}", blocks.join("\n"));
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = bin().parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .env("IP1", block.ip(1))
        .env("IP2", block.ip(2))
        .env("IP3", block.ip(3))
        .env("IP4", block.ip(4))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that the agents it starts in the background die with it.
        .process_group(0);
    let child = cmd.spawn().expect("run bash");
    let _group = Group(child.id() as i32);
    let out = child.wait_with_output().unwrap();
    let logs: String = ["s1", "s2", "s3", "c1"]
        .iter()
        .map(|n| {
            let log =
                std::fs::read_to_string(dir.path().join(format!("{n}.log"))).unwrap_or_default();
            format!("=== {n}.log ===\n{log}\n")
        })
        .collect();
    assert!(
        out.status.success(),
        "the guide failed:\n--- stdout\n{}\n--- stderr\n{}\n{logs}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
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
