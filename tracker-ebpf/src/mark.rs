//! Mark changes after confirm, so per-mark counts follow re-marked entries.
//! These paths run only when a mark-setting rule or request fires, never for
//! ordinary packets:
//! - `nf_conntrack_eventmask_report`: ctnetlink updates (`conntrack -U --mark`)
//!   report IPCT_MARK through it after the mark was written;
//! - `connmark_tg`, `connmark_tg_v2` (xt_connmark): iptables `CONNMARK
//!   --set-mark/--save-mark`.

use aya_ebpf::{
    macros::{fentry, kprobe, kretprobe},
    programs::{FEntryContext, ProbeContext, RetProbeContext},
};

use crate::{
    conn::{self, off},
    counts,
    maps::Stash,
};

/// Moves a counted entry to its current mark. Reads the one field rather
/// than copying the entry: these hooks report nothing.
#[inline(always)]
fn follow(ct: u64) {
    if ct != 0
        && let Ok(mark) = conn::read::<u32>(ct, off!(ct_mark))
        && let Ok(ct) = conn::as_number(ct)
    {
        counts::on_mark_change(ct, mark);
    }
}

#[kprobe]
pub fn eventmask_kprobe(ctx: ProbeContext) -> u32 {
    let bit = off!(ipct_mark);
    if let (Some(mask), Some(ct)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1))
        && bit < 32
        && (mask >> bit) & 1 == 1
    {
        follow(ct);
    }
    0
}

/// Entry of a packet-path mark setter: remember the skb for the exit.
#[kprobe]
pub fn skb_mark_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(skb) = ctx.arg::<u64>(0) {
        Stash::put(skb, 0, 0);
    }
    0
}

/// Exit of a packet-path mark setter: the skb's ct now has its new mark.
#[kretprobe]
pub fn skb_mark_kretprobe(_ctx: RetProbeContext) -> u32 {
    if let Some(s) = Stash::take()
        && let Ok(ct) = conn::ct_of_skb(s.ptr)
    {
        follow(ct);
    }
    0
}

/// The same, from a trampoline where nf_conntrack has BTF: this function
/// also delivers every DESTROY, so its cost is paid per connection.
#[fentry(function = "nf_conntrack_eventmask_report")]
pub fn eventmask_fentry(ctx: FEntryContext) -> u32 {
    let mask: u64 = ctx.arg(0);
    let ct: u64 = ctx.arg(1);
    let bit = off!(ipct_mark);
    if bit < 32 && (mask >> bit) & 1 == 1 {
        follow(ct);
    }
    0
}
