//! `muster tls ca create` and `muster tls cert create` (docs/tls.md), checked by another
//! implementation: OpenSSL verifies every chain, purpose and name, and a real TLS handshake
//! between `openssl s_server` and `openssl s_client` uses the certificates.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::*;

fn openssl(dir: &Path, args: &[&str]) -> Output {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (the test command installs it)")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_ca_and_certificates_that_openssl_verifies_by_purpose_and_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    step(1, "a CA: two files, the key 0600; never overwritten");
    let o = muster_in(d, &["tls", "ca", "create"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("Saved muster-agent-ca.pem"),
        "{}",
        text(&o)
    );
    assert_eq!(mode(&d.join("muster-agent-ca-key.pem")), 0o600);
    let o = muster_in(d, &["tls", "ca", "create"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("already exists"), "{}", text(&o));

    step(
        2,
        "server, client and CLI certificates, numbered, never overwritten",
    );
    let server = &[
        "tls",
        "cert",
        "create",
        "-server",
        "-node",
        "s1",
        "-additional-dnsname",
        "srv.example.test",
        "-additional-ipaddress",
        "127.0.0.9",
    ];
    let o = muster_in(d, server);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("WARNING"), "{}", text(&o));
    assert!(
        text(&o).contains("Saved dc1-server-muster-0.pem"),
        "{}",
        text(&o)
    );
    assert!(muster_in(d, server).status.success());
    assert!(d.join("dc1-server-muster-1.pem").exists());
    assert_eq!(mode(&d.join("dc1-server-muster-0-key.pem")), 0o600);
    assert!(muster_in(d, &["tls", "cert", "create", "-client"])
        .status
        .success());
    assert!(
        muster_in(d, &["tls", "cert", "create", "-cli", "-dc", "dc2"])
            .status
            .success()
    );
    assert!(d.join("dc1-client-muster-0.pem").exists());
    assert!(d.join("dc2-cli-muster-0.pem").exists());

    step(
        3,
        "OpenSSL verifies each chain for its purposes, and finds the names",
    );
    let verify = |purpose: &str, cert: &str| {
        let o = openssl(
            d,
            &[
                "verify",
                "-CAfile",
                "muster-agent-ca.pem",
                "-purpose",
                purpose,
                cert,
            ],
        );
        o.status.success() && text(&o).contains(": OK")
    };
    for cert in ["dc1-server-muster-0.pem", "dc1-client-muster-0.pem"] {
        assert!(verify("sslserver", cert), "{cert} as a TLS server");
        assert!(verify("sslclient", cert), "{cert} as a TLS client");
    }
    assert!(verify("sslclient", "dc2-cli-muster-0.pem"));
    assert!(
        !verify("sslserver", "dc2-cli-muster-0.pem"),
        "the CLI's certificate serves nothing"
    );
    let sans = text(&openssl(
        d,
        &[
            "x509",
            "-noout",
            "-ext",
            "subjectAltName",
            "-in",
            "dc1-server-muster-0.pem",
        ],
    ));
    for name in [
        "DNS:server.dc1.consul",
        "DNS:s1.server.dc1.consul",
        "DNS:localhost",
        "DNS:srv.example.test",
        "IP Address:127.0.0.1",
        "IP Address:127.0.0.9",
    ] {
        assert!(sans.contains(name), "{name} in {sans}");
    }
    let check_host = |cert: &str, host: &str| {
        let o = openssl(
            d,
            &[
                "verify",
                "-CAfile",
                "muster-agent-ca.pem",
                "-verify_hostname",
                host,
                cert,
            ],
        );
        o.status.success()
    };
    assert!(check_host("dc1-server-muster-0.pem", "server.dc1.consul"));
    assert!(
        !check_host("dc1-client-muster-0.pem", "server.dc1.consul"),
        "a client certificate does not name a server"
    );

    step(
        4,
        "a real TLS handshake with both certificates, the client's required",
    );
    let port = free_port();
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-cert",
            "dc1-server-muster-0.pem",
            "-key",
            "dc1-server-muster-0-key.pem",
            "-CAfile",
            "muster-agent-ca.pem",
            "-Verify",
            "1",
            "-verify_return_error",
        ])
        .current_dir(d)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    // Retried until s_server is up; each try is a whole handshake.
    let handshake = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        let o = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-CAfile",
                "muster-agent-ca.pem",
                "-cert",
                "dc1-client-muster-0.pem",
                "-key",
                "dc1-client-muster-0-key.pem",
                "-verify_hostname",
                "server.dc1.consul",
                "-verify_return_error",
                "-brief",
            ])
            .current_dir(d)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let t = text(&o);
        t.contains("Verification: OK").then_some(t)
    });
    let _ = server.kill();
    let _ = server.wait();
    let t = handshake.expect("a verified handshake");
    assert!(t.contains("Verified peername: server.dc1.consul"), "{t}");

    step(5, "usage errors name the fix and exit 1");
    let o = muster_in(d, &["tls", "cert", "create"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("exactly one of -server, -client or -cli"),
        "{}",
        text(&o)
    );
    let o = muster_in(d, &["tls", "cert", "create", "-server", "-client"]);
    assert_eq!(o.status.code(), Some(1));
    let empty = tempfile::tempdir().unwrap();
    let o = muster_in(empty.path(), &["tls", "cert", "create", "-server"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("muster-agent-ca.pem") && text(&o).contains("muster tls ca create"),
        "{}",
        text(&o)
    );
    // Another CA's key beside this CA's certificate is refused before anything is written.
    assert!(muster_in(empty.path(), &["tls", "ca", "create"])
        .status
        .success());
    let o = muster_in(
        d,
        &[
            "tls",
            "cert",
            "create",
            "-client",
            "-key",
            empty
                .path()
                .join("muster-agent-ca-key.pem")
                .to_str()
                .unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("is not the key of"), "{}", text(&o));
    assert!(!d.join("dc1-client-muster-1.pem").exists());
}

/// A port nothing listens on now (the kernel's pick, released at once).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
