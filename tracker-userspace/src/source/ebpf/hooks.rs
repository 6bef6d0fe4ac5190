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

/// Functions the running kernel has as symbols (not inlined away).
pub fn kernel_symbols() -> HashSet<String> {
    let Ok(text) = std::fs::read_to_string("/proc/kallsyms") else {
        return HashSet::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (_addr, kind, name) = (it.next()?, it.next()?, it.next()?);
            matches!(kind, "t" | "T").then(|| name.to_string())
        })
        .collect()
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

/// What attaching needs to know about the kernel, gathered once.
pub struct KernelView<'a> {
    pub kbtf: &'a KernelBtf,
    pub aya_btf: Option<aya::Btf>,
    pub symbols: HashSet<String>,
    pub kprobes: Result<(), String>,
}

impl<'a> KernelView<'a> {
    pub fn new(kbtf: &'a KernelBtf) -> Self {
        Self {
            kbtf,
            aya_btf: aya::Btf::from_sys_fs().ok(),
            symbols: kernel_symbols(),
            kprobes: kprobe_support(),
        }
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
        if !view.symbols.is_empty() && !view.symbols.contains(func) {
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
