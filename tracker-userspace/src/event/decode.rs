//! Kernel record → `Event`, for the eBPF source.
//!
//! The record holds raw kernel values (jiffies, boot-clock times, raw tuple
//! bytes); the `Clock` and `KernelProfile` turn them into what `conntrack -E`
//! shows on the same kernel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracker_common::{FlowRecord, FlowTuple, flags, ipct, kind};

use super::{Counters, Event, EventKind, L4Ids, Tuple};

const AF_INET6: u8 = 10;

/// Which fields ctnetlink puts into events on the running kernel, so the
/// decoded event carries exactly what `conntrack -E` would print.
#[derive(Clone, Copy, Debug)]
pub struct KernelProfile {
    /// Kernel tick rate, for jiffies → seconds.
    pub hz: u32,
    /// DESTROY events carry the remaining timeout when non-zero, and TCP
    /// protocol info (5.15+; 5.10 sends neither).
    pub destroy_has_timeout: bool,
}

impl KernelProfile {
    /// Profile of the running kernel.
    pub fn running() -> Self {
        Self {
            hz: tick_rate(),
            destroy_has_timeout: kernel_release_at_least(5, 15),
        }
    }
}

/// `CLOCK_MONOTONIC_COARSE` advances once per tick, so its resolution is
/// 1/HZ — the kernel's tick rate without reading its config.
fn tick_rate() -> u32 {
    let mut res = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    let rc = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) };
    if rc == 0 && res.tv_sec == 0 && res.tv_nsec > 0 {
        (1_000_000_000 / res.tv_nsec) as u32
    } else {
        250
    }
}

/// Whether the running kernel's release is at least `major.minor`.
pub fn kernel_release_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    version_at_least(&release, major, minor)
}

fn version_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

/// Converts `CLOCK_BOOTTIME` nanoseconds (what the programs stamp) into
/// wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Wall clock minus boot clock, in ns.
    offset_ns: i128,
}

impl Clock {
    pub fn now() -> Self {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        let boot = ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128;
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        Self {
            offset_ns: wall - boot,
        }
    }

    pub fn wall(&self, boot_ns: u64) -> SystemTime {
        let ns = (boot_ns as i128 + self.offset_ns).max(0) as u64;
        UNIX_EPOCH + Duration::from_nanos(ns)
    }
}

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
    match l4proto {
        6 | 17 | 33 | 132 | 136 => L4Ids::Ports {
            sport: src,
            dport: dst,
        },
        1 | 58 => L4Ids::Icmp {
            kind: t.dst_id[0],
            code: t.dst_id[1],
            id: src,
        },
        47 => L4Ids::Gre {
            src_key: src,
            dst_key: dst,
        },
        _ => L4Ids::None,
    }
}

