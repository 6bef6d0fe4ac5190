//! Kernel side of the tracker: per-connection hooks on nf_conntrack that
//! write `FlowRecord`s into a ring buffer and keep live counts per mark.
//!
//! Every hook comes as fexit (where the kernel has BTF for the function and
//! trampolines) and as a kprobe/kretprobe pair; userspace picks per hook.
//!
//! The programs only exist for the BPF target; on the host (workspace-wide
//! `cargo check`/`clippy`/`test`) this crate is an empty binary.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// Atomic adds on map values (BPF_XADD); core's atomics lack fetch_add on bpf.
#![cfg_attr(target_arch = "bpf", allow(internal_features))]
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]

#[cfg(target_arch = "bpf")]
mod closed;
#[cfg(target_arch = "bpf")]
mod confirm;
#[cfg(target_arch = "bpf")]
mod conn;
#[cfg(target_arch = "bpf")]
mod counts;
#[cfg(target_arch = "bpf")]
mod delete;
#[cfg(target_arch = "bpf")]
mod emit;
#[cfg(target_arch = "bpf")]
mod expired;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod mark;
#[cfg(target_arch = "bpf")]
mod seed;
#[cfg(target_arch = "bpf")]
mod update;

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
