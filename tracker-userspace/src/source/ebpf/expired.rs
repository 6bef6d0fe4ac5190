//! Loads and attaches the iterator that finds counted entries whose timeout
//! has passed (tracker-ebpf's `expired.rs`): an `iter/bpf_map_elem` program
//! over LIVE. The link is pinned next to the count maps, so `tracker counts`
//! reads it as a file, with no BTF and no program load of its own.

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

/// The program's name in the object.
const PROGRAM: &str = "live_expired";

/// An attached iterator over LIVE, held until it is pinned.
pub struct ExpiredIter {
    link: FdLink,
}

impl ExpiredIter {
    /// Loads the iterator and attaches it to LIVE. Map element iterators
    /// need Linux 5.9 (kernel/bpf/map_iter.c) and BTF; a kernel that
    /// refuses them leaves the counts including expired entries until their
    /// DESTROY.
    pub fn attach(ebpf: &mut Ebpf, btf: Option<&aya::Btf>) -> Result<Self, String> {
        let btf = btf.ok_or("no kernel BTF")?;
        // A duplicate of the map's fd: the program is borrowed from `ebpf`
        // while the link is created.
        let live = match ebpf.map("LIVE") {
            Some(Map::HashMap(data)) => data
                .fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| format!("LIVE: {e}"))?,
            _ => return Err("hash map LIVE missing from the object".into()),
        };
        let program: &mut Iter = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| format!("program {PROGRAM} missing from the object"))?
            .try_into()
            .map_err(|e| format!("{PROGRAM}: {e}"))?;
        program
            .load("bpf_map_elem", btf)
            .map_err(|e| format!("refused at load: {}", short(&e)))?;
        let id = program
            .attach_to_map(live.as_fd())
            .map_err(|e| format!("refused at attach: {}", short(&e)))?;
        let link = program
            .take_link(id)
            .map_err(|e| format!("taking the link: {}", short(&e)))?;
        let link = FdLink::try_from(link).map_err(|e| format!("link: {}", short(&e)))?;
        Ok(Self { link })
    }

    /// Pins the link at `path`: reading that file runs the iterator
    /// (`bpf_iter_fops` in kernel/bpf/inode.c).
    pub fn pin(self, path: &Path) -> Result<PinnedLink, String> {
        self.link
            .pin(path)
            .map_err(|e| format!("pinning {}: {e}", path.display()))
    }
}
