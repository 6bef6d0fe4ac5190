//! The contract between the eBPF programs and userspace: record layouts, map
//! keys and the names of the globals userspace sets before load.
//!
//! Every struct here is `#[repr(C)]`, has no implicit padding (explicit `_pad`
//! fields instead) and has its size pinned by a compile-time assertion, so the
//! kernel and user side cannot drift apart silently.
#![no_std]

use core::mem::size_of;

/// Bumped whenever [`FlowRecord`] changes shape.
pub const RECORD_VERSION: u16 = 3;

/// Bytes of `struct nf_conn` a record carries: the span from the entry's
/// timeout to its TCP state, copied by one kernel read. About 220 bytes on
/// distribution kernels; userspace refuses a kernel whose span is longer.
pub const CONN_BYTES: usize = 256;

/// Record kinds. The numbers are part of the format and never reused.
pub mod kind {
    pub const NEW: u32 = 1;
    pub const DESTROY: u32 = 2;
    /// A change ctnetlink reports as an UPDATE (state, reply, assured, mark…).
    pub const UPDATE: u32 = 3;
}

/// Bits of `enum ip_conntrack_events` (uapi `nf_conntrack_common.h`, stable):
/// what [`FlowRecord::events`] of an UPDATE holds.
pub mod ipct {
    pub const NEW: u16 = 1 << 0;
    pub const RELATED: u16 = 1 << 1;
    pub const DESTROY: u16 = 1 << 2;
    pub const REPLY: u16 = 1 << 3;
    pub const ASSURED: u16 = 1 << 4;
    pub const PROTOINFO: u16 = 1 << 5;
    pub const HELPER: u16 = 1 << 6;
    pub const MARK: u16 = 1 << 7;
    pub const SEQADJ: u16 = 1 << 8;
    pub const SECMARK: u16 = 1 << 9;
    pub const LABEL: u16 = 1 << 10;
    pub const SYNPROXY: u16 = 1 << 11;
    /// Events ctnetlink reports as NEW or DESTROY rather than UPDATE.
    pub const NOT_UPDATE: u16 = NEW | RELATED | DESTROY;
}

/// Bits of [`RecordHeader::flags`]: which optional parts of a record are valid.
pub mod flags {
    /// `counters` holds the acct extension's packets/bytes.
    pub const HAS_ACCT: u16 = 1 << 0;
    /// `start_ns`/`stop_ns` hold the tstamp extension's times (CLOCK_REALTIME).
    pub const HAS_TSTAMP: u16 = 1 << 1;
    /// The event was caused by a netlink request (`portid` is valid).
    pub const USERSPACE: u16 = 1 << 2;
    /// The entry was inserted over ctnetlink rather than confirmed by a packet.
    pub const NETLINK_INSERT: u16 = 1 << 3;
    /// A DESTROY for an entry the tracker saw created (`generation` is valid).
    pub const PAIRED: u16 = 1 << 4;
}

/// `enum ip_conntrack_status` bits used by both sides (uapi, stable).
pub mod status {
    pub const EXPECTED: u32 = 1 << 0;
    pub const SEEN_REPLY: u32 = 1 << 1;
    pub const ASSURED: u32 = 1 << 2;
    pub const CONFIRMED: u32 = 1 << 3;
    pub const SRC_NAT: u32 = 1 << 4;
    pub const DST_NAT: u32 = 1 << 5;
    pub const SEQ_ADJUST: u32 = 1 << 6;
    pub const SRC_NAT_DONE: u32 = 1 << 7;
    pub const DST_NAT_DONE: u32 = 1 << 8;
    pub const DYING: u32 = 1 << 9;
    pub const FIXED_TIMEOUT: u32 = 1 << 10;
    pub const TEMPLATE: u32 = 1 << 11;
    /// Shares its bit with IPS_UNTRACKED: a reply-only loser of a NAT clash.
    pub const NAT_CLASH: u32 = 1 << 12;
    pub const HELPER: u32 = 1 << 13;
    pub const OFFLOAD: u32 = 1 << 14;
    pub const HW_OFFLOAD: u32 = 1 << 15;
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    /// One of [`kind`].
    pub kind: u32,
    pub version: u16,
    /// Bits of [`flags`].
    pub flags: u16,
    /// `bpf_ktime_get_boot_ns()` when the hook ran.
    pub time_ns: u64,
}

