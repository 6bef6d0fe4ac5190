//! Per-namespace netfilter sysctls the tracker checks, and sets for a run
//! only when asked to (`--set-nf-conntrack-events`, `--set-nf-conntrack-acct`),
//! restoring the old value on exit.

use std::fs::File;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;

/// Opens a sysctl as seen from `netns`: /proc/sys/net resolves against the
/// opening thread's namespace, and the open file stays bound to it. Read-only
/// unless it is to be changed (a read-only /proc/sys still lets us check).
pub fn open_in(sysctl: &str, netns: Option<&Path>, write: bool) -> std::io::Result<File> {
    let open = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(sysctl)
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

pub fn read_value(file: &mut File) -> std::io::Result<String> {
    let mut s = String::new();
    file.seek(SeekFrom::Start(0))?;
    file.read_to_string(&mut s)?;
    Ok(s.trim().to_string())
}

pub fn write_value(file: &mut File, value: &str) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    file.write_all(format!("{value}\n").as_bytes())
}

/// Holds a sysctl set for the run; dropping it restores the old value,
/// unless someone changed it meanwhile.
#[derive(Debug)]
pub struct SysctlGuard {
    pub file: File,
    pub previous: String,
    /// The value this run set.
    pub set_to: &'static str,
    /// The sysctl's dotted name, for messages.
    pub name: &'static str,
    /// The namespace, for messages.
    pub place: String,
}

impl Drop for SysctlGuard {
    fn drop(&mut self) {
        let (name, place, previous) = (self.name, &self.place, &self.previous);
        match read_value(&mut self.file) {
            Ok(v) if v == self.set_to => {
                if let Err(e) = write_value(&mut self.file, previous) {
                    eprintln!("tracker: could not restore {name}={previous} in {place}: {e}");
                }
            }
            Ok(v) => eprintln!(
                "tracker: {name} in {place} was changed to {v} while the tracker ran; left as is"
            ),
            Err(e) => eprintln!("tracker: could not read {name} in {place}: {e}"),
        }
    }
}
