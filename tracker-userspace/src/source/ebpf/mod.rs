//! The eBPF source: loads the programs with this kernel's offsets, attaches
//! the hooks, and turns ring-buffer records into `Event`s.

mod collect;
pub mod decode;
pub mod event_cache;
mod expired;
pub mod hooks;
pub mod host;
mod seed;
mod start;

use std::path::PathBuf;

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
};
use tokio::io::unix::AsyncFd;
use tracker_common::{KernelFilter, globals, stat};

use crate::btf::KernelBtf;
use crate::event::Event;
use decode::Decoder;
use hooks::{HookMode, Outcome};
use host::{Clock, KernelProfile};
pub use start::{Request, StartError};

/// How often the reader collects records the programs added without waking
/// it (they wake it only once the ring is filling up, see `wakeup_bytes`):
/// the most an event waits before it is shown.
pub const COLLECT_EVERY: std::time::Duration = std::time::Duration::from_millis(10);

/// Unread bytes at which the programs wake the reader: an eighth of the
/// ring, so a burst is picked up long before the ring fills, while ordinary
/// rates are collected in batches by the timer. A ring of
/// [`NO_WAKEUP_RING`] or more gets none (0): between two collections it
/// holds what 2 M new connections per second would write, and the check of
/// the unread bytes is a helper call in every hook.
fn wakeup_bytes(ring_size: u32) -> u64 {
    if ring_size >= NO_WAKEUP_RING {
        0
    } else {
        u64::from(ring_size) / 8
    }
}

/// 8 MiB: 23 800 records of 352 bytes (with the ring's 8-byte headers),
/// written in one [`COLLECT_EVERY`] at 2.4 M records per second.
const NO_WAKEUP_RING: u32 = 8 << 20;

/// The object built from tracker-ebpf, embedded at build time.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracker"));

struct Options {
    hook_mode: HookMode,
    ring_size: u32,
    filter: KernelFilter,
    /// Attach the UPDATE hook (the filter then lets UPDATE through).
    updates: bool,
    /// Keep serve's closed-flow totals and per-kind counters in the kernel.
    account_closed: bool,
}

/// Keys the closed-flow map holds while serving: marks × families ×
/// protocols × namespaces seen, far more than a gateway's ISPs; a key
/// beyond it is still counted, in the overflow slot.
const CLOSED_KEYS: u32 = 16384;

#[derive(Debug, thiserror::Error)]
pub enum EbpfError {
    #[error("{0}")]
    Btf(#[from] crate::btf::BtfError),
    #[error(
        "this tracker was built without its eBPF object (AYA_BUILD_SKIP was set): rebuild with \
         `cargo xtask build`"
    )]
    NoObject,
    #[error("loading the eBPF object failed: {0}")]
    Load(String),
    #[error("the eBPF hooks cannot attach: {0}")]
    Attach(String),
    #[error("{0}")]
    Map(String),
}

pub struct EbpfSource {
    ebpf: Ebpf,
    ring: AsyncFd<RingBuf<MapData>>,
    /// Fires every [`COLLECT_EVERY`]: when the ring is read without a wakeup.
    collect: collect::CollectTimer,
    stats: PerCpuArray<MapData, u64>,
    decoder: Decoder,
    outcomes: Vec<Outcome>,
    hook_mode: HookMode,
    updates: bool,
    ring_size: u32,
    /// Where the count maps are pinned for `tracker counts`.
    pins: Option<PathBuf>,
    /// The iterators over LIVE and LIVE_SLOTS that find expired entries,
    /// until they are pinned with the count maps; `None` where the kernel
    /// refused them.
    expired: Option<expired::ExpiredIter>,
    /// Their pins, which hold the links for as long as the source runs.
    expired_pins: Vec<aya::programs::links::PinnedLink>,
    /// Buckets of LIVE_SLOTS (`globals::LIVE_BUCKETS`); 0 when the hooks
    /// remember every counted entry in LIVE.
    live_buckets: u32,
    /// Whether the counts keep tuple hashes (`LiveLayout::tuple_hashes`).
    tuple_hashes: bool,
    /// The program that counts entries older than the tracker while the
    /// start-up dump lists them; `None` where it cannot load.
    seed_hook: Option<seed::SeedHook>,
    /// Whether nf_conntrack_events=2 means "only while a ctnetlink listener
    /// exists" (the autodetect mode of 5.19+); before, any non-zero value
    /// turns events on.
    events_autodetect: bool,
    /// The event-cache sysctl this run set; restored when the source drops.
    event_cache: Option<event_cache::EventCache>,
    /// Records that could not be decoded (version or kind mismatch).
    pub undecodable: u64,
}

