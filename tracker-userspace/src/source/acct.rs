//! The kernel's per-connection packet and byte counters (the acct
//! extension), which `tracker serve`'s closed-flow bytes and packets come
//! from. The kernel attaches the extension when an entry is created, if
//! `net.netfilter.nf_conntrack_acct` is 1 in its namespace
//! (net/netfilter/nf_conntrack_acct.c); it is 0 by default.

use crate::model::{NetnsArg, NetnsSelection};
use crate::source::sysctl::{SysctlGuard, open_in, read_value, write_value};

const SYSCTL: &str = "/proc/sys/net/netfilter/nf_conntrack_acct";
const NAME: &str = "net.netfilter.nf_conntrack_acct";

/// What [`prepare`] found or did, for the start-up lines.
#[derive(Debug)]
pub enum Acct {
    /// Already on.
    On,
    /// Set for the run; restored when the guard drops.
    Set(SysctlGuard, String),
    /// Off, or not checkable: a warning to print. Flows are still counted.
    Warn(String),
}

pub fn prepare(netns: &NetnsSelection, set: bool) -> Result<Acct, String> {
    let (path, place) = match netns {
        NetnsSelection::Current => (None, "this network namespace".to_string()),
        NetnsSelection::One(NetnsArg::Path(p)) => (Some(p.as_path()), p.display().to_string()),
        NetnsSelection::One(NetnsArg::Inode(_)) | NetnsSelection::All => {
            return Ok(Acct::Warn(format!(
                "closed-flow bytes and packets need {NAME}=1 in each watched namespace; the \
                 tracker neither checks nor sets it {}",
                if matches!(netns, NetnsSelection::All) {
                    "with --all-netns"
                } else {
                    "for a namespace given by inode (give --netns as a path)"
                }
            )));
        }
    };
    let mut file =
        open_in(SYSCTL, path, set).map_err(|e| format!("opening {SYSCTL} in {place}: {e}"))?;
    let value = read_value(&mut file).map_err(|e| format!("reading {NAME} in {place}: {e}"))?;
    if value == "1" {
        return Ok(Acct::On);
    }
    if !set {
        return Ok(Acct::Warn(format!(
            "{NAME} is {value} in {place}: closed flows are counted, but their bytes and packets \
             stay 0; pass --set-nf-conntrack-acct (or run `sysctl -w {NAME}=1`) to have them for \
             connections created from then on"
        )));
    }
    write_value(&mut file, "1").map_err(|e| format!("setting {NAME}=1 in {place}: {e}"))?;
    let note = format!(
        "set {NAME}=1 in {place} (was {value}; restored on exit): connections created from now \
         on carry bytes and packets"
    );
    Ok(Acct::Set(
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
