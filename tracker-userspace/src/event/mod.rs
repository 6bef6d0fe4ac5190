//! One model of a conntrack event, independent of where it came from (eBPF
//! ring or ctnetlink). Sources produce `Event`s; filters and outputs consume
//! them and never know the source.

pub mod vocabulary;

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

/// Which directions an entry's zone applies to (`struct nf_conntrack_zone`'s
/// `dir`, include/uapi/linux/netfilter/nf_conntrack_zones_common.h). ctnetlink
/// reports a one-direction zone inside that direction's tuple
/// (`ctnetlink_dump_zone_id()`), and conntrack prints it as `zone-orig=` /
/// `zone-reply=` after that tuple instead of `zone=` at the end.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ZoneDir {
    /// `NF_CT_DEFAULT_ZONE_DIR`: both directions (`--zone`, `ct zone set`).
    #[default]
    Both,
    /// `NF_CT_ZONE_DIR_ORIG` only (`--orig-zone`).
    Orig,
    /// `NF_CT_ZONE_DIR_REPL` only (`--reply-zone`).
    Reply,
}

impl ZoneDir {
    /// From the kernel's `dir` bits. Every kernel path that sets a zone sets
    /// one or both bits; anything else is read as both, like the default zone.
    pub fn from_bits(dir: u8) -> ZoneDir {
        match dir {
            1 => ZoneDir::Orig,
            2 => ZoneDir::Reply,
            _ => ZoneDir::Both,
        }
    }
}

impl Event {
    /// The zone id as conntrack's filters see it in one slot: `-w` reads
    /// `ATTR_ZONE` (from `CTA_ZONE`, a zone for both directions),
    /// `--orig-zone`/`--reply-zone` read `ATTR_ORIG_ZONE`/`ATTR_REPL_ZONE`
    /// (from `CTA_TUPLE_ZONE`, a one-direction zone). An absent attribute
    /// compares as 0, so `--orig-zone 0` matches a `--zone 5` entry and
    /// `-w 5` does not match an `--orig-zone 5` one (checked against
    /// conntrack 1.4.7 -E).
    pub fn zone_in(&self, dir: ZoneDir) -> u16 {
        if self.zone_dir == dir { self.zone } else { 0 }
    }
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
    /// SCTP state (`enum sctp_conntrack`), likewise; ctnetlink's
    /// `CTA_PROTOINFO_SCTP_STATE`, libnetfilter_conntrack's ATTR_SCTP_STATE.
    pub sctp_state: Option<u8>,
    /// DCCP state (`enum ct_dccp_states`), likewise (`CTA_PROTOINFO_DCCP_STATE`).
    pub dccp_state: Option<u8>,
    /// Remaining lifetime in seconds, when the event carries it.
    pub timeout: Option<u32>,
    pub mark: u32,
    /// The event is a mark change: print the mark even when it is 0.
    pub mark_changed: bool,
    /// Zone id; 0 is the default zone.
    pub zone: u16,
    /// The directions `zone` applies to.
    pub zone_dir: ZoneDir,
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
    /// The kernel's conntrack id (`CTA_ID`, `-o id`), when the source has it:
    /// ctnetlink does; the eBPF hooks cannot compute it, the kernel derives it
    /// with a boot-time siphash key (`nf_ct_get_id()`).
    pub ct_id: Option<u32>,
}

#[cfg(test)]
impl Event {
    /// A confirmed connection with nothing optional set: the tests' fixture.
    pub(crate) fn bare(kind: EventKind, l4proto: u8, orig: Tuple, reply: Tuple) -> Event {
        Event {
            kind,
            time: std::time::UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_012_345),
            l3proto: if orig.src.is_ipv4() {
                vocabulary::AF_INET
            } else {
                vocabulary::AF_INET6
            },
            l4proto,
            orig,
            reply,
            status: tracker_common::status::CONFIRMED,
            tcp_state: None,
            sctp_state: None,
            dccp_state: None,
            timeout: None,
            mark: 0,
            mark_changed: false,
            zone: 0,
            zone_dir: ZoneDir::Both,
            netns: 4026531840,
            counters: None,
            start_ns: None,
            stop_ns: None,
            portid: None,
            changes: None,
            conn_id: 1,
            ct_id: None,
        }
    }
}