/// One direction of a connection, as `struct nf_conntrack_tuple` holds it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowTuple {
    /// IPv4 in the first 4 bytes, or IPv6; network order.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// `src.u`: port, ICMP id or GRE key, network order.
    pub src_id: [u8; 2],
    /// `dst.u`: port or GRE key (network order), or ICMP type then code.
    pub dst_id: [u8; 2],
    pub _pad: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// What the kernel side writes into the ring for every NEW, DESTROY and
/// (when asked for) UPDATE.
///
/// The entry itself travels as raw bytes: `conn` is `struct nf_conn` from
/// byte [`KernelOffsets::conn_start`] on, copied by one
/// `bpf_probe_read_kernel`, and userspace reads the fields out of it with the
/// same BTF offsets the programs use. Only what needs another pointer
/// followed (netns, extensions) is read separately.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub header: RecordHeader,
    /// Address of the `struct nf_conn`; with `generation` it names one
    /// connection (the slab reuses addresses).
    pub ct: u64,
    /// `time_ns` of the NEW that created this entry; 0 when unknown.
    pub generation: u64,
    /// Original and reply direction; valid with [`flags::HAS_ACCT`].
    pub counters: [Counters; 2],
    /// Valid with [`flags::HAS_TSTAMP`].
    pub start_ns: u64,
    pub stop_ns: u64,
    /// Inode number of the entry's network namespace.
    pub netns: u32,
    /// Netlink port id of the requester, with [`flags::USERSPACE`].
    pub portid: u32,
    /// Low 32 bits of jiffies when the hook ran: with the copied
    /// `ct->timeout` (absolute jiffies once confirmed) it gives the
    /// remaining lifetime.
    pub jiffies: u32,
    /// UPDATE only: the [`ipct`] bits the kernel delivered.
    pub events: u16,
    pub _pad: u16,
    /// `struct nf_conn` bytes `conn_start .. conn_start + conn_len`.
    pub conn: [u8; CONN_BYTES],
}

impl Default for FlowRecord {
    fn default() -> Self {
        Self {
            header: RecordHeader::default(),
            ct: 0,
            generation: 0,
            counters: [Counters::default(); 2],
            start_ns: 0,
            stop_ns: 0,
            netns: 0,
            portid: 0,
            jiffies: 0,
            events: 0,
            _pad: 0,
            conn: [0; CONN_BYTES],
        }
    }
}

/// Key of the per-mark connection counts kept in the kernel.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MarkKey {
    pub netns: u32,
    pub mark: u32,
    pub l3proto: u8,
    pub l4proto: u8,
    pub _pad: [u8; 2],
}

/// What the kernel remembers of each live entry it counted.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveEntry {
    /// `time_ns` of the NEW.
    pub generation: u64,
    /// [`tuple_hash`] of the original tuple, zone and netns: lets the
    /// start-up count from the dump's marks skip entries the hooks already
    /// counted. 0 where the seed hook makes that count instead
    /// ([`globals::TUPLE_HASHES`]).
    pub tuple_hash: u64,
    /// The key the entry is counted under.
    pub key: MarkKey,
    pub _pad: [u8; 4],
}

/// Slots per bucket of LIVE_SLOTS: an entry lives in the bucket its address
/// hashes to ([`live_bucket`]), in any free slot of it.
pub const LIVE_WAYS: usize = 8;

/// Buckets of LIVE_SLOTS per element of LIVE_CHUNKS: one run of the
/// expired-entry iterator's program. Its output for one element must fit
/// the iterator's buffer (8 pages, kernel/bpf/bpf_iter.c): 16 buckets of
/// [`LIVE_WAYS`] entries of 48 bytes are 6 KiB.
pub const LIVE_CHUNK: usize = 16;

/// Elements of LIVE_CHUNKS for `buckets` buckets of LIVE_SLOTS.
pub fn live_chunks(buckets: u32) -> u32 {
    buckets.div_ceil(LIVE_CHUNK as u32).max(1)
}

/// One slot of LIVE_SLOTS: `ct` is the entry's `struct nf_conn` address, 0
/// when the slot is free. A NEW claims a free slot (with a compare-and-swap
/// of `ct`, or as the slot's only claimer: [`globals::SLOT_CPUS`]), then
/// fills `entry`, `entry.generation` last: a slot whose generation is still
/// 0 is being filled and is not read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveSlot {
    pub ct: u64,
    pub entry: LiveEntry,
}

