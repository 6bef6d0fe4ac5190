//! Kernel record → `Event`, for the eBPF source.
//!
//! The record holds raw kernel values: a copy of the entry's `struct nf_conn`
//! bytes, jiffies, boot-clock times. The kernel's BTF offsets (the same the
//! programs use) pick the fields out of the copy; the host's `Clock` and
//! `KernelProfile` ([`super::host`]) turn them into what `conntrack -E`
//! shows on the same kernel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tracker_common::{CONN_BYTES, FlowRecord, FlowTuple, KernelOffsets, flags, ipct, kind};

use crate::event::vocabulary::{AF_INET6, has_state, ipproto};
use crate::event::{Counters, Event, EventKind, L4Ids, Tuple, ZoneDir, vocabulary};

use super::host::{Clock, KernelProfile};

fn address(l3proto: u8, raw: &[u8; 16]) -> IpAddr {
    if l3proto == AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(*raw))
    } else {
        IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
    }
}

/// Layer-4 identifiers from the raw `u` unions of both directions.
fn l4_ids(l4proto: u8, t: &FlowTuple) -> L4Ids {
    let src = u16::from_be_bytes(t.src_id);
    let dst = u16::from_be_bytes(t.dst_id);
    // ICMP keeps its id where the ports are and type/code in the destination.
    vocabulary::l4_ids(l4proto, src, dst, src, t.dst_id[0], t.dst_id[1])
}

fn tuple(l3proto: u8, l4proto: u8, t: &FlowTuple) -> Tuple {
    Tuple {
        src: address(l3proto, &t.src),
        dst: address(l3proto, &t.dst),
        l4: l4_ids(l4proto, t),
    }
}

/// The fields of `struct nf_conn` a record's copy holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnFields {
    pub status: u32,
    /// `ct->timeout`: absolute jiffies (low 32 bits) once confirmed.
    pub timeout: u32,
    pub mark: u32,
    pub zone_id: u16,
    /// `ct->zone.dir`: `NF_CT_ZONE_DIR_*` bits.
    pub zone_dir: u8,
    pub l3proto: u8,
    pub l4proto: u8,
    pub tcp_state: u8,
    /// `proto.sctp.state` of an SCTP entry, `proto.dccp.state` of a DCCP
    /// one; `None` for other protocols and where the kernel lacks the field
    /// (no tracker for the protocol: its entries are generic, stateless).
    pub sctp_state: Option<u8>,
    pub dccp_state: Option<u8>,
    pub orig: FlowTuple,
    pub reply: FlowTuple,
}

/// `N` bytes at kernel offset `off` of the copy; `None` when the kernel
/// lacks the field (or the copy does not reach it).
fn bytes_at<const N: usize>(
    conn: &[u8; CONN_BYTES],
    o: &KernelOffsets,
    off: u32,
) -> Option<[u8; N]> {
    if off == KernelOffsets::ABSENT {
        return None;
    }
    let rel = off.checked_sub(o.conn_start)? as usize;
    conn.get(rel..rel + N)?.try_into().ok()
}

fn u32_at(conn: &[u8; CONN_BYTES], o: &KernelOffsets, off: u32) -> u32 {
    bytes_at(conn, o, off).map_or(0, u32::from_le_bytes)
}

/// One direction's tuple at kernel offset `base` of the copy.
fn tuple_at(conn: &[u8; CONN_BYTES], o: &KernelOffsets, base: u32) -> FlowTuple {
    let at = |field: u32| base.saturating_add(field);
    FlowTuple {
        src: bytes_at(conn, o, at(o.tuple_src_u3)).unwrap_or_default(),
        dst: bytes_at(conn, o, at(o.tuple_dst_u3)).unwrap_or_default(),
        src_id: bytes_at(conn, o, at(o.tuple_src_u)).unwrap_or_default(),
        dst_id: bytes_at(conn, o, at(o.tuple_dst_u)).unwrap_or_default(),
        _pad: [0; 4],
    }
}

