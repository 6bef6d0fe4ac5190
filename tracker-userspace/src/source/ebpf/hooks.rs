//! Which kernel functions the programs hook, how, and what to do when a way
//! is unavailable. One table instead of if-chains: each hook lists its
//! candidate functions, its trampoline program (fentry or fexit) and its
//! kprobe pair.
//!
//! Trampolines are tried first: they cost a direct call, where a kprobe
//! costs a breakpoint or ftrace detour and a kretprobe a return trampoline
//! plus a saved argument. They need the function's BTF: vmlinux's, or a
//! module's split BTF (nf_conntrack on Debian 6.1+, through the patched
//! aya in `patches/`). Without BTF for the function (Debian 5.10 has no
//! module BTF) or where the kernel refuses trampolines, kprobes remain.

use std::collections::HashSet;
use std::fmt;

use aya::{
    Ebpf,
    programs::{FEntry, FExit, KProbe},
};

use crate::btf::{FuncTarget, KernelBtf};

/// How the eBPF programs attach (`--hook`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookMode {
    /// fentry/fexit where the kernel allows it, kprobes elsewhere.
    Auto,
    /// fentry/fexit only; fail when they cannot attach.
    Fentry,
    /// kprobe/kretprobe only.
    Kprobe,
}

/// A program run by a BPF trampoline at a function's entry or exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trampoline {
    Fentry(&'static str),
    Fexit(&'static str),
}

impl Trampoline {
    pub fn program(&self) -> &'static str {
        match self {
            Trampoline::Fentry(p) | Trampoline::Fexit(p) => p,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Trampoline::Fentry(_) => "fentry",
            Trampoline::Fexit(_) => "fexit",
        }
    }
}

pub struct Hook {
    /// What the hook observes, for messages.
    pub role: &'static str,
    /// Kernel functions to try, in order; the first that attaches wins.
    pub functions: &'static [&'static str],
    pub trampoline: Option<Trampoline>,
    pub kprobe: &'static str,
    pub kretprobe: Option<&'static str>,
    /// Without a required hook the tracker cannot run on eBPF.
    pub required: bool,
    /// Kernel module that provides the functions, when it is not
    /// nf_conntrack itself: the hook attaches once it is loaded.
    pub module: Option<&'static str>,
    /// Attached only when UPDATE events are asked for; then required.
    pub updates_only: bool,
}

impl Hook {
    /// Whether the tracker cannot run on eBPF without this hook.
    pub fn required(&self, updates: bool) -> bool {
        self.required || (self.updates_only && updates)
    }
}

