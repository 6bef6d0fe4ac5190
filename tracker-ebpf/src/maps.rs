//! Maps shared by every hook. Sizes here are defaults; userspace resizes the
//! ring (`--ring-size`) and the live-entry map (from `nf_conntrack_max`)
//! before load.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use tracker_common::{LiveEntry, MarkKey, stat};

/// Flow records for userspace.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(16 * 1024 * 1024, 0);

/// Per-CPU counters, indexed by `tracker_common::stat`.
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// Live connections per (netns, mark, family, protocol), kept by the hooks.
#[map]
pub static MARK_COUNTS: HashMap<MarkKey, i64> = HashMap::with_max_entries(65536, 0);

/// Entries that existed before the hooks attached, counted once from the
/// start-up dump by userspace and decremented here when they are destroyed.
#[map]
pub static SEED_COUNTS: HashMap<MarkKey, i64> = HashMap::with_max_entries(65536, 0);

/// Every entry counted in MARK_COUNTS, keyed by its `struct nf_conn` address.
#[map]
pub static LIVE: LruHashMap<u64, LiveEntry> = LruHashMap::with_max_entries(262144, 0);

/// Arguments saved at a kprobe for the matching kretprobe, keyed by pid_tgid.
#[map]
pub static STASH: HashMap<u64, Stash> = HashMap::with_max_entries(16384, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct Stash {
    /// The skb (confirm, connmark) or the ct (insert, delete).
    pub ptr: u64,
    pub portid: u32,
    pub _pad: u32,
}

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(p) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { *p += 1 };
    }
}
