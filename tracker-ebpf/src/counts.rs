//! Live connections per mark, kept in the kernel: +1 when an entry is
//! confirmed, −1 when it is destroyed, moved when its mark changes. Exact even
//! when the ring drops events, because nothing here goes through the ring.
//!
//! Each counted entry is remembered in one place: a slot of LIVE_SLOTS
//! where the hooks can claim one safely, otherwise, or when its bucket is
//! full, the LIVE hash map. A hash insert takes a bucket lock with
//! interrupts off and a free-list lock (kernel/bpf/hashtab.c), about 2 µs
//! of a NEW in the test bed (docs/hook-cost.md); claiming a slot is one
//! array lookup and a store.
//!
//! Claiming is safe in two ways, and userspace picks one per run before load
//! (`SLOT_CPUS`), so that all claimers of a run follow the same rule:
//! - fentry/fexit programs on 5.12+ claim any free way with a
//!   compare-and-swap of its `ct` (BPF_CMPXCHG);
//! - kprobe programs (5.10, whose verifier has no compare-and-swap) claim
//!   only the ways their CPU owns, w % SLOT_CPUS == cpu. A kprobe program
//!   runs with preemption off and never while another kprobe program runs
//!   on the same CPU (`bpf_prog_active` in `trace_call_bpf`,
//!   kernel/trace/bpf_trace.c), so between its read of a free `ct` and its
//!   store no other claimer can touch that way. The only other store to
//!   `ct` is the DESTROY of the entry in it, which frees the slot (non-zero
//!   to 0) and so never races a claim (0 to non-zero).
//! Programs of the other kind put their entries in LIVE.
//!
//! The invariant: MARK_COUNTS[k] equals the number of remembered entries
//! whose `key` is k. Every change to one is made with the matching change to the
//! other (insert +1, remove −1, re-key −1/+1), so a DESTROY always uncounts
//! the key its entry was counted under, even when its mark changed through
//! a path no hook follows (nft `ct mark set` without UPDATE, tc act_ct, BPF
//! kfuncs). Entries older than the hooks are remembered and counted when the
//! start-up dump lists them (seed.rs); where that hook cannot attach they
//! are counted once in SEED_COUNTS by userspace from the dump and leave it
//! at their DESTROY, never below zero. Reply-only NAT clash losers are never counted and their
//! DESTROY touches nothing. The winner of a race to confirm one flow, which the packet
//! path's NEW hook sees a second time through the loser's packet, is counted once:
//! fexit claimers find it remembered, or meet its claim at the same way
//! (`Remembered::Reported`); the kprobe hook, whose claimers could not tell two
//! claims at once apart, leaves that second sighting out before it gets here
//! (confirm.rs).

use core::intrinsics::{AtomicOrdering, atomic_cxchg, atomic_xadd};
use core::ptr::{read_volatile, write_volatile};

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_get_smp_processor_id, maps::HashMap};
use tracker_common::{
    LIVE_WAYS, LiveBucket, LiveEntry, LiveSlot, MarkKey, live_bucket, stat, status,
};

use crate::maps::{LIVE, LIVE_HASHED, LIVE_SLOTS, MARK_COUNTS, SEED_COUNTS, bump};

/// Buckets of LIVE_SLOTS, or 0 when every entry goes to LIVE. Set before
/// load; a frozen constant to the verifier, which then drops the unused way.
#[unsafe(no_mangle)]
static LIVE_BUCKETS: u32 = 0;

/// 0: fentry/fexit programs claim slots with compare-and-swap; n > 0:
/// kprobe programs claim them, CPU c the ways w with w % n == c (see the
/// module's text). Set before load, with LIVE_BUCKETS.
#[unsafe(no_mangle)]
static SLOT_CPUS: u32 = 0;

/// The kind of program a change comes from, which decides whether and how
/// it may claim a slot.
#[derive(Clone, Copy)]
pub enum Claimer {
    /// fentry/fexit: may use compare-and-swap (5.12+).
    Tracing,
    /// kprobe/kretprobe: no compare-and-swap on 5.10 (its verifier rejects
    /// the instruction even in dead code, so these programs never contain
    /// it), but never nested on one CPU.
    Kprobe,
}

