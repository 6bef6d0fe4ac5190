//! The subcommands, and what they share: picking and opening a source.

pub mod counts;
pub mod events;

use std::path::PathBuf;

use anyhow::{Context as _, anyhow, bail};
use tracker_common::{KernelFilter, filter_kind};

use crate::cli::{Cli, SourceKind};
use crate::model::{EventKinds, NetnsArg, NetnsSelection};
use crate::privileges;
use crate::source::{
    Source,
    ebpf::{self, EbpfSource, event_cache::Prepared},
    netlink::{self, KindSet, NetlinkSource},
};

/// A command line that parses but cannot be honoured (e.g. options that
/// contradict each other): reported like clap's errors, with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// ctnetlink only reports the namespace its socket lives in: to watch another
/// one, the process enters it before opening the socket.
fn enter_netns_for_netlink(selection: &NetnsSelection) -> anyhow::Result<()> {
    let path = match selection {
        NetnsSelection::Current => return Ok(()),
        NetnsSelection::All => {
            return Err(UsageError(
                "--all-netns needs the eBPF source: ctnetlink only reports its own network \
                 namespace"
                    .into(),
            )
            .into());
        }
        NetnsSelection::One(NetnsArg::Path(p)) => p.clone(),
        NetnsSelection::One(NetnsArg::Inode(i)) => {
            return Err(UsageError(format!(
                "with the netlink source give the namespace as a path (e.g. /run/netns/NAME or \
                 /proc/PID/ns/net), not as inode {i}: ctnetlink must be opened inside it"
            ))
            .into());
        }
    };
    let file = std::fs::File::open(&path)
        .with_context(|| format!("opening the namespace {}", path.display()))?;
    crate::source::enter_netns(&file)
        .map_err(|e| anyhow!("entering the network namespace {}: {e}", path.display()))
}

/// The namespace a command looks at: `None` means every namespace.
pub fn resolve_netns(selection: &NetnsSelection) -> anyhow::Result<Option<u32>> {
    let own = || {
        crate::source::netns_inode("/proc/self/ns/net".as_ref())
            .context("reading this process's network namespace")
    };
    Ok(match selection {
        NetnsSelection::Current => Some(own()?),
        NetnsSelection::All => None,
        NetnsSelection::One(NetnsArg::Inode(i)) => Some(*i),
        NetnsSelection::One(NetnsArg::Path(p)) => Some(
            crate::source::netns_inode(p)
                .with_context(|| format!("reading the namespace at {}", p.display()))?,
        ),
    })
}

