//! Addresses: families and networks, as the address filters take them.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::event::vocabulary;

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Ipv4,
    Ipv6,
}

impl Family {
    /// `ipv4` / `ipv6`, as conntrack's `-f` takes them.
    pub fn name(self) -> &'static str {
        vocabulary::l3_name(self.l3proto())
    }

    /// `AF_INET` / `AF_INET6`.
    pub fn l3proto(self) -> u8 {
        match self {
            Family::Ipv4 => vocabulary::AF_INET,
            Family::Ipv6 => vocabulary::AF_INET6,
        }
    }

    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
}

/// An address with a prefix length; a plain address has the full length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl Cidr {
    pub fn family(&self) -> Family {
        Family::of(&self.addr)
    }

    /// True when `ip` is of the same family and inside the network.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = prefix_mask_u32(self.prefix_len);
                u32::from(net) & mask == u32::from(*ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = prefix_mask_u128(self.prefix_len);
                u128::from(net) & mask == u128::from(*ip) & mask
            }
            _ => false,
        }
    }
}

fn prefix_mask_u32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

fn prefix_mask_u128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (addr_s, len_s) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = addr_s
            .parse()
            .map_err(|_| format!("`{addr_s}` is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match len_s {
            None => max,
            Some(l) => match l.parse::<u8>() {
                Ok(n) if n <= max && l.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(format!(
                        "prefix length `{l}` is not a number from 0 to {max}"
                    ));
                }
            },
        };
        Ok(Cidr { addr, prefix_len })
    }
}

/// The zero groups `inet_ntop(3)` (glibc, which conntrack prints with)
/// writes as `::`: the longest run of at least two, the first on a tie.
/// `(start, len)`, with `len` 0 when there is none.
pub fn ipv6_zero_run(w: &[u16; 8]) -> (usize, usize) {
    let (mut best_base, mut best_len) = (0usize, 0usize);
    let mut i = 0;
    while i < 8 {
        if w[i] == 0 {
            let base = i;
            while i < 8 && w[i] == 0 {
                i += 1;
            }
            if i - base > best_len {
                best_base = base;
                best_len = i - base;
            }
        } else {
            i += 1;
        }
    }
    if best_len < 2 {
        (0, 0)
    } else {
        (best_base, best_len)
    }
}

/// Whether `inet_ntop(3)` writes the last 32 bits as dotted IPv4: the
/// IPv4-compatible (`::a.b.c.d`) and IPv4-mapped (`::ffff:a.b.c.d`) forms.
pub fn ipv6_ends_in_ipv4(w: &[u16; 8], (start, len): (usize, usize)) -> bool {
    start == 0 && (len == 6 || (len == 5 && w[5] == 0xffff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_plain_and_prefixed() {
        let c: Cidr = "10.1.2.3".parse().unwrap();
        assert_eq!(c.prefix_len, 32);
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(c.contains(&"10.255.0.1".parse().unwrap()));
        assert!(!c.contains(&"11.0.0.1".parse().unwrap()));
        assert!(!c.contains(&"::ffff:10.0.0.1".parse().unwrap()));
        let c: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(c.contains(&"2001:db8:ffff::1".parse().unwrap()));
        assert!(!c.contains(&"2001:db9::1".parse().unwrap()));
        let c: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(c.contains(&"1.2.3.4".parse().unwrap()));
        let c: Cidr = "::/0".parse().unwrap();
        assert!(c.contains(&"fe80::1".parse().unwrap()));
        let c: Cidr = "fe80::1/128".parse().unwrap();
        assert!(c.contains(&"fe80::1".parse().unwrap()));
        assert!(!c.contains(&"fe80::2".parse().unwrap()));
    }

    #[test]
    fn cidr_errors_name_the_value() {
        let e = "10.0.0/8".parse::<Cidr>().unwrap_err();
        assert!(e.contains("`10.0.0`"), "{e}");
        let e = "10.0.0.0/33".parse::<Cidr>().unwrap_err();
        assert!(e.contains("`33`") && e.contains("32"), "{e}");
        let e = "::1/129".parse::<Cidr>().unwrap_err();
        assert!(e.contains("`129`"), "{e}");
        assert!("10.0.0.0/".parse::<Cidr>().is_err());
        assert!("10.0.0.0/+8".parse::<Cidr>().is_err());
        assert!("host.example".parse::<Cidr>().is_err());
    }
}
