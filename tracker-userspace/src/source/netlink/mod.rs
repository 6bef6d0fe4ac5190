//! ctnetlink as an event source, the fallback (and the oracle's view) next to
//! the eBPF hooks: the same [`Event`](crate::event::Event)s, decoded from the
//! messages `conntrack -E` reads. The socket and attribute helpers are shared
//! with the table dump of the per-mark counts (`crate::counts::dump`).
//!
//! Limits that come from ctnetlink itself:
//! - only the netns of the calling thread is visible;
//! - the kernel drops events when the receive buffer is full and only says
//!   so with ENOBUFS, counted by [`NetlinkSource::enobufs`];
//! - events need `net.netfilter.nf_conntrack_events` (1, or 2 = only for
//!   entries created while a listener existed; default 2 since 6.1).
//!
//! Parsing uses netlink-packet-netfilter 0.4; [`attrs`] fills what it lacks.

pub(crate) mod attrs;
mod decode;
mod events;
pub(crate) mod socket;

#[cfg(test)]
mod tests;

use std::io;

use crate::model::EventKinds;

pub use events::{DEFAULT_RCVBUF, NetlinkSource};

/// The `NFNLGRP_CONNTRACK_*` groups to join for `kinds`: each kind is one
/// multicast group, so the kernel never sends the others.
pub fn groups(kinds: EventKinds) -> impl Iterator<Item = u32> {
    [
        (kinds.new, attrs::NFNLGRP_CONNTRACK_NEW),
        (kinds.update, attrs::NFNLGRP_CONNTRACK_UPDATE),
        (kinds.destroy, attrs::NFNLGRP_CONNTRACK_DESTROY),
    ]
    .into_iter()
    .filter_map(|(on, group)| on.then_some(group))
}

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("opening a ctnetlink socket needs CAP_NET_ADMIN (run as root)")]
    PermissionDenied,
    #[error(
        "ctnetlink is not available: load nf_conntrack_netlink (modprobe nf_conntrack_netlink)"
    )]
    Unavailable,
    #[error("no conntrack event kinds selected")]
    NoKinds,
    #[error("ctnetlink: {op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("malformed ctnetlink message: {0}")]
    Malformed(String),
}