/// One element of LIVE_SLOTS: a bucket of [`LIVE_WAYS`] slots, so a NEW or
/// a DESTROY costs one array lookup and a scan of adjacent memory.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveBucket {
    pub slots: [LiveSlot; LIVE_WAYS],
}

/// The bucket of LIVE_SLOTS (of `buckets`) for the entry at `ct`. Entry
/// addresses come from a slab cache, so their low bits repeat: a
/// multiplicative hash spreads them, and the high half of the product
/// scaled by `buckets` picks the bucket without a division.
pub const fn live_bucket(ct: u64, buckets: u32) -> u32 {
    let h = ct.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    ((h * buckets as u64) >> 32) as u32
}

/// What the iterators over LIVE and LIVE_SLOTS write for each counted entry
/// whose timeout has passed: the entry's conntrack address, what the hooks
/// remember of it, and where: `slot` is 1 + the index of its slot in
/// LIVE_SLOTS (bucket × [`LIVE_WAYS`] + way), or 0 when it is in LIVE. The
/// generation tells a later lookup whether that place still holds the same
/// entry (the kernel reuses the memory of freed entries).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpiredEntry {
    pub ct: u64,
    pub live: LiveEntry,
    pub slot: u32,
    pub _pad: u32,
}

/// Flows of one key that ended, with what they carried: added by the
/// DESTROY hook when userspace serves metrics ([`globals::ACCOUNT_CLOSED`]).
/// `packets`/`bytes` come from the acct extension, so they stay zero while
/// `nf_conntrack_acct` is off. Index 0 is the original direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClosedFlows {
    pub flows: u64,
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

/// Indices of the per-CPU statistics array.
pub mod stat {
    /// Ring reserve failed: the event is lost (the counts are not).
    pub const RING_DROPS: u32 = 0;
    // 1: once the records written to the ring, a per-CPU update in every
    // hook; userspace counts the records it reads instead. A hole on
    // purpose.
    /// Events suppressed by the kernel-side filter.
    pub const FILTERED: u32 = 2;
    /// A kernel read failed; the event was still emitted with that field zero.
    pub const READ_ERRORS: u32 = 3;
    /// A kretprobe found no entry stash (e.g. the map was full).
    pub const STASH_MISSES: u32 = 4;
    /// Entries counted in the live map could not be stored (map full).
    pub const LIVE_MAP_FULL: u32 = 5;
    /// A hook ran nested deeper than the per-CPU scratch records allow
    /// (process, softirq, hardirq, NMI): its event and count were skipped.
    pub const NEST_OVERFLOW: u32 = 6;
    /// Entries the hooks saw confirmed, changed (UPDATE) and destroyed in the
    /// watched namespace, before the kind filter: what `tracker serve`
    /// reports as events even when nothing goes to the ring.
    pub const SEEN_NEW: u32 = 7;
    pub const SEEN_UPDATE: u32 = 8;
    pub const SEEN_DESTROY: u32 = 9;
    /// A closed flow's key found the closed-flow map full: it was added to
    /// the overflow slot instead.
    pub const CLOSED_MAP_FULL: u32 = 10;
    /// Entries the start-up dump listed that the hooks had not counted:
    /// remembered and counted then (tracker-ebpf's `seed.rs`).
    pub const SEEDED: u32 = 11;
    pub const COUNT: u32 = 12;
}

/// Kernel-side filter, set as a global before load. A zero field means "any".
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelFilter {
    /// Bits of [`filter_kind`]: which kinds to emit.
    pub kinds: u32,
    pub netns: u32,
    pub mark: u32,
    pub mark_mask: u32,
    /// Non-zero: apply mark/mask.
    pub match_mark: u8,
    pub l3proto: u8,
    pub l4proto: u8,
    pub _pad: u8,
}

/// Bits of [`KernelFilter::kinds`].
pub mod filter_kind {
    pub const NEW: u32 = 1 << 0;
    pub const DESTROY: u32 = 1 << 1;
    pub const UPDATE: u32 = 1 << 2;
}

