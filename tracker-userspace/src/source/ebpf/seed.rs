//! The hook that counts entries older than the tracker (tracker-ebpf's
//! `seed.rs`): loaded with the others, attached only while the start-up dump
//! runs and unloaded after, so no other dump or event ever pays for it. fentry where the
//! kernel has BTF for `nf_ct_get_id`, a kprobe otherwise.

use aya::{
    Ebpf,
    programs::{FEntry, KProbe},
};

use super::hooks::{HookMode, KernelView, short};
use crate::btf::FuncTarget;

/// Called by ctnetlink for every entry it puts in a dump message.
const FUNCTION: &str = "nf_ct_get_id";

/// Which of the two programs is loaded.
pub enum SeedHook {
    Fentry,
    Kprobe,
}

impl SeedHook {
    /// Loads the fentry program, or the kprobe where fentry cannot be.
    pub fn load(ebpf: &mut Ebpf, mode: HookMode, view: &KernelView<'_>) -> Result<Self, String> {
        let mut refused = Vec::new();
        if mode != HookMode::Kprobe {
            match load_fentry(ebpf, view) {
                Ok(()) => return Ok(SeedHook::Fentry),
                Err(e) => refused.push(e),
            }
        }
        if mode == HookMode::Fentry {
            return Err(refused.join("; "));
        }
        match load_kprobe(ebpf, view) {
            Ok(()) => Ok(SeedHook::Kprobe),
            Err(e) => {
                refused.push(e);
                Err(refused.join("; "))
            }
        }
    }

    /// Runs `dump` with the program attached, then detaches and unloads it:
    /// a tracker keeps loaded only what it has attached.
    pub fn during<T>(&self, ebpf: &mut Ebpf, dump: impl FnOnce() -> T) -> Result<T, String> {
        let attach_err =
            |e: &dyn std::error::Error| format!("attaching on {FUNCTION}: {}", short(e));
        match self {
            SeedHook::Fentry => {
                let p: &mut FEntry = program(ebpf, "seed_fentry")?;
                let link = p.attach().map_err(|e| attach_err(&e))?;
                let out = dump();
                let _ = p.detach(link);
                let _ = p.unload();
                Ok(out)
            }
            SeedHook::Kprobe => {
                let p: &mut KProbe = program(ebpf, "seed_kprobe")?;
                let link = p.attach(FUNCTION, 0).map_err(|e| attach_err(&e))?;
                let out = dump();
                let _ = p.detach(link);
                let _ = p.unload();
                Ok(out)
            }
        }
    }
}

fn program<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut P, String>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the object"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| format!("{name}: {e}"))
}

fn load_fentry(ebpf: &mut Ebpf, view: &KernelView<'_>) -> Result<(), String> {
    let target = view
        .kbtf
        .func_target(FUNCTION)
        .ok_or_else(|| format!("fentry: the kernel has no BTF for {FUNCTION}"))?;
    let btf = view.aya_btf.as_ref();
    let p: &mut FEntry = program(ebpf, "seed_fentry")?;
    match target {
        FuncTarget::Vmlinux => match btf {
            Some(btf) => p.load(FUNCTION, btf),
            None => return Err("fentry: no kernel BTF".into()),
        },
        FuncTarget::Module { module, btf_id } => p.load_from_module(module, btf_id),
    }
    .map_err(|e| format!("fentry refused at load: {}", short(&e)))
}

fn load_kprobe(ebpf: &mut Ebpf, view: &KernelView<'_>) -> Result<(), String> {
    view.kprobes.clone()?;
    let p: &mut KProbe = program(ebpf, "seed_kprobe")?;
    p.load()
        .map_err(|e| format!("kprobe refused at load: {}", short(&e)))
}
