//! The layer rules of docs/architecture.md ("Data flows one way"), checked against the code: every
//! `crate::…` path written in a library file of `src/` must name a module its layer may use.
//! Test-only files (`tests.rs`, `*_tests.rs`) may wire layers together and are skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Which top-level modules each module may name, besides itself. Keep in step with the table in
/// docs/architecture.md.
const ALLOWED: &[(&str, &[&str])] = &[
    ("duration", &[]),
    ("frame", &[]),
    ("node_id", &[]),
    ("gossip", &["frame"]),
    ("config", &["duration", "gossip"]),
    ("join", &["gossip"]),
    ("server", &["frame", "gossip"]),
    ("client", &["gossip", "server"]),
    (
        "http",
        &[
            "agent", "client", "config", "duration", "gossip", "join", "server",
        ],
    ),
    (
        "agent",
        &[
            "client", "config", "duration", "gossip", "http", "join", "node_id", "server",
        ],
    ),
    (
        "cli",
        &[
            "agent", "client", "config", "duration", "gossip", "http", "join", "node_id", "server",
        ],
    ),
];

/// What of `server` the client layer may name: the protocol both sides speak, the RPC pool and
/// the local server's handle, never the server's internals.
const CLIENT_MAY_USE_OF_SERVER: &[&str] = &["protocol", "rpc", "Server"];

/// The modules a line of code names through `crate::`, as `(module, next segment)` pairs; `use
/// crate::{a::x, b}` counts `a` and `b`. Comments are not code.
fn crate_paths(line: &str) -> Vec<(String, String)> {
    let code = match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    };
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let mut segs = item.trim().split("::");
                let first = segs.next().unwrap_or("").trim().to_string();
                let second = segs.next().unwrap_or("").trim().to_string();
                if !first.is_empty() {
                    found.push((first, second));
                }
            }
        } else {
            let mut segs = rest.split("::");
            let ident = |s: &str| -> String {
                s.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect()
            };
            let first = ident(segs.next().unwrap_or(""));
            let second = ident(segs.next().unwrap_or(""));
            if !first.is_empty() {
                found.push((first, second));
            }
        }
    }
    found
}

/// The rule broken by `line` of a file in module `top`, if any.
fn violations(top: &str, source: &str) -> Vec<String> {
    let allowed: BTreeSet<&str> = ALLOWED
        .iter()
        .find(|(m, _)| *m == top)
        .map(|(_, a)| a.iter().copied().collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut in_block_comment = false;
    for (n, line) in source.lines().enumerate() {
        let t = line.trim_start();
        if in_block_comment {
            in_block_comment = !t.contains("*/");
            continue;
        }
        if t.starts_with("/*") {
            in_block_comment = !t.contains("*/");
            continue;
        }
        for (module, next) in crate_paths(line) {
            // Root items (`crate::VERSION`) and the module itself are always fine.
            let is_module = module.chars().next().is_some_and(|c| c.is_lowercase());
            if !is_module || module == top {
                continue;
            }
            if !allowed.contains(module.as_str()) {
                out.push(format!(
                    "line {}: {top} must not use crate::{module}",
                    n + 1
                ));
            } else if top == "client"
                && module == "server"
                && !CLIENT_MAY_USE_OF_SERVER.contains(&next.as_str())
            {
                out.push(format!(
                    "line {}: client may use only server::{{{}}}, not server::{next}",
                    n + 1,
                    CLIENT_MAY_USE_OF_SERVER.join(", ")
                ));
            }
        }
    }
    out
}

fn rust_files(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

#[test]
fn every_library_file_keeps_to_its_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut checked = 0;
    for path in &files {
        let rel = path.strip_prefix(&src).expect("under src");
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let top = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or("")
            .trim_end_matches(".rs")
            .to_string();
        if top == "lib" || top == "main" {
            continue;
        }
        assert!(
            ALLOWED.iter().any(|(m, _)| *m == top),
            "src/{} belongs to module `{top}`, which has no layer rule: add it to ALLOWED here and to docs/architecture.md",
            rel.display()
        );
        let text = std::fs::read_to_string(path).expect("read source");
        for v in violations(&top, &text) {
            problems.push(format!("src/{}: {v}", rel.display()));
        }
        checked += 1;
    }
    assert!(
        checked > 40,
        "only {checked} files checked: is src/ where we think?"
    );
    assert!(
        problems.is_empty(),
        "layer rules broken (docs/architecture.md):\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_checker_catches_what_it_must() {
    // Each of these must be refused, or the check above proves nothing.
    assert_eq!(
        violations("gossip", "use crate::config::GossipKey;").len(),
        1
    );
    assert_eq!(
        violations("config", "use crate::{duration::parse, join::registry};").len(),
        1
    );
    assert_eq!(
        violations("server", "    let x = crate::agent::Agent::start();").len(),
        1
    );
    assert_eq!(
        violations("client", "use crate::server::state::StateCommand;").len(),
        1
    );
    assert_eq!(violations("http", "use crate::cli::client;").len(), 1);
    // And these must pass: comments, root items, the module itself, allowed layers.
    assert!(violations("gossip", "/// see [`crate::config::GossipKey`]").is_empty());
    assert!(violations("gossip", "let v = crate::VERSION;").is_empty());
    assert!(violations("gossip", "use crate::gossip::meta::Tags;").is_empty());
    assert!(violations("client", "use crate::server::protocol::Request;").is_empty());
    assert!(violations("config", "pub use crate::gossip::GossipKey;").is_empty());
    assert!(violations(
        "server",
        "/*\n crate::agent\n*/\nuse crate::frame::read_frame;"
    )
    .is_empty());
}
