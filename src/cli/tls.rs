//! `muster tls ca create` and `muster tls cert create`: a CA and agent certificates, without
//! OpenSSL (names, files and why: docs/tls.md).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};

#[derive(Debug, Args)]
pub struct TlsCmd {
    #[command(subcommand)]
    pub what: TlsWhat,
}

#[derive(Debug, Subcommand)]
pub enum TlsWhat {
    /// Certificate authorities.
    Ca {
        #[command(subcommand)]
        action: CaAction,
    },
    /// Agent and CLI certificates.
    Cert {
        #[command(subcommand)]
        action: CertAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaAction {
    /// Create a self-signed CA: STEM-agent-ca.pem and STEM-agent-ca-key.pem.
    Create(CaCreate),
}

#[derive(Debug, Subcommand)]
pub enum CertAction {
    /// Create a certificate signed by the CA, for a server, a client agent or the CLI.
    Create(CertCreate),
}

#[derive(Debug, Args)]
pub struct CaCreate {
    /// Days the CA is valid for.
    #[arg(long, default_value_t = 1825)]
    pub days: u32,
    /// The cluster's DNS domain; names the files unless it is the default.
    #[arg(long, default_value = "consul")]
    pub domain: String,
    /// The CA's common name (default: "Muster Agent CA SERIAL").
    #[arg(long = "common-name")]
    pub common_name: Option<String>,
}

#[derive(Debug, Args)]
pub struct CertCreate {
    /// A server certificate (server.DC.DOMAIN).
    #[arg(long)]
    pub server: bool,
    /// A client agent certificate (client.DC.DOMAIN).
    #[arg(long)]
    pub client: bool,
    /// A certificate for the CLI (cli.DC.DOMAIN, client auth only).
    #[arg(long)]
    pub cli: bool,
    /// Datacenter.
    #[arg(long, default_value = "dc1")]
    pub dc: String,
    /// The cluster's DNS domain.
    #[arg(long, default_value = "consul")]
    pub domain: String,
    /// Days the certificate is valid for.
    #[arg(long, default_value_t = 365)]
    pub days: u32,
    /// The CA certificate (default STEM-agent-ca.pem).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The CA key (default STEM-agent-ca-key.pem).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Another DNS name for the SANs (repeatable).
    #[arg(long = "additional-dnsname")]
    pub dnsnames: Vec<String>,
    /// Another IP address for the SANs (repeatable).
    #[arg(long = "additional-ipaddress")]
    pub ips: Vec<IpAddr>,
    /// With -server: also name NODE.server.DC.DOMAIN.
    #[arg(long)]
    pub node: Option<String>,
}

/// What names the files: `muster` for Consul's default domain, the domain otherwise.
fn stem(domain: &str) -> &str {
    if domain == "consul" {
        "muster"
    } else {
        domain
    }
}

pub fn run(cmd: TlsCmd) -> u8 {
    let result = match cmd.what {
        TlsWhat::Ca {
            action: CaAction::Create(c),
        } => ca_create(c, Path::new("")),
        TlsWhat::Cert {
            action: CertAction::Create(c),
        } => cert_create(c, Path::new("")),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("==> {e}");
            1
        }
    }
}

/// `[now - 1 min, now + days]`: a minute of slack for clocks slightly behind.
fn validity(p: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::minutes(1);
    p.not_after = now + Duration::days(i64::from(days));
}

fn serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut bytes);
    // Positive, as DER integers of serials must be.
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn ca_create(c: CaCreate, dir: &Path) -> Result<(), String> {
    let stem = stem(&c.domain);
    let cert_file = dir.join(format!("{stem}-agent-ca.pem"));
    let key_file = dir.join(format!("{stem}-agent-ca-key.pem"));
    for f in [&cert_file, &key_file] {
        if f.exists() {
            return Err(format!(
                "{} already exists: a CA is never overwritten; move it away, or use another -domain",
                f.display()
            ));
        }
    }
    let key = KeyPair::generate().map_err(|e| format!("generating the CA key: {e}"))?;
    let mut p = CertificateParams::default();
    let serial = serial();
    let cn = c.common_name.unwrap_or_else(|| {
        let hex: String = serial
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("Muster Agent CA {}", &hex[..16])
    });
    p.distinguished_name.push(DnType::CommonName, cn);
    p.serial_number = Some(serial);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, c.days);
    let cert = p
        .self_signed(&key)
        .map_err(|e| format!("signing the CA: {e}"))?;
    write_new(&cert_file, cert.pem().as_bytes(), 0o644)?;
    println!("==> Saved {}", cert_file.display());
    write_new(&key_file, key.serialize_pem().as_bytes(), 0o600)?;
    println!("==> Saved {}", key_file.display());
    Ok(())
}