/// Reads the fields out of a record's copy of the entry.
pub fn conn_fields(conn: &[u8; CONN_BYTES], o: &KernelOffsets) -> ConnFields {
    let orig = o.ct_tuple;
    let l3: u16 =
        bytes_at(conn, o, orig.saturating_add(o.tuple_l3num)).map_or(0, u16::from_le_bytes);
    let l4: u8 = bytes_at::<1>(conn, o, orig.saturating_add(o.tuple_protonum)).map_or(0, |b| b[0]);
    ConnFields {
        // `unsigned long`: the low 32 bits hold every defined bit.
        status: u32_at(conn, o, o.ct_status),
        timeout: u32_at(conn, o, o.ct_timeout),
        mark: u32_at(conn, o, o.ct_mark),
        zone_id: bytes_at(conn, o, o.ct_zone).map_or(0, u16::from_le_bytes),
        // Kernels without the field (before 4.3) have zones for both directions only.
        zone_dir: bytes_at::<1>(conn, o, o.ct_zone_dir).map_or(3, |b| b[0]),
        l3proto: l3 as u8,
        l4proto: l4,
        tcp_state: if l4 == ipproto::TCP {
            bytes_at::<1>(conn, o, o.ct_tcp_state).map_or(0, |b| b[0])
        } else {
            0
        },
        // SCTP's state is an enum: its first byte (little endian, like every
        // field here) holds all of them.
        sctp_state: (l4 == ipproto::SCTP)
            .then(|| bytes_at::<1>(conn, o, o.ct_sctp_state).map(|b| b[0]))
            .flatten(),
        dccp_state: (l4 == ipproto::DCCP)
            .then(|| bytes_at::<1>(conn, o, o.ct_dccp_state).map(|b| b[0]))
            .flatten(),
        orig: tuple_at(conn, o, orig),
        reply: tuple_at(conn, o, orig.saturating_add(o.tuplehash_size)),
    }
}

/// The inverse of [`conn_fields`]: lays `f` out in `conn` as the kernel
/// would, for records made up by benchmarks and tests.
pub fn encode_conn(f: &ConnFields, o: &KernelOffsets, conn: &mut [u8; CONN_BYTES]) {
    let mut put = |off: u32, bytes: &[u8]| {
        if off == KernelOffsets::ABSENT {
            return;
        }
        if let Some(rel) = off.checked_sub(o.conn_start)
            && let Some(dst) = conn.get_mut(rel as usize..rel as usize + bytes.len())
        {
            dst.copy_from_slice(bytes);
        }
    };
    put(o.ct_status, &(f.status as u64).to_le_bytes());
    put(o.ct_timeout, &f.timeout.to_le_bytes());
    put(o.ct_mark, &f.mark.to_le_bytes());
    put(o.ct_zone, &f.zone_id.to_le_bytes());
    put(o.ct_zone_dir, &[f.zone_dir]);
    put(o.ct_tcp_state, &[f.tcp_state]);
    if let Some(s) = f.sctp_state {
        put(o.ct_sctp_state, &(u32::from(s)).to_le_bytes());
    }
    if let Some(s) = f.dccp_state {
        put(o.ct_dccp_state, &[s]);
    }
    for (dir, t) in [(0, &f.orig), (1, &f.reply)] {
        let base = o.ct_tuple + dir * o.tuplehash_size;
        put(base + o.tuple_src_u3, &t.src);
        put(base + o.tuple_src_u, &t.src_id);
        put(base + o.tuple_l3num, &(f.l3proto as u16).to_le_bytes());
        put(base + o.tuple_dst_u3, &t.dst);
        put(base + o.tuple_dst_u, &t.dst_id);
        put(base + o.tuple_protonum, &[f.l4proto]);
    }
}

/// Names one connection: the same for its NEW and DESTROY (same address,
/// same generation). Mixed, then cut to 53 bits so JSON readers that hold
/// numbers as doubles (jq, JavaScript) keep it exact.
fn conn_id(ct: u64, generation: u64) -> u64 {
    // splitmix64's finaliser: neighbouring addresses and times spread out.
    let mut z = ct ^ generation.rotate_left(32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) & ((1 << 53) - 1)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes, expected {1}")]
    Size(usize, usize),
    #[error("record version {0}, this tracker reads {1}")]
    Version(u16, u16),
    #[error("unknown record kind {0}")]
    Kind(u32),
}

