//! Maps shared by every hook. Sizes here are defaults; userspace resizes the
//! ring (`--ring-size`) and the live-entry map (from `nf_conntrack_max`)
//! before load.

use aya_ebpf::{
    bindings::BPF_F_MMAPABLE,
    helpers::bpf_get_current_pid_tgid,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use tracker_common::{ClosedFlows, FlowRecord, LiveBucket, LiveEntry, MarkKey, stat};

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
/// A preallocated hash rather than an LRU: it never evicts (userspace sizes
/// it above `nf_conntrack_max`, and a full map is counted), and an insert
/// skips the LRU's list bookkeeping, the dearest step on the NEW path.
#[map]
pub static LIVE: HashMap<u64, LiveEntry> = HashMap::with_max_entries(262144, 0);

/// Counted entries in buckets of slots claimed with compare-and-swap
/// (counts.rs): where the NEW hooks run as fexit programs on Linux 5.12+,
/// their entries go here, and LIVE holds only those that found their bucket
/// full. Sized by userspace (`globals::LIVE_BUCKETS`); memory-mappable so
/// the start-up seeding reads it without a syscall per bucket.
#[map]
pub static LIVE_SLOTS: Array<LiveBucket> = Array::with_max_entries(1, BPF_F_MMAPABLE);

/// One element per `LIVE_CHUNK` buckets of LIVE_SLOTS (sized by userspace),
/// for the iterator that finds expired entries (expired.rs) to walk: the
/// kernel runs an iterator's program once per element, and that run, not
/// the program, was most of the walk's time when it went bucket by bucket.
#[map]
pub static LIVE_CHUNKS: Array<u8> = Array::with_max_entries(1, 0);

/// Index 0 is non-zero once anything was inserted into LIVE: until then a
/// DESTROY not found in LIVE_SLOTS skips the hash lookup.
#[map]
pub static LIVE_HASHED: Array<u32> = Array::with_max_entries(1, 0);

/// Flows that ended, per (netns, mark, family, protocol), with their
/// packets and bytes: kept only while userspace serves metrics, which sizes
/// it (one entry otherwise).
#[map]
pub static CLOSED: HashMap<MarkKey, ClosedFlows> = HashMap::with_max_entries(16384, 0);

/// Closed flows whose key found CLOSED full: reported as one "other" row, so
/// no flow goes uncounted.
#[map]
pub static CLOSED_OTHER: Array<ClosedFlows> = Array::with_max_entries(1, 0);

/// Arguments saved at a kprobe for the matching kretprobe, keyed by pid_tgid.
#[map]
static STASH: HashMap<u64, Stash> = HashMap::with_max_entries(16384, 0);

/// Deepest nesting of hooks on one CPU that gets a record of its own:
/// process context, softirq, hardirq, NMI.
pub const NEST_LEVELS: u32 = 4;

/// Where a hook builds its record before it goes to the ring, one per
/// nesting level: a program can be interrupted on its CPU by another hook
/// (fexit programs run with only migration disabled), and the interrupting
/// one must not write over the first one's record.
#[map]
static SCRATCH: PerCpuArray<FlowRecord> = PerCpuArray::with_max_entries(NEST_LEVELS, 0);

/// How many hooks are running on this CPU right now (index into SCRATCH).
#[map]
static NESTING: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(p) = STATS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it.
        unsafe { *p += 1 };
    }
}

/// This CPU's scratch record for the current nesting level, held until
/// [`Scratch::leave`]. Interrupts nest strictly (an interrupting hook
/// finishes before the one it interrupted resumes) and programs cannot
/// migrate while they run, so a per-CPU depth counter is enough to keep
/// levels apart.
pub struct Scratch {
    depth: *mut u32,
    level: u32,
    pub record: *mut FlowRecord,
}

impl Scratch {
    #[inline(always)]
    pub fn enter() -> Option<Self> {
        let depth = NESTING.get_ptr_mut(0)?;
        // SAFETY: per-CPU slot; a nested hook restores it before returning.
        let level = unsafe { *depth };
        match SCRATCH.get_ptr_mut(level) {
            Some(record) => {
                unsafe { *depth = level + 1 };
                Some(Scratch {
                    depth,
                    level,
                    record,
                })
            }
            None => {
                bump(stat::NEST_OVERFLOW);
                None
            }
        }
    }

    #[inline(always)]
    pub fn leave(self) {
        // SAFETY: the slot `enter` found; this run still owns its level.
        unsafe { *self.depth = self.level };
    }
}

/// What a kprobe saves for its kretprobe.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Stash {
    /// The skb (confirm, connmark) or the ct (insert, delete).
    pub ptr: u64,
    /// confirm: the skb's entry at the call (0 elsewhere, or unread).
    pub orig: u64,
    pub portid: u32,
    pub _pad: u32,
}

