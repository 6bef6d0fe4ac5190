//! Reading `struct nf_conn` through the offsets userspace found in the
//! running kernel's BTF.
//!
//! A hook copies the span of the entry it reports in one
//! `bpf_probe_read_kernel` (`copy`); every field the programs need is then a
//! plain load from that copy (`Conn`). Only what lies behind another pointer
//! (the netns inode, the acct and tstamp extensions) costs a read of its own,
//! and where the hook holds the entry as a BTF-typed argument (`Entry`), the
//! namespace and the extension header are plain loads too.

use core::mem::size_of;

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated::bpf_probe_read_kernel as read_raw};
use tracker_common::{CONN_BYTES, Counters, KernelOffsets, flags};

/// Set by userspace before load (see `tracker_common::globals`).
#[unsafe(no_mangle)]
pub(crate) static OFFSETS: KernelOffsets = KernelOffsets::absent();

/// Reads one offset; volatile so the compiler cannot fold the placeholder
/// value the object is built with.
macro_rules! off {
    ($field:ident) => {
        unsafe { core::ptr::read_volatile(&$crate::conn::OFFSETS.$field) }
    };
}
pub(crate) use off;

/// Reads a `T` at `base + off`; an absent offset or a null base is an error.
#[inline(always)]
pub fn read<T>(base: u64, off: u32) -> Result<T, i64> {
    if off == KernelOffsets::ABSENT || base == 0 {
        return Err(-1);
    }
    unsafe { bpf_probe_read_kernel((base + off as u64) as *const T) }.map_err(|e| e as i64)
}

/// `ptr` as a plain number. In fentry and fexit programs a kernel pointer
/// argument is typed (BTF), and the verifier refuses arithmetic on it, such
/// as the multiply that hashes an entry's address into its LIVE_SLOTS
/// bucket; a copy read through a helper is untyped. Costs a helper call:
/// for rare paths (the hot ones reuse the record's copy, see emit.rs).
#[inline(always)]
pub fn as_number(ptr: u64) -> Result<u64, i64> {
    let src = ptr;
    unsafe { bpf_probe_read_kernel(&raw const src) }.map_err(|e| e as i64)
}

/// The conntrack attached to an skb (`skb->_nfct` without the ctinfo bits).
#[inline(always)]
pub fn ct_of_skb(skb: u64) -> Result<u64, i64> {
    let nfct: u64 = read(skb, off!(skb_nfct))?;
    Ok(nfct & !7)
}

/// The same from an skb the program got as a BTF-typed argument (fexit).
/// The offset comes from a frozen read-only global, so the verifier knows it
/// as a constant and checks this load against the kernel's `struct sk_buff`
/// itself; it runs as a plain load with a fault fixup instead of a
/// `bpf_probe_read_kernel` call.
#[inline(always)]
pub fn ct_of_btf_skb(skb: u64) -> Result<u64, i64> {
    let off = off!(skb_nfct);
    if off == KernelOffsets::ABSENT || skb == 0 {
        return Err(-1);
    }
    // SAFETY: a load the verifier checks (see above).
    let nfct = unsafe { ((skb + off as u64) as *const u64).read_volatile() };
    Ok(nfct & !7)
}

/// How a hook holds the entry's address.
#[derive(Clone, Copy)]
pub enum Entry {
    /// A `struct nf_conn *` argument of an fentry/fexit program: typed by
    /// BTF, so fields behind it can be read with plain loads (`load`).
    Typed(u64),
    /// A plain number (kprobe arguments, `skb->_nfct`): every read goes
    /// through `bpf_probe_read_kernel`.
    Untyped(u64),
}

impl Entry {
    #[inline(always)]
    pub fn addr(self) -> u64 {
        match self {
            Entry::Typed(ct) | Entry::Untyped(ct) => ct,
        }
    }
}

/// Reads a `T` at `base + off` where `base` is a BTF-typed kernel pointer
/// (an fentry/fexit argument, or a pointer field loaded through one). As in
/// `ct_of_btf_skb`, the verifier knows `off` as a constant, checks the load
/// against the kernel's own struct and runs it as a plain load with a
/// fault fixup: no helper call. A pointer loaded this way is typed too.
#[inline(always)]
fn load<T: Copy>(base: u64, off: u32) -> Option<T> {
    if off == KernelOffsets::ABSENT || base == 0 {
        return None;
    }
    // SAFETY: a load the verifier checks (see above).
    Some(unsafe { ((base + off as u64) as *const T).read_volatile() })
}

/// `ct->ct_net->ns.inum` of a typed entry, with plain loads; 0 when absent.
#[inline(always)]
pub fn netns_of_typed(ct: u64) -> u32 {
    load::<u64>(ct, off!(ct_net))
        .and_then(|net| load::<u32>(net, off!(net_ns_inum)))
        .unwrap_or(0)
}

