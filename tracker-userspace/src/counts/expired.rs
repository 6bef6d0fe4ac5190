//! Counted entries whose timeout has passed, read from the pinned iterator
//! over LIVE (tracker-ebpf's `expired.rs`). Such an entry stays in the table,
//! and in the count maps, until the kernel's garbage collector, a lookup or
//! a dump removes it; a table listing already leaves it out. Reading the pin
//! runs the iterator once: one pass over LIVE, one read of `ct->timeout` per
//! entry, and a `MarkKey` out per expired one.

use std::collections::HashMap;
use std::path::Path;

use tracker_common::MarkKey;

/// Expired entries per count key, from one run of the iterator pinned at
/// `path`.
pub fn read(path: &Path) -> std::io::Result<HashMap<MarkKey, i64>> {
    Ok(per_key(&std::fs::read(path)?))
}

/// Counts the `MarkKey`s the iterator wrote (native layout, back to back).
fn per_key(bytes: &[u8]) -> HashMap<MarkKey, i64> {
    let mut out: HashMap<MarkKey, i64> = HashMap::new();
    for chunk in bytes.chunks_exact(size_of::<MarkKey>()) {
        let word = |at: usize| u32::from_ne_bytes(chunk[at..at + 4].try_into().unwrap());
        let key = MarkKey {
            netns: word(0),
            mark: word(4),
            l3proto: chunk[8],
            l4proto: chunk[9],
            _pad: [0; 2],
        };
        *out.entry(key).or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(k: &MarkKey) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&k.netns.to_ne_bytes());
        v.extend_from_slice(&k.mark.to_ne_bytes());
        v.extend_from_slice(&[k.l3proto, k.l4proto, 0xaa, 0xbb]);
        v
    }

    #[test]
    fn counts_each_key_and_ignores_padding() {
        assert_eq!(size_of::<MarkKey>(), 12);
        let a = MarkKey {
            netns: 4026531840,
            mark: 7,
            l3proto: 2,
            l4proto: 17,
            _pad: [0; 2],
        };
        let b = MarkKey { mark: 8, ..a };
        let mut out = Vec::new();
        for k in [&a, &b, &a] {
            out.extend(bytes(k));
        }
        // A partial record (never written by the program) is not counted.
        out.extend_from_slice(&[1, 2, 3]);
        let got = per_key(&out);
        assert_eq!(got.len(), 2);
        assert_eq!(got[&a], 2);
        assert_eq!(got[&b], 1);
    }
}
