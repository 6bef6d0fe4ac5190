//! Reading `struct nf_conn` and `struct sk_buff` through the offsets userspace
//! found in the running kernel's BTF.

use aya_ebpf::helpers::{bpf_jiffies64, bpf_probe_read_kernel};
use tracker_common::{
    Counters, FlowTuple, KernelFilter, KernelOffsets, RecordHeader, filter_kind, kind,
};

/// Set by userspace before load (see `tracker_common::globals`).
#[unsafe(no_mangle)]
pub(crate) static OFFSETS: KernelOffsets = KernelOffsets::absent();

#[unsafe(no_mangle)]
static FILTER: KernelFilter = KernelFilter {
    kinds: filter_kind::NEW | filter_kind::DESTROY,
    netns: 0,
    mark: 0,
    mark_mask: 0,
    match_mark: 0,
    l3proto: 0,
    l4proto: 0,
    _pad: 0,
};

/// Reads one offset; volatile so the compiler cannot fold the placeholder
/// value the object is built with.
macro_rules! off {
    ($field:ident) => {
        unsafe { core::ptr::read_volatile(&$crate::conn::OFFSETS.$field) }
    };
}
pub(crate) use off;

#[inline(always)]
pub fn filter() -> KernelFilter {
    unsafe { core::ptr::read_volatile(&FILTER) }
}

/// Reads a `T` at `base + off`; an absent offset or a null base is an error.
#[inline(always)]
pub fn read<T>(base: u64, off: u32) -> Result<T, i64> {
    if off == KernelOffsets::ABSENT || base == 0 {
        return Err(-1);
    }
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.map_err(|e| e as i64)
}

/// The conntrack attached to an skb (`skb->_nfct` without the ctinfo bits).
#[inline(always)]
pub fn ct_of_skb(skb: u64) -> Result<u64, i64> {
    let nfct: u64 = read(skb, off!(skb_nfct))?;
    Ok(nfct & !7)
}

#[inline(always)]
pub fn status(ct: u64) -> Result<u32, i64> {
    // `unsigned long`: the low 32 bits hold every defined bit (little endian).
    read::<u32>(ct, off!(ct_status))
}

#[inline(always)]
pub fn mark(ct: u64) -> u32 {
    read::<u32>(ct, off!(ct_mark)).unwrap_or(0)
}

#[inline(always)]
pub fn netns(ct: u64) -> u32 {
    match read::<u64>(ct, off!(ct_net)) {
        Ok(net) => read::<u32>(net, off!(net_ns_inum)).unwrap_or(0),
        Err(_) => 0,
    }
}

#[inline(always)]
pub fn zone_id(ct: u64) -> u16 {
    read::<u16>(ct, off!(ct_zone)).unwrap_or(0)
}

/// Protocol numbers of the entry: (l3num, protonum) of the original tuple.
#[inline(always)]
pub fn protocols(ct: u64) -> (u8, u8) {
    let tuple = ct + off!(ct_tuple) as u64;
    let l3: u16 = read(tuple, off!(tuple_l3num)).unwrap_or(0);
    let l4: u8 = read(tuple, off!(tuple_protonum)).unwrap_or(0);
    (l3 as u8, l4)
}

/// One direction's tuple; `dir` 0 is original, 1 reply.
#[inline(always)]
pub fn tuple(ct: u64, dir: u64, out: &mut FlowTuple) -> Result<(), i64> {
    let base = off!(ct_tuple);
    if base == KernelOffsets::ABSENT {
        return Err(-1);
    }
    let t = ct + base as u64 + dir * off!(tuplehash_size) as u64;
    out.src = read(t, off!(tuple_src_u3))?;
    out.dst = read(t, off!(tuple_dst_u3))?;
    out.src_id = read(t, off!(tuple_src_u))?;
    out.dst_id = read(t, off!(tuple_dst_u))?;
    Ok(())
}

/// Remaining lifetime in jiffies (negative when expired).
#[inline(always)]
pub fn timeout_jiffies(ct: u64) -> i32 {
    match read::<u32>(ct, off!(ct_timeout)) {
        Ok(t) => t.wrapping_sub(unsafe { bpf_jiffies64() } as u32) as i32,
        Err(_) => 0,
    }
}

#[inline(always)]
pub fn tcp_state(ct: u64) -> u8 {
    read::<u8>(ct, off!(ct_tcp_state)).unwrap_or(0)
}

/// Address of a conntrack extension, or an error when the entry lacks it.
#[inline(always)]
fn extension(ct: u64, id: u32) -> Result<u64, i64> {
    if id == KernelOffsets::ABSENT {
        return Err(-1);
    }
    let ext: u64 = read(ct, off!(ct_ext))?;
    let at = off!(ext_offset) + id * off!(ext_offset_size);
    let offset: u64 = if off!(ext_offset_size) == 1 {
        read::<u8>(ext, at)? as u64
    } else {
        read::<u16>(ext, at)? as u64
    };
    if offset == 0 {
        return Err(-1);
    }
    Ok(ext + offset)
}

/// Packets and bytes per direction from the acct extension.
#[inline(always)]
pub fn counters(ct: u64, out: &mut [Counters; 2]) -> Result<(), i64> {
    let acct = extension(ct, off!(ext_id_acct))?;
    let base = acct + off!(acct_counter) as u64;
    let size = off!(counter_size) as u64;
    out[0].packets = read(base, off!(counter_packets))?;
    out[0].bytes = read(base, off!(counter_bytes))?;
    out[1].packets = read(base + size, off!(counter_packets))?;
    out[1].bytes = read(base + size, off!(counter_bytes))?;
    Ok(())
}

/// Start and stop (CLOCK_REALTIME ns) from the tstamp extension.
#[inline(always)]
pub fn timestamps(ct: u64) -> Result<(u64, u64), i64> {
    let ts = extension(ct, off!(ext_id_tstamp))?;
    Ok((read(ts, off!(tstamp_start))?, read(ts, off!(tstamp_stop))?))
}

#[inline(always)]
pub fn header(kind: u32, flags: u16, time_ns: u64) -> RecordHeader {
    RecordHeader {
        kind,
        version: tracker_common::RECORD_VERSION,
        flags,
        time_ns,
    }
}

/// Whether the kernel-side filter lets an event through.
#[inline(always)]
pub fn wanted(kind_: u32, netns: u32, mark: u32, l3: u8, l4: u8) -> bool {
    let f = filter();
    let bit = match kind_ {
        kind::NEW => filter_kind::NEW,
        kind::DESTROY => filter_kind::DESTROY,
        kind::UPDATE => filter_kind::UPDATE,
        _ => 0,
    };
    (f.kinds & bit) != 0
        && (f.netns == 0 || f.netns == netns)
        && (f.match_mark == 0 || (mark & f.mark_mask) == f.mark)
        && (f.l3proto == 0 || f.l3proto == l3)
        && (f.l4proto == 0 || f.l4proto == l4)
}