/// Byte offsets inside kernel structs, read from the running kernel's BTF by
/// userspace and set as a global before load. `u32::MAX` means "absent".
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// The span of `struct nf_conn` a record copies (8-aligned start, at most
    /// [`CONN_BYTES`]): every `ct_*` offset below lies inside it.
    pub conn_start: u32,
    pub conn_len: u32,
    pub skb_nfct: u32,
    pub ct_status: u32,
    pub ct_timeout: u32,
    pub ct_mark: u32,
    pub ct_zone: u32,
    /// `zone.dir`: which directions a non-default zone applies to.
    pub ct_zone_dir: u32,
    pub ct_net: u32,
    pub ct_ext: u32,
    pub ct_tcp_state: u32,
    /// `tuplehash[0].tuple`; the reply tuple is `tuplehash_size` further.
    pub ct_tuple: u32,
    pub tuplehash_size: u32,
    pub tuple_src_u3: u32,
    pub tuple_src_u: u32,
    pub tuple_dst_u3: u32,
    pub tuple_dst_u: u32,
    pub tuple_l3num: u32,
    pub tuple_protonum: u32,
    pub net_ns_inum: u32,
    /// `nf_ct_ext.offset[]` (u8 array on 6.x, u16 before) and element size.
    pub ext_offset: u32,
    pub ext_offset_size: u32,
    pub ext_id_acct: u32,
    pub ext_id_tstamp: u32,
    /// `nf_conn_acct.counter[]` and `nf_conn_counter.packets/bytes`.
    pub acct_counter: u32,
    pub counter_size: u32,
    pub counter_packets: u32,
    pub counter_bytes: u32,
    pub tstamp_start: u32,
    pub tstamp_stop: u32,
    /// Bit number of IPCT_MARK in `enum ip_conntrack_events`.
    pub ipct_mark: u32,
    /// `struct nf_ct_event`: what the kernel hands its event notifier.
    pub ct_event_ct: u32,
    pub ct_event_portid: u32,
    /// `proto.sctp.state` and `proto.dccp.state`: inside the copied span
    /// (the union starts before `proto.tcp.state`); userspace reads them,
    /// the programs do not.
    pub ct_sctp_state: u32,
    pub ct_dccp_state: u32,
}

impl KernelOffsets {
    pub const ABSENT: u32 = u32::MAX;

    /// Every offset absent: the initial value of the global in the object.
    pub const fn absent() -> Self {
        let a = Self::ABSENT;
        Self {
            conn_start: a,
            conn_len: a,
            skb_nfct: a,
            ct_status: a,
            ct_timeout: a,
            ct_mark: a,
            ct_zone: a,
            ct_zone_dir: a,
            ct_net: a,
            ct_ext: a,
            ct_tcp_state: a,
            ct_tuple: a,
            tuplehash_size: a,
            tuple_src_u3: a,
            tuple_src_u: a,
            tuple_dst_u3: a,
            tuple_dst_u: a,
            tuple_l3num: a,
            tuple_protonum: a,
            net_ns_inum: a,
            ext_offset: a,
            ext_offset_size: a,
            ext_id_acct: a,
            ext_id_tstamp: a,
            acct_counter: a,
            counter_size: a,
            counter_packets: a,
            counter_bytes: a,
            tstamp_start: a,
            tstamp_stop: a,
            ipct_mark: a,
            ct_event_ct: a,
            ct_event_portid: a,
            ct_sctp_state: a,
            ct_dccp_state: a,
        }
    }
}

impl Default for KernelOffsets {
    fn default() -> Self {
        Self::absent()
    }
}

