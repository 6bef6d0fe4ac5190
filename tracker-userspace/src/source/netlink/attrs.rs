//! The ctnetlink attributes netlink-packet-netfilter 0.4 does not model.
//!
//! The crate decodes tuples (addresses, protocol number, ports), status,
//! timeout, mark and TCP protocol info; everything else arrives as
//! `Other(DefaultNla)`. This module reads only that gap: ICMP/ICMPv6 ids,
//! `CTA_ZONE`, `CTA_TUPLE_ZONE`, `CTA_ID`, the acct counters, the tstamp
//! times and the SCTP and DCCP states. Numbers are from
//! `include/uapi/linux/netfilter/nfnetlink_conntrack.h` (uapi, stable). All
//! values are big-endian.

use netlink_packet_core::{
    DefaultNla, NLA_TYPE_MASK, Nla, NlasIterator, parse_u16_be, parse_u32_be, parse_u64_be,
};

use crate::event::Counters;

/// nfnetlink subsystem id of ctnetlink (`NFNL_SUBSYS_CTNETLINK`).
pub const NFNL_SUBSYS_CTNETLINK: u16 = 1;
pub const IPCTNL_MSG_CT_NEW: u16 = 0;
/// `IPCTNL_MSG_CT_GET_STATS`: used as a cheap probe that ctnetlink answers.
pub const IPCTNL_MSG_CT_GET_STATS: u8 = 5;

/// Multicast groups (`enum nfnetlink_groups`).
pub const NFNLGRP_CONNTRACK_NEW: u32 = 1;
pub const NFNLGRP_CONNTRACK_UPDATE: u32 = 2;
pub const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;

// enum ctattr_type
pub const CTA_TUPLE_ORIG: u16 = 1;
pub const CTA_MARK: u16 = 8;
pub const CTA_COUNTERS_ORIG: u16 = 9;
pub const CTA_COUNTERS_REPLY: u16 = 10;
pub const CTA_ID: u16 = 12;
pub const CTA_ZONE: u16 = 18;
pub const CTA_TIMESTAMP: u16 = 20;

// enum ctattr_tuple
pub const CTA_TUPLE_IP: u16 = 1;
pub const CTA_TUPLE_PROTO: u16 = 2;
pub const CTA_TUPLE_ZONE: u16 = 3;

// enum ctattr_ip
pub const CTA_IP_V4_SRC: u16 = 1;
pub const CTA_IP_V4_DST: u16 = 2;
pub const CTA_IP_V6_SRC: u16 = 3;
pub const CTA_IP_V6_DST: u16 = 4;

// enum ctattr_l4proto
pub const CTA_PROTO_NUM: u16 = 1;
pub const CTA_PROTO_SRC_PORT: u16 = 2;
pub const CTA_PROTO_DST_PORT: u16 = 3;
pub const CTA_PROTO_ICMP_ID: u16 = 4;
pub const CTA_PROTO_ICMP_TYPE: u16 = 5;
pub const CTA_PROTO_ICMP_CODE: u16 = 6;
pub const CTA_PROTO_ICMPV6_ID: u16 = 7;
pub const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
pub const CTA_PROTO_ICMPV6_CODE: u16 = 9;

// enum ctattr_protoinfo
pub const CTA_PROTOINFO_DCCP: u16 = 2;
pub const CTA_PROTOINFO_SCTP: u16 = 3;
// enum ctattr_protoinfo_dccp, enum ctattr_protoinfo_sctp
pub const CTA_PROTOINFO_DCCP_STATE: u16 = 1;
pub const CTA_PROTOINFO_SCTP_STATE: u16 = 1;

// enum ctattr_counters
pub const CTA_COUNTERS_PACKETS: u16 = 1;
pub const CTA_COUNTERS_BYTES: u16 = 2;
pub const CTA_COUNTERS32_PACKETS: u16 = 3;
pub const CTA_COUNTERS32_BYTES: u16 = 4;

// enum ctattr_tstamp
pub const CTA_TIMESTAMP_START: u16 = 1;
pub const CTA_TIMESTAMP_STOP: u16 = 2;

/// The largest gap attribute value we read (nested counters with padding are
/// 36 bytes); bigger ones are malformed for our purposes.
const MAX_GAP_VALUE: usize = 64;

/// `DefaultNla` keeps its value private; `emit_value` is the only way out.
/// Copies into a stack buffer: the gap attributes are a few bytes.
pub struct GapValue {
    buf: [u8; MAX_GAP_VALUE],
    len: usize,
    pub kind: u16,
}

impl GapValue {
    pub fn of(nla: &DefaultNla) -> Option<Self> {
        let len = nla.value_len();
        if len > MAX_GAP_VALUE {
            return None;
        }
        let mut buf = [0u8; MAX_GAP_VALUE];
        nla.emit_value(&mut buf[..len]);
        Some(Self {
            buf,
            len,
            kind: nla.kind() & NLA_TYPE_MASK,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    pub fn u8(&self) -> Option<u8> {
        self.bytes().first().copied()
    }

    pub fn u16_be(&self) -> Option<u16> {
        parse_u16_be(self.bytes()).ok()
    }

    pub fn u32_be(&self) -> Option<u32> {
        parse_u32_be(self.bytes()).ok()
    }
}

/// The state (a u8, attribute `state_kind`) inside `CTA_PROTOINFO_SCTP` or
/// `CTA_PROTOINFO_DCCP`; `None` when the nest lacks it or is malformed.
pub fn proto_state(nest: &DefaultNla, state_kind: u16) -> Option<u8> {
    let v = GapValue::of(nest)?;
    NlasIterator::new(v.bytes())
        .filter_map(Result::ok)
        .find(|nla| nla.kind() & NLA_TYPE_MASK == state_kind)
        .and_then(|nla| nla.value().first().copied())
}

/// `CTA_COUNTERS_ORIG/REPLY`: 64-bit counters, or the 32-bit ones old kernels
/// could send.
pub fn parse_counters(value: &[u8]) -> Option<Counters> {
    let mut c = Counters::default();
    for nla in NlasIterator::new(value) {
        let nla = nla.ok()?;
        let v = nla.value();
        match nla.kind() {
            CTA_COUNTERS_PACKETS => c.packets = parse_u64_be(v).ok()?,
            CTA_COUNTERS_BYTES => c.bytes = parse_u64_be(v).ok()?,
            CTA_COUNTERS32_PACKETS => c.packets = parse_u32_be(v).ok()?.into(),
            CTA_COUNTERS32_BYTES => c.bytes = parse_u32_be(v).ok()?.into(),
            _ => {}
        }
    }
    Some(c)
}

/// `CTA_TIMESTAMP`: start (always) and stop (only once the entry died).
pub fn parse_timestamp(value: &[u8]) -> Option<(Option<u64>, Option<u64>)> {
    let (mut start, mut stop) = (None, None);
    for nla in NlasIterator::new(value) {
        let nla = nla.ok()?;
        match nla.kind() {
            CTA_TIMESTAMP_START => start = Some(parse_u64_be(nla.value()).ok()?),
            CTA_TIMESTAMP_STOP => stop = Some(parse_u64_be(nla.value()).ok()?),
            _ => {}
        }
    }
    Some((start, stop))
}