fn tuple(r: &FlowRecord, t: &FlowTuple) -> Tuple {
    Tuple {
        src: address(r.l3proto, &t.src),
        dst: address(r.l3proto, &t.dst),
        l4: l4_ids(r.l4proto, t),
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

pub fn event(r: &FlowRecord, clock: &Clock, profile: &KernelProfile) -> Result<Event, DecodeError> {
    let kind = match r.header.kind {
        kind::NEW => EventKind::New,
        kind::DESTROY => EventKind::Destroy,
        kind::UPDATE => EventKind::Update,
        k => return Err(DecodeError::Kind(k)),
    };
    // What ctnetlink puts into the message, hence what conntrack -E prints:
    // protocol info on NEW (and DESTROY from 5.15), on UPDATE only when it
    // changed; the mark when non-zero or when it changed.
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
    let secs = (r.timeout_jiffies.max(0) as i64 / hz) as u32;
    let timeout = match kind {
        EventKind::Destroy if !profile.destroy_has_timeout || secs == 0 => None,
        _ => Some(secs),
    };
    let is_tcp = r.l4proto == 6;
    Ok(Event {
        kind,
        time: clock.wall(r.header.time_ns),
        l3proto: r.l3proto,
        l4proto: r.l4proto,
        orig: tuple(r, &r.orig),
        reply: tuple(r, &r.reply),
        status: r.status,
        tcp_state: (is_tcp && shows_protoinfo).then_some(r.tcp_state),
        timeout,
        mark: r.mark,
        // ctnetlink reports the mark of entries it inserted even when it is 0
        // (its NEW event carries IPCT_MARK), as conntrack -E shows.
        mark_changed: (kind == EventKind::New && f & flags::NETLINK_INSERT != 0)
            || changed(ipct::MARK),
        zone: r.zone_id,
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
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracker_common::RecordHeader;

    fn tcp_record() -> FlowRecord {
        let mut r = FlowRecord {
            header: RecordHeader {
                kind: kind::NEW,
                version: tracker_common::RECORD_VERSION,
                flags: 0,
                time_ns: 5_000_000_000,
            },
            l3proto: 2,
            l4proto: 6,
            tcp_state: 1,
            timeout_jiffies: 120 * 250 + 3,
            status: 8,
            ..Default::default()
        };
        r.orig.src[..4].copy_from_slice(&[127, 0, 0, 1]);
        r.orig.dst[..4].copy_from_slice(&[127, 0, 0, 2]);
        r.orig.src_id = 40000u16.to_be_bytes();
        r.orig.dst_id = 80u16.to_be_bytes();
        r
    }

    const PROFILE: KernelProfile = KernelProfile {
        hz: 250,
        destroy_has_timeout: true,
    };

    #[test]
    fn decodes_tcp_new() {
        let clock = Clock { offset_ns: 0 };
        let e = event(&tcp_record(), &clock, &PROFILE).unwrap();
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
        let clock = Clock { offset_ns: 0 };
        let mut r = tcp_record();
        r.header.kind = kind::DESTROY;
        let e = event(&r, &clock, &PROFILE).unwrap();
        assert_eq!(e.timeout, Some(120));
        assert_eq!(e.tcp_state, Some(1));
        let old = KernelProfile {
            destroy_has_timeout: false,
            ..PROFILE
        };
        assert_eq!(event(&r, &clock, &old).unwrap().timeout, None);
        assert_eq!(event(&r, &clock, &old).unwrap().tcp_state, None);
        r.timeout_jiffies = -40;
        assert_eq!(event(&r, &clock, &PROFILE).unwrap().timeout, None);
    }

    #[test]
    fn update_shows_state_and_mark_only_when_they_changed() {
        let clock = Clock { offset_ns: 0 };
        let mut r = tcp_record();
        r.header.kind = kind::UPDATE;
        r.events = ipct::REPLY;
        let e = event(&r, &clock, &PROFILE).unwrap();
        assert_eq!(e.kind, EventKind::Update);
        assert_eq!(e.timeout, Some(120));
        assert_eq!(e.tcp_state, None);
        assert!(!e.mark_changed);
        assert_eq!(e.changes, Some(ipct::REPLY));
        r.events = ipct::PROTOINFO | ipct::ASSURED | ipct::MARK;
        let e = event(&r, &clock, &PROFILE).unwrap();
        assert_eq!(e.tcp_state, Some(1));
        assert!(e.mark_changed);
        assert_eq!(e.counters, None);
        // NEW and DESTROY carry no event bits.
        r.header.kind = kind::NEW;
        assert_eq!(event(&r, &clock, &PROFILE).unwrap().changes, None);
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

    #[test]
    fn kernel_versions_compare() {
        assert!(version_at_least("6.1.0-40-amd64", 5, 15));
        assert!(!version_at_least("5.10.0-35-amd64", 5, 15));
        assert!(version_at_least("5.15.0", 5, 15));
    }

    #[test]
    fn tick_rate_is_a_kernel_hz() {
        assert!(
            [100, 250, 300, 1000].contains(&tick_rate()),
            "{}",
            tick_rate()
        );
    }
}
