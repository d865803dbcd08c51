//! The HTTPS API and the CLI's TLS flags (docs/security.md, HTTPS API), through a real agent
//! process with certificates made by `muster tls` in the test: the CLI reaches the API with
//! its flags and with the `MUSTER_*` variables; a caller without a client certificate, with
//! a foreign CA's, without the CA, under a wrong name or in plaintext is refused with a line
//! that names the fix; the plain port can be turned off; a silent connection holds up no
//! one; the certificate rotates on SIGHUP. Settings that cannot be served stop the start.

mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::certs::{der_of, presented, Certs};
use support::*;

const T: Duration = Duration::from_secs(40);

/// `muster ARGS` with these environment variables (and no `MUSTER_*` of the test's own).
fn cli(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("MUSTER_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run muster")
}

/// The CLI's flags for a verified, authenticated call to `addr`.
fn flags<'a>(addr: &'a str, ca: &'a Path, (cert, key): &'a (PathBuf, PathBuf)) -> Vec<&'a str> {
    vec![
        "-http-addr",
        addr,
        "-ca-file",
        ca.to_str().unwrap(),
        "-client-cert",
        cert.to_str().unwrap(),
        "-client-key",
        key.to_str().unwrap(),
    ]
}

/// One more server certificate in `dir` (the next number) that also names `ip`, so that the
/// CLI can dial the agent by its address.
fn server_cert_for(dir: &Path, ip: &str) {
    let o = muster_in(
        dir,
        &[
            "tls",
            "cert",
            "create",
            "-server",
            "-additional-ipaddress",
            ip,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// `muster ARGS…` fails with exit 1 and says `needle`; returns its stderr.
fn refused(args: &[&str], env: &[(&str, &str)], needle: &str) -> String {
    let o = cli(args, env);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?} {env:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?} {env:?}: expected {needle:?} in:\n{err}"
    );
    eprintln!("refused as it should be: {}", err.trim());
    err
}

#[test]
fn the_cli_reaches_the_https_api_with_its_certificate_and_strangers_are_refused() {
    let block = Block::HttpsApi;
    let ip = block.ip(1);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let certs = Certs::make(d);
    // dc1-server-muster-3: the agent's own address among its names, so the CLI can dial it.
    server_cert_for(d, &ip);
    let (cert, key) = certs.server(3);
    let ca = certs.ca();
    let hcl = write_file(
        d,
        "https.hcl",
        &format!(
            "ports {{\n  http = -1\n  https = 8501\n}}\ntls {{\n  defaults {{\n    \
             ca_file = \"{}\"\n    cert_file = \"{}\"\n    key_file = \"{}\"\n    \
             verify_incoming = true\n    verify_outgoing = true\n  }}\n  internal_rpc {{\n    \
             verify_server_hostname = true\n  }}\n}}\n",
            ca.display(),
            cert.display(),
            key.display()
        ),
    );
    let s1 = Agent::start(
        "s1",
        &ip,
        &[
            "-server",
            "-bootstrap-expect",
            "1",
            "-config-file",
            hcl.to_str().unwrap(),
        ],
    );
    let addr = format!("https://{ip}:8501");
    let cli_cert = certs.cli();

    step(
        1,
        "the CLI reaches the HTTPS API with -ca-file, -client-cert, -client-key",
    );
    let mut members = flags(&addr, &ca, &cli_cert);
    members.insert(0, "members");
    wait_until(T, "muster members over HTTPS lists s1 alive", || {
        let o = cli(&members, &[]);
        o.status.success() && stdout(&o).contains("alive")
    });
    wait_until(T, "s1 leads (a write goes through)", || {
        let mut put = vec!["kv", "put"];
        put.extend(flags(&addr, &ca, &cli_cert));
        put.extend(["greeting", "hello"]);
        cli(&put, &[]).status.success()
    });

    step(
        2,
        "the same through MUSTER_HTTP_ADDR, MUSTER_CACERT, MUSTER_CLIENT_CERT, MUSTER_CLIENT_KEY",
    );
    let (c, k) = (cli_cert.0.to_str().unwrap(), cli_cert.1.to_str().unwrap());
    let env = [
        ("MUSTER_HTTP_ADDR", addr.as_str()),
        ("MUSTER_CACERT", ca.to_str().unwrap()),
        ("MUSTER_CLIENT_CERT", c),
        ("MUSTER_CLIENT_KEY", k),
    ];
    let o = cli(&["kv", "get", "greeting"], &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "hello");
    // MUSTER_HTTP_SSL=true turns a bare host:port into https://.
    let bare = format!("{ip}:8501");
    let mut ssl_env = env;
    ssl_env[0] = ("MUSTER_HTTP_ADDR", bare.as_str());
    let o = cli(
        &["kv", "get", "greeting"],
        &[&ssl_env[..], &[("MUSTER_HTTP_SSL", "true")]].concat(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // -tls-server-name: dial the address, check the name server.dc1.consul instead.
    let o = cli(
        &[
            &["kv", "get"][..],
            &["-tls-server-name", "server.dc1.consul", "greeting"],
        ]
        .concat(),
        &env,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // MUSTER_HTTP_SSL_VERIFY=false: no CA needed (the agent still wants a certificate).
    let no_ca = [env[0], env[2], env[3], ("MUSTER_HTTP_SSL_VERIFY", "false")];
    let o = cli(&["kv", "get", "greeting"], &no_ca);
    assert!(o.status.success(), "{}", stderr(&o));

    step(3, "strangers are refused, each with the fix named");
    let get = ["kv", "get", "greeting"];
    refused(&get, &[env[0], env[1]], "-client-cert and -client-key");
    refused(
        &get,
        &[env[0], env[2], env[3]],
        "-ca-file (or MUSTER_CACERT)",
    );
    let foreign = certs.foreign_cli();
    let (fc, fk) = (foreign.0.to_str().unwrap(), foreign.1.to_str().unwrap());
    let err = refused(
        &get,
        &[
            env[0],
            env[1],
            ("MUSTER_CLIENT_CERT", fc),
            ("MUSTER_CLIENT_KEY", fk),
        ],
        "Error connecting to muster agent",
    );
    assert!(!err.contains("hello"), "{err}");
    let fca = certs.foreign_ca();
    refused(
        &get,
        &[
            env[0],
            ("MUSTER_CACERT", fca.to_str().unwrap()),
            env[2],
            env[3],
        ],
        "do not chain to the same CA",
    );
    refused(
        &[
            &get[..2],
            &["-tls-server-name", "server.dc2.consul", "greeting"],
        ]
        .concat(),
        &env,
        "-tls-server-name",
    );
    refused(
        &get,
        &[("MUSTER_HTTP_ADDR", &format!("http://{ip}:8501"))],
        "Client sent an HTTP request to an HTTPS server",
    );
    refused(
        &get,
        &[
            env[0],
            env[1],
            env[2],
            ("MUSTER_CLIENT_KEY", "/nonexistent/key.pem"),
        ],
        "-client-key (MUSTER_CLIENT_KEY): cannot read /nonexistent/key.pem",
    );
    refused(
        &get,
        &[
            env[0],
            env[1],
            env[2],
            env[3],
            ("MUSTER_HTTP_SSL_VERIFY", "maybe"),
        ],
        "MUSTER_HTTP_SSL_VERIFY=\"maybe\" is not a boolean",
    );
    // The plain HTTP port is off.
    assert!(TcpStream::connect(format!("{ip}:8500")).is_err());

    step(4, "connections that never say a word hold up no one");
    let silent: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(format!("{ip}:8501")).unwrap())
        .collect();
    let o = cli(&get, &env);
    assert!(o.status.success(), "{}", stderr(&o));
    drop(silent);

    step(
        5,
        "a new certificate on disk and SIGHUP: the next handshake shows it",
    );
    server_cert_for(d, &ip);
    let (new_cert, new_key) = certs.server(4);
    let tls_addr = format!("{ip}:8501");
    let old = der_of(&cert);
    assert_eq!(presented(&tls_addr, &ca, &cli_cert), old);
    std::fs::rename(&new_cert, &cert).unwrap();
    std::fs::rename(&new_key, &key).unwrap();
    s1.signal(libc::SIGHUP);
    wait_until(T, "a new connection is shown the new certificate", || {
        presented(&tls_addr, &ca, &cli_cert) == der_of(&cert)
    });
    assert!(s1.log().contains("HTTPS API TLS"), "{}", s1.log());
    let o = cli(&get, &env);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(s1.pid().is_some(), "s1 exited on SIGHUP");
}

#[test]
fn api_settings_that_cannot_be_served_stop_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    let data = data.to_str().unwrap();
    let base = ["-data-dir", data, "-bind", "127.0.0.1"];
    agent_refuses(
        &[&base[..], &["-https-port", "8501"]].concat(),
        "ports.https = 8501 needs a certificate: set tls.https.cert_file and tls.https.key_file",
    );
    agent_refuses(
        &[&base[..], &["-http-port", "-1"]].concat(),
        "ports.http and ports.https are both off",
    );
    agent_refuses(
        &[&base[..], &["-http-port", "-1", "-https-port", "-1"]].concat(),
        "the agent would have no API",
    );
    let o = muster(&[
        "validate",
        &write_file(d, "x.json", r#"{"ports": {"https": 8501}}"#)
            .display()
            .to_string(),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("needs a certificate"), "{}", stderr(&o));
}
