//! Entries that existed before the hooks: the tracker's own start-up dump
//! lists them, and ctnetlink calls `nf_ct_get_id(ct)` for each entry it puts
//! in a dump message (`ctnetlink_dump_id` in
//! net/netfilter/nf_conntrack_netlink.c). Hooked for the length of that dump
//! only, and only in the tracker's own process, it hands each listed entry's
//! address to the counts, which remember and count it as a NEW hook would
//! have. Then its DESTROY uncounts it as any other, and the expired-entry
//! iterators see it: the counts stay what `conntrack -L` would list even for
//! entries older than the tracker.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fentry, kprobe},
    programs::{FEntryContext, ProbeContext},
};

use crate::{
    conn::Entry,
    counts::Claimer,
    emit::{self, Change},
};

/// The tracker's process id (tgid), set before load: other processes'
/// dumps and events pass through the same function.
#[unsafe(no_mangle)]
static SEED_TGID: u32 = 0;

#[inline(always)]
fn listed(ct: Entry, claimer: Claimer) -> u32 {
    // SAFETY (the read): a global set before load.
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == unsafe { core::ptr::read_volatile(&SEED_TGID) } {
        emit::report(ct, Change::Seed { claimer });
    }
    0
}

#[fentry(function = "nf_ct_get_id")]
pub fn seed_fentry(ctx: FEntryContext) -> u32 {
    let ct: u64 = ctx.arg(0);
    listed(Entry::Typed(ct), Claimer::Tracing)
}

#[kprobe]
pub fn seed_kprobe(ctx: ProbeContext) -> u32 {
    match ctx.arg::<u64>(0) {
        Some(ct) => listed(Entry::Untyped(ct), Claimer::Kprobe),
        None => 0,
    }
}
