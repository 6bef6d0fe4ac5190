//! What the hooks remember of each counted entry (tracker-ebpf's
//! `counts.rs`): the LIVE hash map, keyed by the entry's address, and the
//! slots of LIVE_SLOTS, found by hashing that address into a bucket.
//! Userspace reads them twice: once at start-up, to leave entries the hooks
//! already counted out of the seed, and when a paced reader checks whether
//! an expired entry it found is still counted.

use std::collections::HashSet;
use std::os::fd::{AsFd as _, AsRawFd as _};

use aya::{
    Ebpf,
    maps::{Array, HashMap, Map, MapData},
};
use tracker_common::{ExpiredEntry, LIVE_WAYS, LiveBucket, LiveEntry, LiveSlot};

/// Both maps, taken out of the object for lookups.
pub struct LiveMaps {
    hash: HashMap<MapData, u64, LiveEntry>,
    /// `None` when the hooks use no slots (`globals::LIVE_BUCKETS` is 0).
    slots: Option<Array<MapData, LiveBucket>>,
}

impl LiveMaps {
    pub fn take(ebpf: &mut Ebpf, buckets: u32) -> Result<Self, String> {
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| format!("map {name} missing from the object"))
        };
        let hash = HashMap::try_from(take("LIVE")?).map_err(|e| format!("LIVE: {e}"))?;
        let slots = take("LIVE_SLOTS")?;
        let slots = if buckets == 0 {
            None
        } else {
            Some(Array::try_from(slots).map_err(|e| format!("LIVE_SLOTS: {e}"))?)
        };
        Ok(LiveMaps { hash, slots })
    }

    /// Whether the place `e` was found in still holds the same entry.
    pub fn still_holds(&self, e: &ExpiredEntry) -> bool {
        let Some(index) = e.slot.checked_sub(1) else {
            return self
                .hash
                .get(&e.ct, 0)
                .is_ok_and(|v| v.generation == e.live.generation);
        };
        let (bucket, way) = (index / LIVE_WAYS as u32, index as usize % LIVE_WAYS);
        self.slots
            .as_ref()
            .and_then(|s| s.get(&bucket, 0).ok())
            .is_some_and(|b| {
                let slot = b.slots[way];
                slot.ct == e.ct && slot.entry.generation == e.live.generation
            })
    }
}

/// Tuple hashes of every entry the hooks remember, in `ebpf`'s maps.
pub fn tuple_hashes(ebpf: &Ebpf, buckets: u32) -> Result<HashSet<u64>, String> {
    let live = ebpf
        .map("LIVE")
        .ok_or_else(|| "map LIVE missing from the object".to_string())?;
    let live: HashMap<&MapData, u64, LiveEntry> =
        HashMap::try_from(live).map_err(|e| e.to_string())?;
    let mut out: HashSet<u64> = live.iter().flatten().map(|(_, e)| e.tuple_hash).collect();
    if buckets > 0 {
        match ebpf.map("LIVE_SLOTS") {
            Some(Map::Array(data)) => slot_hashes(data, buckets, &mut out)?,
            _ => return Err("array LIVE_SLOTS missing from the object".into()),
        }
    }
    Ok(out)
}

/// Adds the tuple hashes of the filled slots, read through a shared mapping
/// of the array (one pass over memory rather than a syscall per bucket).
fn slot_hashes(data: &MapData, buckets: u32, out: &mut HashSet<u64>) -> Result<(), String> {
    let len = buckets as usize * size_of::<LiveBucket>();
    let fd = data.fd().as_fd().as_raw_fd();
    // SAFETY: a read-only shared mapping of the array's values (created
    // BPF_F_MMAPABLE), within its size, unmapped before returning.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(format!(
            "mapping LIVE_SLOTS: {}",
            std::io::Error::last_os_error()
        ));
    }
    let slots = base.cast::<LiveSlot>();
    for i in 0..buckets as usize * LIVE_WAYS {
        // SAFETY: within the mapping; the hooks write slots concurrently,
        // so each is copied out with a volatile read and any bytes are a
        // valid LiveSlot (plain integers).
        let slot = unsafe { std::ptr::read_volatile(slots.add(i)) };
        if slot.ct != 0 && slot.entry.generation != 0 {
            out.insert(slot.entry.tuple_hash);
        }
    }
    // SAFETY: the mapping made above, no longer used.
    unsafe { libc::munmap(base, len) };
    Ok(())
}

/// The bucket count for a table of `capacity` entries: two slots per entry,
/// so a bucket of [`LIVE_WAYS`] holds four on average when the table is
/// full and overflows into LIVE rarely.
pub fn buckets_for(capacity: u32) -> u32 {
    (capacity.saturating_mul(2) / LIVE_WAYS as u32).max(64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracker_common::live_bucket;

    #[test]
    fn bucket_is_in_range_and_addresses_spread() {
        let buckets = buckets_for(262_144);
        assert_eq!(buckets, 65_536);
        // Slab addresses 320 bytes apart, as nf_conn objects are.
        let mut used = vec![0u32; buckets as usize];
        for i in 0..131_072u64 {
            let b = live_bucket(0xffff_8880_1000_0000 + i * 320, buckets);
            assert!(b < buckets);
            used[b as usize] += 1;
        }
        // At two entries per bucket on average, none should come near the
        // eight a bucket holds (a clustering hash would fill some).
        let fullest = used.iter().copied().max().unwrap();
        assert!(fullest <= 8, "a bucket got {fullest} entries");
        // Odd bucket counts too (the table size follows nf_conntrack_max).
        for ct in [0u64, 1, u64::MAX, 0xffff_8880_dead_beef] {
            assert!(live_bucket(ct, 1000) < 1000);
        }
    }

    #[test]
    fn chunks_cover_every_bucket_once() {
        use tracker_common::{LIVE_CHUNK, live_chunks};
        for buckets in [1u32, 15, 16, 17, 64, 65_536, 562_500] {
            let chunks = live_chunks(buckets);
            // The last chunk holds the last bucket; one fewer would not.
            assert!(
                chunks as usize * LIVE_CHUNK >= buckets as usize,
                "{buckets}"
            );
            assert!(
                (chunks as usize - 1) * LIVE_CHUNK < buckets as usize,
                "{buckets}"
            );
        }
        // No slots: the map still needs an element.
        assert_eq!(live_chunks(0), 1);
    }
}