/// Copies the entry's span (`conn_start`, `conn_len` bytes) into `out`.
#[inline(always)]
pub fn copy(ct: u64, out: &mut [u8; CONN_BYTES]) -> Result<(), i64> {
    let start = off!(conn_start);
    let len = off!(conn_len);
    if ct == 0 || start == KernelOffsets::ABSENT || len as usize > CONN_BYTES {
        return Err(-1);
    }
    // SAFETY: `out` has room for CONN_BYTES ≥ len bytes; the helper checks
    // the kernel address.
    let rc = unsafe {
        read_raw(
            out.as_mut_ptr().cast(),
            len,
            (ct + start as u64) as *const core::ffi::c_void,
        )
    };
    if rc < 0 { Err(rc) } else { Ok(()) }
}

/// The fields of a copied entry.
pub struct Conn<'a> {
    bytes: &'a [u8; CONN_BYTES],
}

impl<'a> Conn<'a> {
    #[inline(always)]
    pub fn new(bytes: &'a [u8; CONN_BYTES]) -> Self {
        Self { bytes }
    }

    /// The `T` at kernel offset `off`, or `None` when the kernel lacks the
    /// field. Offsets are naturally aligned and `conn_start` is 8-aligned,
    /// so the load is aligned.
    #[inline(always)]
    fn get<T: Copy>(&self, off: u32) -> Option<T> {
        if off == KernelOffsets::ABSENT {
            return None;
        }
        let rel = off.wrapping_sub(off!(conn_start));
        if rel > (CONN_BYTES - size_of::<T>()) as u32 {
            return None;
        }
        // SAFETY: rel + size_of::<T>() ≤ CONN_BYTES, checked above.
        Some(unsafe { self.bytes.as_ptr().add(rel as usize).cast::<T>().read() })
    }

    /// `ct->status`: `unsigned long`, whose low 32 bits hold every defined
    /// bit (little endian).
    #[inline(always)]
    pub fn status(&self) -> Option<u32> {
        self.get(off!(ct_status))
    }

    #[inline(always)]
    pub fn mark(&self) -> u32 {
        self.get(off!(ct_mark)).unwrap_or(0)
    }

    #[inline(always)]
    pub fn zone_id(&self) -> u16 {
        self.get(off!(ct_zone)).unwrap_or(0)
    }

    /// `ct->ct_net`: the entry's `struct net`.
    #[inline(always)]
    pub fn net(&self) -> u64 {
        self.get(off!(ct_net)).unwrap_or(0)
    }

    /// `ct->ext`: the extension area, or 0.
    #[inline(always)]
    pub fn ext(&self) -> u64 {
        self.get(off!(ct_ext)).unwrap_or(0)
    }

    /// Protocol numbers of the entry: (l3num, protonum) of the original tuple.
    #[inline(always)]
    pub fn protocols(&self) -> (u8, u8) {
        let tuple = off!(ct_tuple);
        let l3: u16 = self.get(tuple.wrapping_add(off!(tuple_l3num))).unwrap_or(0);
        let l4: u8 = self
            .get(tuple.wrapping_add(off!(tuple_protonum)))
            .unwrap_or(0);
        (l3 as u8, l4)
    }

    /// [`tracker_common::tuple_hash`] of the original tuple; 0 when the
    /// copy lacks it.
    #[inline(always)]
    pub fn original_hash(&self, l3: u8, l4: u8, zone: u16, netns: u32) -> u64 {
        let t = off!(ct_tuple);
        let (Some(src), Some(dst), Some(src_id), Some(dst_id)) = (
            self.get::<[u32; 4]>(t.wrapping_add(off!(tuple_src_u3))),
            self.get::<[u32; 4]>(t.wrapping_add(off!(tuple_dst_u3))),
            self.get::<u16>(t.wrapping_add(off!(tuple_src_u))),
            self.get::<u16>(t.wrapping_add(off!(tuple_dst_u))),
        ) else {
            return 0;
        };
        let ids = src_id as u32 | (dst_id as u32) << 16;
        tracker_common::tuple_hash_words(&src, &dst, ids, l3, l4, zone, netns)
    }
}

/// Inode number of a `struct net` (`net->ns.inum`), or 0.
#[inline(always)]
pub fn netns_inum(net: u64) -> u32 {
    read::<u32>(net, off!(net_ns_inum)).unwrap_or(0)
}

/// Inode number of the entry's namespace (`ct->ct_net->ns.inum`) read from
/// the entry itself, before it is copied; 0 when unreadable.
#[inline(always)]
pub fn netns_of(ct: u64) -> u32 {
    netns_inum(read::<u64>(ct, off!(ct_net)).unwrap_or(0))
}

/// Bytes of `nf_ct_ext` read at once: its offset array (u8 or u16 per
/// extension id; ids stay below 16).
const EXT_HEADER: usize = 32;

/// Where extension `id`'s entry of `nf_ct_ext.offset[]` sits and how wide
/// it is (u8 or u16 by kernel), or `None` when the kernel lacks either.
#[inline(always)]
fn ext_index(id: u32) -> Option<(u32, u32)> {
    let (at, size) = (off!(ext_offset), off!(ext_offset_size));
    if id == KernelOffsets::ABSENT || at == KernelOffsets::ABSENT || id >= 16 {
        return None;
    }
    Some((at.wrapping_add(id.wrapping_mul(size)), size))
}

