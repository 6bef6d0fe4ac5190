//! NEW: an entry enters the table, either confirmed by its first packet
//! (`__nf_conntrack_confirm`) or inserted over ctnetlink
//! (`nf_conntrack_hash_check_insert`: `conntrack -I`, conntrackd, BPF).
//! Both are read at exit: clash resolution can swap the skb's ct, and only
//! the return value says whether the entry made it into the table.

use aya_ebpf::{
    macros::{fexit, kprobe, kretprobe},
    programs::{FExitContext, ProbeContext, RetProbeContext},
};

use crate::{
    conn::{self, Entry},
    counts::Claimer,
    emit::{self, Change},
    maps::Stash,
};

const NF_ACCEPT: i32 = 1;

#[inline(always)]
fn confirmed(ct: Result<u64, i64>, ret: i32, claimer: Claimer) -> u32 {
    if ret == NF_ACCEPT
        && let Ok(ct) = ct
    {
        // `skb->_nfct` is a number, not a typed pointer.
        emit::report(
            Entry::Untyped(ct),
            Change::New {
                netlink_insert: false,
                claimer,
            },
        );
    }
    0
}

#[inline(always)]
fn inserted(ct: Entry, ret: i32, claimer: Claimer) -> u32 {
    if ret == 0 {
        emit::report(
            ct,
            Change::New {
                netlink_insert: true,
                claimer,
            },
        );
    }
    0
}

#[fexit(function = "__nf_conntrack_confirm")]
pub fn confirm_fexit(ctx: FExitContext) -> u32 {
    // One argument: the return value follows it in the context.
    let skb: u64 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    if ret as i32 != NF_ACCEPT {
        return 0;
    }
    confirmed(conn::ct_of_btf_skb(skb), ret as i32, Claimer::Tracing)
}

#[kprobe]
pub fn confirm_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(skb) = ctx.arg::<u64>(0) {
        Stash::put(skb, conn::ct_of_skb(skb).unwrap_or(0), 0);
    }
    0
}

#[kretprobe]
pub fn confirm_kretprobe(ctx: RetProbeContext) -> u32 {
    let ret: i64 = ctx.ret();
    match Stash::take() {
        Some(s) if ret as i32 == NF_ACCEPT => match conn::ct_of_skb(s.ptr) {
            // The skb holds another entry than at the call: its packet lost
            // a race to confirm its flow and was handed the winner
            // (`__nf_ct_resolve_clash`, net/netfilter/nf_conntrack_core.c),
            // whose own confirm reports it. Kprobe programs cannot claim a
            // slot with compare-and-swap, so the counts could not tell the
            // two sightings apart if both ran at once (counts.rs).
            Ok(ct) if s.orig != 0 && ct != s.orig => 0,
            ct => confirmed(ct, ret as i32, Claimer::Kprobe),
        },
        Some(_) => 0,
        None => 0,
    }
}

#[fexit(function = "nf_conntrack_hash_check_insert")]
pub fn insert_fexit(ctx: FExitContext) -> u32 {
    let ct: u64 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    inserted(Entry::Typed(ct), ret as i32, Claimer::Tracing)
}

#[kprobe]
pub fn insert_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(ct) = ctx.arg::<u64>(0) {
        Stash::put(ct, 0, 0);
    }
    0
}

#[kretprobe]
pub fn insert_kretprobe(ctx: RetProbeContext) -> u32 {
    let ret: i64 = ctx.ret();
    match Stash::take() {
        Some(s) => inserted(Entry::Untyped(s.ptr), ret as i32, Claimer::Kprobe),
        None => 0,
    }
}
