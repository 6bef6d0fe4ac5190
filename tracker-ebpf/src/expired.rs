//! Counted entries whose timeout has passed: an `iter/bpf_map_elem`
//! iterator over LIVE that `tracker counts` reads on demand.
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
use tracker_common::{ExpiredEntry, LiveEntry};

use crate::conn::{off, read};

/// `struct bpf_iter__bpf_map_elem` (kernel/bpf/map_iter.c): what the kernel
/// hands the program per element; `key` and `value` are null on the final
/// call after the last element.
#[repr(C)]
pub struct MapElemCtx {
    meta: *const IterMeta,
    map: *const c_void,
    key: *const u64,
    value: *const LiveEntry,
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

#[unsafe(no_mangle)]
#[unsafe(link_section = "iter/bpf_map_elem")]
pub fn live_expired(ctx: *mut c_void) -> i32 {
    let ctx = ctx as *const MapElemCtx;
    // SAFETY: context loads the verifier checks against the iterator's
    // context type; `key`/`value` point into the element (checked for null,
    // read within the map's key and value sizes).
    let (key, value) = unsafe { ((*ctx).key, (*ctx).value) };
    if key.is_null() || value.is_null() {
        return 0;
    }
    let ct = unsafe { *key };
    let Ok(timeout) = read::<u32>(ct, off!(ct_timeout)) else {
        return 0;
    };
    // SAFETY: a helper without arguments.
    if !expired(timeout, unsafe { bpf_jiffies64() }) {
        return 0;
    }
    let found = ExpiredEntry {
        ct,
        // SAFETY: checked non-null above; the verifier bounds the read to
        // the map's value size.
        live: unsafe { *value },
    };
    // SAFETY: `meta` is a trusted pointer of the iterator; `seq` its first
    // field, the seq_file the helper writes to.
    let seq = unsafe { (*(*ctx).meta).seq };
    // A full page makes the kernel show this element again after the page is
    // read (bpf_seq_read in kernel/bpf/bpf_iter.c): nothing is lost.
    unsafe {
        bpf_seq_write(
            seq.cast(),
            (&found as *const ExpiredEntry).cast(),
            core::mem::size_of::<ExpiredEntry>() as u32,
        )
    };
    0
}
