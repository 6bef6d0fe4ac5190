//! Where events come from. Both sources produce the same `Event`s; nothing
//! downstream knows which one is in use.

pub mod acct;
pub mod ebpf;
pub mod netlink;
pub mod notice;
pub mod sysctl;

use crate::event::Event;
pub use notice::Notice;

pub enum Source {
    Ebpf(Box<ebpf::EbpfSource>),
    Netlink(netlink::NetlinkSource),
}

impl Source {
    pub fn name(&self) -> &'static str {
        match self {
            Source::Ebpf(_) => "ebpf",
            Source::Netlink(_) => "netlink",
        }
    }

    /// Waits for events and appends everything available to `out`.
    pub async fn next_batch(&mut self, out: &mut Vec<Event>) -> anyhow::Result<()> {
        match self {
            Source::Ebpf(s) => Ok(s.next_batch(out).await?),
            Source::Netlink(s) => Ok(s.next_batch(out).await?),
        }
    }

    /// Appends the events the kernel has already handed over, without
    /// waiting: a source reads in batches (the eBPF ring every 10 ms, the
    /// netlink socket after a few ms of gathering under load), so at exit
    /// the last batch's events are still waiting.
    pub fn pending(&mut self, out: &mut Vec<Event>) -> anyhow::Result<()> {
        match self {
            Source::Ebpf(s) => s.pending(out),
            Source::Netlink(s) => s.pending(out)?,
        }
        Ok(())
    }

    /// Periodic upkeep: attach hooks whose kernel module appeared.
    pub fn upkeep(&mut self) {
        if let Source::Ebpf(s) = self {
            for line in s.attach_late_hooks() {
                Notice::LateHook(line).say();
            }
        }
    }

    /// Source-specific counters for the verbose exit report.
    pub fn stats(&self) -> Vec<(&'static str, u64)> {
        match self {
            Source::Ebpf(s) => {
                let mut v = s.kernel_stats().to_vec();
                v.push(("undecodable", s.undecodable));
                v
            }
            Source::Netlink(s) => vec![("enobufs", s.enobufs()), ("malformed", s.malformed())],
        }
    }

    /// Events known to be lost: ring drops and unreadable entries (exact), or ENOBUFS overruns on
    /// netlink (each overrun loses an unknown number of events).
    pub fn lost(&self) -> u64 {
        match self {
            Source::Ebpf(s) => s.ring_drops(),
            Source::Netlink(s) => s.enobufs(),
        }
    }
}

/// Inode of a network namespace file (e.g. /proc/self/ns/net).
pub fn netns_inode(path: &std::path::Path) -> std::io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.ino() as u32)
}

/// Moves the calling thread into the network namespace `ns` is a file of
/// (e.g. /run/netns/NAME or /proc/PID/ns/net).
pub fn enter_netns(ns: &std::fs::File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: a valid fd of a namespace file; CLONE_NEWNET checks its type.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