/// The LIVE_SLOTS bucket of the entry at `ct`, when slots are in use.
#[inline(always)]
fn bucket(ct: u64) -> Option<*mut LiveBucket> {
    // SAFETY: a global set before load.
    let buckets = unsafe { read_volatile(&LIVE_BUCKETS) };
    if buckets == 0 {
        return None;
    }
    LIVE_SLOTS.get_ptr_mut(live_bucket(ct, buckets))
}

/// The filled slot that holds `ct`. A slot still being filled (generation
/// 0) is skipped, as a hash entry not yet inserted would be.
#[inline(always)]
fn find(ct: u64) -> Option<*mut LiveSlot> {
    let b = bucket(ct)?;
    for way in 0..LIVE_WAYS {
        // SAFETY: `b` is an array value, valid for the program's run; the
        // index is below the bucket's length.
        let slot = unsafe { (*b).slots.as_mut_ptr().add(way) };
        if unsafe { read_volatile(&(*slot).ct) } == ct
            && unsafe { read_volatile(&(*slot).entry.generation) } != 0
        {
            return Some(slot);
        }
    }
    None
}

/// Whether LIVE may hold entries: otherwise a lookup there cannot find one.
#[inline(always)]
fn hashed() -> bool {
    LIVE_HASHED
        .get(0)
        .is_some_and(|v| unsafe { read_volatile(v) } != 0)
}

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

/// The generation of an entry remembered from the start-up dump (seed.rs):
/// a boot-time clock reading is never this small, and such an entry has no
/// NEW to pair its DESTROY with (0 is reported for it).
const SEEDED: u64 = 1;

/// What a generation means to a record: 0 for an entry the hooks did not
/// see confirmed.
#[inline(always)]
fn reported(generation: u64) -> u64 {
    if generation == SEEDED { 0 } else { generation }
}

/// What `remember` did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Remembered {
    /// Remembered and counted now.
    Now,
    /// Remembered before: by the seed (for a NEW, which now takes it over),
    /// or by a NEW (for the seed, which then leaves it).
    Already,
    /// For a NEW: another NEW hook remembered (or is remembering) this very
    /// entry. That happens when two packets of one new flow race to confirm
    /// it: the loser's packet is handed the winner's entry
    /// (`__nf_ct_resolve_clash`, net/netfilter/nf_conntrack_core.c) and
    /// `__nf_conntrack_confirm` returns NF_ACCEPT for it too, so the hook on
    /// the packet path sees the winner a second time. conntrack reports one
    /// NEW; so does the tracker.
    Reported,
    /// LIVE was full: not remembered, not counted (the stat says so).
    Full,
}

/// Remembers and counts `ct` unless it is remembered already, which happens
/// only when the start-up dump listed an entry whose NEW hook had not run
/// yet: then the NEW's generation replaces the seed's.
#[inline(always)]
fn remember(
    ct: u64,
    key: MarkKey,
    tuple_hash: u64,
    generation: u64,
    claimer: Claimer,
) -> Remembered {
    // Two scans of the bucket, for the entry and then for a free way, cost
    // less than one that does both: in alternating runs in one boot (6.1,
    // fexit) the NEW hook took 2033 ns against 2343 ns with the single scan
    // (docs/hook-cost.md).
    if let Some(slot) = find(ct) {
        return met(slot, key, generation);
    }
    if let Some(b) = bucket(ct) {
        match claim(b, ct, claimer) {
            Claim::Won(slot) => {
                // SAFETY: the slot is this entry's until its DESTROY frees it.
                unsafe {
                    (*slot).entry.tuple_hash = tuple_hash;
                    (*slot).entry.key = key;
                    write_volatile(&raw mut (*slot).entry.generation, generation);
                }
                add(&MARK_COUNTS, &key, 1);
                return Remembered::Now;
            }
            // Claimed for this entry by another hook, maybe still filling it.
            Claim::Taken(slot) => return met(slot, key, generation),
            Claim::None => {}
        }
    }
    // No slots, none this program may claim, or the bucket is full: LIVE
    // takes the entry.
    if !hashed()
        && let Some(p) = LIVE_HASHED.get_ptr_mut(0)
    {
        // SAFETY: an array value; any CPU may set it, none clears it.
        unsafe { write_volatile(p, 1) };
    }
    let entry = LiveEntry {
        generation,
        tuple_hash,
        key,
        _pad: [0; 4],
    };
    match LIVE.insert(ct, entry, BPF_NOEXIST as u64) {
        Ok(()) => {
            add(&MARK_COUNTS, &key, 1);
            Remembered::Now
        }
        Err(EEXIST) => {
            if generation != SEEDED
                && let Some(p) = LIVE.get_ptr_mut(ct)
            {
                // SAFETY: hash values stay valid for the program's run (RCU).
                if unsafe { read_volatile(&(*p).generation) } != SEEDED {
                    return Remembered::Reported;
                }
                unsafe {
                    rekey(&raw mut (*p).key, key);
                    write_volatile(&raw mut (*p).generation, generation);
                }
            }
            Remembered::Already
        }
        Err(_) => {
            bump(stat::LIVE_MAP_FULL);
            Remembered::Full
        }
    }
}