/// Reads a record from ring bytes (which carry no alignment guarantee).
pub fn record(bytes: &[u8]) -> Result<FlowRecord, DecodeError> {
    let size = std::mem::size_of::<FlowRecord>();
    if bytes.len() < size {
        return Err(DecodeError::Size(bytes.len(), size));
    }
    // SAFETY: FlowRecord is plain old data and `bytes` holds enough of it.
    let r: FlowRecord = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    if r.header.version != tracker_common::RECORD_VERSION {
        return Err(DecodeError::Version(
            r.header.version,
            tracker_common::RECORD_VERSION,
        ));
    }
    Ok(r)
}

/// What decoding needs besides the record: the kernel's offsets, its clock
/// and what its ctnetlink shows.
#[derive(Clone, Copy, Debug)]
pub struct Decoder {
    pub offsets: KernelOffsets,
    pub clock: Clock,
    pub profile: KernelProfile,
}

impl Decoder {
    /// Ring bytes → `Event`.
    pub fn decode(&self, bytes: &[u8]) -> Result<Event, DecodeError> {
        event(&record(bytes)?, &self.offsets, &self.clock, &self.profile)
    }
}

pub fn event(
    r: &FlowRecord,
    offsets: &KernelOffsets,
    clock: &Clock,
    profile: &KernelProfile,
) -> Result<Event, DecodeError> {
    let kind = match r.header.kind {
        kind::NEW => EventKind::New,
        kind::DESTROY => EventKind::Destroy,
        kind::UPDATE => EventKind::Update,
        k => return Err(DecodeError::Kind(k)),
    };
    // What ctnetlink puts into the message, hence what conntrack -E prints:
    // protocol info on NEW (and DESTROY from 5.15), on UPDATE only when it
    // changed; the mark when non-zero or when it changed.
    let c = conn_fields(&r.conn, offsets);
    let changes = (kind == EventKind::Update).then_some(r.events);
    let changed = |bit: u16| changes.is_some_and(|c| c & bit != 0);
    let f = r.header.flags;
    let shows_protoinfo = match kind {
        EventKind::New => true,
        EventKind::Update => changed(ipct::PROTOINFO),
        EventKind::Destroy => profile.destroy_has_timeout,
    };
    let hz = profile.hz.max(1) as i64;
    // ctnetlink reports whole seconds, rounded down, never negative.
    let remaining = c.timeout.wrapping_sub(r.jiffies) as i32;
    let secs = (remaining.max(0) as i64 / hz) as u32;
    let timeout = match kind {
        EventKind::Destroy if !profile.destroy_has_timeout || secs == 0 => None,
        _ => Some(secs),
    };
    // Only TCP's, SCTP's and DCCP's trackers report a state.
    let state_shown = shows_protoinfo && has_state(c.l4proto);
    Ok(Event {
        kind,
        time: clock.wall(r.header.time_ns),
        l3proto: c.l3proto,
        l4proto: c.l4proto,
        orig: tuple(c.l3proto, c.l4proto, &c.orig),
        reply: tuple(c.l3proto, c.l4proto, &c.reply),
        status: c.status,
        tcp_state: (state_shown && c.l4proto == ipproto::TCP).then_some(c.tcp_state),
        sctp_state: c.sctp_state.filter(|_| state_shown),
        dccp_state: c.dccp_state.filter(|_| state_shown),
        timeout,
        mark: c.mark,
        // ctnetlink reports the mark of entries it inserted even when it is 0
        // (its NEW event carries IPCT_MARK), as conntrack -E shows.
        mark_changed: (kind == EventKind::New && f & flags::NETLINK_INSERT != 0)
            || changed(ipct::MARK),
        zone: c.zone_id,
        zone_dir: ZoneDir::from_bits(c.zone_dir),
        netns: r.netns,
        counters: (f & flags::HAS_ACCT != 0 && kind == EventKind::Destroy).then_some([
            Counters {
                packets: r.counters[0].packets,
                bytes: r.counters[0].bytes,
            },
            Counters {
                packets: r.counters[1].packets,
                bytes: r.counters[1].bytes,
            },
        ]),
        start_ns: (f & flags::HAS_TSTAMP != 0 && kind == EventKind::Destroy).then_some(r.start_ns),
        stop_ns: (f & flags::HAS_TSTAMP != 0 && kind == EventKind::Destroy && r.stop_ns != 0)
            .then_some(r.stop_ns),
        portid: (f & flags::USERSPACE != 0).then_some(r.portid),
        changes,
        conn_id: conn_id(r.ct, r.generation),
        ct_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};
    use tracker_common::RecordHeader;

    /// A layout shaped like Debian 6.1's `struct nf_conn`; decoding only
    /// needs it to agree with how the records below are written.
    const OFFSETS: KernelOffsets = KernelOffsets {
        conn_start: 8,
        conn_len: 225,
        ct_timeout: 8,
        ct_zone: 12,
        ct_zone_dir: 15,
        ct_tuple: 16,
        tuplehash_size: 56,
        tuple_src_u3: 0,
        tuple_src_u: 16,
        tuple_l3num: 18,
        tuple_dst_u3: 20,
        tuple_dst_u: 36,
        tuple_protonum: 38,
        ct_status: 128,
        ct_net: 136,
        ct_mark: 168,
        ct_ext: 176,
        ct_tcp_state: 224,
        // The `proto` union starts 40 bytes before the TCP state (after
        // `struct ip_ct_tcp_state seen[2]`): SCTP's state first, DCCP's after
        // its two roles.
        ct_sctp_state: 184,
        ct_dccp_state: 186,
        ..KernelOffsets::absent()
    };

    /// Jiffies when the test records were made: near the 32-bit wrap, which
    /// the remaining time must survive.
    const NOW_JIFFIES: u32 = u32::MAX - 1000;

    fn tcp_fields() -> ConnFields {
        let mut f = ConnFields {
            l3proto: 2,
            l4proto: 6,
            tcp_state: 1,
            timeout: NOW_JIFFIES.wrapping_add(120 * 250 + 3),
            status: 8,
            ..Default::default()
        };
        f.orig.src[..4].copy_from_slice(&[127, 0, 0, 1]);
        f.orig.dst[..4].copy_from_slice(&[127, 0, 0, 2]);
        f.orig.src_id = 40000u16.to_be_bytes();
        f.orig.dst_id = 80u16.to_be_bytes();
        f.reply.src[..4].copy_from_slice(&[127, 0, 0, 2]);
        f.reply.dst[..4].copy_from_slice(&[127, 0, 0, 1]);
        f.reply.src_id = 80u16.to_be_bytes();
        f.reply.dst_id = 40000u16.to_be_bytes();
        f
    }

    fn record_of(f: &ConnFields) -> FlowRecord {
        let mut r = FlowRecord {
            header: RecordHeader {
                kind: kind::NEW,
                version: tracker_common::RECORD_VERSION,
                flags: 0,
                time_ns: 5_000_000_000,
            },
            jiffies: NOW_JIFFIES,
            ..Default::default()
        };
        encode_conn(f, &OFFSETS, &mut r.conn);
        r
    }

    fn tcp_record() -> FlowRecord {
        record_of(&tcp_fields())
    }

    fn decode(r: &FlowRecord, profile: &KernelProfile) -> Event {
        event(r, &OFFSETS, &Clock { offset_ns: 0 }, profile).unwrap()
    }

    #[test]
    fn fields_come_out_of_the_copy_where_the_offsets_say() {
        let mut f = tcp_fields();
        f.mark = 0x0102_0304;
        f.zone_id = 7;
        f.status = 0x1ff;
        assert_eq!(conn_fields(&record_of(&f).conn, &OFFSETS), f);
        // A kernel without the mark field (CONFIG_NF_CONNTRACK_MARK unset).
        let no_mark = KernelOffsets {
            ct_mark: KernelOffsets::ABSENT,
            ..OFFSETS
        };
        assert_eq!(conn_fields(&record_of(&f).conn, &no_mark).mark, 0);
    }

    #[test]
    fn decodes_the_reply_tuple() {
        let e = decode(&tcp_record(), &PROFILE);
        assert_eq!(e.reply.src, "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            e.reply.l4,
            L4Ids::Ports {
                sport: 80,
                dport: 40000
            }
        );
    }

    const PROFILE: KernelProfile = KernelProfile {
        hz: 250,
        destroy_has_timeout: true,
    };

    #[test]
    fn decodes_tcp_new() {
        let e = decode(&tcp_record(), &PROFILE);
        assert_eq!(e.kind, EventKind::New);
        assert_eq!(e.timeout, Some(120));
        assert_eq!(e.tcp_state, Some(1));
        assert_eq!(e.orig.src, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            e.orig.l4,
            L4Ids::Ports {
                sport: 40000,
                dport: 80
            }
        );
        assert_eq!(e.time, UNIX_EPOCH + Duration::from_secs(5));
    }

    #[test]
    fn destroy_timeout_follows_the_kernel_profile() {
        let mut r = tcp_record();
        r.header.kind = kind::DESTROY;
        let e = decode(&r, &PROFILE);
        assert_eq!(e.timeout, Some(120));
        assert_eq!(e.tcp_state, Some(1));
        let old = KernelProfile {
            destroy_has_timeout: false,
            ..PROFILE
        };
        assert_eq!(decode(&r, &old).timeout, None);
        assert_eq!(decode(&r, &old).tcp_state, None);
        // Expired 40 jiffies ago, across the 32-bit wrap of jiffies.
        r.jiffies = NOW_JIFFIES.wrapping_add(120 * 250 + 43);
        assert_eq!(decode(&r, &PROFILE).timeout, None);
    }

    #[test]
    fn update_shows_state_and_mark_only_when_they_changed() {
        let mut r = tcp_record();
        r.header.kind = kind::UPDATE;
        r.events = ipct::REPLY;
        let e = decode(&r, &PROFILE);
        assert_eq!(e.kind, EventKind::Update);
        assert_eq!(e.timeout, Some(120));
        assert_eq!(e.tcp_state, None);
        assert!(!e.mark_changed);
        assert_eq!(e.changes, Some(ipct::REPLY));
        r.events = ipct::PROTOINFO | ipct::ASSURED | ipct::MARK;
        let e = decode(&r, &PROFILE);
        assert_eq!(e.tcp_state, Some(1));
        assert!(e.mark_changed);
        assert_eq!(e.counters, None);
        // NEW and DESTROY carry no event bits.
        r.header.kind = kind::NEW;
        assert_eq!(decode(&r, &PROFILE).changes, None);
    }

    /// An entry of `l4proto` between 127.0.0.1 and 127.0.0.2 with these
    /// layer-4 ids (ports or GRE keys, network order) in both directions.
    fn fields_of(l4proto: u8, src_id: u16, dst_id: u16) -> ConnFields {
        let mut f = tcp_fields();
        f.l4proto = l4proto;
        f.tcp_state = 0;
        f.orig.src_id = src_id.to_be_bytes();
        f.orig.dst_id = dst_id.to_be_bytes();
        f.reply.src_id = dst_id.to_be_bytes();
        f.reply.dst_id = src_id.to_be_bytes();
        f
    }

    #[test]
    fn sctp_and_dccp_states_come_from_their_union_members() {
        let mut f = fields_of(ipproto::SCTP, 5501, 5502);
        f.sctp_state = Some(2);
        let r = record_of(&f);
        assert_eq!(conn_fields(&r.conn, &OFFSETS), f);
        let e = decode(&r, &PROFILE);
        assert_eq!(
            (e.tcp_state, e.sctp_state, e.dccp_state),
            (None, Some(2), None)
        );
        // DCCP's state sits after its two roles, in its own member.
        let mut f = fields_of(ipproto::DCCP, 5601, 5602);
        f.dccp_state = Some(1);
        let mut r = record_of(&f);
        let e = decode(&r, &PROFILE);
        assert_eq!(
            (e.tcp_state, e.sctp_state, e.dccp_state),
            (None, None, Some(1))
        );
        // A DESTROY carries the state from 5.15 on, like the timeout.
        r.header.kind = kind::DESTROY;
        assert_eq!(decode(&r, &PROFILE).dccp_state, Some(1));
        let old = KernelProfile {
            destroy_has_timeout: false,
            ..PROFILE
        };
        assert_eq!(decode(&r, &old).dccp_state, None);
        // An UPDATE only when the protocol info changed.
        r.header.kind = kind::UPDATE;
        r.events = ipct::REPLY;
        assert_eq!(decode(&r, &PROFILE).dccp_state, None);
        r.events = ipct::PROTOINFO;
        assert_eq!(decode(&r, &PROFILE).dccp_state, Some(1));
        // A kernel without the DCCP tracker (6.18 here) has no such field: its
        // DCCP entries are generic and show no state.
        let no_dccp = KernelOffsets {
            ct_dccp_state: KernelOffsets::ABSENT,
            ..OFFSETS
        };
        r.header.kind = kind::NEW;
        let e = event(&r, &no_dccp, &Clock { offset_ns: 0 }, &PROFILE).unwrap();
        assert_eq!(e.dccp_state, None);
    }

    #[test]
    fn other_protocols_show_no_state_whatever_the_union_holds() {
        for l4proto in [ipproto::GRE, ipproto::UDPLITE, ipproto::UDP, 253] {
            let mut r = record_of(&fields_of(l4proto, 0, 0x1a2b));
            // Garbage where the states would be (GRE keeps its timeouts there).
            for off in [
                OFFSETS.ct_sctp_state,
                OFFSETS.ct_dccp_state,
                OFFSETS.ct_tcp_state,
            ] {
                r.conn[(off - OFFSETS.conn_start) as usize] = 3;
            }
            let e = decode(&r, &PROFILE);
            assert_eq!(
                (e.tcp_state, e.sctp_state, e.dccp_state),
                (None, None, None)
            );
        }
    }

    /// Records shaped like the entries of `tests/scenarios/19-protocols.sh`,
    /// decoded and printed, against the lines conntrack 1.4.7 printed for
    /// them on Linux 6.1, and 5.10 where said (its ` progname=conntrack`
    /// suffix left out).
    #[test]
    fn decoded_records_print_as_conntrack_printed_them() {
        use crate::output::conntrack_text::{TextOptions, format_event};
        let line = |r: &FlowRecord| {
            let mut s = String::new();
            format_event(&mut s, &decode(r, &PROFILE), TextOptions::default());
            s
        };
        let hz = PROFILE.hz;

        // conntrack -I -p sctp ... --state SHUTDOWN_ACK_SENT -t 60
        let mut f = fields_of(ipproto::SCTP, 5505, 5506);
        f.orig.src[..4].copy_from_slice(&[10, 9, 9, 1]);
        f.orig.dst[..4].copy_from_slice(&[10, 9, 9, 2]);
        f.reply.src[..4].copy_from_slice(&[10, 9, 9, 2]);
        f.reply.dst[..4].copy_from_slice(&[10, 9, 9, 1]);
        f.sctp_state = Some(7);
        f.timeout = NOW_JIFFIES.wrapping_add(60 * hz + 10);
        let mut r = record_of(&f);
        r.header.flags = flags::NETLINK_INSERT | flags::USERSPACE;
        r.portid = 413;
        assert_eq!(
            line(&r),
            "    [NEW] sctp     132 60 SHUTDOWN_ACK_SENT src=10.9.9.1 dst=10.9.9.2 sport=5505 \
             dport=5506 [UNREPLIED] src=10.9.9.2 dst=10.9.9.1 sport=5506 dport=5505 mark=0 \
             [USERSPACE] portid=413\n"
        );

        // Its DESTROY on Linux 5.10 (kprobes): before 5.15 ctnetlink adds
        // neither the timeout nor the state to a DESTROY.
        r.header.kind = kind::DESTROY;
        r.header.flags = flags::HAS_ACCT | flags::HAS_TSTAMP | flags::USERSPACE;
        r.portid = 341;
        r.start_ns = 1_796_381_749_300_000_000;
        r.stop_ns = 1_796_381_749_700_000_000;
        let old = KernelProfile {
            destroy_has_timeout: false,
            ..PROFILE
        };
        let mut s = String::new();
        format_event(&mut s, &decode(&r, &old), TextOptions::default());
        assert_eq!(
            s,
            "[DESTROY] sctp     132 src=10.9.9.1 dst=10.9.9.2 sport=5505 dport=5506 packets=0 \
             bytes=0 [UNREPLIED] src=10.9.9.2 dst=10.9.9.1 sport=5506 dport=5505 packets=0 \
             bytes=0 delta-time=0 [USERSPACE] portid=341\n"
        );

        // A raw DCCP-Request, flushed 12 s later.
        let mut f = fields_of(ipproto::DCCP, 5601, 5602);
        f.dccp_state = Some(1);
        f.timeout = NOW_JIFFIES.wrapping_add(227 * hz + 100);
        let mut r = record_of(&f);
        r.header.kind = kind::DESTROY;
        r.header.flags = flags::HAS_ACCT | flags::HAS_TSTAMP | flags::USERSPACE;
        r.portid = 427;
        r.counters[0] = tracker_common::Counters {
            packets: 1,
            bytes: 40,
        };
        r.start_ns = 1_796_381_749_300_000_000;
        r.stop_ns = 1_796_381_761_200_000_000;
        assert_eq!(
            line(&r),
            "[DESTROY] dccp     33 227 REQUEST src=127.0.0.1 dst=127.0.0.2 sport=5601 dport=5602 \
             packets=1 bytes=40 [UNREPLIED] src=127.0.0.2 dst=127.0.0.1 sport=5602 dport=5601 \
             packets=0 bytes=0 delta-time=12 [USERSPACE] portid=427\n"
        );

        // GRE version 1 (PPTP) with call id 0x1a2b: the key sits in the
        // destination's `u`, the source key is 0 without a PPTP keymap.
        let mut f = fields_of(ipproto::GRE, 0, 0x1a2b);
        f.timeout = NOW_JIFFIES.wrapping_add(120 * hz + 5);
        assert_eq!(
            line(&record_of(&f)),
            "    [NEW] gre      47 120 src=127.0.0.1 dst=127.0.0.2 srckey=0x0 dstkey=0x1a2b \
             [UNREPLIED] src=127.0.0.2 dst=127.0.0.1 srckey=0x1a2b dstkey=0x0\n"
        );

        // Protocol 253 (no tracker, no ids), both ways.
        let mut f = fields_of(253, 0, 0);
        f.orig.dst[..4].copy_from_slice(&[127, 0, 0, 4]);
        f.reply.src[..4].copy_from_slice(&[127, 0, 0, 4]);
        f.status |= tracker_common::status::SEEN_REPLY;
        f.timeout = NOW_JIFFIES.wrapping_add(599 * hz + 200);
        let mut r = record_of(&f);
        r.header.kind = kind::DESTROY;
        r.header.flags = flags::HAS_ACCT | flags::HAS_TSTAMP | flags::USERSPACE;
        r.portid = 427;
        r.counters = [
            tracker_common::Counters {
                packets: 2,
                bytes: 64,
            },
            tracker_common::Counters {
                packets: 1,
                bytes: 32,
            },
        ];
        r.start_ns = 1_796_381_749_900_000_000;
        r.stop_ns = 1_796_381_750_100_000_000;
        assert_eq!(
            line(&r),
            "[DESTROY] unknown  253 599 src=127.0.0.1 dst=127.0.0.4 packets=2 bytes=64 \
             src=127.0.0.4 dst=127.0.0.1 packets=1 bytes=32 delta-time=1 [USERSPACE] portid=427\n"
        );
    }

    #[test]
    fn decodes_icmp_ids() {
        let t = FlowTuple {
            src_id: 0x1234u16.to_be_bytes(),
            dst_id: [8, 0],
            ..Default::default()
        };
        assert_eq!(
            l4_ids(1, &t),
            L4Ids::Icmp {
                kind: 8,
                code: 0,
                id: 0x1234
            }
        );
    }

    #[test]
    fn rejects_other_versions_and_short_records() {
        let mut r = tcp_record();
        r.header.version = 99;
        let bytes = unsafe {
            std::slice::from_raw_parts(
                (&r as *const FlowRecord).cast::<u8>(),
                std::mem::size_of::<FlowRecord>(),
            )
        };
        assert!(matches!(record(bytes), Err(DecodeError::Version(99, _))));
        assert!(matches!(
            record(&bytes[..10]),
            Err(DecodeError::Size(10, _))
        ));
    }

    #[test]
    fn conn_ids_fit_a_double_and_pair_new_with_destroy() {
        let a = conn_id(0xffff_8880_0123_4500, 5_000_000_000);
        assert_eq!(a, conn_id(0xffff_8880_0123_4500, 5_000_000_000));
        assert!(a < 1 << 53);
        // The slab reuses addresses: a later connection at the same address differs.
        assert_ne!(a, conn_id(0xffff_8880_0123_4500, 7_000_000_000));
        assert_ne!(a, conn_id(0xffff_8880_0123_4600, 5_000_000_000));
    }
}