pub struct Opened {
    pub source: Source,
    /// What the `tracker: listening (...)` line says.
    pub description: String,
    /// Where the count maps are pinned (eBPF source), removed on exit.
    pub pins: Option<PathBuf>,
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// Which events a command wants from its source.
#[derive(Clone, Copy, Debug)]
pub struct Wanted {
    /// `-e` as given; `None` is each source's default (netlink: ALL, eBPF:
    /// NEW and DESTROY, since UPDATE costs a hook run per state change).
    pub kinds: Option<EventKinds>,
    /// `--set-nf-conntrack-events`.
    pub set_events_sysctl: bool,
}

/// Opens the source the user asked for; with `--source auto`, eBPF and, when
/// its hooks cannot attach, ctnetlink — saying which and why.
pub async fn open_source(
    cli: &Cli,
    wanted: Wanted,
    mut kernel_filter: KernelFilter,
    netlink_buffer: Option<usize>,
    netns: &NetnsSelection,
) -> anyhow::Result<Opened> {
    if cli.source != SourceKind::Netlink {
        let missing = privileges::missing_for_ebpf();
        if missing.is_empty() {
            match privileges::ensure_conntrack_loaded() {
                Ok(Some(note)) => eprintln!("tracker: {note}"),
                Ok(None) => {}
                Err(e) => bail!(e),
            }
            let updates = wanted.kinds.is_some_and(|k| k.update);
            if !updates {
                kernel_filter.kinds &= !filter_kind::UPDATE;
            }
            let opts = ebpf::Options {
                hook_mode: cli.hook,
                ring_size: cli.ring_size.0 as u32,
                filter: kernel_filter,
                updates,
            };
            match EbpfSource::open(&opts) {
                Ok(mut source) => {
                    for outcome in &source.outcomes {
                        eprintln!("tracker: hook {outcome}");
                    }
                    if updates {
                        // Without the event cache the UPDATE hook never fires.
                        // Checked once the hooks are known to attach, so a
                        // host that falls back to netlink (which needs no
                        // sysctl) is not asked to change anything.
                        match ebpf::event_cache::prepare(
                            netns,
                            wanted.set_events_sysctl,
                            source.events_autodetect,
                        ) {
                            Ok(Prepared::Enabled) => {}
                            Ok(Prepared::Set(guard, note)) => {
                                eprintln!("tracker: {note}");
                                source.event_cache = Some(guard);
                            }
                            Ok(Prepared::Unchecked(warning)) => eprintln!("tracker: {warning}"),
                            Err(e) => bail!(e),
                        }
                    }
                    if !updates && wanted.set_events_sysctl {
                        eprintln!(
                            "tracker: --set-nf-conntrack-events has no effect without UPDATE \
                             events (-e ALL or -e UPDATE)"
                        );
                    }
                    if wanted.kinds.is_none() {
                        eprintln!(
                            "tracker: showing NEW and DESTROY; UPDATE events are opt-in with the \
                             eBPF source (-e ALL)"
                        );
                    }
                    let ebpf = source.ebpf_mut();
                    match ebpf::counts::seed(ebpf) {
                        Ok(n) => log::info!("{n} entries existed before start (counted once)"),
                        Err(e) => eprintln!(
                            "tracker: per-mark counts leave out entries that existed before \
                             start: the start-up dump failed: {e}"
                        ),
                    }
                    let pins = match ebpf::counts::pin(ebpf) {
                        Ok(dir) => Some(dir),
                        Err(e) => {
                            eprintln!("tracker: `tracker counts` cannot read this instance: {e}");
                            None
                        }
                    };
                    let description = format!(
                        "source=ebpf, hooks={}, ring={}",
                        source.hook_summary(),
                        human_size(cli.ring_size.0)
                    );
                    source.pins = pins.clone();
                    return Ok(Opened {
                        source: Source::Ebpf(Box::new(source)),
                        description,
                        pins,
                    });
                }
                Err(e) if cli.source == SourceKind::Auto => {
                    eprintln!(
                        "tracker: {e}: using ctnetlink events instead; expect event loss under \
                         load"
                    );
                }
                Err(e) => bail!(e),
            }
        } else if cli.source == SourceKind::Ebpf {
            bail!(
                "the eBPF source needs root, or the capabilities CAP_BPF, CAP_PERFMON and \
                 CAP_NET_ADMIN; this process lacks {}",
                missing.join(", ")
            );
        } else {
            eprintln!(
                "tracker: the eBPF source needs {} which this process lacks: trying ctnetlink",
                missing.join(", ")
            );
        }
    }
    let missing = privileges::missing_for_netlink();
    if !missing.is_empty() {
        bail!("reading ctnetlink events needs root or CAP_NET_ADMIN, which this process lacks");
    }
    if wanted.set_events_sysctl {
        // ctnetlink listeners get UPDATE events under the default 2 as well.
        eprintln!("tracker: --set-nf-conntrack-events has no effect with the netlink source");
    }
    enter_netns_for_netlink(netns)?;
    let kinds = wanted.kinds.unwrap_or(EventKinds::ALL);
    let set = KindSet {
        new: kinds.new,
        update: kinds.update,
        destroy: kinds.destroy,
    };
    let source = NetlinkSource::open(set, netlink_buffer.unwrap_or(netlink::DEFAULT_RCVBUF))?;
    let description = format!(
        "source=netlink, buffer={}",
        human_size(source.rcvbuf() as u64)
    );
    Ok(Opened {
        source: Source::Netlink(source),
        description,
        pins: None,
    })
}
