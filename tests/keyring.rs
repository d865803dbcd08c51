//! The gossip keyring with real processes (docs/gossip.md, Keyring): a key rotated in a running
//! five-agent cluster with no member ever seen other than alive, the rotation kept across a
//! restart, and encryption turned on in a running cluster with `encrypt_verify_*`.

mod support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

const T: Duration = Duration::from_secs(20);

fn keygen() -> String {
    let out = muster(&["keygen"]);
    assert!(out.status.success());
    stdout(&out).trim().to_string()
}

/// Everything other than alive that any agent reported about any member, while it runs.
struct Watch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<BTreeSet<String>>>,
    rounds: Arc<Mutex<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watch {
    fn start(addrs: Vec<String>, expect: usize) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(BTreeSet::new()));
        let rounds = Arc::new(Mutex::new(0));
        let (s, n, r) = (stop.clone(), seen.clone(), rounds.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for addr in &addrs {
                    let Some((200, body)) = http(addr, "GET", "/v1/agent/members") else {
                        n.lock().unwrap().insert(format!("{addr}: no answer"));
                        continue;
                    };
                    let members: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
                    if members.len() != expect {
                        n.lock()
                            .unwrap()
                            .insert(format!("{addr}: {} members", members.len()));
                    }
                    for m in members {
                        if m["Status"] != 1 {
                            n.lock()
                                .unwrap()
                                .insert(format!("{addr}: {} status {}", m["Name"], m["Status"]));
                        }
                    }
                }
                *r.lock().unwrap() += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Watch {
            stop,
            seen,
            rounds,
            thread: Some(thread),
        }
    }

    /// Waits until the poller has looked at every agent `n` more times (the cluster running on
    /// the keys as they are now, watched).
    fn watch_rounds(&self, n: u64) {
        let from = *self.rounds.lock().unwrap();
        wait_until(T, &format!("{n} more poller rounds"), || {
            *self.rounds.lock().unwrap() >= from + n
        });
    }

    /// Stops and returns what was seen and how many rounds ran.
    fn finish(mut self) -> (BTreeSet<String>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        let seen = self.seen.lock().unwrap().clone();
        let rounds = *self.rounds.lock().unwrap();
        (seen, rounds)
    }
}

