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

/// The single private IPv4 address of the host, or why there is not exactly one.
pub fn single_private_ipv4(candidates: &[Ipv4Addr]) -> Result<Ipv4Addr, String> {
    let mut private: Vec<Ipv4Addr> = candidates
        .iter()
        .copied()
        .filter(|ip| is_private(*ip))
        .collect();
    private.dedup();
    match private.as_slice() {
        [one] => Ok(*one),
        [] => Err("no private IPv4 address found on this host".into()),
        many => Err(format!(
            "several private IPv4 addresses found ({})",
            many.iter()
                .map(|ip| ip.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
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
        assert!(single_private_ipv4(&ips(&["127.0.0.1"]))
            .unwrap_err()
            .contains("no private"));
        assert!(single_private_ipv4(&ips(&["10.0.0.1", "192.168.1.1"]))
            .unwrap_err()
            .contains("several"));
        assert!(is_private("100.64.0.1".parse().unwrap()));
        assert!(!interface_ipv4s().is_empty(), "loopback at least");
    }
}
