//! Mark-only dumps of the conntrack table over ctnetlink: the counts of the
//! netlink source, and the seed of the eBPF source's count maps.
//!
//! Unlike events, the dump may hold a million entries, so entries are read
//! straight from the receive buffer with netlink-packet-core's borrowing
//! `NlasIterator` (no allocation per entry) and only the fields the counts
//! need are kept. The netlink-packet-netfilter decoder builds about a dozen
//! `Vec`s per entry; `dump_walk_matches_crate_decoder` in the netlink
//! source's tests checks both agree.

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer, NlaBuffer,
    NlasIterator, parse_i32, parse_u16_be, parse_u32_be,
};
use netlink_packet_netfilter::conntrack::ConntrackMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use tracker_common::{FlowTuple, MarkKey, tuple_hash};

use super::{CountRow, sum_rows};
use crate::source::netlink::NetlinkError;
use crate::source::netlink::attrs::*;
use crate::source::netlink::socket::{
    align4, classify, classify_errno, netns_inode, open_ctnetlink, recv_blocking, send_request,
};

/// One entry of the table, as much as the per-mark counts need.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DumpEntry {
    /// Original direction, laid out like the kernel's tuple (see
    /// [`FlowTuple`]): ports, or ICMP id in `src_id` and type, code in
    /// `dst_id`, all in network order.
    pub orig: FlowTuple,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub l3proto: u8,
    pub l4proto: u8,
    pub zone: u16,
    pub mark: u32,
    /// Inode of the netns the dump ran in.
    pub netns: u32,
    /// The kernel's conntrack id (`CTA_ID`), as ctnetlink events carry it.
    pub id: u32,
}

impl DumpEntry {
    /// The hash the kernel hooks store for the entries they counted.
    pub fn tuple_hash(&self) -> u64 {
        tuple_hash(
            &self.orig,
            self.l3proto,
            self.l4proto,
            self.zone,
            self.netns,
        )
    }

    pub fn mark_key(&self) -> MarkKey {
        MarkKey {
            netns: self.netns,
            mark: self.mark,
            l3proto: self.l3proto,
            l4proto: self.l4proto,
            _pad: [0; 2],
        }
    }
}

/// What a dump saw besides its entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DumpStats {
    pub entries: u64,
    /// Entries skipped because they could not be parsed.
    pub malformed: u64,
    /// The kernel flagged the dump as interrupted (`NLM_F_DUMP_INTR`): the
    /// table changed under it, an entry may be missing or seen twice.
    pub interrupted: bool,
}

/// Dumps the conntrack table of the calling thread's netns, both families.
pub fn dump_marks() -> Result<Vec<DumpEntry>, NetlinkError> {
    let mut entries = Vec::with_capacity(table_size_hint());
    let stats = dump_each(|e| entries.push(*e))?;
    if stats.interrupted {
        log::warn!(
            "the conntrack dump was interrupted by table changes; counts may be off by a few"
        );
    }
    if stats.malformed > 0 {
        log::warn!(
            "skipped {} malformed conntrack dump entries",
            stats.malformed
        );
    }
    Ok(entries)
}

/// The rows of a dump's entries in one netns (or all with `None`).
pub fn rows(entries: &[DumpEntry], netns: Option<u32>) -> Vec<CountRow> {
    sum_rows(entries.iter().map(|e| (e.mark_key(), 1)), netns)
}

/// Receive buffer for one dump part. The kernel sizes a part after the
/// largest read so far (capped at about 32 KiB on current kernels); a larger
/// buffer costs nothing and is ready for kernels that allow more.
const DUMP_BUF: usize = 256 * 1024;
const DUMP_SEQ: u32 = 0x7472_6b31;

