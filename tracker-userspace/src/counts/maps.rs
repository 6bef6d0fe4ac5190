//! The per-mark counts the eBPF programs keep in kernel maps: reading them,
//! seeding them once from a mark-only dump at start-up, and sharing them
//! with `tracker counts` through pins under /sys/fs/bpf/tracker/.

use std::collections::{HashMap as StdHashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData},
};
use tracker_common::{ClosedFlows, MarkKey};

use super::{ClosedRow, CountRow, dump, expired, live, sum_closed, sum_rows};

pub const PIN_ROOT: &str = "/sys/fs/bpf/tracker";
const COUNT_MAPS: [&str; 2] = ["MARK_COUNTS", "SEED_COUNTS"];
/// The pinned links of the iterators over LIVE and LIVE_SLOTS that find
/// expired entries (see [`super::expired`]), next to the count maps.
pub const EXPIRED_PINS: [&str; 2] = ["LIVE_EXPIRED", "LIVE_SLOTS_EXPIRED"];
/// LIVE_HASHED's pin: whether LIVE has ever held an entry, so its iterator
/// can be skipped until then (see [`expired::ExpiredPins::read`]).
pub const LIVE_HASHED_PIN: &str = "LIVE_HASHED";

/// One of the kernel's count maps, opened for reading.
pub type CountMap = HashMap<MapData, MarkKey, i64>;

/// The kernel's count maps, and where to find the entries among them whose
/// timeout has passed.
pub struct MapCounts {
    pub maps: Vec<CountMap>,
    /// The iterators' pins (none where the kernel refused them).
    pub expired: expired::ExpiredPins,
}

impl MapCounts {
    /// Sums both count maps per (mark, family, protocol) for one netns (or
    /// all with `None`), less the entries whose timeout has passed, which a
    /// listing of the table would not show. The maps are read before the
    /// iterator runs: an entry destroyed in between has then left LIVE too
    /// and is not taken off twice, while one that expires in between is
    /// taken off, as a listing at the later instant would.
    pub fn rows(&self, netns: Option<u32>) -> Vec<CountRow> {
        self.rows_less(netns, || {
            self.expired
                .read()
                .map(|found| expired::per_key(&found))
                .unwrap_or_else(|e| {
                    log::warn!("{e}: expired entries stay counted");
                    Default::default()
                })
        })
    }

    /// The same sums less what `expired` gives per key, asked for after the
    /// maps are read (see [`MapCounts::rows`] for why in that order).
    pub fn rows_less(
        &self,
        netns: Option<u32>,
        expired: impl FnOnce() -> StdHashMap<MarkKey, i64>,
    ) -> Vec<CountRow> {
        let counts: Vec<(MarkKey, i64)> =
            self.maps.iter().flat_map(|m| m.iter().flatten()).collect();
        sum_rows(
            counts
                .into_iter()
                .chain(expired().into_iter().map(|(k, n)| (k, -n))),
            netns,
        )
    }
}

/// The closed-flow totals the DESTROY hook keeps while serving: the map
/// keyed per mark, and the slot for keys that found it full.
pub struct ClosedMaps {
    by_key: HashMap<MapData, MarkKey, ClosedFlows>,
    other: Array<MapData, ClosedFlows>,
}

impl ClosedMaps {
    /// Takes the maps out of this process's loaded object.
    pub fn take(ebpf: &mut Ebpf) -> Result<Self, String> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| format!("map {name} missing from the object"))
        };
        let by_key = HashMap::try_from(take("CLOSED")?).map_err(|e| e.to_string())?;
        let other = Array::try_from(take("CLOSED_OTHER")?).map_err(|e| e.to_string())?;
        Ok(ClosedMaps { by_key, other })
    }

    /// Per mark for one netns (or all with `None`); flows that found the map
    /// full come last, with no mark. They cannot be told apart by netns.
    pub fn rows(&self, netns: Option<u32>) -> Vec<ClosedRow> {
        let mut rows = sum_closed(self.by_key.iter().flatten(), netns);
        if let Ok(other) = self.other.get(&0, 0)
            && other.flows > 0
        {
            rows.push(ClosedRow {
                mark: None,
                totals: other,
            });
        }
        rows
    }
}

