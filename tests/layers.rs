//! The layer rules of docs/architecture.md ("Data flows one way"), checked against the code: every
//! `crate::…` path written in a library file of `src/` must name a module its layer may use.
//! Test-only files (`tests.rs`, `*_tests.rs`) may wire layers together and are skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Which top-level modules each module may name, besides itself. Keep in step with the table in
/// docs/architecture.md.
const ALLOWED: &[(&str, &[&str])] = &[
    ("acl", &[]),
    ("duration", &[]),
    ("frame", &[]),
    ("node_id", &[]),
    ("telemetry", &[]),
    ("monitor", &[]),
    ("rotating_file", &[]),
    ("tls", &[]),
    ("gossip", &["frame"]),
    (
        "config",
        &["acl", "duration", "gossip", "rotating_file", "tls"],
    ),
    ("join", &["gossip"]),
    ("server", &["acl", "frame", "gossip", "tls"]),
    ("client", &["gossip", "server"]),
    (
        "http",
        &[
            "acl",
            "agent",
            "client",
            "config",
            "duration",
            "gossip",
            "join",
            "monitor",
            "server",
            "telemetry",
            "tls",
        ],
    ),
    (
        "agent",
        &[
            "acl",
            "client",
            "config",
            "duration",
            "frame",
            "gossip",
            "http",
            "join",
            "node_id",
            "server",
            "telemetry",
            "tls",
        ],
    ),
    (
        "cli",
        &[
            "agent",
            "client",
            "config",
            "duration",
            "frame",
            "gossip",
            "http",
            "join",
            "monitor",
            "node_id",
            "rotating_file",
            "server",
            "tls",
        ],
    ),
];

/// What of `server` the client layer may name: the protocol both sides speak, the RPC pool and
/// the local server's handle, never the server's internals.
const CLIENT_MAY_USE_OF_SERVER: &[&str] = &["protocol", "rpc", "Server"];

/// The source with comments blanked out (line breaks kept, so positions still give line
/// numbers): `//` to the end of a line and `/* … */` blocks. Strings are not special-cased; no
/// string in src/ spells a `crate::` path.
fn code_only(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars().peekable();
    let (mut line_comment, mut block_depth) = (false, 0usize);
    while let Some(c) = chars.next() {
        if c == '\n' {
            line_comment = false;
            out.push('\n');
            continue;
        }
        if line_comment {
            continue;
        }
        if block_depth > 0 {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                block_depth -= 1;
            } else if c == '/' && chars.peek() == Some(&'*') {
                chars.next();
                block_depth += 1;
            }
            continue;
        }
        match (c, chars.peek()) {
            ('/', Some('/')) => line_comment = true,
            ('/', Some('*')) => {
                chars.next();
                block_depth = 1;
            }
            _ => out.push(c),
        }
    }
    out
}

/// Every module `code` names through `crate::`, as `(line, module, next segment)`; a group
/// `use crate::{a::x, b}` (on one line or several) counts `a` and `b`.
fn crate_paths(code: &str) -> Vec<(usize, String, String)> {
    let ident = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(i) = code[from..].find("crate::") {
        let start = from + i + "crate::".len();
        let rest = &code[start..];
        if let Some(group) = rest.strip_prefix('{') {
            // Nested groups (`a::{x, y}`) only name their first segment's module.
            let mut depth = 1;
            let mut end = group.len();
            for (k, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = k;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let mut depth = 0;
            let mut item_start = 0;
            let body = &group[..end];
            let mut items = Vec::new();
            for (k, ch) in body.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(&body[item_start..k]);
                        item_start = k + 1;
                    }
                    _ => {}
                }
            }
            items.push(&body[item_start..]);
            for item in items {
                let (first, tail) = item.split_once("::").unwrap_or((item, ""));
                let first = ident(first);
                if first.is_empty() {
                    continue;
                }
                // `server::{state, Server}` names `server::state` and `server::Server`.
                let seconds: Vec<String> = match tail.trim().strip_prefix('{') {
                    Some(inner) => inner.trim_end_matches('}').split(',').map(ident).collect(),
                    None => vec![ident(tail)],
                };
                for second in seconds {
                    found.push((line_of(start), first.clone(), second));
                }
            }
        } else {
            let mut segs = rest.split("::");
            let first = ident(segs.next().unwrap_or(""));
            let second = ident(segs.next().unwrap_or(""));
            if !first.is_empty() {
                found.push((line_of(start), first, second));
            }
        }
        from = start;
    }
    found
}

/// The rules a file of module `top` breaks, one line each.
fn violations(top: &str, source: &str) -> Vec<String> {
    let allowed: BTreeSet<&str> = ALLOWED
        .iter()
        .find(|(m, _)| *m == top)
        .map(|(_, a)| a.iter().copied().collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for (line, module, next) in crate_paths(&code_only(source)) {
        // Root items (`crate::VERSION`) and the module itself are always fine.
        let is_module = module.chars().next().is_some_and(|c| c.is_lowercase());
        if !is_module || module == top {
            continue;
        }
        if !allowed.contains(module.as_str()) {
            out.push(format!("line {line}: {top} must not use crate::{module}"));
        } else if top == "client"
            && module == "server"
            && !CLIENT_MAY_USE_OF_SERVER.contains(&next.as_str())
        {
            out.push(format!(
                "line {line}: client may use only server::{{{}}}, not server::{next}",
                CLIENT_MAY_USE_OF_SERVER.join(", ")
            ));
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