/// Names of the globals in the eBPF object.
pub mod globals {
    pub const OFFSETS: &str = "OFFSETS";
    pub const FILTER: &str = "FILTER";
    /// `u64`: unread ring bytes at which the programs wake the reader; 0:
    /// never (the reader's timer collects everything).
    pub const WAKEUP_BYTES: &str = "WAKEUP_BYTES";
    /// `u32`: non-zero when kprobes may keep their arguments per CPU (the
    /// kernel cannot preempt kernel code).
    pub const STASH_PER_CPU: &str = "STASH_PER_CPU";
    /// `u32`: non-zero when DESTROY adds each flow to the closed-flow map.
    pub const ACCOUNT_CLOSED: &str = "ACCOUNT_CLOSED";
    /// `u32`: buckets of LIVE_SLOTS; 0 when every counted entry goes to the
    /// LIVE hash map.
    pub const LIVE_BUCKETS: &str = "LIVE_BUCKETS";
    /// `u32`: 0 when fentry/fexit programs claim slots with compare-and-swap;
    /// n > 0 when kprobe programs claim them instead, CPU c only the ways w
    /// with w % n == c (kprobe programs never run nested on one CPU, so each
    /// way has one claimer at a time; see tracker-ebpf's counts.rs).
    pub const SLOT_CPUS: &str = "SLOT_CPUS";
    /// `u32`: the tracker's process id; the seed hook counts what that
    /// process's start-up dump lists.
    pub const SEED_TGID: &str = "SEED_TGID";
    /// `u32`: non-zero when the counts keep each entry's tuple hash (only
    /// the start-up count without the seed hook needs it).
    pub const TUPLE_HASHES: &str = "TUPLE_HASHES";
}

/// A hash of the original tuple, zone id and netns. Both sides compute it:
/// the kernel when it counts an entry, userspace for entries of the start-up
/// dump. It only has to tell entries apart within one table, so it mixes
/// 32-bit words (a multiply and a shift each, then a final avalanche) rather
/// than bytes: on the NEW path every instruction counts.
pub const fn tuple_hash(t: &FlowTuple, l3proto: u8, l4proto: u8, zone: u16, netns: u32) -> u64 {
    tuple_hash_words(
        &le_words(&t.src),
        &le_words(&t.dst),
        u32::from_le_bytes([t.src_id[0], t.src_id[1], t.dst_id[0], t.dst_id[1]]),
        l3proto,
        l4proto,
        zone,
        netns,
    )
}

/// The address bytes as the kernel side loads them: four little-endian
/// 32-bit words.
const fn le_words(a: &[u8; 16]) -> [u32; 4] {
    let mut w = [0u32; 4];
    let mut i = 0;
    while i < 4 {
        w[i] = u32::from_le_bytes([a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]]);
        i += 1;
    }
    w
}

/// [`tuple_hash`] over the tuple's parts as the kernel side loads them from
/// a copied `struct nf_conn`: addresses as words, `ids` = source id bytes
/// then destination id bytes, little endian.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub const fn tuple_hash_words(
    src: &[u32; 4],
    dst: &[u32; 4],
    ids: u32,
    l3proto: u8,
    l4proto: u8,
    zone: u16,
    netns: u32,
) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    const fn round(h: u64, w: u32) -> u64 {
        let h = (h ^ w as u64).wrapping_mul(K);
        h ^ (h >> 32)
    }
    let mut h = 0x6a09_e667_f3bc_c908
        ^ (l3proto as u64 | (l4proto as u64) << 8 | (zone as u64) << 16 | (netns as u64) << 32);
    let mut i = 0;
    while i < 4 {
        h = round(h, src[i]);
        h = round(h, dst[i]);
        i += 1;
    }
    h = round(h, ids);
    // fmix64 (MurmurHash3): every input bit reaches every output bit.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

const _: () = assert!(size_of::<RecordHeader>() == 16);
const _: () = assert!(size_of::<FlowTuple>() == 40);
const _: () = assert!(size_of::<FlowRecord>() == 96 + CONN_BYTES);
const _: () = assert!(size_of::<MarkKey>() == 12);
const _: () = assert!(size_of::<LiveEntry>() == 32);
const _: () = assert!(size_of::<ExpiredEntry>() == 48);
const _: () = assert!(size_of::<LiveSlot>() == 40);
const _: () = assert!(size_of::<LiveBucket>() == 320);
const _: () = assert!(size_of::<ClosedFlows>() == 40);
const _: () = assert!(size_of::<KernelFilter>() == 20);
const _: () = assert!(size_of::<KernelOffsets>() == 35 * 4);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all are repr(C) plain data without padding holes.
    unsafe impl aya::Pod for FlowRecord {}
    unsafe impl aya::Pod for MarkKey {}
    unsafe impl aya::Pod for LiveEntry {}
    unsafe impl aya::Pod for LiveBucket {}
    unsafe impl aya::Pod for ClosedFlows {}
    unsafe impl aya::Pod for KernelFilter {}
    unsafe impl aya::Pod for KernelOffsets {}
}
