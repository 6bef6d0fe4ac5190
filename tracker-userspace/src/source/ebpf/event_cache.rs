//! The kernel's conntrack event cache, which UPDATE events depend on.
//!
//! The kernel only records state changes for entries that carry the ecache
//! extension, attached when an entry is created if
//! `net.netfilter.nf_conntrack_events` is 1, or 2 (the default since 5.19)
//! while a ctnetlink listener exists in that namespace. The sysctl is per
//! network namespace; the tracker checks the namespace it watches and changes
//! it only when asked to, restoring the old value on exit.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;

use crate::model::{NetnsArg, NetnsSelection};

const SYSCTL: &str = "/proc/sys/net/netfilter/nf_conntrack_events";
const NAME: &str = "net.netfilter.nf_conntrack_events";

/// Holds the sysctl set to 1 for the run; dropping it restores the old value.
#[derive(Debug)]
pub struct EventCache {
    file: File,
    previous: String,
    place: String,
}

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

/// Opens the sysctl as seen from `netns`: /proc/sys/net resolves against the
/// opening thread's namespace, and the open file stays bound to it. Read-only
/// unless it is to be changed (a read-only /proc/sys still lets us check).
fn open_in(netns: Option<&Path>, write: bool) -> std::io::Result<File> {
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(SYSCTL)
    };
    let Some(ns) = netns else { return open() };
    let ns = File::open(ns)?;
    // A scratch thread enters the namespace so the process stays where it is.
    std::thread::scope(|s| {
        s.spawn(|| {
            crate::source::enter_netns(&ns)?;
            open()
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("namespace thread panicked")))
    })
}

fn read_value(file: &mut File) -> std::io::Result<String> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_string(&mut s)?;
    Ok(s.trim().to_string())
}

fn write_value(file: &mut File, value: &str) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    file.write_all(format!("{value}\n").as_bytes())
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
    let mut file = open_in(path, set).map_err(|e| {
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
        EventCache {
            file,
            previous: value,
            place,
        },
        note,
    ))
}

impl Drop for EventCache {
    fn drop(&mut self) {
        // Only undo our own change: if someone set another value meanwhile,
        // theirs stands.
        match read_value(&mut self.file) {
            Ok(v) if v == "1" => {
                if let Err(e) = write_value(&mut self.file, &self.previous) {
                    eprintln!(
                        "tracker: could not restore {NAME}={} in {}: {e}",
                        self.previous, self.place
                    );
                }
            }
            Ok(v) => eprintln!(
                "tracker: {NAME} in {} was changed to {v} while the tracker ran; left as is",
                self.place
            ),
            Err(e) => eprintln!("tracker: could not read {NAME} in {}: {e}", self.place),
        }
    }
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
        let read = || read_value(&mut open_in(Some(Path::new(&ns)), false).unwrap()).unwrap();
        let mut f = open_in(Some(Path::new(&ns)), true).unwrap();
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