pub const HOOKS: &[Hook] = &[
    Hook {
        role: "NEW (packet path)",
        functions: &["__nf_conntrack_confirm"],
        trampoline: Some(Trampoline::Fexit("confirm_fexit")),
        kprobe: "confirm_kprobe",
        kretprobe: Some("confirm_kretprobe"),
        required: true,
        module: None,
        updates_only: false,
    },
    Hook {
        role: "NEW (ctnetlink insert)",
        functions: &["nf_conntrack_hash_check_insert"],
        trampoline: Some(Trampoline::Fexit("insert_fexit")),
        kprobe: "insert_kprobe",
        kretprobe: Some("insert_kretprobe"),
        required: true,
        module: None,
        updates_only: false,
    },
    Hook {
        role: "DESTROY",
        // GCC may split nf_ct_delete: its callers inside nf_conntrack_core.c
        // then call the outlined `.part.0` directly (Debian 5.10), and the
        // exported wrapper calls it too, so the clone sees every delete.
        functions: &["nf_ct_delete.part.0", "nf_ct_delete"],
        trampoline: Some(Trampoline::Fexit("delete_fexit")),
        kprobe: "delete_kprobe",
        kretprobe: Some("delete_kretprobe"),
        required: true,
        module: None,
        updates_only: false,
    },
    Hook {
        role: "mark change (ctnetlink)",
        // Runs for every DESTROY too (it delivers IPCT_DESTROY): worth a
        // trampoline where there is one.
        functions: &["nf_conntrack_eventmask_report"],
        trampoline: Some(Trampoline::Fentry("eventmask_fentry")),
        kprobe: "eventmask_kprobe",
        kretprobe: None,
        required: false,
        module: None,
        updates_only: false,
    },
    // Both target revisions of xt_connmark change marks (iptables-nft uses
    // revision 2); each is a hook of its own since both may be in use.
    Hook {
        role: "mark change (iptables CONNMARK rev 1)",
        functions: &["connmark_tg"],
        trampoline: None,
        kprobe: "skb_mark_kprobe",
        kretprobe: Some("skb_mark_kretprobe"),
        required: false,
        module: Some("xt_connmark"),
        updates_only: false,
    },
    Hook {
        role: "mark change (iptables CONNMARK rev 2)",
        functions: &["connmark_tg_v2"],
        trampoline: None,
        kprobe: "skb_mark_kprobe",
        kretprobe: Some("skb_mark_kretprobe"),
        required: false,
        module: Some("xt_connmark"),
        updates_only: false,
    },
    // UPDATE: ctnetlink's event notifier runs once per delivered change (not
    // per packet) with the same event bits conntrack -E gets.
    Hook {
        role: "UPDATE (conntrack event notifier)",
        functions: &["ctnetlink_conntrack_event"],
        trampoline: None,
        kprobe: "ct_event_kprobe",
        kretprobe: None,
        required: false,
        module: Some("nf_conntrack_netlink"),
        updates_only: true,
    },
];

/// How one hook ended up attached.
#[derive(Clone, Debug)]
pub enum Attached {
    /// fentry or fexit on the function.
    Trampoline(Trampoline, &'static str),
    Kprobe(&'static str),
}

impl Attached {
    pub fn kind(&self) -> &'static str {
        match self {
            Attached::Trampoline(t, _) => t.kind(),
            Attached::Kprobe(_) => "kprobe",
        }
    }
}

/// The outcome for one hook: what attached, and why the other ways did not.
pub struct Outcome {
    pub hook: &'static Hook,
    pub attached: Option<Attached>,
    pub refused: Vec<String>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.attached {
            Some(Attached::Trampoline(t, func)) => {
                write!(f, "{}: {} on {func}", self.hook.role, t.kind())?
            }
            Some(Attached::Kprobe(func)) => {
                let pair = if self.hook.kretprobe.is_some() {
                    "kprobe+kretprobe"
                } else {
                    "kprobe"
                };
                write!(f, "{}: {pair} on {func}", self.hook.role)?
            }
            None => write!(f, "{}: not attached", self.hook.role)?,
        }
        if !self.refused.is_empty() {
            write!(f, " ({})", self.refused.join("; "))?;
        }
        Ok(())
    }
}

/// Whether the kernel can run kprobes at all, and if not, why.
pub fn kprobe_support() -> Result<(), String> {
    if std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists() {
        return Ok(());
    }
    Err("kprobes are not available in this kernel (CONFIG_KPROBES unset, no kprobe PMU)".into())
}

