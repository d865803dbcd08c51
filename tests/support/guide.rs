//! A Markdown page run as written: every `sh` block, in order, in one bash with
//! `set -euo pipefail`, in a temp dir, with the test's loopback addresses as `IP1`…, and the
//! agents it starts in the background killed with its process group however the test ends.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::{bin, Block};

/// The `sh` blocks of a Markdown page, in order.
pub fn sh_blocks(markdown: &str) -> Vec<String> {
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

/// Runs the `sh` blocks of `docs/<page>` (at least `min_blocks` of them) in `dir` with
/// `IP1`…`IP<ips>` of `block`; its output, and the named logs the guide wrote in `dir`.
pub fn run_guide(
    page: &str,
    min_blocks: usize,
    block: Block,
    ips: u8,
    dir: &Path,
    logs: &[&str],
) -> (Output, String) {
    let guide = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(page),
    )
    .unwrap();
    let blocks = sh_blocks(&guide);
    assert!(
        blocks.len() >= min_blocks,
        "found {} sh blocks in {page}",
        blocks.len()
    );
    let script = format!("set -euo pipefail\n{}", blocks.join("\n"));
    let bin_dir = bin().parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap());
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .current_dir(dir)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that the agents it starts in the background die with it.
        .process_group(0);
    for (k, _) in std::env::vars() {
        if k.starts_with("MUSTER_") {
            cmd.env_remove(k);
        }
    }
    for i in 1..=ips {
        cmd.env(format!("IP{i}"), block.ip(i));
    }
    let child = cmd.spawn().expect("run bash");
    let _group = Group(child.id() as i32);
    let out = child.wait_with_output().unwrap();
    let logs: String = logs
        .iter()
        .map(|n| {
            let log = std::fs::read_to_string(dir.join(format!("{n}.log"))).unwrap_or_default();
            format!("=== {n}.log ===\n{log}\n")
        })
        .collect();
    (out, logs)
}

/// The guide's stdout, if it ran to its end; otherwise the test fails with everything it
/// printed and the agents' logs.
pub fn succeeded(out: &Output, logs: &str) -> String {
    assert!(
        out.status.success(),
        "the guide failed:\n--- stdout\n{}\n--- stderr\n{}\n{logs}",
        super::stdout(out),
        super::stderr(out)
    );
    super::stdout(out)
}