/// Capacity of the live-entry map: the conntrack table's own limit with
/// headroom, so LRU eviction never happens while the table is within limit.
fn live_capacity() -> u32 {
    let max = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_max")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(262_144);
    max.saturating_add(max / 8).clamp(4096, 1 << 26)
}

/// Where this run keeps counted entries (tracker-ebpf's counts.rs):
/// `buckets` of LIVE_SLOTS (0: none, all go to the hash map LIVE), the
/// rule by which the hooks claim their slots (`globals::SLOT_CPUS`), and
/// whether each entry keeps its tuple hash (`globals::TUPLE_HASHES`).
/// Decided before load, since all are frozen globals, from one guess of
/// which programs will attach. Either claiming rule is safe with any mix of
/// attached programs: the programs of the other kind never claim a slot and
/// put their entries in LIVE, which every lookup checks too; a wrong guess
/// costs speed, not exactness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LiveLayout {
    buckets: u32,
    /// 0: fentry/fexit programs claim with compare-and-swap; n: kprobe
    /// programs claim, CPU c the ways w with w % n == c.
    slot_cpus: u32,
    /// Only the start-up count from the dump's marks needs tuple hashes,
    /// and only where no seed program (fentry or kprobe on nf_ct_get_id,
    /// `seed::SeedHook`) can load.
    tuple_hashes: bool,
}

impl LiveLayout {
    fn choose(mode: HookMode, kbtf: &KernelBtf) -> Self {
        let kprobes = mode != HookMode::Fentry && hooks::kprobe_support().is_ok();
        let tuple_hashes =
            !(kprobes || mode != HookMode::Kprobe && kbtf.func_target("nf_ct_get_id").is_some());
        // Compare-and-swap (BPF_CMPXCHG) from Linux 5.12, in fexit programs,
        // which need the function's BTF.
        let fexit = mode != HookMode::Kprobe
            && host::kernel_release_at_least(5, 12)
            && kbtf.func_target("__nf_conntrack_confirm").is_some();
        let slot_cpus = match (fexit, kprobes) {
            (true, _) => Some(0),
            (false, true) => kprobe_slot_cpus(),
            (false, false) => None,
        };
        match slot_cpus {
            Some(slot_cpus) => LiveLayout {
                buckets: test_bucket_limit(crate::counts::live::buckets_for(live_capacity())),
                slot_cpus,
                tuple_hashes,
            },
            None => LiveLayout {
                buckets: 0,
                slot_cpus: 0,
                tuple_hashes,
            },
        }
    }

    fn describe(&self) -> String {
        match (self.buckets, self.slot_cpus) {
            (0, _) => "the hash map LIVE".to_string(),
            (b, 0) => format!(
                "{b} buckets of slots claimed by compare-and-swap (fexit NEW hooks), the hash                  map when one is full"
            ),
            (b, n) => format!(
                "{b} buckets of slots claimed per CPU ({n} CPUs, kprobe NEW hooks), the hash                  map when one is full"
            ),
        }
    }
}

/// How many CPUs the kprobe hooks divide each bucket's ways among: the
/// highest online CPU number + 1, when that leaves each CPU a way. A CPU
/// that comes online later with a higher number owns no way and uses the
/// hash map; with more CPUs than ways all kprobe hooks do.
fn kprobe_slot_cpus() -> Option<u32> {
    let cpus = aya::util::online_cpus()
        .ok()?
        .into_iter()
        .max()
        .map(|c| c + 1)?;
    if cpus as usize > tracker_common::LIVE_WAYS {
        log::info!(
            "kprobe hooks keep counted entries in the hash map: CPU numbers reach {cpus}, more              than the {} ways of a bucket of slots",
            tracker_common::LIVE_WAYS
        );
        return None;
    }
    Some(cpus)
}

