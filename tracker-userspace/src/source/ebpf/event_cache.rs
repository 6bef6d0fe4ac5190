//! The kernel's conntrack event cache, which UPDATE events depend on.
//!
//! The kernel only records state changes for entries that carry the ecache
//! extension, attached when an entry is created if
//! `net.netfilter.nf_conntrack_events` is 1, or 2 (the default since 5.19)
//! while a ctnetlink listener exists in that namespace. The sysctl is per
//! network namespace; the tracker checks the namespace it watches and changes
//! it only when asked to, restoring the old value on exit.

use crate::model::{NetnsArg, NetnsSelection};
use crate::source::sysctl::{SysctlGuard, open_in, read_value, write_value};
#[cfg(test)]
use std::path::Path;

const SYSCTL: &str = "/proc/sys/net/netfilter/nf_conntrack_events";
const NAME: &str = "net.netfilter.nf_conntrack_events";

/// Holds the sysctl set to 1 for the run; dropping it restores the old value.
pub type EventCache = SysctlGuard;

/// What [`prepare`] did, for the start-up lines.
#[derive(Debug)]
pub enum Prepared {
    /// Already 1: nothing to do.
    Enabled,
    /// Set to 1 for the run; restored when the guard drops.
    Set(EventCache, String),
    /// The namespace cannot be checked from here: a warning to print.
    Unchecked(String),
}

/// Whether `value` makes the kernel give every new entry the event cache.
/// Only 1 counts: before 5.19 any non-zero value did, but a kernel's version
/// does not tell whether mode 2 (autodetect) was backported, and asking for
/// 1 is right everywhere.
fn always_on(value: &str) -> bool {
    value == "1"
}

/// Makes sure the kernel collects UPDATE events in the watched namespace,
/// or says why it cannot. `set` is `--set-nf-conntrack-events`;
/// `autodetect` whether the kernel has mode 2 (for the message only).
pub fn prepare(netns: &NetnsSelection, set: bool, autodetect: bool) -> Result<Prepared, String> {
    let (path, place) = match netns {
        NetnsSelection::Current => (None, "this network namespace".to_string()),
        NetnsSelection::One(NetnsArg::Path(p)) => (Some(p.as_path()), p.display().to_string()),
        NetnsSelection::One(NetnsArg::Inode(i)) => {
            return Ok(Prepared::Unchecked(format!(
                "UPDATE events need {NAME}=1 in namespace {i}; the tracker cannot check it by \
                 inode (give --netns as a path to have it checked)"
            )));
        }
        NetnsSelection::All => {
            return Ok(Prepared::Unchecked(format!(
                "UPDATE events appear only from namespaces where {NAME} is 1 (or 2 with a \
                 ctnetlink listener); with --all-netns the tracker neither checks nor sets it"
            )));
        }
    };
    let mut file = open_in(SYSCTL, path, set).map_err(|e| {
        format!("UPDATE events need the kernel's conntrack event cache, but {SYSCTL} in {place} cannot be opened: {e}")
    })?;
    let value = read_value(&mut file).map_err(|e| format!("reading {NAME} in {place}: {e}"))?;
    if always_on(&value) {
        return Ok(Prepared::Enabled);
    }
    if !set {
        return Err(format!(
            "UPDATE events need {NAME}=1, and it is {value} in {place}{}: run `sysctl -w \
             {NAME}=1` (UPDATE events then appear for connections created after that), or pass \
             --set-nf-conntrack-events to have the tracker set it for the run and restore {value} \
             on exit",
            if value == "2" && autodetect {
                " (2: only while a ctnetlink listener exists)"
            } else {
                ""
            }
        ));
    }
    write_value(&mut file, "1").map_err(|e| format!("setting {NAME}=1 in {place}: {e}"))?;
    let note = format!(
        "set {NAME}=1 in {place} (was {value}; restored on exit); UPDATE events appear for \
         connections created from now on"
    );
    Ok(Prepared::Set(
        SysctlGuard {
            file,
            previous: value,
            set_to: "1",
            name: NAME,
            place,
        },
        note,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_1_turns_the_cache_on_for_every_entry() {
        assert!(always_on("1"));
        assert!(!always_on("2"), "5.19+: 2 needs a listener");
        assert!(!always_on("0"));
    }

    /// In a namespace of its own: refused without the flag, set with it,
    /// restored when the guard drops.
    #[test]
    #[ignore = "needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for a namespace) and nf_conntrack"]
    fn sets_and_restores_in_a_private_namespace() {
        let missing = crate::privileges::missing_for_netlink();
        assert!(
            missing.is_empty(),
            "cannot run: lacks {}",
            missing.join(", ")
        );
        crate::privileges::ensure_conntrack_loaded().expect("nf_conntrack loads");
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        // The namespace lives as long as this thread, which holds it.
        let holder = std::thread::spawn(move || {
            // SAFETY: unshare affects only this thread's namespace.
            let ok = unsafe { libc::unshare(libc::CLONE_NEWNET) } == 0;
            let tid = unsafe { libc::gettid() };
            tx.send(ok.then(|| format!("/proc/self/task/{tid}/ns/net")))
                .unwrap();
            let _ = done_rx.recv();
        });
        let ns = rx
            .recv()
            .unwrap()
            .expect("unshare(CLONE_NEWNET) creates a namespace");
        let sel = NetnsSelection::One(NetnsArg::Path(ns.clone().into()));
        let read =
            || read_value(&mut open_in(SYSCTL, Some(Path::new(&ns)), false).unwrap()).unwrap();
        let mut f = open_in(SYSCTL, Some(Path::new(&ns)), true).unwrap();
        write_value(&mut f, "0").unwrap();
        let err = prepare(&sel, false, true).unwrap_err();
        assert!(
            err.contains("--set-nf-conntrack-events") && err.contains("is 0"),
            "{err}"
        );
        assert_eq!(read(), "0", "a refusal changes nothing");
        match prepare(&sel, true, true).unwrap() {
            Prepared::Set(guard, note) => {
                assert!(note.contains("was 0"), "{note}");
                assert_eq!(read(), "1");
                drop(guard);
            }
            other => panic!("expected Set, got {other:?}"),
        }
        assert_eq!(read(), "0", "restored on drop");
        // The host's own value was never touched by any of this.
        done_tx.send(()).unwrap();
        holder.join().unwrap();
    }
}
