//! Operators' comforts (issue 14) as a user meets them: shell completion run in a real shell,
//! the man pages rendered by a real formatter, and real agents with a pid file, a rotated log
//! file and node metadata that reaches the catalog.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

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
    let one = bash_complete(&script, &["muster", "agent", "-pid"]);
    assert_eq!(one, ["-pid-file"], "{one:?}");
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
        for word in ["retry-join", "node-meta", "log-rotate-bytes", "members"] {
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

const T: Duration = Duration::from_secs(20);

#[test]
fn the_pid_file_is_written_once_started_and_removed_at_exit() {
    let d = tempfile::tempdir().unwrap();
    let pid_path = d.path().join("muster.pid");
    let pid_arg = pid_path.to_str().unwrap();
    let ip = Block::OpsPidFile.ip(1);
    // A client leaves on both signals: SIGINT, then (started again) SIGTERM.
    let mut a = Agent::start("pid", &ip, &["-pid-file", pid_arg]);
    for (round, sig) in [("SIGINT", libc::SIGINT), ("SIGTERM", libc::SIGTERM)] {
        if round == "SIGTERM" {
            a.restart();
        }
        a.wait_ready();
        let pid = a.pid().unwrap();
        wait_until(T, "the pid file holds the agent's pid", || {
            std::fs::read_to_string(&pid_path).is_ok_and(|t| t == format!("{pid}\n"))
        });
        // 0644 whatever the agent's umask (0077): docs/configuration.md.
        let mode = std::fs::metadata(&pid_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{round}");
        a.signal(sig);
        assert_eq!(a.wait_exit(T), Some(0), "{round}: {}", a.log());
        assert!(!pid_path.exists(), "{round}: the pid file is still there");
    }
    // `muster leave` (the graceful leave through the API) removes it too.
    a.restart();
    a.wait_ready();
    wait_until(T, "the pid file is written", || pid_path.exists());
    assert!(a.cli(&["leave"]).status.success());
    assert_eq!(a.wait_exit(T), Some(0), "{}", a.log());
    assert!(!pid_path.exists(), "leave: the pid file is still there");
    // A directory that does not exist is a configuration error naming the key.
    let out = muster(&[
        "agent",
        "-dev",
        "-pid-file",
        d.path().join("no/such/m.pid").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pid_file"));
}

#[test]
fn the_log_file_rotates_by_size_and_keeps_at_most_max_files() {
    let d = tempfile::tempdir().unwrap();
    let logs = d.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let ip = Block::OpsLogFile.ip(1);
    let dir_arg = format!("{}/", logs.display());
    // A retry-join to an address where nothing listens logs a line per attempt.
    let nobody = format!("{}:8301", Block::OpsLogFile.ip(9));
    let mut a = Agent::start(
        "logs",
        &ip,
        &[
            "-log-file",
            &dir_arg,
            "-log-rotate-bytes",
            "400",
            "-log-rotate-max-files",
            "2",
            "-log-level",
            "debug",
            "-retry-join",
            &nobody,
            "-retry-interval",
            "100ms",
        ],
    );
    let rotated = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "muster.log")
            .collect();
        v.sort();
        v
    };
    let mut seen = std::collections::BTreeSet::new();
    wait_until(T, "more files were rotated than are kept", || {
        let now = rotated();
        assert!(now.len() <= 2, "more than 2 rotated files kept: {now:?}");
        seen.extend(now);
        seen.len() > 2
    });
    let now = rotated();
    for n in &now {
        assert!(n.starts_with("muster-") && n.ends_with(".log"), "{n}");
        let mode = std::fs::metadata(logs.join(n))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o640, "{n}");
    }
    assert!(logs.join("muster.log").is_file());
    // Logs still go to stderr too.
    assert!(a.log().contains("retry"), "{}", a.log());
    a.signal(libc::SIGTERM);
    assert_eq!(a.wait_exit(T), Some(0));
}

#[test]
fn node_meta_reaches_the_catalog_from_flags_and_a_file_read_with_config_format() {
    let d = tempfile::tempdir().unwrap();
    // A file without an extension: an error naming -config-format, then read with it.
    let file = d.path().join("meta");
    std::fs::write(&file, "node_meta {\n  zone = \"z1\"\n}\n").unwrap();
    let out = muster(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("-config-format"), "{err}");
    let out = muster(&["validate", "-config-format", "yaml", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("json or hcl"));

    let ip = |i| Block::OpsNodeMeta.ip(i);
    let s = Agent::start(
        "s1",
        &ip(1),
        &[
            "-server",
            "-bootstrap",
            "-node-meta",
            "rack:r1",
            "-config-format",
            "hcl",
            "-config-file",
            file.to_str().unwrap(),
        ],
    );
    let join = format!("{}:8301", ip(1));
    let c = Agent::start("c1", &ip(2), &["-join", &join, "-node-meta", "role_x:web"]);
    let meta_of = |name: &str| -> Option<serde_json::Value> {
        let v = Client::TEST.json_get(&s.http_addr(), "/v1/catalog/nodes");
        v.as_array()?
            .iter()
            .find(|n| n["Node"] == name)
            .map(|n| n["Meta"].clone())
    };
    wait_until(
        Duration::from_secs(30),
        "both nodes are in the catalog",
        || meta_of("s1").is_some() && meta_of("c1").is_some(),
    );
    let sm = meta_of("s1").unwrap();
    assert_eq!(
        (sm["rack"].as_str(), sm["zone"].as_str()),
        (Some("r1"), Some("z1")),
        "{sm}"
    );
    assert_eq!(sm["muster-role"], "consul", "{sm}");
    let cm = meta_of("c1").unwrap();
    assert_eq!(cm["role_x"], "web", "{cm}");
    assert!(cm.get("rack").is_none(), "{cm}");
    // In muster the pairs are gossip tags, so `members -detailed` lists them among the tags.
    let out = c.cli(&["members", "-detailed"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("meta:rack=r1") && table.contains("meta:role_x=web"),
        "{table}"
    );
    // The client's own agent answers the same (forwarded to the server).
    let v = Client::TEST.json_get(&c.http_addr(), "/v1/catalog/nodes");
    assert!(v.to_string().contains("\"role_x\":\"web\""), "{v}");

    // Consul's rules, and the gossip tag space, each a clear error (exit 1).
    for (flags, want) in [
        (vec!["-node-meta", "consul-x:1"], "reserved"),
        (vec!["-node-meta", "a.b:1"], "only letters, digits"),
    ] {
        let mut args = vec!["agent", "-dev"];
        args.extend(flags);
        let out = muster(&args);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(want),
            "{want}"
        );
    }
    let big = format!("big:{}", "v".repeat(500));
    let out = muster(&["agent", "-dev", "-node-meta", &big]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not fit in the gossip tags") && err.contains("512"),
        "{err}"
    );
}