/// Which of `wanted` the running kernel has as function symbols (not
/// inlined away); empty when /proc/kallsyms cannot be read. Only the wanted
/// names are kept: the file has a line per kernel symbol (~200 000), and a
/// set of all of them cost more than the rest of start-up on a slow guest.
pub fn kernel_symbols(wanted: &HashSet<&str>) -> HashSet<String> {
    use std::io::BufRead;
    let Ok(file) = std::fs::File::open("/proc/kallsyms") else {
        return HashSet::new();
    };
    let mut found = HashSet::new();
    for line in std::io::BufReader::with_capacity(1 << 16, file).lines() {
        let Ok(line) = line else { break };
        let mut it = line.split_whitespace();
        let (Some(_addr), Some(kind), Some(name)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if matches!(kind, "t" | "T") && wanted.contains(name) {
            found.insert(name.to_string());
        }
    }
    found
}

fn try_trampoline(
    ebpf: &mut Ebpf,
    t: Trampoline,
    func: &str,
    btf: &aya::Btf,
    kbtf: &KernelBtf,
) -> Result<(), String> {
    let kind = t.kind();
    let Some(target) = kbtf.func_target(func) else {
        return Err(format!("{kind}: the kernel has no BTF for {func}"));
    };
    let prog = t.program();
    let program = ebpf
        .program_mut(prog)
        .ok_or_else(|| format!("{kind}: program {prog} missing from the object"))?;
    let refused = |e: &dyn std::error::Error| format!("{kind} refused at load: {}", short(e));
    let attached = match t {
        Trampoline::Fentry(_) => {
            let p: &mut FEntry = program.try_into().map_err(|e| format!("{kind}: {e}"))?;
            match target {
                FuncTarget::Vmlinux => p.load(func, btf),
                FuncTarget::Module { module, btf_id } => p.load_from_module(module, btf_id),
            }
            .map_err(|e| refused(&e))?;
            p.attach().map(|_| ())
        }
        Trampoline::Fexit(_) => {
            let p: &mut FExit = program.try_into().map_err(|e| format!("{kind}: {e}"))?;
            match target {
                FuncTarget::Vmlinux => p.load(func, btf),
                FuncTarget::Module { module, btf_id } => p.load_from_module(module, btf_id),
            }
            .map_err(|e| refused(&e))?;
            p.attach().map(|_| ())
        }
    };
    attached.map_err(|e| format!("{kind} refused at attach: {}", short(&e)))
}

fn load_kprobe<'a>(ebpf: &'a mut Ebpf, prog: &str) -> Result<&'a mut KProbe, String> {
    let program: &mut KProbe = ebpf
        .program_mut(prog)
        .ok_or_else(|| format!("kprobe: program {prog} missing from the object"))?
        .try_into()
        .map_err(|e| format!("kprobe: {e}"))?;
    if program.fd().is_err() {
        program
            .load()
            .map_err(|e| format!("kprobe {prog} rejected at load: {}", short(&e)))?;
    }
    Ok(program)
}

fn try_kprobe(ebpf: &mut Ebpf, hook: &Hook, func: &str) -> Result<(), String> {
    // Exit first: an entry stash without its exit would only fill the map.
    if let Some(ret) = hook.kretprobe {
        load_kprobe(ebpf, ret)?
            .attach(func, 0)
            .map_err(|e| format!("kretprobe on {func}: {}", short(&e)))?;
    }
    load_kprobe(ebpf, hook.kprobe)?
        .attach(func, 0)
        .map_err(|e| format!("kprobe on {func}: {}", short(&e)))?;
    Ok(())
}

/// The error and its sources on one line; verifier logs are cut to their tail.
pub fn short(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    if let Some(i) = s.find("Verifier output:") {
        let log = s[i + "Verifier output:".len()..].trim();
        let head = s[..i].trim_end().trim_end_matches('.').to_string();
        s = if log.is_empty() {
            head
        } else {
            let tail: Vec<&str> = log.lines().rev().take(6).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("{head}; verifier output (last lines): {}", tail.join(" | "))
        };
    }
    s.replace("the BPF_PROG_LOAD syscall returned ", "")
}

/// What attaching needs to know about the kernel besides the offsets:
/// aya's parse of vmlinux BTF (trampoline targets) and which hooked
/// functions are symbols (kprobe candidates). Each takes about a second on a
/// slow machine, so both start on their own threads while the caller parses
/// BTF and loads the programs, which does not need them.
pub struct KernelFacts {
    aya_btf: std::thread::JoinHandle<Option<aya::Btf>>,
    symbols: std::thread::JoinHandle<HashSet<String>>,
}

impl KernelFacts {
    pub fn gather() -> Self {
        Self {
            aya_btf: std::thread::spawn(|| aya::Btf::from_sys_fs().ok()),
            symbols: std::thread::spawn(|| {
                let wanted = HOOKS
                    .iter()
                    .flat_map(|h| h.functions.iter().copied())
                    .collect();
                kernel_symbols(&wanted)
            }),
        }
    }
}

