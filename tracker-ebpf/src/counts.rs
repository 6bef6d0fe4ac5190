//! Live connections per mark, kept in the kernel: +1 when an entry is
//! confirmed, −1 when it is destroyed, moved when its mark changes. Exact even
//! when the ring drops events, because nothing here goes through the ring.
//!
//! The invariant: MARK_COUNTS[k] equals the number of LIVE entries whose
//! `key` is k. Every change to one is made with the matching change to the
//! other (insert +1, remove −1, re-key −1/+1), so a DESTROY always uncounts
//! the key its entry was counted under, even when its mark changed through
//! a path no hook follows (nft `ct mark set` without UPDATE, tc act_ct, BPF
//! kfuncs). Entries older than the hooks are not in LIVE: they are counted
//! once in SEED_COUNTS from the start-up dump and leave it at their DESTROY,
//! never below zero. Reply-only NAT clash losers are never counted and their
//! DESTROY touches nothing.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{bindings::BPF_NOEXIST, maps::HashMap};
use tracker_common::{LiveEntry, MarkKey, stat, status};

use crate::maps::{LIVE, MARK_COUNTS, SEED_COUNTS, bump};

/// Atomic add whose result is unused, so it compiles to BPF_XADD, which every
/// supported kernel has (fetching atomics need 5.12).
#[inline(always)]
fn xadd(p: *mut i64, delta: i64) {
    // SAFETY: p points at an 8-byte aligned map value.
    unsafe { atomic_xadd::<i64, i64, { AtomicOrdering::Relaxed }>(p, delta) };
}

#[inline(always)]
fn add(map: &HashMap<MarkKey, i64>, key: &MarkKey, delta: i64) {
    for _ in 0..2 {
        if let Some(p) = map.get_ptr_mut(key) {
            xadd(p, delta);
            return;
        }
        // A concurrent insert of the same key makes this fail: retry the add.
        if map.insert(key, delta, BPF_NOEXIST as u64).is_ok() {
            return;
        }
    }
}

/// Decrements only a positive count: a seed that was never written, or an
/// entry counted twice by mistake, must not drive a count negative.
#[inline(always)]
fn sub_if_positive(map: &HashMap<MarkKey, i64>, key: &MarkKey) {
    if let Some(p) = map.get_ptr_mut(key)
        && unsafe { core::ptr::read_volatile(p) } > 0
    {
        xadd(p, -1);
    }
}

/// Counts a newly confirmed entry. Returns the generation it is known by.
#[inline(always)]
pub fn on_new(ct: u64, key: MarkKey, tuple_hash: u64, now: u64) -> u64 {
    let entry = LiveEntry {
        generation: now,
        tuple_hash,
        key,
        _pad: [0; 4],
    };
    if LIVE.insert(ct, entry, 0).is_err() {
        bump(stat::LIVE_MAP_FULL);
        return 0;
    }
    add(&MARK_COUNTS, &key, 1);
    now
}

/// Uncounts a destroyed entry. Returns the generation of its NEW, or 0 when
/// the hooks never counted it.
#[inline(always)]
pub fn on_destroy(ct: u64, key: MarkKey, ct_status: u32) -> u64 {
    // SAFETY: the value is copied out before the entry is removed.
    match unsafe { LIVE.get(ct) }.copied() {
        Some(entry) => {
            add(&MARK_COUNTS, &entry.key, -1);
            let _ = LIVE.remove(ct);
            entry.generation
        }
        None => {
            // Not counted by the hooks: either it predates them (counted in
            // the seed) or it is the reply-only loser of a NAT clash, which
            // is never counted.
            if ct_status & status::NAT_CLASH == 0 {
                sub_if_positive(&SEED_COUNTS, &key);
            }
            0
        }
    }
}

/// The generation a counted entry is known by, or 0 when it predates the
/// hooks.
#[inline(always)]
pub fn generation(ct: u64) -> u64 {
    // SAFETY: copied out at once.
    unsafe { LIVE.get(ct) }.map_or(0, |e| e.generation)
}

/// Moves a counted entry to its new mark after the mark changed.
#[inline(always)]
pub fn on_mark_change(ct: u64, new_mark: u32) {
    let Some(p) = LIVE.get_ptr_mut(ct) else {
        return;
    };
    // SAFETY: hash values stay valid for the program's run (RCU).
    let entry = unsafe { &mut *p };
    if entry.key.mark == new_mark {
        return;
    }
    let old = entry.key;
    let mut new = old;
    new.mark = new_mark;
    entry.key = new;
    add(&MARK_COUNTS, &old, -1);
    add(&MARK_COUNTS, &new, 1);
}
