//! The host's own addresses, for choosing an advertise address when the agent binds to all of
//! them (`bind_addr = 0.0.0.0`), as Consul does: the one private IPv4 address of the host
//! (RFC 1918 or RFC 6598 shared space); none or several is an error that asks for `-advertise`.

use std::net::Ipv4Addr;

/// The IPv4 addresses of the host's interfaces that are up, via getifaddrs(3).
pub fn interface_ipv4s() -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    // SAFETY: getifaddrs fills a linked list we only read and then free with freeifaddrs; every
    // pointer is checked for null before it is read, and sockaddr_in is read only when the
    // family says AF_INET.
    unsafe {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            let up = ifa.ifa_flags & (libc::IFF_UP as u32) != 0;
            if up && !ifa.ifa_addr.is_null() && (*ifa.ifa_addr).sa_family as i32 == libc::AF_INET {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                out.push(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

/// Private ranges Consul's GetPrivateIP accepts.
pub fn is_private(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    ip.is_private() || (o[0] == 100 && (64..128).contains(&o[1]))
}

/// Why the host has no single private IPv4 address to advertise. Either way the operator must
/// say which address to advertise (`-advertise`), or bind to a single IP (`-bind`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdvertiseError {
    /// No interface that is up has a private IPv4 address.
    #[error("no private IPv4 address found on this host")]
    NoPrivateAddress,
    /// Several do, and muster will not guess which one the others can reach.
    #[error("several private IPv4 addresses found ({})", list(.0))]
    SeveralPrivateAddresses(Vec<Ipv4Addr>),
}

fn list(ips: &[Ipv4Addr]) -> String {
    ips.iter()
        .map(|ip| ip.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The single private IPv4 address of the host, or why there is not exactly one.
pub fn single_private_ipv4(candidates: &[Ipv4Addr]) -> Result<Ipv4Addr, AdvertiseError> {
    let mut private: Vec<Ipv4Addr> = candidates
        .iter()
        .copied()
        .filter(|ip| is_private(*ip))
        .collect();
    private.dedup();
    match private.as_slice() {
        [one] => Ok(*one),
        [] => Err(AdvertiseError::NoPrivateAddress),
        many => Err(AdvertiseError::SeveralPrivateAddresses(many.to_vec())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_exactly_one_private_address() {
        let ips = |v: &[&str]| {
            v.iter()
                .map(|s| s.parse().unwrap())
                .collect::<Vec<Ipv4Addr>>()
        };
        assert_eq!(
            single_private_ipv4(&ips(&["127.0.0.1", "10.1.2.3", "8.8.8.8"]))
                .unwrap()
                .to_string(),
            "10.1.2.3"
        );
        assert_eq!(
            single_private_ipv4(&ips(&["127.0.0.1"])),
            Err(AdvertiseError::NoPrivateAddress)
        );
        assert_eq!(
            single_private_ipv4(&ips(&["10.0.0.1", "192.168.1.1"]))
                .unwrap_err()
                .to_string(),
            "several private IPv4 addresses found (10.0.0.1, 192.168.1.1)"
        );
        assert!(is_private("100.64.0.1".parse().unwrap()));
        assert!(!interface_ipv4s().is_empty(), "loopback at least");
    }
}