/// What attaching needs to know about the kernel, gathered once.
pub struct KernelView<'a> {
    pub kbtf: &'a KernelBtf,
    pub aya_btf: Option<aya::Btf>,
    /// Empty when /proc/kallsyms could not be read: then no candidate is
    /// refused for want of a symbol.
    symbols: HashSet<String>,
    pub kprobes: Result<(), String>,
}

impl<'a> KernelView<'a> {
    pub fn new(kbtf: &'a KernelBtf, facts: KernelFacts) -> Self {
        // A gathering thread that panicked knows nothing: the same as an
        // unreadable file.
        Self {
            kbtf,
            aya_btf: facts.aya_btf.join().ok().flatten(),
            symbols: facts.symbols.join().unwrap_or_default(),
            kprobes: kprobe_support(),
        }
    }

    /// False only when the kernel's symbols were read and `func` is not
    /// among them.
    fn may_have_symbol(&self, func: &str) -> bool {
        self.symbols.is_empty() || self.symbols.contains(func)
    }
}

/// Attaches one hook as `mode` allows: per candidate function, fexit first,
/// then the kprobe pair; the first that attaches wins.
pub fn attach_hook(
    ebpf: &mut Ebpf,
    hook: &'static Hook,
    mode: HookMode,
    view: &KernelView<'_>,
) -> Outcome {
    let mut refused = Vec::new();
    for &func in hook.functions {
        if mode != HookMode::Kprobe
            && let Some(t) = hook.trampoline
        {
            let r = match &view.aya_btf {
                Some(btf) => try_trampoline(ebpf, t, func, btf, view.kbtf),
                None => Err(format!("{}: no kernel BTF", t.kind())),
            };
            match r {
                Ok(()) => {
                    return Outcome {
                        hook,
                        attached: Some(Attached::Trampoline(t, func)),
                        refused,
                    };
                }
                Err(e) => refused.push(e),
            }
        }
        if mode == HookMode::Fentry {
            if hook.trampoline.is_none() {
                refused.push(format!(
                    "{func}: this hook has no fentry/fexit program (kprobe only)"
                ));
            }
            continue;
        }
        if let Err(e) = &view.kprobes {
            refused.push(e.clone());
            continue;
        }
        if !view.may_have_symbol(func) {
            refused.push(match hook.module {
                Some(m) => format!("{func} is not a symbol of this kernel ({m} is not loaded)"),
                None => format!("{func} is not a symbol of this kernel"),
            });
            continue;
        }
        match try_kprobe(ebpf, hook, func) {
            Ok(()) => {
                return Outcome {
                    hook,
                    attached: Some(Attached::Kprobe(func)),
                    refused,
                };
            }
            Err(e) => refused.push(e),
        }
    }
    Outcome {
        hook,
        attached: None,
        refused,
    }
}

/// Attaches every hook as `mode` allows, the UPDATE hook only with
/// `updates`. Returns one outcome per hook tried.
pub fn attach_all(
    ebpf: &mut Ebpf,
    mode: HookMode,
    view: &KernelView<'_>,
    updates: bool,
) -> Vec<Outcome> {
    HOOKS
        .iter()
        .filter(|hook| updates || !hook.updates_only)
        .map(|hook| attach_hook(ebpf, hook, mode, view))
        .collect()
}

/// Whether a hook that did not attach may attach now: its module appeared.
pub fn module_appeared(outcome: &Outcome) -> bool {
    outcome.attached.is_none()
        && outcome
            .hook
            .module
            .is_some_and(|m| std::path::Path::new(&format!("/sys/module/{m}")).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_symbols_keeps_only_the_wanted_names_the_kernel_has() {
        // /proc/kallsyms lists names for every reader (only the addresses
        // are hidden without privileges). `schedule` is a function of every kernel; the other name is no symbol.
        let wanted: HashSet<&str> = ["schedule", "no_such_function_in_any_kernel"].into();
        let found = kernel_symbols(&wanted);
        assert_eq!(found, HashSet::from(["schedule".to_string()]));
    }
}
