//! What the process may do, checked before anything is loaded so a missing
//! capability gets a sentence instead of an EPERM deep inside a syscall.

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Capabilities the eBPF source needs that the process lacks.
pub fn missing_for_ebpf() -> Vec<&'static str> {
    let caps = effective_caps();
    let has = |c: u32| caps & (1 << c) != 0;
    let mut missing = Vec::new();
    if !(has(CAP_BPF) || has(CAP_SYS_ADMIN)) {
        missing.push("CAP_BPF");
    }
    if !(has(CAP_PERFMON) || has(CAP_SYS_ADMIN)) {
        missing.push("CAP_PERFMON");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    missing
}

/// Whether ctnetlink (netlink source, start-up dump) is usable.
pub fn missing_for_netlink() -> Vec<&'static str> {
    if effective_caps() & (1 << CAP_NET_ADMIN) != 0 {
        Vec::new()
    } else {
        vec!["CAP_NET_ADMIN"]
    }
}

/// Loads nf_conntrack (and its netlink interface) when they are modules that
/// are not loaded yet. Returns a sentence saying what was done, if anything.
pub fn ensure_conntrack_loaded() -> Result<Option<String>, String> {
    let present = |m: &str| match m {
        // Built-in conntrack has no /sys/module entry without parameters;
        // its sysctls exist either way.
        "nf_conntrack" => std::path::Path::new("/proc/sys/net/netfilter/nf_conntrack_max").exists(),
        _ => std::path::Path::new(&format!("/sys/module/{m}")).exists(),
    };
    let mut loaded_now = Vec::new();
    for module in ["nf_conntrack", "nf_conntrack_netlink"] {
        if present(module) {
            continue;
        }
        let ok = std::process::Command::new("modprobe")
            .arg("-q")
            .arg(module)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            loaded_now.push(module);
        } else if module == "nf_conntrack" {
            return Err(
                "connection tracking is not available: nf_conntrack is not loaded and \
                 `modprobe nf_conntrack` failed"
                    .into(),
            );
        }
        // nf_conntrack_netlink may be built in (no /sys/module entry); if it
        // is truly missing, the start-up dump says so.
    }
    Ok((!loaded_now.is_empty()).then(|| {
        format!(
            "{} was not loaded: loaded it with modprobe",
            loaded_now.join(" and ")
        )
    }))
}
