//! Join addresses: what an operator may write after `-join`, `-retry-join` or `muster join`.
//!
//! Accepted forms, as memberlist accepts them for Consul (docs/reference/consul.md):
//! `1.2.3.4`, `1.2.3.4:8301`, `::1`, `[::1]`, `[::1]:8301`, `host`, `host:8301`.
//! A missing port means the local gossip port. Host names are resolved by the system resolver
//! each time [`JoinAddr::resolve`] is called, and *every* A/AAAA record is used, so a name that
//! moves (a Kubernetes headless service, a DNS round-robin) is followed instead of being cached
//! forever.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Why a join address could not be understood or resolved.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AddrError {
    /// The text is not an address at all; the operator must fix the argument.
    #[error(
        "{input:?} is not a valid address: {reason} (expected host, host:port, or [ipv6]:port)"
    )]
    Invalid { input: String, reason: String },
    /// The name did not resolve now; it may later, so callers that retry should retry.
    #[error("cannot resolve {host:?}: {reason}")]
    Unresolved { host: String, reason: String },
}

/// A parsed join address: a literal IP or a host name, with an optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinAddr {
    host: Host,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Ip(IpAddr),
    Name(String),
}

impl JoinAddr {
    /// Parses one address. Never touches the network.
    pub fn parse(input: &str) -> Result<Self, AddrError> {
        let invalid = |reason: &str| AddrError::Invalid {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(invalid("it is empty"));
        }
        if let Some(rest) = s.strip_prefix('[') {
            let (ip, after) = rest
                .split_once(']')
                .ok_or_else(|| invalid("'[' without a closing ']'"))?;
            let ip: std::net::Ipv6Addr = ip
                .parse()
                .map_err(|_| invalid("the part inside [] is not an IPv6 address"))?;
            let port = match after {
                "" => None,
                p => Some(parse_port(
                    p.strip_prefix(':')
                        .ok_or_else(|| invalid("expected ':' after ']'"))?,
                    invalid,
                )?),
            };
            return Ok(Self {
                host: Host::Ip(IpAddr::V6(ip)),
                port,
            });
        }
        // A bare IPv6 literal has several colons and cannot carry a port without brackets.
        if s.matches(':').count() > 1 {
            let ip: std::net::Ipv6Addr = s.parse().map_err(|_| {
                invalid("it has several ':' but is not an IPv6 address; write [ipv6]:port")
            })?;
            return Ok(Self {
                host: Host::Ip(IpAddr::V6(ip)),
                port: None,
            });
        }
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(parse_port(p, invalid)?)),
            None => (s, None),
        };
        if host.is_empty() {
            return Err(invalid("the host part is empty"));
        }
        let host = match host.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => {
                if !host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
                {
                    return Err(invalid("the host is neither an IP address nor a DNS name"));
                }
                if host.chars().all(|c| c.is_ascii_digit() || c == '.') {
                    return Err(invalid(
                        "the host looks like an IPv4 address but is not one",
                    ));
                }
                Host::Name(host.to_string())
            }
        };
        Ok(Self { host, port })
    }

    /// The explicit port, if one was written.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// The literal IP, when the address is not a host name.
    pub fn ip(&self) -> Option<IpAddr> {
        match self.host {
            Host::Ip(ip) => Some(ip),
            Host::Name(_) => None,
        }
    }

    /// Resolves to every socket address this entry names, now.
    ///
    /// A literal IP resolves to itself. A name is looked up through the system resolver on every
    /// call (no caching here: the resolver and its TTLs decide), and all of its records are
    /// returned, de-duplicated, in the resolver's order.
    pub async fn resolve(&self, default_port: u16) -> Result<Vec<SocketAddr>, AddrError> {
        let port = self.port.unwrap_or(default_port);
        match &self.host {
            Host::Ip(ip) => Ok(vec![SocketAddr::new(*ip, port)]),
            Host::Name(name) => {
                let found = tokio::net::lookup_host((name.as_str(), port))
                    .await
                    .map_err(|e| AddrError::Unresolved {
                        host: name.clone(),
                        reason: e.to_string(),
                    })?;
                let mut out: Vec<SocketAddr> = Vec::new();
                for a in found {
                    if !out.contains(&a) {
                        out.push(a);
                    }
                }
                if out.is_empty() {
                    return Err(AddrError::Unresolved {
                        host: name.clone(),
                        reason: "the resolver returned no A or AAAA record".into(),
                    });
                }
                Ok(out)
            }
        }
    }
}

/// The port part of an address; `invalid` turns the reason into the address's error.
fn parse_port(p: &str, invalid: impl Fn(&str) -> AddrError) -> Result<u16, AddrError> {
    match p.parse::<u16>() {
        Ok(0) => Err(invalid("port 0 is not a port one can join")),
        Ok(n) => Ok(n),
        Err(_) => Err(invalid(&format!(
            "port {p:?} is not a number from 1 to 65535"
        ))),
    }
}

impl fmt::Display for JoinAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.port) {
            (Host::Ip(IpAddr::V6(ip)), Some(p)) => write!(f, "[{ip}]:{p}"),
            (Host::Ip(ip), Some(p)) => write!(f, "{ip}:{p}"),
            (Host::Ip(ip), None) => write!(f, "{ip}"),
            (Host::Name(n), Some(p)) => write!(f, "{n}:{p}"),
            (Host::Name(n), None) => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_documented_form() {
        for (input, shown) in [
            ("127.0.0.1", "127.0.0.1"),
            ("127.0.0.1:8301", "127.0.0.1:8301"),
            ("::1", "::1"),
            ("[::1]", "::1"),
            ("[::1]:9000", "[::1]:9000"),
            ("localhost", "localhost"),
            (
                "consul.service.internal:8301",
                "consul.service.internal:8301",
            ),
        ] {
            let a = JoinAddr::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(a.to_string(), shown);
        }
    }

    #[test]
    fn rejects_with_a_reason() {
        for input in [
            "",
            "1.2.3.4:",
            "1.2.3.4:99999",
            "1.2.3.4:0",
            "[::1",
            "[zz]:1",
            "a b",
            "300.1.1.1",
            "1:2:3:zz",
        ] {
            let e = JoinAddr::parse(input).unwrap_err();
            assert!(
                e.to_string().contains("not a valid address"),
                "{input}: {e}"
            );
        }
    }

    #[tokio::test]
    async fn resolves_literals_and_names_with_default_port() {
        let a = JoinAddr::parse("127.0.0.9").unwrap();
        assert_eq!(
            a.resolve(8301).await.unwrap(),
            vec!["127.0.0.9:8301".parse().unwrap()]
        );
        let n = JoinAddr::parse("localhost:7000").unwrap();
        let got = n.resolve(8301).await.unwrap();
        assert!(
            !got.is_empty() && got.iter().all(|s| s.port() == 7000 && s.ip().is_loopback()),
            "{got:?}"
        );
    }
}
