//! Counted entries whose timeout has passed: `iter/bpf_map_elem` iterators
//! over LIVE and (through LIVE_CHUNKS) LIVE_SLOTS that `tracker counts`
//! reads on demand.
//!
//! An expired entry stays in the conntrack table until the garbage
//! collector, a lookup or a dump removes it (its DESTROY comes only then),
//! but a table dump already skips it (`ctnetlink_dump_table` in
//! net/netfilter/nf_conntrack_netlink.c). LIVE and MARK_COUNTS still hold
//! it in that window; this program finds such entries so userspace can
//! leave them out of the counts, as the table would be listed at that
//! instant.
//!
//! Each element costs one `bpf_probe_read_kernel` of `ct->timeout`; an
//! expired one adds an `ExpiredEntry` (its address and LIVE value) to the
//! iterator's output.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_jiffies64, bpf_seq_write};
use tracker_common::{ExpiredEntry, LIVE_CHUNK, LIVE_WAYS, LiveEntry, LiveSlot};

use crate::maps::LIVE_SLOTS;

use crate::conn::{off, read};

/// `struct bpf_iter__bpf_map_elem` (kernel/bpf/map_iter.c): what the kernel
/// hands the program per element; `key` and `value` are null on the final
/// call after the last element.
#[repr(C)]
pub struct MapElemCtx<K, V> {
    meta: *const IterMeta,
    map: *const c_void,
    key: *const K,
    value: *const V,
}

/// `struct bpf_iter_meta` (include/linux/bpf.h), as far as its first field.
#[repr(C)]
struct IterMeta {
    seq: *mut c_void,
}

/// Whether `ct->timeout` (absolute, in jiffies, for a confirmed entry) has
/// passed: `nf_ct_is_expired()` in include/net/netfilter/nf_conntrack.h,
/// `(__s32)(ct->timeout - nfct_time_stamp) <= 0` with nfct_time_stamp the
/// low 32 bits of jiffies.
#[inline(always)]
fn expired(timeout: u32, jiffies: u64) -> bool {
    (timeout.wrapping_sub(jiffies as u32) as i32) <= 0
}

/// Writes `found` to the iterator's output.
#[inline(always)]
fn write(meta: *const IterMeta, found: &ExpiredEntry) {
    // SAFETY: `meta` is a trusted pointer of the iterator; `seq` its first
    // field, the seq_file the helper writes to.
    let seq = unsafe { (*meta).seq };
    // A full page makes the kernel show this element again after the page is
    // read (bpf_seq_read in kernel/bpf/bpf_iter.c): nothing is lost.
    unsafe {
        bpf_seq_write(
            seq.cast(),
            (found as *const ExpiredEntry).cast(),
            core::mem::size_of::<ExpiredEntry>() as u32,
        )
    };
}

/// Whether the entry at `ct` has expired (false when it cannot be read).
#[inline(always)]
fn entry_expired(ct: u64, jiffies: u64) -> bool {
    read::<u32>(ct, off!(ct_timeout)).is_ok_and(|timeout| expired(timeout, jiffies))
}

/// Over LIVE: the key is the entry's address, the value what the hooks
/// remember of it.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/bpf_map_elem")]
pub fn live_expired(ctx: *mut c_void) -> i32 {
    let ctx = ctx as *const MapElemCtx<u64, LiveEntry>;
    // SAFETY: context loads the verifier checks against the iterator's
    // context type; `key`/`value` point into the element (checked for null,
    // read within the map's key and value sizes).
    let (key, value) = unsafe { ((*ctx).key, (*ctx).value) };
    if key.is_null() || value.is_null() {
        return 0;
    }
    let ct = unsafe { *key };
    // SAFETY: a helper without arguments.
    if !entry_expired(ct, unsafe { bpf_jiffies64() }) {
        return 0;
    }
    let found = ExpiredEntry {
        ct,
        // SAFETY: checked non-null above; the verifier bounds the read to
        // the map's value size.
        live: unsafe { *value },
        slot: 0,
        _pad: 0,
    };
    write(unsafe { (*ctx).meta }, &found);
    0
}

/// Over LIVE_SLOTS, `LIVE_CHUNK` buckets per run: the iterator walks
/// LIVE_CHUNKS, whose key is the chunk's index.
#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/bpf_map_elem")]
pub fn live_slots_expired(ctx: *mut c_void) -> i32 {
    let ctx = ctx as *const MapElemCtx<u32, u8>;
    // SAFETY: as in `live_expired`.
    let key = unsafe { (*ctx).key };
    if key.is_null() {
        return 0;
    }
    let chunk = unsafe { *key };
    // SAFETY: a helper without arguments.
    let jiffies = unsafe { bpf_jiffies64() };
    let meta = unsafe { (*ctx).meta };
    for i in 0..LIVE_CHUNK as u32 {
        let bucket = chunk.wrapping_mul(LIVE_CHUNK as u32).wrapping_add(i);
        // Past the last bucket: the lookup finds nothing.
        let Some(b) = LIVE_SLOTS.get_ptr(bucket) else {
            break;
        };
        for way in 0..LIVE_WAYS {
            // SAFETY: an array value, valid for the program's run; the index
            // is below the bucket's length.
            let slot: LiveSlot = unsafe { (*b).slots[way] };
            if slot.ct != 0 && slot.entry.generation != 0 && entry_expired(slot.ct, jiffies) {
                let found = ExpiredEntry {
                    ct: slot.ct,
                    live: slot.entry,
                    slot: bucket
                        .wrapping_mul(LIVE_WAYS as u32)
                        .wrapping_add(way as u32 + 1),
                    _pad: 0,
                };
                write(meta, &found);
            }
        }
    }
    0
}