/// A test knob: fewer buckets make entries overflow into LIVE, so the suite
/// checks the counts across both places (tests/README.md).
fn test_bucket_limit(buckets: u32) -> u32 {
    match std::env::var("TRACKER_LIVE_BUCKETS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(n) if n < buckets => {
            eprintln!(
                "tracker: counted entries: {n} bucket(s) of slots (TRACKER_LIVE_BUCKETS), then                  the hash map"
            );
            n
        }
        _ => buckets,
    }
}

impl EbpfSource {
    fn open(opts: &Options) -> Result<Self, EbpfError> {
        if OBJECT.is_empty() {
            return Err(EbpfError::NoObject);
        }
        // The parsed BTF is large (tens of MiB for vmlinux): it lives only
        // until the hooks are attached; the offsets are all that stays.
        let facts = hooks::KernelFacts::gather();
        let kbtf = KernelBtf::load()?;
        let offsets = kbtf.offsets()?;
        // Where kprobes are used, they pair with their kretprobes through a
        // per-CPU stack when no task can be preempted inside the hooked
        // functions (see STASH_PER_CPU in tracker-ebpf's maps.rs).
        let stash_per_cpu = u32::from(!kbtf.preemptible());
        let layout = LiveLayout::choose(opts.hook_mode, &kbtf);
        let live_buckets = layout.buckets;
        let tuple_hashes = layout.tuple_hashes;
        log::info!("counted entries kept in {}", layout.describe());
        log::info!(
            "kprobe arguments kept {}",
            if stash_per_cpu != 0 {
                "per CPU (the kernel cannot preempt kernel code)"
            } else {
                "per task (the kernel can preempt kernel code)"
            }
        );
        let mut ebpf = EbpfLoader::new()
            .override_global(globals::OFFSETS, &offsets, true)
            .override_global(globals::FILTER, &opts.filter, true)
            .override_global(globals::WAKEUP_BYTES, &wakeup_bytes(opts.ring_size), true)
            .override_global(globals::STASH_PER_CPU, &stash_per_cpu, true)
            .override_global(
                globals::ACCOUNT_CLOSED,
                &u32::from(opts.account_closed),
                true,
            )
            .map_max_entries("EVENTS", opts.ring_size)
            .override_global(globals::LIVE_BUCKETS, &live_buckets, true)
            .override_global(globals::SLOT_CPUS, &layout.slot_cpus, true)
            .override_global(globals::SEED_TGID, &std::process::id(), true)
            .override_global(globals::TUPLE_HASHES, &u32::from(tuple_hashes), true)
            .map_max_entries("LIVE", live_capacity())
            .map_max_entries("LIVE_SLOTS", live_buckets.max(1))
            .map_max_entries("LIVE_CHUNKS", tracker_common::live_chunks(live_buckets))
            // Preallocated: only a serving run pays for its memory.
            .map_max_entries("CLOSED", if opts.account_closed { CLOSED_KEYS } else { 1 })
            .load(OBJECT)
            .map_err(|e| EbpfError::Load(hooks::short(&e)))?;

        let view = hooks::KernelView::new(&kbtf, facts);
        let outcomes = hooks::attach_all(&mut ebpf, opts.hook_mode, &view, opts.updates);
        let seed_hook = seed::SeedHook::load(&mut ebpf, opts.hook_mode, &view)
            .map_err(|e| {
                log::info!(
                    "seed hook on nf_ct_get_id: {e}; entries older than the tracker are \
                     counted from the start-up dump instead, and stay counted when they expire \
                     until the kernel removes them"
                )
            })
            .ok();
        // Only once the hooks are known to run: without them there are no
        // count maps to correct.
        let expired = outcomes
            .iter()
            .any(|o| o.hook.required(opts.updates) && o.attached.is_some())
            .then(|| {
                expired::ExpiredIter::attach(&mut ebpf, view.aya_btf.as_ref(), live_buckets > 0)
            });
        drop(view);
        drop(kbtf);
        // The parse left tens of MiB of small freed blocks in the heap;
        // hand them back to the system instead of keeping them resident.
        #[cfg(target_env = "gnu")]
        // SAFETY: no allocation is borrowed across the call.
        unsafe {
            libc::malloc_trim(0);
        }
        // One sentence for all required hooks: on a kernel that refuses a
        // way of hooking, every hook is refused for the same reason.
        let mut reasons: Vec<String> = Vec::new();
        for o in outcomes
            .iter()
            .filter(|o| o.hook.required(opts.updates) && o.attached.is_none())
        {
            if o.refused.is_empty() {
                reasons.push(format!("{} did not attach", o.hook.role));
            }
            for r in &o.refused {
                if !reasons.contains(r) {
                    reasons.push(r.clone());
                }
            }
        }
        if !reasons.is_empty() {
            return Err(EbpfError::Attach(reasons.join("; ")));
        }
        let expired = match expired {
            Some(Ok(it)) => Some(it),
            Some(Err(e)) => {
                log::warn!(
                    "iterator over live entries: {e}; counts include entries whose timeout \
                     passed until the kernel removes them"
                );
                None
            }
            None => None,
        };

        let ring = ebpf
            .take_map("EVENTS")
            .ok_or_else(|| EbpfError::Map("map EVENTS missing from the object".into()))?;
        let ring = RingBuf::try_from(ring).map_err(|e| EbpfError::Map(e.to_string()))?;
        // SAFETY: the ring owns its map fd, which stays open and unchanged for
        // as long as the AsyncFd holds the ring.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| EbpfError::Map(e.to_string()))?;
        let collect = collect::CollectTimer::every(COLLECT_EVERY)
            .map_err(|e| EbpfError::Map(format!("creating the collection timer: {e}")))?;
        let stats = ebpf
            .take_map("STATS")
            .ok_or_else(|| EbpfError::Map("map STATS missing from the object".into()))?;
        let stats = PerCpuArray::try_from(stats).map_err(|e| EbpfError::Map(e.to_string()))?;
        Ok(Self {
            ebpf,
            ring,
            collect,
            stats,
            decoder: Decoder {
                offsets,
                clock: Clock::now(),
                profile: KernelProfile::running(),
            },
            outcomes,
            hook_mode: opts.hook_mode,
            updates: opts.updates,
            ring_size: opts.ring_size,
            events_autodetect: host::kernel_release_at_least(5, 19),
            pins: None,
            expired,
            expired_pins: Vec::new(),
            live_buckets,
            tuple_hashes,
            seed_hook,
            event_cache: None,
            undecodable: 0,
        })
    }

