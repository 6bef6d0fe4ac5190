//! Whether a connection is NATed, the way libnetfilter_conntrack decides it
//! for conntrack's `-n`/`-g`/`-j` (`getobjopt_is_snat/spat/dnat/dpat()` in
//! src/conntrack/objopt.c): the NAT hook has run for that manip
//! (`IPS_*_NAT_DONE`) and the reply tuple differs from the original one.
//! `*_NAT_DONE` alone is not enough: a null binding sets it without changing
//! anything.

use tracker_common::status;

use crate::event::{Event, L4Ids, Tuple};

/// The original source was rewritten: the reply no longer goes back to it.
pub fn is_src_nat(ev: &Event) -> bool {
    ev.status & status::SRC_NAT != 0
        || (ev.status & status::SRC_NAT_DONE != 0
            && (ev.reply.dst != ev.orig.src || src_id(&ev.orig) != dst_id(&ev.reply)))
}

/// The original destination was rewritten: the reply comes from elsewhere.
pub fn is_dst_nat(ev: &Event) -> bool {
    ev.status & status::DST_NAT != 0
        || (ev.status & status::DST_NAT_DONE != 0
            && (ev.reply.src != ev.orig.dst || dst_id(&ev.orig) != src_id(&ev.reply)))
}

/// The identifier a source manip can change: source port, GRE source key,
/// ICMP id. (libnetfilter_conntrack compares the raw `l4src.all` with the
/// reply's `l4dst.all`, which for ICMP pits the id against type/code; the id
/// is what NAT rewrites, so we compare ids.)
fn src_id(t: &Tuple) -> Option<u16> {
    match t.l4 {
        L4Ids::Ports { sport, .. } => Some(sport),
        L4Ids::Gre { src_key, .. } => Some(src_key),
        L4Ids::Icmp { id, .. } => Some(id),
        L4Ids::None => None,
    }
}

/// The identifier at the other end: destination port, GRE destination key,
/// ICMP id (the same field in both directions).
fn dst_id(t: &Tuple) -> Option<u16> {
    match t.l4 {
        L4Ids::Ports { dport, .. } => Some(dport),
        L4Ids::Gre { dst_key, .. } => Some(dst_key),
        L4Ids::Icmp { id, .. } => Some(id),
        L4Ids::None => None,
    }
}
