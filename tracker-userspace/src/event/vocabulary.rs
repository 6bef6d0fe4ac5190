//! The conntrack vocabulary: protocol numbers and their names, TCP state
//! names, status and event bit names. Everything that turns one of these
//! numbers into text, or asks what kind of protocol a number is, asks here.

use std::borrow::Cow;

use super::{Event, L4Ids};

/// Address families as `u8` (libc has them as `c_int`).
pub const AF_INET: u8 = 2;
pub const AF_INET6: u8 = 10;

/// IP protocol numbers as `u8` (libc has them as `c_int`).
pub mod ipproto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const DCCP: u8 = 33;
    pub const GRE: u8 = 47;
    pub const ICMPV6: u8 = 58;
    pub const SCTP: u8 = 132;
    pub const UDPLITE: u8 = 136;
}

/// Names conntrack knows (its protocol extensions), with their numbers.
pub const PROTOCOL_NAMES: &[(&str, u8)] = &[
    ("tcp", ipproto::TCP),
    ("udp", ipproto::UDP),
    ("udplite", ipproto::UDPLITE),
    ("icmp", ipproto::ICMP),
    ("icmpv6", ipproto::ICMPV6),
    ("sctp", ipproto::SCTP),
    ("gre", ipproto::GRE),
    ("dccp", ipproto::DCCP),
];

/// libnetfilter_conntrack's `__proto2str()`.
pub fn l4_name(l4proto: u8) -> &'static str {
    PROTOCOL_NAMES
        .iter()
        .find(|(_, n)| *n == l4proto)
        .map_or("unknown", |(name, _)| name)
}

/// libnetfilter_conntrack's `__l3proto2str()`.
pub fn l3_name(l3proto: u8) -> &'static str {
    match l3proto {
        AF_INET => "ipv4",
        AF_INET6 => "ipv6",
        _ => "unknown",
    }
}

/// The protocol's name, or its number where conntrack has no name for it.
pub fn l4_label(l4proto: u8) -> Cow<'static, str> {
    match l4_name(l4proto) {
        "unknown" => Cow::Owned(l4proto.to_string()),
        name => Cow::Borrowed(name),
    }
}

/// The family's name, or its number where conntrack has no name for it.
pub fn l3_label(l3proto: u8) -> Cow<'static, str> {
    match l3_name(l3proto) {
        "unknown" => Cow::Owned(l3proto.to_string()),
        name => Cow::Borrowed(name),
    }
}

/// Which identifiers conntrack keeps for a protocol (`nf_conntrack_l4proto`'s
/// tuple_to_nlattr): ports for the port protocols, keys (sent as ports) for
/// GRE, id/type/code for ICMP.
pub fn l4_ids(l4proto: u8, sport: u16, dport: u16, id: u16, kind: u8, code: u8) -> L4Ids {
    match l4proto {
        ipproto::TCP | ipproto::UDP | ipproto::UDPLITE | ipproto::SCTP | ipproto::DCCP => {
            L4Ids::Ports { sport, dport }
        }
        ipproto::ICMP | ipproto::ICMPV6 => L4Ids::Icmp { kind, code, id },
        ipproto::GRE => L4Ids::Gre {
            src_key: sport,
            dst_key: dport,
        },
        _ => L4Ids::None,
    }
}

/// `enum tcp_conntrack` names, index = state (libnetfilter_conntrack `states[]`).
pub const TCP_STATES: [&str; 10] = [
    "NONE",
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "TIME_WAIT",
    "CLOSE",
    "SYN_SENT2",
];

/// The TCP state name; out of range prints "NONE", as libnetfilter_conntrack
/// does (`str = states[TCP_CONNTRACK_NONE]`).
pub fn tcp_state_name(state: u8) -> &'static str {
    TCP_STATES
        .get(usize::from(state))
        .copied()
        .unwrap_or(TCP_STATES[0])
}

/// The state a TCP state name stands for, case-insensitive. `LISTEN` is
/// SYN_SENT2's pre-2.6.31 name, which conntrack's `--state` still accepts.
pub fn tcp_state_by_name(name: &str) -> Option<u8> {
    if name.eq_ignore_ascii_case("LISTEN") {
        return tcp_state_by_name("SYN_SENT2");
    }
    TCP_STATES
        .iter()
        .position(|s| s.eq_ignore_ascii_case(name))
        .map(|i| i as u8)
}

/// The TCP state an event shows: only TCP carries ATTR_TCP_STATE.
pub fn shown_tcp_state(ev: &Event) -> Option<u8> {
    ev.tcp_state.filter(|_| ev.l4proto == ipproto::TCP)
}

/// The state the event's line shows, of whichever tracker has states (TCP,
/// SCTP, DCCP): the one `--state` compares.
pub fn shown_state(ev: &Event) -> Option<u8> {
    match ev.l4proto {
        ipproto::TCP => shown_tcp_state(ev),
        ipproto::SCTP => ev.sctp_state,
        ipproto::DCCP => ev.dccp_state,
        _ => None,
    }
}

/// The state names of a protocol's tracker, for `--state`; `None` for a
/// protocol without states.
pub fn state_names(l4proto: u8) -> Option<&'static [&'static str]> {
    match l4proto {
        ipproto::TCP => Some(&TCP_STATES),
        ipproto::SCTP => Some(&SCTP_STATES),
        ipproto::DCCP => Some(&DCCP_STATES),
        _ => None,
    }
}

/// The state a name stands for in a protocol's tracker, case-insensitive
/// (TCP also takes `LISTEN`, see [`tcp_state_by_name`]).
pub fn state_by_name(l4proto: u8, name: &str) -> Option<u8> {
    if l4proto == ipproto::TCP {
        return tcp_state_by_name(name);
    }
    state_names(l4proto)?
        .iter()
        .position(|s| s.eq_ignore_ascii_case(name))
        .map(|i| i as u8)
}

