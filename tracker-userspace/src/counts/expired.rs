//! Counted entries whose timeout has passed, read from the pinned iterators
//! over LIVE and LIVE_SLOTS (tracker-ebpf's `expired.rs`). Such an entry
//! stays in the table, and in the count maps, until the kernel's garbage
//! collector, a lookup or a dump removes it; a table listing already leaves
//! it out. Reading a pin runs its iterator once: one pass over the map, one
//! read of `ct->timeout` per remembered entry, and an [`ExpiredEntry`] out
//! per expired one.
//!
//! A pass costs time in proportion to the live entries (in the QEMU test bed
//! about 1.5 µs each) and, over LIVE_SLOTS, to the buckets, which follow
//! `nf_conntrack_max` (about 0.3 µs each there: 180 ms for the 562 500
//! buckets of a 2 M table). `tracker counts` makes one per call; a reader
//! that asks every 100 ms, such as a Prometheus scrape of `tracker serve`,
//! paces them with [`Paced`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aya::maps::{Array, Map, MapData};
use std::time::{Duration, Instant};

use tracker_common::{ExpiredEntry, LiveEntry, MarkKey};

use super::live::LiveMaps;

/// The expired entries one run of the iterator pinned at `path` found.
pub fn read(path: &Path) -> std::io::Result<Vec<ExpiredEntry>> {
    Ok(parse(&std::fs::read(path)?))
}

/// The pinned iterators over LIVE and LIVE_SLOTS, and LIVE_HASHED, whose
/// index 0 the hooks set once they first put an entry in LIVE.
pub struct ExpiredPins {
    /// The iterator over LIVE.
    pub live: Option<PathBuf>,
    /// The iterator over LIVE_SLOTS (through LIVE_CHUNKS), where the hooks
    /// use slots.
    pub slots: Option<PathBuf>,
    /// `None`: unknown (pins of an older instance), LIVE is walked.
    pub hashed: Option<Array<MapData, u32>>,
}

impl ExpiredPins {
    /// The pins in `dir` (see `maps::EXPIRED_PINS`), those that exist.
    pub fn in_dir(dir: &Path) -> Self {
        let [live, slots] = super::maps::EXPIRED_PINS.map(|name| {
            let path = dir.join(name);
            path.exists().then_some(path)
        });
        let hashed = MapData::from_pin(dir.join(super::maps::LIVE_HASHED_PIN))
            .ok()
            .and_then(|data| Array::try_from(Map::Array(data)).ok());
        ExpiredPins {
            live,
            slots,
            hashed,
        }
    }

    /// No iterators: expired entries stay counted.
    pub fn none() -> Self {
        ExpiredPins {
            live: None,
            slots: None,
            hashed: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_none() && self.slots.is_none()
    }

    /// One run of each iterator. LIVE's is skipped while LIVE has never
    /// held an entry: a walk of its preallocated buckets costs as much empty
    /// as full (about 190 ms at 2.25 M entries of capacity in the QEMU test
    /// bed), and where the hooks use slots LIVE holds only the entries whose
    /// bucket was full. The flag is read after the count maps: an entry put
    /// in LIVE after it was read is new, so not expired.
    pub fn read(&self) -> Result<Vec<ExpiredEntry>, String> {
        let live_used = self
            .hashed
            .as_ref()
            .is_none_or(|h| h.get(&0, 0).map_or(true, |v| v != 0));
        let walk = |path: &Path| read(path).map_err(|e| format!("reading {}: {e}", path.display()));
        let mut found = Vec::new();
        if let Some(path) = self.live.as_deref().filter(|_| live_used) {
            found.extend(walk(path)?);
        }
        if let Some(path) = self.slots.as_deref() {
            found.extend(walk(path)?);
        }
        Ok(found)
    }
}

/// How many of `entries` each count key has.
pub fn per_key(entries: &[ExpiredEntry]) -> HashMap<MarkKey, i64> {
    let mut out: HashMap<MarkKey, i64> = HashMap::new();
    for e in entries {
        *out.entry(e.live.key).or_default() += 1;
    }
    out
}

/// The `ExpiredEntry`s the iterator wrote (native layout, back to back).
fn parse(bytes: &[u8]) -> Vec<ExpiredEntry> {
    bytes
        .chunks_exact(size_of::<ExpiredEntry>())
        .map(|chunk| {
            let u64_at = |at: usize| u64::from_ne_bytes(chunk[at..at + 8].try_into().unwrap());
            let u32_at = |at: usize| u32::from_ne_bytes(chunk[at..at + 4].try_into().unwrap());
            ExpiredEntry {
                ct: u64_at(0),
                live: LiveEntry {
                    generation: u64_at(8),
                    tuple_hash: u64_at(16),
                    key: MarkKey {
                        netns: u32_at(24),
                        mark: u32_at(28),
                        l3proto: chunk[32],
                        l4proto: chunk[33],
                        _pad: [0; 2],
                    },
                    _pad: [0; 4],
                },
                slot: u32_at(40),
                _pad: 0,
            }
        })
        .collect()
}

/// A pass runs at most once per this many times its own duration: passes
/// then take at most 1 % of one core, whatever the table's size.
const PASS_SPACING: u32 = 100;

/// Expired entries for a reader that asks often. Every answer leaves out the
/// entries the last pass found, less those that have left LIVE since (or
/// whose address now holds another entry); a new pass runs when the last one
/// is at least [`PASS_SPACING`] times its duration old. Small tables get a
/// pass per answer; at about 184 000 entries in the QEMU test bed a pass
/// took 254 ms (BENCHMARKS.md), so one per 25 s.
///
/// Why a found entry needs no second look at its timeout: an expired entry is
/// never refreshed, because every lookup of it removes it first
/// (`nf_ct_gc_expired()` in `____nf_conntrack_find()` and the GC,
/// net/netfilter/nf_conntrack_core.c), and its removal is a DESTROY, which
/// takes it out of LIVE and of the counts. What an answer between passes can
/// miss is only entries that expired after the last pass: those stay counted
/// until the next pass or until the kernel removes them.
pub struct Paced {
    pins: ExpiredPins,
    live: LiveMaps,
    state: PaceState,
}

impl Paced {
    pub fn new(pins: ExpiredPins, live: LiveMaps) -> Self {
        Paced {
            pins,
            live,
            state: PaceState::default(),
        }
    }

