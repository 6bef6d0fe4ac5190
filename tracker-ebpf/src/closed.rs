//! What `tracker serve` reports per mark that the ring cannot be trusted
//! with: how many flows ended and the packets and bytes they carried, added
//! here at DESTROY so the totals stay exact when the ring drops records.
//! Off (and pruned by the verifier) unless userspace sets ACCOUNT_CLOSED.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::bindings::BPF_NOEXIST;
use tracker_common::{ClosedFlows, Counters, MarkKey, stat};

use crate::maps::{CLOSED, CLOSED_OTHER, bump};

/// Set by userspace before load when it serves metrics.
#[unsafe(no_mangle)]
static ACCOUNT_CLOSED: u32 = 0;

/// Whether this load keeps the serve-only accounting (a frozen global: the
/// verifier drops whichever branch it rules out).
#[inline(always)]
pub fn enabled() -> bool {
    // SAFETY: a global set before load.
    unsafe { core::ptr::read_volatile(&ACCOUNT_CLOSED) != 0 }
}

#[inline(always)]
fn xadd(p: *mut u64, delta: u64) {
    // SAFETY: p points at an 8-byte aligned map value; the result is unused,
    // so this compiles to BPF_XADD (no fetching atomics before 5.12).
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(p, delta) };
}

/// The slot a key's totals go to: its own, created on first use, or the
/// overflow slot when the map is full.
#[inline(always)]
fn slot(key: &MarkKey) -> Option<*mut ClosedFlows> {
    if let Some(p) = CLOSED.get_ptr_mut(key) {
        return Some(p);
    }
    // A concurrent insert of the same key makes ours fail: look it up again.
    let _ = CLOSED.insert(key, ClosedFlows::default(), BPF_NOEXIST as u64);
    if let Some(p) = CLOSED.get_ptr_mut(key) {
        return Some(p);
    }
    bump(stat::CLOSED_MAP_FULL);
    CLOSED_OTHER.get_ptr_mut(0)
}

/// Adds one ended flow, and its counters when the acct extension has them.
#[inline(always)]
pub fn add(key: &MarkKey, counters: Option<[Counters; 2]>) {
    let Some(p) = slot(key) else { return };
    // SAFETY: a map value, valid for the program's run; fields 8-aligned.
    unsafe {
        xadd(&raw mut (*p).flows, 1);
        if let Some(c) = counters {
            xadd(&raw mut (*p).packets[0], c[0].packets);
            xadd(&raw mut (*p).packets[1], c[1].packets);
            xadd(&raw mut (*p).bytes[0], c[0].bytes);
            xadd(&raw mut (*p).bytes[1], c[1].bytes);
        }
    }
}

/// Counts a change the hooks saw in the watched namespace, for serve's
/// events metric (only then: every other run skips the bump).
#[inline(always)]
pub fn seen(index: u32) {
    if enabled() {
        bump(index);
    }
}
