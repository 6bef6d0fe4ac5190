//! DESTROY: `nf_ct_delete(ct, portid, report)` returning true, which happens
//! once per entry (GC/timeout, TCP close/RST, early drop, `conntrack -D/-F`).
//! Callers hold their own reference, so the entry is still readable at exit.

use aya_ebpf::{
    macros::{fexit, kprobe, kretprobe},
    programs::{FExitContext, ProbeContext, RetProbeContext},
};

use crate::{
    conn::Entry,
    emit::{self, Change},
    maps::Stash,
};

#[inline(always)]
fn deleted(ct: Entry, portid: u32, ret: u64) -> u32 {
    // `bool` return: only the low byte is defined.
    if ret & 0xff != 0 {
        emit::report(ct, Change::Destroy { portid });
    }
    0
}

#[fexit(function = "nf_ct_delete")]
pub fn delete_fexit(ctx: FExitContext) -> u32 {
    let ct: u64 = ctx.arg(0);
    let portid: u64 = ctx.arg(1);
    // Three arguments: the return value follows them.
    let ret: u64 = ctx.arg(3);
    deleted(Entry::Typed(ct), portid as u32, ret)
}

#[kprobe]
pub fn delete_kprobe(ctx: ProbeContext) -> u32 {
    if let (Some(ct), Some(portid)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) {
        Stash::put(ct, 0, portid as u32);
    }
    0
}

#[kretprobe]
pub fn delete_kretprobe(ctx: RetProbeContext) -> u32 {
    let ret: u64 = ctx.ret();
    match Stash::take() {
        Some(s) => deleted(Entry::Untyped(s.ptr), s.portid, ret),
        None => 0,
    }
}