    /// The expired entries to leave out of counts read now, per count key.
    pub fn per_key(&mut self) -> std::io::Result<HashMap<MarkKey, i64>> {
        let (pins, live) = (&self.pins, &self.live);
        self.state.refresh(
            Instant::now(),
            || pins.read().map_err(std::io::Error::other),
            |e| live.still_holds(e),
        )?;
        Ok(per_key(&self.state.found))
    }
}

/// The pacing itself, apart from the kernel (unit-tested).
#[derive(Default)]
struct PaceState {
    found: Vec<ExpiredEntry>,
    /// When the last pass started, and how long it took.
    last_pass: Option<(Instant, Duration)>,
}

impl PaceState {
    fn refresh(
        &mut self,
        now: Instant,
        pass: impl FnOnce() -> std::io::Result<Vec<ExpiredEntry>>,
        still_counted: impl Fn(&ExpiredEntry) -> bool,
    ) -> std::io::Result<()> {
        let due = self
            .last_pass
            .is_none_or(|(at, took)| now.saturating_duration_since(at) >= took * PASS_SPACING);
        if due {
            self.found = pass()?;
            self.last_pass = Some((now, now.elapsed()));
        } else {
            self.found.retain(|e| still_counted(e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ct: u64, generation: u64, mark: u32) -> ExpiredEntry {
        ExpiredEntry {
            ct,
            live: LiveEntry {
                generation,
                tuple_hash: 0x1122_3344_5566_7788,
                key: MarkKey {
                    netns: 4026531840,
                    mark,
                    l3proto: 2,
                    l4proto: 17,
                    _pad: [0; 2],
                },
                _pad: [0; 4],
            },
            slot: 0,
            _pad: 0,
        }
    }

    /// The bytes the eBPF program writes for `e`, padding bytes set to
    /// garbage (the program copies the map value as it is).
    fn bytes(e: &ExpiredEntry) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&e.ct.to_ne_bytes());
        v.extend_from_slice(&e.live.generation.to_ne_bytes());
        v.extend_from_slice(&e.live.tuple_hash.to_ne_bytes());
        v.extend_from_slice(&e.live.key.netns.to_ne_bytes());
        v.extend_from_slice(&e.live.key.mark.to_ne_bytes());
        v.extend_from_slice(&[e.live.key.l3proto, e.live.key.l4proto, 0xaa, 0xbb]);
        v.extend_from_slice(&[0xcc; 4]);
        v.extend_from_slice(&e.slot.to_ne_bytes());
        v.extend_from_slice(&[0xdd; 4]);
        v
    }

    #[test]
    fn parses_each_record_and_counts_per_key() {
        let (a, b, mut c) = (
            entry(0xffff_8880_0000_1000, 5, 7),
            entry(2, 6, 8),
            entry(3, 7, 7),
        );
        // Found in slot 17 of LIVE_SLOTS (stored as 18).
        c.slot = 18;
        let mut out = Vec::new();
        for e in [&a, &b, &c] {
            out.extend(bytes(e));
        }
        // A partial record (never written by the program) is not read.
        out.extend_from_slice(&[1, 2, 3]);
        let got = parse(&out);
        assert_eq!(got, vec![a, b, c]);
        let keys = per_key(&got);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[&a.live.key], 2);
        assert_eq!(keys[&b.live.key], 1);
    }

    #[test]
    fn passes_are_spaced_by_their_cost_and_gone_entries_leave_between_them() {
        let mut pace = PaceState::default();
        let t0 = Instant::now();
        let passes = std::cell::Cell::new(0);
        let pass = |found: Vec<ExpiredEntry>| {
            let passes = &passes;
            move || {
                passes.set(passes.get() + 1);
                Ok(found)
            }
        };
        // The first answer always makes a pass.
        pace.refresh(t0, pass(vec![entry(1, 10, 7), entry(2, 20, 7)]), |_| true)
            .unwrap();
        assert_eq!(passes.get(), 1);
        let took = pace.last_pass.unwrap().1;
        // Pretend the pass took 10 ms: none is due before 1 s.
        pace.last_pass = Some((t0, Duration::from_millis(10)));
        assert!(took < Duration::from_secs(1));
        // Between passes: entry 2 was destroyed (or its address reused), so it
        // no longer counts and must not be taken off the counts again.
        pace.refresh(t0 + Duration::from_millis(500), pass(vec![]), |e| {
            e.ct == 1 && e.live.generation == 10
        })
        .unwrap();
        assert_eq!(passes.get(), 1);
        assert_eq!(pace.found, vec![entry(1, 10, 7)]);
        // At 100 times the pass's duration, the next pass replaces the list.
        pace.refresh(
            t0 + Duration::from_secs(1),
            pass(vec![entry(3, 30, 8)]),
            |_| true,
        )
        .unwrap();
        assert_eq!(passes.get(), 2);
        assert_eq!(pace.found, vec![entry(3, 30, 8)]);
    }
}