/// Non-zero when the running kernel cannot preempt kernel code (built
/// without CONFIG_PREEMPTION: userspace finds no `preempt_schedule` in its
/// BTF). A task then stays on its CPU from a hooked function's entry to its
/// return, because none of the kprobed functions sleeps (each also runs in
/// softirq context), and only interrupts can run another hooked call in
/// between, which ends before the interrupted one resumes. A per-CPU stack
/// then pairs every kretprobe with its kprobe, for one array lookup each where
/// the hash map costs an insert, a lookup and a delete. Set before load.
#[unsafe(no_mangle)]
static STASH_PER_CPU: u32 = 0;

/// One level of the per-CPU stash stack.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StashSlot {
    /// `pid_tgid` of the task whose kprobe filled the slot.
    owner: u64,
    stash: Stash,
}

/// The per-CPU stash stack (see `STASH_PER_CPU`): its depth and levels in
/// one value, so a kprobe and its kretprobe each make one lookup. Per-CPU
/// array lookups are helper calls on the kernels that use this stack (the
/// verifier inlines them only from Linux 6.10 on).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StashStack {
    depth: u32,
    _pad: u32,
    levels: [StashSlot; NEST_LEVELS as usize],
}

/// The index of the level below `level` (> 0), masked and passed through
/// memory: otherwise the compiler, knowing 1 ≤ level ≤ NEST_LEVELS, drops
/// the mask and folds the `- 1` into the address as a negative constant,
/// and 5.10's verifier, which checked `level > 0` on another register
/// (it does not carry bounds across register copies), rejects the access
/// ("invalid access to map value ... off=-8").
#[inline(always)]
fn below(level: usize) -> usize {
    const { assert!(NEST_LEVELS.is_power_of_two()) };
    let index = level.wrapping_sub(1) & (NEST_LEVELS as usize - 1);
    // SAFETY: a local.
    unsafe { core::ptr::read_volatile(&index) }
}

#[map]
static STASH_STACK: PerCpuArray<StashStack> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn stash_per_cpu() -> bool {
    // SAFETY: a global set before load; a frozen constant to the verifier,
    // which keeps only one of the two ways.
    unsafe { core::ptr::read_volatile(&STASH_PER_CPU) != 0 }
}

impl Stash {
    /// Saves `ptr` (and `orig`, `portid`) for this task's kretprobe.
    #[inline(always)]
    pub fn put(ptr: u64, orig: u64, portid: u32) {
        let s = Stash {
            ptr,
            orig,
            portid,
            _pad: 0,
        };
        let owner = bpf_get_current_pid_tgid();
        if !stash_per_cpu() {
            let _ = STASH.insert(owner, s, 0);
            return;
        }
        let Some(stack) = STASH_STACK.get_ptr_mut(0) else {
            return;
        };
        // SAFETY: this CPU's value; nothing else runs on this CPU meanwhile
        // except interrupts, which restore what they change.
        let stack = unsafe { &mut *stack };
        let mut level = stack.depth as usize;
        // A slot below that another task filled was left by a kretprobe that
        // never ran (the kernel had no kretprobe instance to spare): without
        // preemption, no call of another task can still be pending here.
        if level > 0
            && let Some(b) = stack.levels.get(below(level))
            && b.owner != owner
        {
            level = 0;
        }
        // These functions run in process and softirq context only, so a
        // full stack holds slots whose kretprobes never ran: start again.
        if level >= stack.levels.len() {
            bump(stat::STASH_MISSES);
            level = 0;
        }
        if let Some(slot) = stack.levels.get_mut(level) {
            *slot = StashSlot { owner, stash: s };
            stack.depth = level as u32 + 1;
        }
    }

    /// Takes what this task's kprobe saved; a miss is counted.
    #[inline(always)]
    pub fn take() -> Option<Stash> {
        if stash_per_cpu() {
            let s = Self::pop();
            if s.is_none() {
                bump(stat::STASH_MISSES);
            }
            return s;
        }
        let key = bpf_get_current_pid_tgid();
        // SAFETY: copied out before removal.
        let s = unsafe { STASH.get(key) }.copied();
        if s.is_some() {
            let _ = STASH.remove(key);
        } else {
            bump(stat::STASH_MISSES);
        }
        s
    }

    /// The top of this CPU's stash stack, when this task filled it.
    #[inline(always)]
    fn pop() -> Option<Stash> {
        // SAFETY: this CPU's value, as in `put`.
        let stack = unsafe { &mut *STASH_STACK.get_ptr_mut(0)? };
        let level = stack.depth as usize;
        if level == 0 {
            return None;
        }
        stack.depth = level as u32 - 1;
        if level > NEST_LEVELS as usize {
            return None;
        }
        let slot = *stack.levels.get(below(level))?;
        if slot.owner != bpf_get_current_pid_tgid() {
            // Out of step (a kprobe that found no slot): start again empty.
            stack.depth = 0;
            return None;
        }
        Some(slot.stash)
    }
}