/// `muster keyring ARGS` against `a`: must succeed; its stdout.
fn keyring_ok(a: &Agent, args: &[&str]) -> String {
    let mut all = vec!["keyring"];
    all.extend_from_slice(args);
    let out = a.cli(&all);
    assert!(
        out.status.success(),
        "keyring {args:?} failed: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

/// `muster keyring ARGS` against `a`: must fail with exit 1; its stderr.
fn keyring_fails(a: &Agent, args: &[&str]) -> String {
    let mut all = vec!["keyring"];
    all.extend_from_slice(args);
    let out = a.cli(&all);
    assert_eq!(
        out.status.code(),
        Some(1),
        "keyring {args:?}: {}",
        stdout(&out)
    );
    stderr(&out)
}

/// The `-list` lines of the keys (`KEY [n/N]`) and of the primary keys.
fn listed(out: &str) -> (Vec<String>, Vec<String>) {
    let (keys, primary) = out.split_once("Primary keys:").expect("a primary section");
    let lines = |s: &str| -> Vec<String> {
        s.lines()
            .map(str::trim)
            .filter(|l| l.ends_with(']'))
            .map(str::to_string)
            .collect()
    };
    (lines(keys), lines(primary))
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn a_key_is_rotated_in_a_running_cluster_and_the_rotation_survives_a_restart() {
    let net = Block::Keyring;
    let (old, new) = (keygen(), keygen());
    step(1, "five agents with -encrypt OLD; n2..n5 join through n1");
    let seed = Agent::start("n1", &net.ip(1), &["-encrypt", &old]);
    seed.wait_ready();
    let mut agents = vec![seed];
    for i in 2..=5u8 {
        agents.push(Agent::start(
            &format!("n{i}"),
            &net.ip(i),
            &["-encrypt", &old, "-join", &net.ip(1)],
        ));
    }
    for a in &agents {
        wait_until(T, &format!("{} sees 5 alive", a.name), || {
            a.alive_count() == 5
        });
    }
    let (keys, primary) = listed(&keyring_ok(&agents[0], &["-list"]));
    assert_eq!(keys, vec![format!("{old} [5/5]")]);
    assert_eq!(primary, vec![format!("{old} [5/5]")]);

    step(2, "a poller watches every agent's member list from now on");
    let watch = Watch::start(agents.iter().map(|a| a.http_addr()).collect(), 5);

    step(3, "install NEW through n1: every member holds both");
    let out = keyring_ok(&agents[0], &["-install", &new]);
    assert!(
        out.contains("==> Installing new gossip encryption key..."),
        "{out}"
    );
    let out = keyring_ok(&agents[2], &["-list"]);
    assert!(
        out.contains("==> Gathering installed encryption keys..."),
        "{out}"
    );
    assert!(out.contains("dc1 (LAN):"), "{out}");
    let (keys, primary) = listed(&out);
    assert_eq!(
        sorted(keys),
        sorted(vec![format!("{old} [5/5]"), format!("{new} [5/5]")])
    );
    assert_eq!(primary, vec![format!("{old} [5/5]")]);

    step(4, "use NEW through n2: every member seals with it");
    let out = keyring_ok(&agents[1], &["-use", &new]);
    assert!(
        out.contains("==> Changing primary gossip encryption key..."),
        "{out}"
    );
    let (_, primary) = listed(&keyring_ok(&agents[3], &["-list"]));
    assert_eq!(primary, vec![format!("{new} [5/5]")]);
    // About 5 probe periods (past the 1 s suspicion timeout) with NEW as everyone's primary,
    // watched.
    watch.watch_rounds(100);

    step(5, "the primary cannot be removed; remove OLD through n3");
    let err = keyring_fails(&agents[2], &["-remove", &new]);
    assert!(err.contains("5/5 members failed"), "{err}");
    assert!(err.contains("-use"), "{err}");
    let out = keyring_ok(&agents[2], &["-remove", &old]);
    assert!(
        out.contains("==> Removing gossip encryption key..."),
        "{out}"
    );
    let (keys, primary) = listed(&keyring_ok(&agents[4], &["-list"]));
    assert_eq!(keys, vec![format!("{new} [5/5]")]);
    assert_eq!(primary, vec![format!("{new} [5/5]")]);
    watch.watch_rounds(100);

    step(6, "no member was ever seen other than alive");
    let (seen, rounds) = watch.finish();
    assert!(rounds > 20, "the poller ran only {rounds} rounds");
    assert!(seen.is_empty(), "seen during the rotation: {seen:?}");
    for a in &agents {
        let stats = a.stats().expect("agent self");
        let dropped = &stats["serf_lan"]["dropped_wrong_key"];
        assert!(
            dropped == "0" || dropped == 0,
            "{} dropped messages it could not decrypt: {dropped}",
            a.name
        );
    }

    step(
        7,
        "refusals: a key not installed, an invalid key, no action or two",
    );
    let err = keyring_fails(&agents[0], &["-use", &old]);
    assert!(err.contains("not installed"), "{err}");
    let err = keyring_fails(&agents[0], &["-install", "bm90IGEga2V5"]);
    assert!(err.contains("invalid key"), "{err}");
    assert!(!err.contains("bm90IGEga2V5"), "the key is echoed: {err}");
    let err = keyring_fails(&agents[0], &[]);
    assert!(err.contains("exactly one"), "{err}");
    let err = keyring_fails(&agents[0], &["-list", "-remove", &new]);
    assert!(err.contains("exactly one"), "{err}");

    step(
        8,
        "every keyring file holds NEW only; no log line holds a key",
    );
    for a in &agents {
        let file = a.data_dir().join("serf/local.keyring");
        let on_disk: Vec<String> =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(on_disk, vec![new.clone()], "{}", file.display());
        let log = a.log();
        assert!(
            !log.contains(&old) && !log.contains(&new),
            "{} logged a key",
            a.name
        );
    }

    step(
        9,
        "restart n5 with the same data dir and -encrypt OLD: it comes back with NEW and rejoins",
    );
    agents[4].restart();
    agents[4].wait_ready();
    for a in &agents {
        wait_until(
            T,
            &format!("{} sees 5 alive after the restart", a.name),
            || a.alive_count() == 5,
        );
    }
    assert!(
        agents[4].log().contains("-encrypt is ignored"),
        "{}",
        agents[4].log()
    );
    let (keys, primary) = listed(&keyring_ok(&agents[4], &["-list"]));
    assert_eq!(keys, vec![format!("{new} [5/5]")]);
    assert_eq!(primary, vec![format!("{new} [5/5]")]);
}

/// Consul's rolling procedure (docs/gossip.md, "Turning encryption on in a running cluster"):
/// a plain cluster of three gets the key with both checks off, then outgoing on, then incoming
/// on, one agent restarted at a time, and stays one cluster throughout; at the end a plain agent
/// is refused.
#[test]
fn encryption_is_turned_on_in_a_running_cluster_in_rolling_steps() {
    let net = Block::KeyringEnable;
    let key = keygen();
    let configs = tempfile::tempdir().unwrap();
    let file = |i: u8| configs.path().join(format!("n{i}.json"));
    let write = |i: u8, text: &str| {
        std::fs::write(file(i), text).unwrap();
    };
    step(1, "three plain agents");
    let mut agents = Vec::new();
    for i in 1..=3u8 {
        write(i, "{}");
        let join = net.ip(if i == 1 { 2 } else { 1 });
        let path = file(i).display().to_string();
        let mut args = vec!["-config-file", path.as_str()];
        if i > 1 {
            args.extend(["-join", join.as_str()]);
        }
        let a = Agent::start(&format!("n{i}"), &net.ip(i), &args);
        a.wait_ready();
        agents.push(a);
    }
    let all_alive = |agents: &[Agent], what: &str| {
        for a in agents {
            wait_until(T, &format!("{} sees 3 alive ({what})", a.name), || {
                a.alive_count() == 3
            });
        }
    };
    all_alive(&agents, "plain");
    // n1 rejoins through n2 after its restarts.
    agents[0].extra.extend(["-join".to_string(), net.ip(2)]);

    let phases = [
        (
            2,
            "the key, both checks off",
            format!(
                r#"{{"encrypt": "{key}", "encrypt_verify_incoming": false, "encrypt_verify_outgoing": false}}"#
            ),
        ),
        (
            3,
            "outgoing on",
            format!(r#"{{"encrypt": "{key}", "encrypt_verify_incoming": false}}"#),
        ),
        (4, "incoming on", format!(r#"{{"encrypt": "{key}"}}"#)),
    ];
    for (n, what, text) in &phases {
        step(*n, &format!("{what}: restart one agent at a time"));
        for i in 0..3 {
            write(i as u8 + 1, text);
            agents[i].restart();
            agents[i].wait_ready();
            all_alive(&agents, &format!("{what}, n{} restarted", i + 1));
        }
    }

    step(5, "every agent encrypts; a plain agent is refused");
    for a in &agents {
        let stats = a.stats().expect("agent self");
        let encrypted = &stats["serf_lan"]["encrypted"];
        assert!(
            encrypted == "true" || encrypted == true,
            "{}: {encrypted}",
            a.name
        );
    }
    let mut plain = Agent::start("n4", &net.ip(4), &["-join", &net.ip(1)]);
    assert_eq!(plain.wait_exit(T), Some(1), "{}", plain.log());
    assert!(
        plain.log().contains("requires gossip encryption"),
        "{}",
        plain.log()
    );
}
