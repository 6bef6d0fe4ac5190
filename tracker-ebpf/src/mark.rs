//! Mark changes after confirm, so per-mark counts follow re-marked entries.
//! These paths run only when a mark-setting rule or request fires, never for
//! ordinary packets:
//! - `nf_conntrack_eventmask_report`: ctnetlink updates (`conntrack -U --mark`)
//!   report IPCT_MARK through it after the mark was written;
//! - `connmark_tg`, `connmark_tg_v2` (xt_connmark): iptables `CONNMARK
//!   --set-mark/--save-mark`.

use aya_ebpf::{
    macros::{kprobe, kretprobe},
    programs::{ProbeContext, RetProbeContext},
};

use crate::{
    confirm::take_stash,
    conn::{self, off},
    counts,
    maps::{STASH, Stash},
};

#[inline(always)]
fn follow(ct: u64) {
    if ct != 0 {
        counts::on_mark_change(ct, conn::mark(ct));
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
        let s = Stash {
            ptr: skb,
            portid: 0,
            _pad: 0,
        };
        let _ = STASH.insert(aya_ebpf::helpers::bpf_get_current_pid_tgid(), s, 0);
    }
    0
}

/// Exit of a packet-path mark setter: the skb's ct now has its new mark.
#[kretprobe]
pub fn skb_mark_kretprobe(_ctx: RetProbeContext) -> u32 {
    if let Some(s) = take_stash()
        && let Ok(ct) = conn::ct_of_skb(s.ptr)
    {
        follow(ct);
    }
    0
}