/// What `claim` found.
enum Claim {
    /// A free way, now this entry's.
    Won(*mut LiveSlot),
    /// A way another hook claimed for this same entry, maybe still being
    /// filled.
    Taken(*mut LiveSlot),
    /// No way this program may claim is free.
    None,
}

/// What a NEW, or the seed, does on finding its entry's slot taken: the
/// seed leaves it; a NEW takes over what the seed remembered, but not what
/// another NEW did or is still filling (`Remembered::Reported`). A seed
/// fills slots only while the start-up dump runs, so a slot still being
/// filled is almost always a racing NEW's.
#[inline(always)]
fn met(slot: *mut LiveSlot, key: MarkKey, generation: u64) -> Remembered {
    if generation == SEEDED {
        return Remembered::Already;
    }
    // SAFETY: a slot of an array value, valid for the program's run.
    if unsafe { read_volatile(&(*slot).entry.generation) } != SEEDED {
        return Remembered::Reported;
    }
    // SAFETY: as above.
    unsafe {
        rekey(&raw mut (*slot).entry.key, key);
        write_volatile(&raw mut (*slot).entry.generation, generation);
    }
    Remembered::Already
}

/// Claims a free way of bucket `b` for `ct` by the rule of this run (see
/// the module's text).
#[inline(always)]
fn claim(b: *mut LiveBucket, ct: u64, claimer: Claimer) -> Claim {
    // SAFETY: a global set before load.
    let cpus = unsafe { read_volatile(&SLOT_CPUS) };
    match claimer {
        Claimer::Tracing if cpus == 0 => {
            // Every claimer tries the free ways in the same order, so two
            // hooks claiming the same entry at once meet at the same way:
            // one wins it, the other sees the entry there (`Taken`). Only a
            // way freed between their two scans can part them.
            for way in 0..LIVE_WAYS {
                // SAFETY: as in `find`.
                let slot = unsafe { (*b).slots.as_mut_ptr().add(way) };
                let held = unsafe { read_volatile(&(*slot).ct) };
                if held == ct {
                    return Claim::Taken(slot);
                }
                if held != 0 {
                    continue;
                }
                // SAFETY: an aligned u64 in the array value; the swap makes
                // the slot this entry's, whatever other CPUs claim at once.
                let (was, won) = unsafe {
                    atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
                        &raw mut (*slot).ct,
                        0,
                        ct,
                    )
                };
                if won {
                    return Claim::Won(slot);
                }
                if was == ct {
                    return Claim::Taken(slot);
                }
            }
            Claim::None
        }
        Claimer::Kprobe if cpus != 0 => {
            // SAFETY: a helper without arguments.
            let cpu = unsafe { bpf_get_smp_processor_id() };
            for way in 0..LIVE_WAYS {
                if way as u32 % cpus != cpu {
                    continue;
                }
                // SAFETY: as in `find`.
                let slot = unsafe { (*b).slots.as_mut_ptr().add(way) };
                if unsafe { read_volatile(&(*slot).ct) } != 0 {
                    continue;
                }
                // SAFETY: this CPU is the way's only claimer, and this
                // program cannot be interrupted by another kprobe program.
                unsafe { write_volatile(&raw mut (*slot).ct, ct) };
                return Claim::Won(slot);
            }
            Claim::None
        }
        _ => Claim::None,
    }
}