/// Where an extension starts inside the extension area, from the header
/// copy; 0 when the entry lacks it.
#[inline(always)]
fn ext_offset(header: &[u8; EXT_HEADER], id: u32) -> u64 {
    let Some((i, size)) = ext_index(id) else {
        return 0;
    };
    if size == 1 {
        if i as usize >= EXT_HEADER {
            return 0;
        }
        header[i as usize] as u64
    } else {
        if i as usize >= EXT_HEADER - 1 {
            return 0;
        }
        u16::from_le_bytes([header[i as usize], header[i as usize + 1]]) as u64
    }
}

/// The same, loaded from the typed `ct->ext` of a typed entry. Every offset
/// here is a frozen global, so the verifier sees one constant offset into
/// `struct nf_ct_ext` and keeps the one load of the element's size.
#[inline(always)]
fn ext_offset_typed(ext: u64, id: u32) -> u64 {
    match ext_index(id) {
        Some((i, 1)) => load::<u8>(ext, i).map_or(0, |v| v as u64),
        Some((i, 2)) => load::<u16>(ext, i).map_or(0, |v| v as u64),
        _ => 0,
    }
}

/// What the acct and tstamp extensions hold. Absent ones read as zeros,
/// with their flag clear: no field is left unwritten, because a value the
/// compiler may leave undefined on one path (the payload of a `None`) can
/// become a load of a stack slot that path never wrote, which 5.10's
/// verifier rejects ("invalid read from stack").
#[derive(Default)]
pub struct Extensions {
    /// `flags::HAS_ACCT` and `flags::HAS_TSTAMP` of what was read.
    pub flags: u16,
    pub counters: [Counters; 2],
    /// CLOCK_REALTIME ns at confirm and at delete (0 until then).
    pub times: (u64, u64),
}

impl Extensions {
    #[inline(always)]
    pub fn counters(&self) -> Option<[Counters; 2]> {
        (self.flags & flags::HAS_ACCT != 0).then_some(self.counters)
    }
}

/// Reads the acct and tstamp extensions of an entry at `ext` (its
/// `ct->ext`, from the copy): where they start, from its offset array (one
/// read; plain loads for a typed entry), then each present one in one read.
#[inline(always)]
pub fn extensions(entry: Entry, ext: u64) -> Extensions {
    if ext == 0 {
        return Extensions::default();
    }
    let (acct, tstamp) = match entry {
        Entry::Typed(ct) => {
            // The same pointer as `ext`, typed: an entry's extension area
            // is not reallocated once it is confirmed (nf_ct_ext_add).
            let Some(typed) = load::<u64>(ct, off!(ct_ext)) else {
                return Extensions::default();
            };
            (
                ext_offset_typed(typed, off!(ext_id_acct)),
                ext_offset_typed(typed, off!(ext_id_tstamp)),
            )
        }
        Entry::Untyped(_) => {
            let Ok(header) = read::<[u8; EXT_HEADER]>(ext, 0) else {
                return Extensions::default();
            };
            (
                ext_offset(&header, off!(ext_id_acct)),
                ext_offset(&header, off!(ext_id_tstamp)),
            )
        }
    };
    let mut out = Extensions::default();
    if acct != 0
        && let Ok(c) = read::<[u64; 4]>(ext + acct, off!(acct_counter))
    {
        out.counters = [counter(&c, 0), counter(&c, off!(counter_size))];
        out.flags |= flags::HAS_ACCT;
    }
    if tstamp != 0 {
        let (start, stop) = (off!(tstamp_start), off!(tstamp_stop));
        // `struct nf_conn_tstamp { u64 start, stop; }`: one read when
        // adjacent, as in every kernel so far.
        let times = if stop == start.wrapping_add(8) {
            read::<[u64; 2]>(ext + tstamp, start)
                .ok()
                .map(|t| (t[0], t[1]))
        } else {
            match (
                read::<u64>(ext + tstamp, start),
                read::<u64>(ext + tstamp, stop),
            ) {
                (Ok(a), Ok(b)) => Some((a, b)),
                _ => None,
            }
        };
        if let Some(t) = times {
            out.times = t;
            out.flags |= flags::HAS_TSTAMP;
        }
    }
    out
}

/// One `nf_conn_counter` from the copy of `nf_conn_acct.counter[]`
/// (`atomic64_t` fields: 8-aligned).
#[inline(always)]
fn counter(c: &[u64; 4], base: u32) -> Counters {
    let field = |off: u32| -> u64 {
        let i = base.wrapping_add(off) / 8;
        if i >= 4 { 0 } else { c[i as usize] }
    };
    Counters {
        packets: field(off!(counter_packets)),
        bytes: field(off!(counter_bytes)),
    }
}
