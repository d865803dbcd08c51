//! TLS on the server RPC port (docs/security.md), through real processes with certificates
//! made by `muster tls` in the test: a cluster with `verify_incoming`, `verify_outgoing` and
//! `verify_server_hostname` forms and serves writes, a client agent forwards through it, and
//! strangers are refused: plaintext, TLS without a certificate, a foreign CA, a client
//! certificate sending what only servers send. Certificates rotate by SIGHUP while writes go
//! on. Settings that ask for TLS and cannot have it stop the start.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::certs::{client_conn, der_of, presented, Certs};
use support::*;

const T: Duration = Duration::from_secs(40);

/// A `PeerStatus` request, id 1: `u32 length ‖ postcard(Frame { id: 1, body: Request::PeerStatus })`
/// (PeerStatus is the fourth variant of src/server/protocol.rs's `Request`).
const PEER_STATUS: &[u8] = &[0, 0, 0, 2, 1, 3];
/// A `Vote` request, id 1, for term 0 from node 7 (lower than any term a formed cluster has,
/// so a server that serves it refuses the vote and changes nothing): `Vote` is the second
/// variant; VoteRequest { vote: { leader_id: { term: 0, node_id: 7 }, committed: false },
/// last_log_id: None }. A unit test of src/server/protocol.rs checks both against postcard.
const VOTE_TERM_0: &[u8] = &[0, 0, 0, 6, 1, 1, 0, 7, 0, 0];

/// A config file with the production TLS settings of docs/security.md.
fn tls_config(dir: &Path, name: &str, ca: &Path, (cert, key): &(PathBuf, PathBuf)) -> PathBuf {
    write_file(
        dir,
        &format!("{name}.hcl"),
        &format!(
            r#"tls {{
  defaults {{
    ca_file = "{}"
    cert_file = "{}"
    key_file = "{}"
    verify_incoming = true
    verify_outgoing = true
  }}
  internal_rpc {{
    verify_server_hostname = true
  }}
}}
"#,
            ca.display(),
            cert.display(),
            key.display()
        ),
    )
}

/// How a test caller reaches the RPC port.
enum Dial<'a> {
    Plain,
    /// TLS trusting `ca`, with this certificate and key if any.
    Tls {
        ca: &'a Path,
        cert: Option<&'a (PathBuf, PathBuf)>,
    },
}

/// Sends `frame` to `addr` and reads one answer frame within 5 s; Err says how it failed (the
/// handshake, or the connection closed without an answer).
fn ask(addr: &str, dial: Dial, frame: &[u8]) -> Result<Vec<u8>, String> {
    let tcp = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    match dial {
        Dial::Plain => exchange(tcp, frame),
        Dial::Tls { ca, cert } => {
            let conn = client_conn(ca, cert)?;
            exchange(rustls::StreamOwned::new(conn, tcp), frame)
        }
    }
}

fn exchange(mut s: impl Read + Write, frame: &[u8]) -> Result<Vec<u8>, String> {
    s.write_all(frame).map_err(|e| format!("write: {e}"))?;
    s.flush().map_err(|e| format!("flush: {e}"))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)
        .map_err(|e| format!("no answer: {e}"))?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body)
        .map_err(|e| format!("half an answer: {e}"))?;
    Ok(body)
}

/// Three servers on `block` with the production settings, formed.
fn tls_servers(block: Block, certs: &Certs, dir: &Path) -> Vec<Agent> {
    let s: Vec<Agent> = (1..=3u8)
        .map(|i| {
            let cfg = tls_config(dir, &format!("s{i}"), &certs.ca(), &certs.server(i - 1));
            let cfg = cfg.to_str().unwrap().to_string();
            Agent::start(
                &format!("s{i}"),
                &block.ip(i),
                &[
                    "-server",
                    "-bootstrap-expect",
                    "3",
                    "-retry-join",
                    &block.ip(1),
                    "-config-file",
                    &cfg,
                ],
            )
        })
        .collect();
    let refs: Vec<&Agent> = s.iter().collect();
    wait_for_leader(&refs, T);
    s
}

