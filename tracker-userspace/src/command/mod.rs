//! The subcommands, and what they share: picking and opening a source.

pub mod counts;
pub mod events;
pub mod filters;
pub mod serve;

use anyhow::{Context as _, anyhow, bail};
use tracker_common::KernelFilter;

use crate::cli::{Cli, SourceKind};
use crate::model::{EventKinds, NetnsArg, NetnsSelection};
use crate::privileges;
use crate::source::{
    Notice, Source,
    ebpf::{self, EbpfSource, StartError, hooks::HookMode},
    netlink::{self, NetlinkSource},
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
}

fn human_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} B"),
    }
}

/// What a command asks of its source, built by the command from its
/// arguments: [`Request::new`] takes the global options, the command sets
/// what it needs on top.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// `--source`.
    pub source: SourceKind,
    /// `--hook`.
    pub hook_mode: HookMode,
    /// `--ring-size`, in bytes.
    pub ring_size: u64,
    /// What the eBPF programs filter before the ring.
    pub kernel_filter: KernelFilter,
    /// `-e` as given; `None` is each source's default (netlink: ALL, eBPF:
    /// NEW and DESTROY, since UPDATE costs a hook run per state change).
    pub kinds: Option<EventKinds>,
    /// `--set-nf-conntrack-events`.
    pub set_events_sysctl: bool,
    /// `--buffer-size` of the netlink source; `None` is its default.
    pub netlink_buffer: Option<usize>,
    pub netns: &'a NetnsSelection,
    /// An option only ctnetlink can serve (e.g. `-o id`): refused with
    /// `--source ebpf`, ctnetlink straight away with `--source auto`.
    pub netlink_only: Option<&'static str>,
    /// `tracker serve`: the eBPF source keeps closed-flow totals.
    pub account_closed: bool,
    /// The kinds the netlink source subscribes to when they differ from
    /// `kinds` (serve follows every change to keep its counts).
    pub netlink_kinds: Option<EventKinds>,
}

impl<'a> Request<'a> {
    /// The global options, every event kind's default and no filter.
    pub fn new(cli: &Cli, netns: &'a NetnsSelection) -> Self {
        Request {
            source: cli.source,
            hook_mode: cli.hook,
            ring_size: cli.ring_size.0,
            kernel_filter: KernelFilter::default(),
            kinds: None,
            set_events_sysctl: false,
            netlink_buffer: None,
            netns,
            netlink_only: None,
            account_closed: false,
            netlink_kinds: None,
        }
    }
}

/// Opens the source the user asked for; with `--source auto`, eBPF and, when
/// its hooks cannot attach, ctnetlink — saying which and why.
pub async fn open_source(request: &Request<'_>) -> anyhow::Result<Opened> {
    if let Some(option) = request.netlink_only {
        match request.source {
            SourceKind::Ebpf => return Err(UsageError(ebpf_cannot(option)).into()),
            SourceKind::Auto => Notice::NetlinkOnly(option).say(),
            SourceKind::Netlink => {}
        }
        return open_netlink(request);
    }
    if request.source != SourceKind::Netlink {
        let missing = privileges::missing_for_ebpf();
        if !missing.is_empty() {
            if request.source == SourceKind::Ebpf {
                bail!(
                    "the eBPF source needs root, or the capabilities CAP_BPF, CAP_PERFMON and \
                     CAP_NET_ADMIN; this process lacks {}",
                    missing.join(", ")
                );
            }
            Notice::EbpfLacks(missing).say();
        } else {
            let ebpf_request = ebpf::Request {
                hook_mode: request.hook_mode,
                ring_size: request.ring_size as u32,
                filter: request.kernel_filter,
                kinds: request.kinds,
                set_events_sysctl: request.set_events_sysctl,
                netns: request.netns,
                account_closed: request.account_closed,
            };
            match EbpfSource::start(&ebpf_request) {
                Ok(source) => {
                    let description = format!(
                        "source=ebpf, hooks={}, ring={}",
                        source.hook_summary(),
                        human_size(request.ring_size)
                    );
                    return Ok(Opened {
                        source: Source::Ebpf(Box::new(source)),
                        description,
                    });
                }
                Err(StartError::Unavailable(e)) if request.source == SourceKind::Auto => {
                    Notice::Fallback(e).say();
                }
                Err(StartError::Unavailable(e)) => return Err(e.into()),
                Err(StartError::Failed(e)) => return Err(anyhow!(e)),
            }
        }
    }
    open_netlink(request)
}

/// Why the eBPF source refuses a netlink-only option.
pub fn ebpf_cannot(option: &str) -> String {
    format!(
        "{option} needs the netlink source: the kernel derives the conntrack id with a secret \
         boot-time key, which the eBPF hooks cannot compute; use --source netlink"
    )
}

fn open_netlink(request: &Request<'_>) -> anyhow::Result<Opened> {
    let missing = privileges::missing_for_netlink();
    if !missing.is_empty() {
        bail!("reading ctnetlink events needs root or CAP_NET_ADMIN, which this process lacks");
    }
    if request.set_events_sysctl {
        Notice::SysctlWithNetlink.say();
    }
    enter_netns_for_netlink(request.netns)?;
    let kinds = request
        .netlink_kinds
        .or(request.kinds)
        .unwrap_or(EventKinds::ALL);
    let rcvbuf = request.netlink_buffer.unwrap_or(netlink::DEFAULT_RCVBUF);
    let source = NetlinkSource::open(kinds, rcvbuf)?;
    let description = format!(
        "source=netlink, buffer={}",
        human_size(source.rcvbuf() as u64)
    );
    Ok(Opened {
        source: Source::Netlink(source),
        description,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netlink_only_sentences() {
        assert_eq!(
            ebpf_cannot("-o id"),
            "-o id needs the netlink source: the kernel derives the conntrack id with a secret \
             boot-time key, which the eBPF hooks cannot compute; use --source netlink"
        );
        assert_eq!(
            Notice::NetlinkOnly("-o id").to_string(),
            "-o id needs the kernel's conntrack id, which only ctnetlink reports: using \
             ctnetlink events; expect event loss under load"
        );
    }
}