fn hash_map(map: Map) -> Result<CountMap, String> {
    HashMap::try_from(map).map_err(|e| e.to_string())
}

/// Opens the count maps of this process's own loaded object.
pub fn own_maps(ebpf: &mut Ebpf) -> Result<Vec<CountMap>, String> {
    COUNT_MAPS
        .iter()
        .map(|name| {
            let map = ebpf
                .take_map(name)
                .ok_or_else(|| format!("map {name} missing from the object"))?;
            hash_map(map)
        })
        .collect()
}

/// Counts entries that existed before the hooks attached: one dump of the
/// table (the only one the tracker makes), minus entries the hooks already
/// counted (matched by tuple hash), written into SEED_COUNTS.
pub fn seed(ebpf: &mut Ebpf, buckets: u32) -> Result<u64, String> {
    let counted: HashSet<u64> = live::tuple_hashes(ebpf, buckets)?;
    let entries = dump::dump_marks().map_err(|e| e.to_string())?;
    let mut seeds: std::collections::HashMap<MarkKey, i64> = Default::default();
    let mut seeded = 0;
    for e in &entries {
        if counted.contains(&e.tuple_hash()) {
            continue;
        }
        *seeds.entry(e.mark_key()).or_default() += 1;
        seeded += 1;
    }
    let seed_map = ebpf
        .map_mut("SEED_COUNTS")
        .ok_or_else(|| "map SEED_COUNTS missing from the object".to_string())?;
    let mut seed_map: HashMap<&mut MapData, MarkKey, i64> =
        HashMap::try_from(seed_map).map_err(|e| e.to_string())?;
    for (key, n) in seeds {
        seed_map.insert(key, n, 0).map_err(|e| e.to_string())?;
    }
    Ok(seeded)
}

/// Pins the count maps under PIN_ROOT/<pid>, readable by root only, so
/// `tracker counts` can read a running instance instead of attaching again.
pub fn pin(ebpf: &Ebpf) -> Result<PathBuf, String> {
    ensure_bpffs()?;
    let dir = Path::new(PIN_ROOT).join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let _ = std::fs::set_permissions(PIN_ROOT, std::fs::Permissions::from_mode(0o700));
    for name in COUNT_MAPS.into_iter().chain([LIVE_HASHED_PIN]) {
        let map = ebpf
            .map(name)
            .ok_or_else(|| format!("map {name} missing from the object"))?;
        map.pin(dir.join(name))
            .map_err(|e| format!("pinning {name}: {e}"))?;
    }
    Ok(dir)
}

pub fn unpin(dir: &Path) {
    for name in COUNT_MAPS
        .into_iter()
        .chain(EXPIRED_PINS)
        .chain([LIVE_HASHED_PIN])
    {
        let _ = std::fs::remove_file(dir.join(name));
    }
    let _ = std::fs::remove_dir(dir);
}

fn ensure_bpffs() -> Result<(), String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/sys/fs/bpf"))
    {
        return Ok(());
    }
    let status = std::process::Command::new("mount")
        .args(["-t", "bpf", "bpf", "/sys/fs/bpf"])
        .status()
        .map_err(|e| format!("mounting the BPF filesystem at /sys/fs/bpf: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err("the BPF filesystem is not mounted at /sys/fs/bpf and mounting it failed".into())
    }
}

/// The count maps of a running tracker, if one is running. Pins left by
/// instances that are gone are removed.
pub fn running_instance() -> Option<MapCounts> {
    let dirs = std::fs::read_dir(PIN_ROOT).ok()?;
    for dir in dirs.flatten() {
        let path = dir.path();
        let pid = path.file_name()?.to_str()?.parse::<u32>().ok()?;
        if !Path::new(&format!("/proc/{pid}")).exists() {
            unpin(&path);
            continue;
        }
        let maps: Result<Vec<_>, String> = COUNT_MAPS
            .iter()
            .map(|name| {
                let data = MapData::from_pin(path.join(name)).map_err(|e| e.to_string())?;
                let map = Map::from_map_data(data).map_err(|e| e.to_string())?;
                hash_map(map)
            })
            .collect();
        if let Ok(maps) = maps {
            let expired = expired::ExpiredPins::in_dir(&path);
            return Some(MapCounts { maps, expired });
        }
    }
    None
}
