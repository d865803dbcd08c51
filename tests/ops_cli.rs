//! Operators' comforts (issue 14) as a user meets them: shell completion run in a real shell,
//! and the man pages rendered by a real formatter.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use support::*;

fn muster(args: &[&str]) -> std::process::Output {
    Command::new(bin()).args(args).output().expect("run muster")
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs the bash completion function for `words` (the last one is the word being completed)
/// and returns the candidates.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let prev = if cword > 0 { words[cword - 1] } else { "" };
    let program = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={cword}\n_muster_go_style muster '{}' '{prev}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        quoted.join(" "),
        words[cword],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completion_offers_subcommands_and_flags_in_either_spelling() {
    let d = tempfile::tempdir().unwrap();
    let out = muster(&["completion", "bash"]);
    assert!(out.status.success());
    let script = d.path().join("muster.bash");
    std::fs::write(&script, &out.stdout).unwrap();

    let subs = bash_complete(&script, &["muster", ""]);
    for s in [
        "agent",
        "members",
        "kv",
        "acl",
        "completion",
        "man",
        "version",
    ] {
        assert!(subs.iter().any(|c| c == s), "no {s} in {subs:?}");
    }
    let two = bash_complete(&script, &["muster", "agent", "--retry-j"]);
    assert!(two.iter().any(|c| c == "--retry-join"), "{two:?}");
    assert!(two.iter().all(|c| c.starts_with("--retry-j")), "{two:?}");
    // Go style: one dash in, one dash out.
    let one = bash_complete(&script, &["muster", "agent", "-data-"]);
    assert_eq!(one, ["-data-dir"], "{one:?}");
    let kv = bash_complete(&script, &["muster", "kv", ""]);
    for s in ["get", "put", "delete"] {
        assert!(kv.iter().any(|c| c == s), "no {s} in {kv:?}");
    }
    let put = bash_complete(&script, &["muster", "kv", "put", "-fl"]);
    assert_eq!(put, ["-flags"], "{put:?}");
}

#[test]
fn zsh_and_fish_scripts_are_generated() {
    for (shell, marker, checker) in [
        ("zsh", "#compdef muster", "zsh"),
        ("fish", "complete -c muster", "fish"),
    ] {
        let out = muster(&["completion", shell]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}: no {marker:?}");
        for word in ["retry-join", "bootstrap-expect", "members"] {
            assert!(text.contains(word), "{shell}: no {word}");
        }
        if have(checker) {
            let d = tempfile::tempdir().unwrap();
            let f = d.path().join("script");
            std::fs::write(&f, &text).unwrap();
            let st = Command::new(checker).arg("-n").arg(&f).status().unwrap();
            assert!(st.success(), "{checker} -n refused the script");
        } else {
            eprintln!("{checker} is not installed: only the text was checked");
        }
    }
    let bad = muster(&["completion", "tcsh"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bash"));
}

/// The page as text: groff (or man) when there, else the roff source with its escapes undone.
fn rendered(page: &Path) -> String {
    if have("groff") {
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-P-cbou"])
            .arg(page)
            .output()
            .unwrap();
        assert!(out.status.success(), "groff failed on {}", page.display());
        return String::from_utf8_lossy(&out.stdout).into_owned();
    }
    if have("man") {
        let out = Command::new("man")
            .arg("-l")
            .arg(page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        assert!(out.status.success(), "man -l failed on {}", page.display());
        return String::from_utf8_lossy(&out.stdout).into_owned();
    }
    std::fs::read_to_string(page).unwrap().replace("\\-", "-")
}

#[test]
fn man_pages_cover_every_subcommand_and_render() {
    // To stdout: muster.1, naming every subcommand.
    let out = muster(&["man"]);
    assert!(out.status.success());
    let roff = String::from_utf8(out.stdout).unwrap();
    assert!(roff.contains(".TH muster 1"), "{roff}");
    let d = tempfile::tempdir().unwrap();
    let top = d.path().join("stdout.1");
    std::fs::write(&top, &roff).unwrap();
    let text = rendered(&top);
    let subs = [
        "agent",
        "join",
        "members",
        "leave",
        "force-leave",
        "discover",
        "kv",
        "snapshot",
        "operator",
        "info",
        "validate",
        "keygen",
        "keyring",
        "tls",
        "acl",
        "completion",
        "man",
        "version",
    ];
    for s in subs {
        assert!(text.contains(s), "muster.1 does not name {s}:\n{text}");
    }
    // Into a directory: one page per subcommand, nested ones included.
    let dir = d.path().join("man1");
    let out = Command::new(bin())
        .args(["man", "-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for s in subs {
        assert!(
            dir.join(format!("muster-{s}.1")).is_file(),
            "no page for {s}"
        );
    }
    for nested in ["muster-kv-get.1", "muster-operator-raft-list-peers.1"] {
        assert!(dir.join(nested).is_file(), "no {nested}");
    }
    let agent = rendered(&dir.join("muster-agent.1"));
    for flag in ["--retry-join", "--bootstrap-expect"] {
        assert!(
            agent.contains(flag),
            "muster-agent.1 lacks {flag}:\n{agent}"
        );
    }
    let members = rendered(&dir.join("muster-members.1"));
    assert!(members.contains("--detailed"), "{members}");
}
