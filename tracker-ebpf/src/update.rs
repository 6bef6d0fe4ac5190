//! UPDATE: changes the kernel reports to its conntrack event notifier —
//! first reply, assured, TCP state, mark, helper. Hooked at ctnetlink's
//! notifier, `ctnetlink_conntrack_event(events, item)`, which sees exactly
//! the event bits `conntrack -E` gets, and only when some bit is set: the
//! kernel calls it per change, not per packet.
//!
//! The kernel only collects these bits for entries that carry the event-cache
//! extension (net.netfilter.nf_conntrack_events=1, or 2 with a ctnetlink
//! listener); userspace sees to that before attaching.

use aya_ebpf::{macros::kprobe, programs::ProbeContext};
use tracker_common::ipct;

use crate::{
    conn::{self, Entry, off},
    emit::{self, Change},
};

#[kprobe]
pub fn ct_event_kprobe(ctx: ProbeContext) -> u32 {
    let (Some(events), Some(item)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else {
        return 0;
    };
    let events = events as u16;
    // NEW and DESTROY come from their own hooks, which see every entry,
    // with or without the event cache.
    if events == 0 || events & ipct::NOT_UPDATE != 0 {
        return 0;
    }
    let Ok(ct) = conn::read::<u64>(item, off!(ct_event_ct)) else {
        return 0;
    };
    let portid = conn::read::<u32>(item, off!(ct_event_portid)).unwrap_or(0);
    emit::report(Entry::Untyped(ct), Change::Update { events, portid });
    0
}