/// Moves a remembered entry's count to `key` if it was counted under
/// another: a NEW finding its address remembered (see `remember`) counts
/// under what it sees now.
#[inline(always)]
fn rekey(at: *mut MarkKey, key: MarkKey) {
    // SAFETY: a map value's field, valid for the program's run.
    let old = unsafe { *at };
    if old != key {
        unsafe { *at = key };
        add(&MARK_COUNTS, &old, -1);
        add(&MARK_COUNTS, &key, 1);
    }
}

/// `-EEXIST` from a `BPF_NOEXIST` insert of a key that is there.
const EEXIST: i32 = -17;

/// Counts a newly confirmed entry. Returns the generation it is known by,
/// or `None` when a NEW hook already reported it (see `Remembered::Reported`).
#[inline(always)]
pub fn on_new(ct: u64, key: MarkKey, tuple_hash: u64, now: u64, claimer: Claimer) -> Option<u64> {
    match remember(ct, key, tuple_hash, now, claimer) {
        Remembered::Full => Some(0),
        Remembered::Now | Remembered::Already => Some(now),
        Remembered::Reported => None,
    }
}

/// Remembers and counts an entry the start-up dump listed, unless a NEW
/// hook already did. Not atomic with the NEW hook's own check: for an entry
/// confirmed while the dump runs, in the microseconds between its insertion
/// into the table (the dump can list it from then on) and its NEW hook, the
/// two hooks can run at once on two CPUs, both find it absent and both
/// count it; the count from the dump's marks had the same window.
#[inline(always)]
pub fn on_seed(ct: u64, key: MarkKey, tuple_hash: u64, claimer: Claimer) {
    if remember(ct, key, tuple_hash, SEEDED, claimer) == Remembered::Now {
        bump(stat::SEEDED);
    }
}

/// Uncounts a destroyed entry. Returns the generation of its NEW, or 0 when
/// the hooks never counted it.
#[inline(always)]
pub fn on_destroy(ct: u64, key: MarkKey, ct_status: u32) -> u64 {
    if let Some(slot) = find(ct) {
        // SAFETY: copied out before the slot is freed; freeing is storing 0
        // in `ct`, after which another NEW may claim it.
        let entry = unsafe { read_volatile(&(*slot).entry) };
        unsafe {
            write_volatile(&raw mut (*slot).entry.generation, 0);
            write_volatile(&raw mut (*slot).ct, 0);
        }
        add(&MARK_COUNTS, &entry.key, -1);
        return reported(entry.generation);
    }
    // SAFETY: the value is copied out before the entry is removed.
    let hashed_entry = if hashed() {
        unsafe { LIVE.get(ct) }.copied()
    } else {
        None
    };
    match hashed_entry {
        Some(entry) => {
            add(&MARK_COUNTS, &entry.key, -1);
            let _ = LIVE.remove(ct);
            reported(entry.generation)
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
    if let Some(slot) = find(ct) {
        // SAFETY: a slot of an array value.
        return reported(unsafe { read_volatile(&(*slot).entry.generation) });
    }
    if !hashed() {
        return 0;
    }
    // SAFETY: copied out at once.
    unsafe { LIVE.get(ct) }.map_or(0, |e| reported(e.generation))
}

/// Where a counted entry's key is kept, for a mark change.
#[inline(always)]
fn key_of(ct: u64) -> Option<*mut MarkKey> {
    if let Some(slot) = find(ct) {
        // SAFETY: a slot of an array value.
        return Some(unsafe { &raw mut (*slot).entry.key });
    }
    if !hashed() {
        return None;
    }
    // SAFETY: hash values stay valid for the program's run (RCU).
    LIVE.get_ptr_mut(ct).map(|p| unsafe { &raw mut (*p).key })
}

/// Moves a counted entry to its new mark after the mark changed.
#[inline(always)]
pub fn on_mark_change(ct: u64, new_mark: u32) {
    let Some(p) = key_of(ct) else {
        return;
    };
    // SAFETY: a map value, valid for the program's run.
    let key = unsafe { &mut *p };
    if key.mark == new_mark {
        return;
    }
    let old = *key;
    let mut new = old;
    new.mark = new_mark;
    *key = new;
    add(&MARK_COUNTS, &old, -1);
    add(&MARK_COUNTS, &new, 1);
}
