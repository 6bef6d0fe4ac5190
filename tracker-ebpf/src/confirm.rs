//! NEW: an entry enters the table, either confirmed by its first packet
//! (`__nf_conntrack_confirm`) or inserted over ctnetlink
//! (`nf_conntrack_hash_check_insert`: `conntrack -I`, conntrackd, BPF).
//! Both are read at exit: clash resolution can swap the skb's ct, and only
//! the return value says whether the entry made it into the table.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::{fexit, kprobe, kretprobe},
    programs::{FExitContext, ProbeContext, RetProbeContext},
};
use tracker_common::{flags, stat};

use crate::{
    conn, emit,
    maps::{STASH, Stash, bump},
};

const NF_ACCEPT: i32 = 1;

#[inline(always)]
fn stash(ptr: u64) {
    let s = Stash {
        ptr,
        portid: 0,
        _pad: 0,
    };
    let _ = STASH.insert(bpf_get_current_pid_tgid(), s, 0);
}

#[inline(always)]
pub fn take_stash() -> Option<Stash> {
    let key = bpf_get_current_pid_tgid();
    // SAFETY: copied out before removal.
    let s = unsafe { STASH.get(key) }.copied();
    if s.is_some() {
        let _ = STASH.remove(key);
    } else {
        bump(stat::STASH_MISSES);
    }
    s
}

#[inline(always)]
fn confirmed(skb: u64, ret: i32) -> u32 {
    if ret != NF_ACCEPT {
        return 0;
    }
    match conn::ct_of_skb(skb) {
        Ok(ct) if ct != 0 => {
            let _ = emit::new_entry(ct, 0);
        }
        _ => {}
    }
    0
}

#[inline(always)]
fn inserted(ct: u64, ret: i32) -> u32 {
    if ret == 0 {
        let _ = emit::new_entry(ct, flags::NETLINK_INSERT);
    }
    0
}

#[fexit(function = "__nf_conntrack_confirm")]
pub fn confirm_fexit(ctx: FExitContext) -> u32 {
    // One argument: the return value follows it in the context.
    let skb: u64 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    confirmed(skb, ret as i32)
}

#[kprobe]
pub fn confirm_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(skb) = ctx.arg::<u64>(0) {
        stash(skb);
    }
    0
}

#[kretprobe]
pub fn confirm_kretprobe(ctx: RetProbeContext) -> u32 {
    let ret: i64 = ctx.ret();
    match take_stash() {
        Some(s) => confirmed(s.ptr, ret as i32),
        None => 0,
    }
}

#[fexit(function = "nf_conntrack_hash_check_insert")]
pub fn insert_fexit(ctx: FExitContext) -> u32 {
    let ct: u64 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    inserted(ct, ret as i32)
}

#[kprobe]
pub fn insert_kprobe(ctx: ProbeContext) -> u32 {
    if let Some(ct) = ctx.arg::<u64>(0) {
        stash(ct);
    }
    0
}

#[kretprobe]
pub fn insert_kretprobe(ctx: RetProbeContext) -> u32 {
    let ret: i64 = ctx.ret();
    match take_stash() {
        Some(s) => inserted(s.ptr, ret as i32),
        None => 0,
    }
}