#[test]
fn a_verified_cluster_forms_serves_writes_and_refuses_strangers() {
    let block = Block::TlsCluster;
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());

    step(
        1,
        "three servers with verify_incoming, verify_outgoing, verify_server_hostname form",
    );
    let s = tls_servers(block, &certs, dir.path());
    s[0].put("tls/one", "1");
    assert_eq!(s[2].get_consistent("tls/one").as_deref(), Some("1"));
    let rpc = format!("{}:8300", block.ip(1));

    step(
        2,
        "a client agent with a client certificate forwards a write",
    );
    let ccfg = tls_config(dir.path(), "c1", &certs.ca(), &certs.client());
    let c1 = Agent::start(
        "c1",
        &block.ip(11),
        &[
            "-retry-join",
            &block.ip(1),
            "-config-file",
            ccfg.to_str().unwrap(),
        ],
    );
    wait_until(T, "c1 forwards a write", || {
        c1.cli(&["kv", "put", "tls/via-client", "2"])
            .status
            .success()
    });
    assert_eq!(s[1].get_consistent("tls/via-client").as_deref(), Some("2"));

    step(
        3,
        "a client agent of a foreign CA joins gossip but cannot forward",
    );
    let fcfg = tls_config(
        dir.path(),
        "c2",
        &certs.foreign_ca(),
        &certs.foreign_client(),
    );
    let c2 = Agent::start(
        "c2",
        &block.ip(12),
        &[
            "-retry-join",
            &block.ip(1),
            "-config-file",
            fcfg.to_str().unwrap(),
        ],
    );
    wait_until(T, "c2 sees the three servers in gossip", || {
        (1..=3).all(|i| c2.sees(&format!("s{i}"), "alive"))
    });
    let out = c2.cli(&["kv", "put", "tls/foreign", "3"]);
    assert!(
        !out.status.success(),
        "a foreign CA's agent wrote through the cluster"
    );
    assert_eq!(s[0].get_consistent("tls/foreign"), None);

    step(
        4,
        "the port answers a caller with a certificate from the CA",
    );
    let client = certs.client();
    let server_cert = certs.server(0);
    ask(
        &rpc,
        Dial::Tls {
            ca: &certs.ca(),
            cert: Some(&client),
        },
        PEER_STATUS,
    )
    .expect("a client certificate may ask for the status");

    step(
        5,
        "plaintext, TLS without a certificate and a foreign CA are refused",
    );
    let e = ask(&rpc, Dial::Plain, PEER_STATUS).unwrap_err();
    assert!(e.contains("no answer"), "plaintext: {e}");
    let e = ask(
        &rpc,
        Dial::Tls {
            ca: &certs.ca(),
            cert: None,
        },
        PEER_STATUS,
    )
    .unwrap_err();
    assert!(
        e.contains("no answer") || e.contains("write"),
        "no certificate: {e}"
    );
    let foreign = certs.foreign_client();
    let e = ask(
        &rpc,
        Dial::Tls {
            ca: &certs.ca(),
            cert: Some(&foreign),
        },
        PEER_STATUS,
    )
    .unwrap_err();
    assert!(
        e.contains("no answer") || e.contains("write"),
        "foreign CA: {e}"
    );
    // -ign_eof: read until the server closes, so the alert that ends the handshake is seen
    // (TLS 1.3 checks the client's certificate after the client thinks it is connected).
    let o = std::process::Command::new("timeout")
        .args([
            "20", "openssl", "s_client", "-ign_eof", "-connect", &rpc, "-CAfile",
        ])
        .arg(certs.ca())
        .args(["-servername", "server.dc1.consul"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl (the test command installs it)");
    let text = format!("{}{}", stdout(&o), stderr(&o));
    assert!(
        text.contains("alert certificate required"),
        "openssl s_client without a certificate was not refused:\n{text}"
    );

    step(
        6,
        "what only servers send: refused from a client certificate, served to a server's",
    );
    let e = ask(
        &rpc,
        Dial::Tls {
            ca: &certs.ca(),
            cert: Some(&client),
        },
        VOTE_TERM_0,
    )
    .unwrap_err();
    assert!(
        e.contains("no answer"),
        "a vote from a client certificate: {e}"
    );
    ask(
        &rpc,
        Dial::Tls {
            ca: &certs.ca(),
            cert: Some(&server_cert),
        },
        VOTE_TERM_0,
    )
    .expect("a server certificate may send a vote (and this frame is well formed)");
    wait_until(T, "s1 logs the refused vote", || {
        s[0].log().contains("sent Vote, which only servers send")
    });

    step(
        7,
        "the cluster still commits, and its one leader never changed hands to a stranger",
    );
    s[1].put("tls/after", "4");
    assert_eq!(s[0].get_consistent("tls/after").as_deref(), Some("4"));
    drop(c2);
}

#[test]
fn certificates_rotate_on_sighup_while_writes_go_on() {
    let block = Block::TlsRotation;
    let dir = tempfile::tempdir().unwrap();
    let certs = Certs::make(dir.path());
    let s = tls_servers(block, &certs, dir.path());
    let term_before = s[0].raft("term");

    step(1, "writes go on through s1 while the certificates change");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let writer = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        let addr = s[0].http_addr();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let r = Client::TEST.send(&addr, "PUT", &format!("/v1/kv/rot/{i}"), b"v");
                match r {
                    Some((200, _, _)) => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };

    step(
        2,
        "new server certificates from the same CA replace the files; SIGHUP each server",
    );
    for _ in 0..3 {
        // Numbers 3, 4 and 5: `muster tls` never overwrites a certificate.
        let o = muster_in(dir.path(), &["tls", "cert", "create", "-server"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    for i in 0..3u8 {
        let (cert, key) = certs.server(i);
        let (new_cert, new_key) = certs.server(i + 3);
        let old = der_of(&cert);
        // Renamed over the old files, as a deployment tool writes them.
        std::fs::rename(&new_cert, &cert).unwrap();
        std::fs::rename(&new_key, &key).unwrap();
        let addr = format!("{}:8300", block.ip(i + 1));
        assert_eq!(presented(&addr, &certs.ca(), &certs.client()), old);
        s[i as usize].signal(libc::SIGHUP);
        wait_until(T, "a new connection is shown the new certificate", || {
            presented(&addr, &certs.ca(), &certs.client()) == der_of(&cert)
        });
        assert!(
            s[i as usize].log().contains("reloaded server port TLS"),
            "{}",
            s[i as usize].log()
        );
    }

    step(
        3,
        "a few more writes, then: none failed, every agent alive, no election",
    );
    let at = ok.load(Ordering::Relaxed);
    wait_until(T, "more writes", || ok.load(Ordering::Relaxed) >= at + 20);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    eprintln!(
        "writes during the rotation: {} acknowledged, {} failed",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    assert_eq!(failed.load(Ordering::Relaxed), 0);
    for a in &s {
        assert!(a.pid().is_some(), "{} exited on SIGHUP", a.name);
    }
    assert_eq!(
        s[0].raft("term"),
        term_before,
        "the rotation caused an election"
    );
}

#[test]
fn settings_that_ask_for_tls_and_cannot_have_it_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = Certs::make(d);
    let data = d.join("data");
    std::fs::create_dir(&data).unwrap();
    let (cert, key) = certs.server(0);
    let (ccert, ckey) = certs.client();
    let refuses = |name: &str, hcl: &str, needle: &str, server: bool| {
        let f = write_file(d, &format!("{name}.hcl"), hcl);
        let mut args = vec![
            "-data-dir",
            data.to_str().unwrap(),
            "-bind",
            "127.0.0.1",
            "-config-file",
            f.to_str().unwrap(),
        ];
        if server {
            args.extend(["-server", "-bootstrap-expect", "3"]);
        }
        agent_refuses(&args, needle);
    };
    let p = |p: &Path| p.display().to_string();
    refuses(
        "no-ca",
        &format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"\nverify_incoming = true\n",
            p(&cert),
            p(&key)
        ),
        "verify_incoming needs ca_file or ca_path",
        false,
    );
    refuses(
        "outgoing-no-ca",
        "tls {\n  internal_rpc {\n    verify_server_hostname = true\n  }\n}\n",
        "verify_outgoing (implied by verify_server_hostname) needs ca_file",
        false,
    );
    refuses(
        "missing-file",
        &format!(
            "ca_file = \"{}\"\ncert_file = \"/nonexistent/cert.pem\"\nkey_file = \"{}\"\n",
            p(&certs.ca()),
            p(&key)
        ),
        "cert_file: cannot read /nonexistent/cert.pem",
        false,
    );
    refuses(
        "key-mismatch",
        &format!(
            "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            p(&certs.ca()),
            p(&cert),
            p(&ckey)
        ),
        "key_file is the key of cert_file",
        false,
    );
    refuses(
        "cert-without-key",
        &format!("cert_file = \"{}\"\n", p(&cert)),
        "cert_file is set but key_file is not",
        false,
    );
    refuses(
        "old-version",
        "tls {\n  defaults {\n    tls_min_version = \"TLSv1_0\"\n  }\n}\n",
        "below TLS 1.2",
        false,
    );
    refuses(
        "cbc-suite",
        "tls_cipher_suites = \"TLS_RSA_WITH_AES_128_CBC_SHA\"\n",
        "TLS_RSA_WITH_AES_128_CBC_SHA",
        false,
    );
    refuses(
        "conflict",
        "verify_incoming = true\ntls {\n  defaults {\n    verify_incoming = false\n  }\n}\n",
        "`verify_incoming` (top level) and `tls.defaults.verify_incoming` disagree",
        false,
    );
    refuses(
        "auto-encrypt",
        "auto_encrypt { tls = true }\n",
        "key `auto_encrypt` is a Consul security setting",
        false,
    );
    refuses(
        "legacy-acl",
        "acl_datacenter = \"dc1\"\n",
        "key `acl_datacenter` is Consul's legacy (pre-1.4) ACL system",
        false,
    );
    refuses(
        "grpc",
        "tls {\n  grpc {\n    verify_incoming = true\n  }\n}\n",
        "tls.grpc.verify_incoming",
        false,
    );
    refuses(
        "misplaced",
        "tls {\n  defaults {\n    verify_server_hostname = true\n  }\n}\n",
        "it belongs in tls.internal_rpc",
        false,
    );
    refuses(
        "client-cert-as-server",
        &format!(
            "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nverify_server_hostname = true\n",
            p(&certs.ca()),
            p(&ccert),
            p(&ckey)
        ),
        "does not name server.dc1.consul",
        true,
    );
    // Another datacenter's servers: the same certificate is not a dc2 server's.
    let f = write_file(
        d,
        "dc2.hcl",
        &format!(
            "datacenter = \"dc2\"\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nverify_server_hostname = true\n",
            p(&certs.ca()),
            p(&cert),
            p(&key)
        ),
    );
    agent_refuses(
        &[
            "-data-dir",
            data.to_str().unwrap(),
            "-bind",
            "127.0.0.1",
            "-server",
            "-bootstrap-expect",
            "3",
            "-config-file",
            f.to_str().unwrap(),
        ],
        "does not name server.dc2.consul",
    );
}
