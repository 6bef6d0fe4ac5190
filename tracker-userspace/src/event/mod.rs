//! One model of a conntrack event, independent of where it came from (eBPF
//! ring or ctnetlink). Sources produce `Event`s; filters and outputs consume
//! them and never know the source.

use std::net::IpAddr;
use std::time::SystemTime;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    New,
    Update,
    Destroy,
}

/// The layer-4 identifiers of one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Ids {
    /// tcp, udp, udplite, sctp, dccp.
    Ports {
        sport: u16,
        dport: u16,
    },
    /// icmp and icmpv6.
    Icmp {
        kind: u8,
        code: u8,
        id: u16,
    },
    Gre {
        src_key: u16,
        dst_key: u16,
    },
    /// Protocols conntrack tracks without layer-4 identifiers.
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4Ids,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    /// When the kernel reported the event (wall clock).
    pub time: SystemTime,
    /// `AF_INET` (2) or `AF_INET6` (10).
    pub l3proto: u8,
    /// IP protocol number.
    pub l4proto: u8,
    pub orig: Tuple,
    pub reply: Tuple,
    /// `ct->status` bits (see `tracker_common::status`).
    pub status: u32,
    /// TCP state (`enum tcp_conntrack`), when the event carries protocol info.
    pub tcp_state: Option<u8>,
    /// Remaining lifetime in seconds, when the event carries it.
    pub timeout: Option<u32>,
    pub mark: u32,
    /// The event is a mark change: print the mark even when it is 0.
    pub mark_changed: bool,
    /// Zone id; 0 is the default zone.
    pub zone: u16,
    /// Inode of the entry's network namespace; 0 when unknown.
    pub netns: u32,
    /// Original, then reply direction (acct extension), usually on DESTROY.
    pub counters: Option<[Counters; 2]>,
    /// Start and stop (tstamp extension), ns since the Unix epoch.
    pub start_ns: Option<u64>,
    pub stop_ns: Option<u64>,
    /// Netlink port id when the event was caused by a netlink request.
    pub portid: Option<u32>,
    /// UPDATE: the kernel's event bits (`tracker_common::ipct`), when the
    /// source sees them (eBPF; ctnetlink messages do not carry them).
    pub changes: Option<u16>,
    /// Identity of the connection for pairing NEW and DESTROY: the kernel
    /// object address and the time of its NEW (eBPF), or the ctnetlink id.
    pub conn_id: u64,
}

#[cfg(test)]
impl Event {
    /// A confirmed connection with nothing optional set: the tests' fixture.
    pub(crate) fn bare(kind: EventKind, l4proto: u8, orig: Tuple, reply: Tuple) -> Event {
        Event {
            kind,
            time: std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_012_345),
            l3proto: if orig.src.is_ipv4() { 2 } else { 10 },
            l4proto,
            orig,
            reply,
            status: tracker_common::status::CONFIRMED,
            tcp_state: None,
            timeout: None,
            mark: 0,
            mark_changed: false,
            zone: 0,
            netns: 4026531840,
            counters: None,
            start_ns: None,
            stop_ns: None,
            portid: None,
            changes: None,
            conn_id: 1,
        }
    }
}