fn cert_create(c: CertCreate, dir: &Path) -> Result<(), String> {
    let kind = match (c.server, c.client, c.cli) {
        (true, false, false) => "server",
        (false, true, false) => "client",
        (false, false, true) => "cli",
        _ => return Err("give exactly one of -server, -client or -cli".into()),
    };
    if c.node.is_some() && kind != "server" {
        return Err("-node names a server: use it with -server".into());
    }
    let stem = stem(&c.domain).to_string();
    let ca_file =
        c.ca.unwrap_or_else(|| dir.join(format!("{stem}-agent-ca.pem")));
    let key_file = c
        .key
        .unwrap_or_else(|| dir.join(format!("{stem}-agent-ca-key.pem")));
    let read = |f: &Path| {
        std::fs::read_to_string(f).map_err(|e| {
            format!(
                "cannot read {}: {e}; create a CA with `muster tls ca create`, or give -ca and -key",
                f.display()
            )
        })
    };
    let (ca_pem, ca_key_pem) = (read(&ca_file)?, read(&key_file)?);
    let ca_key = KeyPair::from_pem(&ca_key_pem)
        .map_err(|e| format!("{} is not a PEM private key: {e}", key_file.display()))?;
    check_pair(&ca_pem, &ca_key, &ca_file, &key_file)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .map_err(|e| format!("{} is not a PEM certificate: {e}", ca_file.display()))?;
    println!("==> Using {} and {}", ca_file.display(), key_file.display());

    let own = format!("{kind}.{}.{}", c.dc, c.domain);
    let mut names = vec![own.clone()];
    if let Some(node) = &c.node {
        names.push(format!("{node}.server.{}.{}", c.dc, c.domain));
    }
    names.push("localhost".into());
    names.extend(c.dnsnames.iter().cloned());
    let mut ips = Vec::new();
    if kind != "cli" {
        ips.push(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    ips.extend(c.ips.iter().copied());

    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, own);
    p.serial_number = Some(serial());
    for n in names {
        let name = n
            .clone()
            .try_into()
            .map_err(|_| format!("{n:?} is not a DNS name (-additional-dnsname)"))?;
        p.subject_alt_names.push(SanType::DnsName(name));
    }
    p.subject_alt_names
        .extend(ips.into_iter().map(SanType::IpAddress));
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = match kind {
        "cli" => vec![ExtendedKeyUsagePurpose::ClientAuth],
        _ => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    p.use_authority_key_identifier_extension = true;
    validity(&mut p, c.days);
    let key = KeyPair::generate().map_err(|e| format!("generating the key: {e}"))?;
    let cert = p
        .signed_by(&key, &issuer)
        .map_err(|e| format!("signing the certificate: {e}"))?;

    if kind == "server" {
        println!(
            "==> WARNING: a server certificate lets its holder act as a server and read the \
             whole cluster state. Give it only to server hosts, and keep it as safe as the CA key."
        );
    }
    let (cert_out, key_out) = (0..)
        .map(|n| {
            let base = format!("{}-{kind}-{stem}-{n}", c.dc);
            (
                dir.join(format!("{base}.pem")),
                dir.join(format!("{base}-key.pem")),
            )
        })
        .find(|(c, k)| !c.exists() && !k.exists())
        .expect("some number is free");
    write_new(&cert_out, cert.pem().as_bytes(), 0o644)?;
    println!("==> Saved {}", cert_out.display());
    write_new(&key_out, key.serialize_pem().as_bytes(), 0o600)?;
    println!("==> Saved {}", key_out.display());
    Ok(())
}

/// The CA key must be the key of the CA certificate: a mismatch would sign certificates that
/// no agent trusting that CA accepts.
fn check_pair(ca_pem: &str, key: &KeyPair, ca_file: &Path, key_file: &Path) -> Result<(), String> {
    let not_cert = |e: String| format!("{} is not a PEM certificate: {e}", ca_file.display());
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(ca_pem.as_bytes()).map_err(|e| not_cert(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| not_cert(e.to_string()))?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(format!(
            "{} is not the key of {}: give the CA's own key with -key",
            key_file.display(),
            ca_file.display()
        ));
    }
    Ok(())
}

/// Writes a file that must not exist yet, with `mode`.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