/// Streams the table to `f` without collecting it.
pub fn dump_each(mut f: impl FnMut(&DumpEntry)) -> Result<DumpStats, NetlinkError> {
    let socket = open_ctnetlink(0)?;
    let netns = netns_inode();
    let request = NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0),
        ConntrackMessage::Get(Vec::new()),
    );
    send_request(&socket, request, NLM_F_REQUEST | NLM_F_DUMP, DUMP_SEQ)?;

    let mut stats = DumpStats::default();
    let mut buf = vec![0u8; DUMP_BUF];
    loop {
        let n = recv_blocking(&socket, &mut buf)
            .map_err(|e| classify("reading the conntrack dump", e))?;
        if n == 0 {
            return Err(NetlinkError::Malformed(
                "the conntrack dump ended without NLMSG_DONE".into(),
            ));
        }
        let mut off = 0;
        while off < n {
            let rest = &buf[off..n];
            let msg = NetlinkBuffer::new_checked(rest)
                .map_err(|e| NetlinkError::Malformed(e.to_string()))?;
            let len = msg.length() as usize;
            if msg.sequence_number() == DUMP_SEQ {
                stats.interrupted |= msg.flags() & NLM_F_DUMP_INTR != 0;
                match msg.message_type() {
                    NLMSG_DONE => {
                        // The payload is an int: 0, or -errno when the dump failed.
                        let code = parse_i32(msg.payload()).unwrap_or(0);
                        return if code < 0 {
                            Err(classify_errno("dumping conntrack", -code))
                        } else {
                            Ok(stats)
                        };
                    }
                    NLMSG_ERROR => {
                        let code = parse_i32(msg.payload()).unwrap_or(0);
                        if code < 0 {
                            return Err(classify_errno("dumping conntrack", -code));
                        }
                    }
                    t if t == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW => {
                        match entry_from_payload(msg.payload(), netns) {
                            Some(e) => {
                                stats.entries += 1;
                                f(&e);
                            }
                            None => stats.malformed += 1,
                        }
                    }
                    _ => {}
                }
            }
            off += align4(len);
        }
    }
}

/// `nf_conntrack_count` of this netns, plus room for entries created while
/// the dump runs.
fn table_size_hint() -> usize {
    std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .map_or(0, |n| n + n / 16 + 64)
}

/// Parses an entry's nfnetlink payload: `nfgenmsg` then attributes.
pub fn entry_from_payload(payload: &[u8], netns: u32) -> Option<DumpEntry> {
    let (&family, attrs) = (payload.first()?, payload.get(4..)?);
    let mut e = DumpEntry {
        l3proto: family,
        netns,
        ..DumpEntry::default()
    };
    let mut have_tuple = false;
    let mut tuple_zone = None;
    let mut zone = None;
    for nla in NlasIterator::new(attrs) {
        let nla = nla.ok()?;
        match nla.kind() {
            CTA_TUPLE_ORIG => {
                (e.l4proto, tuple_zone) = parse_flow_tuple(&nla, &mut e.orig)?;
                have_tuple = true;
            }
            CTA_MARK => e.mark = parse_u32_be(nla.value()).ok()?,
            CTA_ID => e.id = parse_u32_be(nla.value()).ok()?,
            CTA_ZONE => zone = Some(parse_u16_be(nla.value()).ok()?),
            _ => {}
        }
    }
    e.zone = zone.or(tuple_zone).unwrap_or(0);
    have_tuple.then_some(e)
}

/// Fills `t` from a `CTA_TUPLE_*` attribute; returns the protocol number and
/// the tuple's directional zone, if any.
fn parse_flow_tuple(nla: &NlaBuffer<&[u8]>, t: &mut FlowTuple) -> Option<(u8, Option<u16>)> {
    let mut l4proto = None;
    let mut zone = None;
    for part in NlasIterator::new(nla.value()) {
        let part = part.ok()?;
        match part.kind() {
            CTA_TUPLE_IP => {
                for ip in NlasIterator::new(part.value()) {
                    let ip = ip.ok()?;
                    let v = ip.value();
                    match (ip.kind(), v.len()) {
                        (CTA_IP_V4_SRC, 4) | (CTA_IP_V6_SRC, 16) => {
                            t.src[..v.len()].copy_from_slice(v)
                        }
                        (CTA_IP_V4_DST, 4) | (CTA_IP_V6_DST, 16) => {
                            t.dst[..v.len()].copy_from_slice(v)
                        }
                        (CTA_IP_V4_SRC..=CTA_IP_V6_DST, _) => return None,
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for p in NlasIterator::new(part.value()) {
                    let p = p.ok()?;
                    let v = p.value();
                    match p.kind() {
                        CTA_PROTO_NUM => l4proto = Some(*v.first()?),
                        // Ports, GRE keys and the ICMP id are kept as the
                        // kernel stores them: network order.
                        CTA_PROTO_SRC_PORT | CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => {
                            t.src_id = v.get(..2)?.try_into().ok()?;
                        }
                        CTA_PROTO_DST_PORT => t.dst_id = v.get(..2)?.try_into().ok()?,
                        CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => t.dst_id[0] = *v.first()?,
                        CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => t.dst_id[1] = *v.first()?,
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_ZONE => zone = Some(parse_u16_be(part.value()).ok()?),
            _ => {}
        }
    }
    Some((l4proto?, zone))
}