    /// "kprobe" or "fexit", or "fexit+kprobe" when mixed.
    pub fn hook_summary(&self) -> String {
        let mut kinds: Vec<&str> = self
            .outcomes
            .iter()
            .filter(|o| o.hook.required(self.updates))
            .filter_map(|o| o.attached.as_ref().map(|a| a.kind()))
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds.join("+")
    }

    /// Attaches hooks whose module was loaded after start-up (e.g. the first
    /// iptables CONNMARK rule loads xt_connmark). Cheap when there are none:
    /// one stat per missing module. Returns what attached, for the user.
    pub fn attach_late_hooks(&mut self) -> Vec<String> {
        if !self.outcomes.iter().any(hooks::module_appeared) {
            return Vec::new();
        }
        let Ok(kbtf) = KernelBtf::load() else {
            return Vec::new();
        };
        let view = hooks::KernelView::new(&kbtf, hooks::KernelFacts::gather());
        let mut attached = Vec::new();
        for i in 0..self.outcomes.len() {
            if hooks::module_appeared(&self.outcomes[i]) {
                let hook = self.outcomes[i].hook;
                let outcome = hooks::attach_hook(&mut self.ebpf, hook, self.hook_mode, &view);
                if outcome.attached.is_some() {
                    attached.push(outcome.to_string());
                    self.outcomes[i] = outcome;
                }
            }
        }
        attached
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// The count maps of this source's object, with its pinned iterator
    /// over expired entries when there is one.
    pub fn map_counts(&mut self) -> Result<crate::counts::MapCounts, String> {
        let maps = crate::counts::maps::own_maps(&mut self.ebpf)?;
        let expired = match &self.pins {
            Some(dir) => crate::counts::expired::ExpiredPins::in_dir(dir),
            None => crate::counts::expired::ExpiredPins::none(),
        };
        Ok(crate::counts::MapCounts { maps, expired })
    }

    /// LIVE and LIVE_SLOTS, taken out of the object for lookups (`tracker
    /// serve`'s paced expired entries). Only after start-up: seeding and the
    /// iterators' attach find them in the object.
    pub fn live_maps(&mut self) -> Result<crate::counts::live::LiveMaps, String> {
        crate::counts::live::LiveMaps::take(&mut self.ebpf, self.live_buckets)
    }

    /// Buckets of LIVE_SLOTS, 0 when the hooks use none.
    pub fn live_buckets(&self) -> u32 {
        self.live_buckets
    }

    /// Waits for a wakeup or the collection timer, then drains the ring
    /// completely before returning (possibly with nothing).
    pub async fn next_batch(&mut self, out: &mut Vec<Event>) -> std::io::Result<()> {
        let woken = tokio::select! {
            guard = self.ring.readable_mut() => {
                let mut guard = guard?;
                drain(guard.get_inner_mut(), &self.decoder, &mut self.undecodable, out);
                guard.clear_ready();
                true
            }
            fired = self.collect.fired() => {
                fired?;
                false
            }
        };
        if !woken {
            self.pending(out);
        }
        Ok(())
    }

    /// Appends what the ring holds now, without waiting: at exit, the
    /// records of the last collection period.
    pub fn pending(&mut self, out: &mut Vec<Event>) {
        drain(
            self.ring.get_mut(),
            &self.decoder,
            &mut self.undecodable,
            out,
        );
    }

    fn stat(&self, index: u32) -> u64 {
        self.stats
            .get(&index, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    /// Events the kernel could not deliver: the ring was full, the entry
    /// could not be read, or hooks nested too deep on one CPU.
    pub fn ring_drops(&self) -> u64 {
        self.stat(stat::RING_DROPS) + self.stat(stat::READ_ERRORS) + self.stat(stat::NEST_OVERFLOW)
    }

    /// Changes the hooks saw in the watched namespace, whether or not they
    /// went to the ring: NEW, UPDATE, DESTROY (kept while serving).
    pub fn seen(&self) -> [u64; 3] {
        [
            self.stat(stat::SEEN_NEW),
            self.stat(stat::SEEN_UPDATE),
            self.stat(stat::SEEN_DESTROY),
        ]
    }

    /// The ring's size in bytes.
    pub fn ring_size(&self) -> u64 {
        self.ring_size.into()
    }

    /// Whether the UPDATE hook is attached.
    pub fn updates(&self) -> bool {
        self.updates
    }

    /// The attached hooks: (what the hook reports, how it is attached).
    pub fn attached_hooks(&self) -> Vec<(&'static str, &'static str)> {
        self.outcomes
            .iter()
            .filter_map(|o| o.attached.as_ref().map(|a| (o.hook.role, a.kind())))
            .collect()
    }

    /// The kernel side's own counters, for `-v` and the exit report.
    pub fn kernel_stats(&self) -> [(&'static str, u64); 8] {
        [
            ("ring_drops", self.stat(stat::RING_DROPS)),
            ("filtered", self.stat(stat::FILTERED)),
            ("read_errors", self.stat(stat::READ_ERRORS)),
            ("stash_misses", self.stat(stat::STASH_MISSES)),
            ("live_map_full", self.stat(stat::LIVE_MAP_FULL)),
            ("seeded", self.stat(stat::SEEDED)),
            ("nest_overflow", self.stat(stat::NEST_OVERFLOW)),
            ("closed_map_full", self.stat(stat::CLOSED_MAP_FULL)),
        ]
    }
}

fn drain(
    ring: &mut RingBuf<MapData>,
    decoder: &Decoder,
    undecodable: &mut u64,
    out: &mut Vec<Event>,
) {
    while let Some(item) = ring.next() {
        match decoder.decode(&item) {
            Ok(e) => out.push(e),
            Err(e) => {
                *undecodable += 1;
                log::debug!("undecodable record: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aya::programs::{FEntry, FExit, KProbe};

    /// The object with the host's offsets, maps created, no program loaded.
    fn load_object(stash_per_cpu: u32) -> Ebpf {
        assert!(
            !OBJECT.is_empty(),
            "built with AYA_BUILD_SKIP: there is no eBPF object to load"
        );
        let missing = crate::privileges::missing_for_ebpf();
        assert!(
            missing.is_empty(),
            "cannot run: lacks {}",
            missing.join(", ")
        );
        let kbtf = KernelBtf::load().unwrap_or_else(|e| panic!("the running kernel's BTF: {e}"));
        let offsets = kbtf.offsets().expect("offsets from host BTF");
        EbpfLoader::new()
            .override_global(globals::OFFSETS, &offsets, true)
            .override_global(globals::FILTER, &KernelFilter::default(), true)
            .override_global(globals::STASH_PER_CPU, &stash_per_cpu, true)
            .map_max_entries("EVENTS", 1 << 16)
            .map_max_entries("LIVE", 4096)
            .load(OBJECT)
            .expect("object loads (maps created)")
    }

    /// A load is a verifier check: every kprobe-type program must pass the
    /// host kernel's verifier with the host's offsets, with either stash
    /// (the verifier keeps only the way the global selects).
    #[test]
    #[ignore = "needs root and BPF (CAP_BPF, CAP_PERFMON), and the eBPF object"]
    fn kprobe_programs_pass_the_host_verifier() {
        for stash_per_cpu in [0, 1] {
            kprobe_programs_load(stash_per_cpu);
        }
    }

    fn kprobe_programs_load(stash_per_cpu: u32) {
        let mut ebpf = load_object(stash_per_cpu);
        let mut loaded = 0;
        for hook in hooks::HOOKS {
            for name in std::iter::once(hook.kprobe).chain(hook.kretprobe) {
                let p: &mut KProbe = ebpf.program_mut(name).unwrap().try_into().unwrap();
                if p.fd().is_ok() {
                    continue;
                }
                if let Err(e) = p.load() {
                    panic!(
                        "{name} (STASH_PER_CPU={stash_per_cpu}) rejected by the verifier: {}",
                        hooks::short(&e)
                    );
                }
                loaded += 1;
            }
        }
        assert_eq!(loaded, 10, "every kprobe/kretprobe program loaded");
    }

    /// The same for the fentry/fexit programs, which need BPF trampolines:
    /// some kernels refuse those (EPERM), so the suite leaves this one out on
    /// such hosts; the VM scenarios attach them on the test-bed kernels.
    #[test]
    #[ignore = "needs root, BPF and a kernel that allows BPF trampolines (fentry/fexit)"]
    fn trampoline_programs_pass_the_host_verifier() {
        let mut ebpf = load_object(0);
        let btf = aya::Btf::from_sys_fs().expect("host BTF");
        let mut loaded = 0;
        for hook in hooks::HOOKS {
            let Some(t) = hook.trampoline else { continue };
            let (name, func) = (t.program(), hook.functions[hook.functions.len() - 1]);
            let program = ebpf.program_mut(name).unwrap();
            let result = match t {
                hooks::Trampoline::Fentry(_) => {
                    let p: &mut FEntry = program.try_into().unwrap();
                    p.load(func, &btf)
                }
                hooks::Trampoline::Fexit(_) => {
                    let p: &mut FExit = program.try_into().unwrap();
                    p.load(func, &btf)
                }
            };
            if let Err(e) = result {
                panic!(
                    "{} {name} on {func} not loaded: {}",
                    t.kind(),
                    hooks::short(&e)
                );
            }
            loaded += 1;
        }
        assert!(loaded > 0, "the object has trampoline programs");
    }
}
