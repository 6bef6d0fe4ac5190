//! The subcommands, and what they share: picking and opening a source.

pub mod counts;
pub mod events;

use anyhow::{Context as _, anyhow, bail};
use tracker_common::KernelFilter;

use crate::cli::{Cli, SourceKind};
use crate::model::{EventKinds, NetnsArg, NetnsSelection};
use crate::privileges;
use crate::source::{
    Notice, Source,
    ebpf::{self, EbpfSource, StartError},
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
    kernel_filter: KernelFilter,
    netlink_buffer: Option<usize>,
    netns: &NetnsSelection,
) -> anyhow::Result<Opened> {
    open_source_for(cli, wanted, kernel_filter, netlink_buffer, netns, None).await
}

/// [`open_source`] for a command line with an option only ctnetlink can
/// serve (`netlink_only`, e.g. `-o id`): refused with `--source ebpf`,
/// ctnetlink straight away with `--source auto`.
pub async fn open_source_for(
    cli: &Cli,
    wanted: Wanted,
    kernel_filter: KernelFilter,
    netlink_buffer: Option<usize>,
    netns: &NetnsSelection,
    netlink_only: Option<&'static str>,
) -> anyhow::Result<Opened> {
    if let Some(option) = netlink_only {
        match cli.source {
            SourceKind::Ebpf => return Err(UsageError(ebpf_cannot(option)).into()),
            SourceKind::Auto => Notice::NetlinkOnly(option).say(),
            SourceKind::Netlink => {}
        }
        return open_netlink(wanted, netlink_buffer, netns);
    }
    open_any(cli, wanted, kernel_filter, netlink_buffer, netns).await
}

/// Why the eBPF source refuses a netlink-only option.
pub fn ebpf_cannot(option: &str) -> String {
    format!(
        "{option} needs the netlink source: the kernel derives the conntrack id with a secret \
         boot-time key, which the eBPF hooks cannot compute; use --source netlink"
    )
}

async fn open_any(
    cli: &Cli,
    wanted: Wanted,
    kernel_filter: KernelFilter,
    netlink_buffer: Option<usize>,
    netns: &NetnsSelection,
) -> anyhow::Result<Opened> {
    if cli.source != SourceKind::Netlink {
        let missing = privileges::missing_for_ebpf();
        if !missing.is_empty() {
            if cli.source == SourceKind::Ebpf {
                bail!(
                    "the eBPF source needs root, or the capabilities CAP_BPF, CAP_PERFMON and \
                     CAP_NET_ADMIN; this process lacks {}",
                    missing.join(", ")
                );
            }
            Notice::EbpfLacks(missing).say();
        } else {
            let request = ebpf::Request {
                hook_mode: cli.hook,
                ring_size: cli.ring_size.0 as u32,
                filter: kernel_filter,
                kinds: wanted.kinds,
                set_events_sysctl: wanted.set_events_sysctl,
                netns,
            };
            match EbpfSource::start(&request) {
                Ok(source) => {
                    let description = format!(
                        "source=ebpf, hooks={}, ring={}",
                        source.hook_summary(),
                        human_size(cli.ring_size.0)
                    );
                    return Ok(Opened {
                        source: Source::Ebpf(Box::new(source)),
                        description,
                    });
                }
                Err(StartError::Unavailable(e)) if cli.source == SourceKind::Auto => {
                    Notice::Fallback(e).say();
                }
                Err(StartError::Unavailable(e)) => return Err(e.into()),
                Err(StartError::Failed(e)) => return Err(anyhow!(e)),
            }
        }
    }
    open_netlink(wanted, netlink_buffer, netns)
}

fn open_netlink(
    wanted: Wanted,
    netlink_buffer: Option<usize>,
    netns: &NetnsSelection,
) -> anyhow::Result<Opened> {
    let missing = privileges::missing_for_netlink();
    if !missing.is_empty() {
        bail!("reading ctnetlink events needs root or CAP_NET_ADMIN, which this process lacks");
    }
    if wanted.set_events_sysctl {
        Notice::SysctlWithNetlink.say();
    }
    enter_netns_for_netlink(netns)?;
    let kinds = wanted.kinds.unwrap_or(EventKinds::ALL);
    let source = NetlinkSource::open(kinds, netlink_buffer.unwrap_or(netlink::DEFAULT_RCVBUF))?;
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
