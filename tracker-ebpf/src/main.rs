//! Kernel side of the tracker: per-connection hooks on nf_conntrack that
//! write `FlowRecord`s into a ring buffer and keep live counts per mark.
//!
//! Every hook comes as fexit (where the kernel has BTF for the function and
//! trampolines) and as a kprobe/kretprobe pair; userspace picks per hook.
#![no_std]
#![no_main]
// Atomic adds on map values (BPF_XADD); core's atomics lack fetch_add on bpf.
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod confirm;
mod conn;
mod counts;
mod delete;
mod emit;
mod maps;
mod mark;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
