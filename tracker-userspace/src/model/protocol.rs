//! Layer-4 protocols.

use std::str::FromStr;

use crate::event::vocabulary::PROTOCOL_NAMES;

/// A layer-4 protocol by IP protocol number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocol(pub u8);

impl FromStr for Protocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let alias = match lower.as_str() {
            "ipv6-icmp" => "icmpv6",
            other => other,
        };
        if let Some((_, n)) = PROTOCOL_NAMES.iter().find(|(name, _)| *name == alias) {
            return Ok(Protocol(*n));
        }
        if !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = s.parse::<u8>()
        {
            return Ok(Protocol(n));
        }
        Err(format!(
            "`{s}` is not a protocol: use tcp, udp, udplite, icmp, icmpv6, sctp, gre, dccp or a number 0-255"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols() {
        assert_eq!("tcp".parse::<Protocol>().unwrap(), Protocol(6));
        assert_eq!("UDP".parse::<Protocol>().unwrap(), Protocol(17));
        assert_eq!("ipv6-icmp".parse::<Protocol>().unwrap(), Protocol(58));
        assert_eq!("47".parse::<Protocol>().unwrap(), Protocol(47));
        assert_eq!("0".parse::<Protocol>().unwrap(), Protocol(0));
        assert!("256".parse::<Protocol>().is_err());
        assert!("tcpx".parse::<Protocol>().unwrap_err().contains("`tcpx`"));
        assert_eq!("SCTP".parse::<Protocol>().unwrap(), Protocol(132));
    }
}