/// SCTP state names, index = state (libnetfilter_conntrack 1.0.9
/// `sctp_states[]`, src/conntrack/snprintf.c), in the order of the kernel's
/// `enum sctp_conntrack`.
pub const SCTP_STATES: [&str; 10] = [
    "NONE",
    "CLOSED",
    "COOKIE_WAIT",
    "COOKIE_ECHOED",
    "ESTABLISHED",
    "SHUTDOWN_SENT",
    "SHUTDOWN_RECD",
    "SHUTDOWN_ACK_SENT",
    "HEARTBEAT_SENT",
    "HEARTBEAT_ACKED",
];

/// DCCP state names, index = state (libnetfilter_conntrack `dccp_states[]`,
/// the kernel's `enum ct_dccp_states`).
pub const DCCP_STATES: [&str; 10] = [
    "NONE", "REQUEST", "RESPOND", "PARTOPEN", "OPEN", "CLOSEREQ", "CLOSING", "TIMEWAIT", "IGNORE",
    "INVALID",
];

/// The SCTP state name; out of range prints "NONE"
/// (`__snprintf_protoinfo_sctp()`).
pub fn sctp_state_name(state: u8) -> &'static str {
    SCTP_STATES
        .get(usize::from(state))
        .copied()
        .unwrap_or(SCTP_STATES[0])
}

/// The DCCP state name; out of range prints "NONE"
/// (`__snprintf_protoinfo_dccp()`).
pub fn dccp_state_name(state: u8) -> &'static str {
    DCCP_STATES
        .get(usize::from(state))
        .copied()
        .unwrap_or(DCCP_STATES[0])
}

/// Whether the kernel reports a state for the protocol in `CTA_PROTOINFO`
/// (its tracker has `to_nlattr`: nf_conntrack_proto_{tcp,sctp,dccp}.c).
pub fn has_state(l4proto: u8) -> bool {
    matches!(l4proto, ipproto::TCP | ipproto::SCTP | ipproto::DCCP)
}

/// Names of `enum ip_conntrack_status` bits, index = bit. Bit 12 is
/// IPS_UNTRACKED on an untracked skb, but an entry in the table with it set is
/// a NAT clash loser.
pub const STATUS_NAMES: [&str; 16] = [
    "EXPECTED",
    "SEEN_REPLY",
    "ASSURED",
    "CONFIRMED",
    "SRC_NAT",
    "DST_NAT",
    "SEQ_ADJUST",
    "SRC_NAT_DONE",
    "DST_NAT_DONE",
    "DYING",
    "FIXED_TIMEOUT",
    "TEMPLATE",
    "NAT_CLASH",
    "HELPER",
    "OFFLOAD",
    "HW_OFFLOAD",
];

/// Names of `enum ip_conntrack_events` bits, index = bit: the kernel's
/// `IPCT_*` names, lower case, without the prefix.
pub const CHANGE_NAMES: [&str; 12] = [
    "new",
    "related",
    "destroy",
    "reply",
    "assured",
    "protoinfo",
    "helper",
    "mark",
    "seqadj",
    "secmark",
    "label",
    "synproxy",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_state_names_both_ways() {
        for (i, name) in TCP_STATES.iter().enumerate() {
            assert_eq!(tcp_state_by_name(name), Some(i as u8));
            assert_eq!(tcp_state_name(i as u8), *name);
        }
        assert_eq!(tcp_state_by_name("time_wait"), Some(7));
        assert_eq!(tcp_state_by_name("Listen"), Some(9));
        assert_eq!(tcp_state_by_name("NEW"), None);
        assert_eq!(tcp_state_by_name(""), None);
    }

    #[test]
    fn sctp_and_dccp_state_names() {
        // As conntrack 1.4.7 printed them on Linux 6.1 (19-protocols:
        // `conntrack -I --state`, a raw INIT, HEARTBEAT and DCCP-Request).
        assert_eq!(sctp_state_name(1), "CLOSED");
        assert_eq!(sctp_state_name(4), "ESTABLISHED");
        assert_eq!(sctp_state_name(7), "SHUTDOWN_ACK_SENT");
        assert_eq!(sctp_state_name(8), "HEARTBEAT_SENT");
        assert_eq!(dccp_state_name(1), "REQUEST");
        assert_eq!(dccp_state_name(4), "OPEN");
        // Past the table: NONE, as libnetfilter_conntrack prints it.
        assert_eq!(sctp_state_name(10), "NONE");
        assert_eq!(dccp_state_name(255), "NONE");
        assert!(has_state(ipproto::SCTP) && has_state(ipproto::DCCP) && has_state(ipproto::TCP));
        assert!(!has_state(ipproto::GRE) && !has_state(ipproto::UDPLITE) && !has_state(253));
    }

    #[test]
    fn numbers_are_the_kernels() {
        assert_eq!(i32::from(AF_INET), libc::AF_INET);
        assert_eq!(i32::from(AF_INET6), libc::AF_INET6);
        for (ours, libc) in [
            (ipproto::ICMP, libc::IPPROTO_ICMP),
            (ipproto::TCP, libc::IPPROTO_TCP),
            (ipproto::UDP, libc::IPPROTO_UDP),
            (ipproto::DCCP, libc::IPPROTO_DCCP),
            (ipproto::GRE, libc::IPPROTO_GRE),
            (ipproto::ICMPV6, libc::IPPROTO_ICMPV6),
            (ipproto::SCTP, libc::IPPROTO_SCTP),
            (ipproto::UDPLITE, libc::IPPROTO_UDPLITE),
        ] {
            assert_eq!(i32::from(ours), libc);
        }
    }
}
