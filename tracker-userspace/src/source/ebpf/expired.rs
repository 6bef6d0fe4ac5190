//! Loads and attaches the iterators that find counted entries whose timeout
//! has passed (tracker-ebpf's `expired.rs`): `iter/bpf_map_elem` programs
//! over LIVE and, where the hooks use slots, over LIVE_SLOTS. The links are
//! pinned next to the count maps, so `tracker counts` reads them as files,
//! with no BTF and no program load of its own.

use std::os::fd::AsFd as _;
use std::path::Path;

use aya::{
    Ebpf,
    maps::Map,
    programs::{
        Iter,
        links::{FdLink, PinnedLink},
    },
};

use super::hooks::short;

/// Each iterator's program and the map it walks, in the order of
/// `counts::maps::EXPIRED_PINS`. The one over LIVE_SLOTS walks LIVE_CHUNKS,
/// a run per chunk of buckets (tracker-ebpf's maps.rs says why).
const ITERATORS: [(&str, &str); 2] = [
    ("live_expired", "LIVE"),
    ("live_slots_expired", "LIVE_CHUNKS"),
];

/// The attached iterators, held until they are pinned.
pub struct ExpiredIter {
    /// `None` for LIVE_SLOTS when the hooks use no slots.
    links: [Option<FdLink>; 2],
}

impl ExpiredIter {
    /// Loads the iterators and attaches them to their maps. Map element
    /// iterators need Linux 5.9 (kernel/bpf/map_iter.c) and BTF; a kernel
    /// that refuses them leaves the counts including expired entries until
    /// their DESTROY.
    pub fn attach(ebpf: &mut Ebpf, btf: Option<&aya::Btf>, slots: bool) -> Result<Self, String> {
        let btf = btf.ok_or("no kernel BTF")?;
        let hash = attach_one(ebpf, btf, ITERATORS[0])?;
        let slots = if slots {
            Some(attach_one(ebpf, btf, ITERATORS[1])?)
        } else {
            None
        };
        Ok(Self {
            links: [Some(hash), slots],
        })
    }

    /// Pins each link at its name in `dir`: reading that file runs the
    /// iterator (`bpf_iter_fops` in kernel/bpf/inode.c).
    pub fn pin(self, dir: &Path, names: [&str; 2]) -> Result<Vec<PinnedLink>, String> {
        let mut pinned = Vec::new();
        for (link, name) in self.links.into_iter().zip(names) {
            let Some(link) = link else { continue };
            let path = dir.join(name);
            pinned.push(
                link.pin(&path)
                    .map_err(|e| format!("pinning {}: {e}", path.display()))?,
            );
        }
        Ok(pinned)
    }
}

fn attach_one(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    (prog, map): (&str, &str),
) -> Result<FdLink, String> {
    // A duplicate of the map's fd: the program is borrowed from `ebpf`
    // while the link is created.
    let fd = match ebpf.map(map) {
        Some(Map::HashMap(data) | Map::Array(data)) => data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| format!("{map}: {e}"))?,
        _ => return Err(format!("map {map} missing from the object")),
    };
    let program: &mut Iter = ebpf
        .program_mut(prog)
        .ok_or_else(|| format!("program {prog} missing from the object"))?
        .try_into()
        .map_err(|e| format!("{prog}: {e}"))?;
    program
        .load("bpf_map_elem", btf)
        .map_err(|e| format!("{prog} refused at load: {}", short(&e)))?;
    let id = program
        .attach_to_map(fd.as_fd())
        .map_err(|e| format!("{prog} refused at attach: {}", short(&e)))?;
    let link = program
        .take_link(id)
        .map_err(|e| format!("taking the link: {}", short(&e)))?;
    FdLink::try_from(link).map_err(|e| format!("link: {}", short(&e)))
}
