//! The eBPF source: loads the programs with this kernel's offsets, attaches
//! the hooks, and turns ring-buffer records into `Event`s.

pub mod counts;
pub mod hooks;

use std::path::PathBuf;

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
};
use tokio::io::unix::AsyncFd;
use tracker_common::{KernelFilter, globals, stat};

use crate::btf::KernelBtf;
use crate::event::{
    Event,
    decode::{self, Clock, KernelProfile},
};
use hooks::{HookMode, Outcome};

/// The object built from tracker-ebpf, embedded at build time.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/tracker"));

pub struct Options {
    pub hook_mode: HookMode,
    pub ring_size: u32,
    pub filter: KernelFilter,
}

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
    stats: PerCpuArray<MapData, u64>,
    clock: Clock,
    profile: KernelProfile,
    pub outcomes: Vec<Outcome>,
    pub pins: Option<PathBuf>,
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

impl EbpfSource {
    pub fn open(opts: &Options) -> Result<Self, EbpfError> {
        if OBJECT.is_empty() {
            return Err(EbpfError::NoObject);
        }
        let kbtf = KernelBtf::load()?;
        let offsets = kbtf.offsets()?;
        let mut ebpf = EbpfLoader::new()
            .override_global(globals::OFFSETS, &offsets, true)
            .override_global(globals::FILTER, &opts.filter, true)
            .map_max_entries("EVENTS", opts.ring_size)
            .map_max_entries("LIVE", live_capacity())
            .load(OBJECT)
            .map_err(|e| EbpfError::Load(hooks::short(&e)))?;

        let outcomes = hooks::attach_all(&mut ebpf, opts.hook_mode, &kbtf);
        let missing: Vec<String> = outcomes
            .iter()
            .filter(|o| o.hook.required && o.attached.is_none())
            .map(|o| o.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(EbpfError::Attach(missing.join("; ")));
        }

        let ring = ebpf
            .take_map("EVENTS")
            .ok_or_else(|| EbpfError::Map("map EVENTS missing from the object".into()))?;
        let ring = RingBuf::try_from(ring).map_err(|e| EbpfError::Map(e.to_string()))?;
        let ring = AsyncFd::new(ring).map_err(|e| EbpfError::Map(e.to_string()))?;
        let stats = ebpf
            .take_map("STATS")
            .ok_or_else(|| EbpfError::Map("map STATS missing from the object".into()))?;
        let stats = PerCpuArray::try_from(stats).map_err(|e| EbpfError::Map(e.to_string()))?;
        Ok(Self {
            ebpf,
            ring,
            stats,
            clock: Clock::now(),
            profile: KernelProfile::running(),
            outcomes,
            pins: None,
            undecodable: 0,
        })
    }

    /// "kprobe" or "fexit", or "fexit+kprobe" when mixed.
    pub fn hook_summary(&self) -> String {
        let mut kinds: Vec<&str> = self
            .outcomes
            .iter()
            .filter(|o| o.hook.required)
            .filter_map(|o| o.attached.as_ref().map(|a| a.kind()))
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds.join("+")
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Waits for records, then drains the ring completely before returning.
    pub async fn next_batch(&mut self, out: &mut Vec<Event>) -> std::io::Result<()> {
        let mut guard = self.ring.readable_mut().await?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            match decode::record(&item).and_then(|r| decode::event(&r, &self.clock, &self.profile))
            {
                Ok(e) => out.push(e),
                Err(e) => {
                    self.undecodable += 1;
                    log::debug!("undecodable record: {e}");
                }
            }
        }
        guard.clear_ready();
        Ok(())
    }

    fn stat(&self, index: u32) -> u64 {
        self.stats
            .get(&index, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    /// Events the kernel could not put into the ring (it was full).
    pub fn ring_drops(&self) -> u64 {
        self.stat(stat::RING_DROPS)
    }

    /// Records the kernel wrote into the ring.
    pub fn emitted(&self) -> u64 {
        self.stat(stat::EMITTED)
    }

    pub fn kernel_stats(&self) -> [(&'static str, u64); 5] {
        [
            ("emitted", self.stat(stat::EMITTED)),
            ("ring_drops", self.stat(stat::RING_DROPS)),
            ("filtered", self.stat(stat::FILTERED)),
            ("read_errors", self.stat(stat::READ_ERRORS)),
            ("live_map_full", self.stat(stat::LIVE_MAP_FULL)),
        ]
    }
}
