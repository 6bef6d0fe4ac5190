//! `cargo xtask setup`: everything the build and the VM test bed need,
//! installed once. Each step says what it checks and why, and skips what is
//! already there, so running it again is cheap.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};

use crate::{kernels, paths, process};

const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages the VM scenarios use (the guest runs the host's userland):
/// qemu + udev for virtme-ng (without udev vng cannot return the guest's exit
/// status), busybox-static for the initramfs vng builds to load a modular distro
/// kernel's 9p/virtio modules, kmod for modprobe/depmod, the netfilter tools
/// for the scenarios, python3-jsonschema to validate the JSON output.
const DEBIAN_PACKAGES: [&str; 11] = [
    "qemu-system-x86",
    "udev",
    "busybox-static",
    "kmod",
    "conntrack",
    "iptables",
    "nftables",
    "iproute2",
    "bpftool",
    "python3",
    "python3-jsonschema",
];

/// What to do about something missing.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Install,
    /// Only check, and fail pointing at `cargo xtask setup`: for commands
    /// that should not start a long install behind the user's back.
    Check,
}

/// The tools `build` needs: nightly rust-src and bpf-linker.
pub fn build_tools(mode: Mode) -> Result<()> {
    step("rust-src", || rust_src(mode))?;
    step("bpf-linker", || bpf_linker(mode))
}

/// The host tools the VM test bed needs (the kernels are separate: most
/// commands need only some of them).
pub fn vm_tools(mode: Mode) -> Result<()> {
    step("debian packages", || debian_packages(mode))?;
    step("virtme-ng", || virtme_ng(mode))
}

pub fn run() -> Result<()> {
    let started = std::time::Instant::now();
    build_tools(Mode::Install)?;
    vm_tools(Mode::Install)?;
    kernels::install_all()?;
    println!("setup: done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

fn step(name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
    f().with_context(|| format!("setup step `{name}` failed"))
}

fn missing(mode: Mode, what: &str) -> Result<()> {
    if mode == Mode::Check {
        bail!("{what} is missing: run `cargo xtask setup`");
    }
    Ok(())
}

fn rust_src(mode: Mode) -> Result<()> {
    let why = "the eBPF crate builds core from source for bpfel-unknown-none";
    let installed = process::probe(process::command("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .unwrap_or_default();
    if installed.lines().any(|c| c.trim() == "rust-src") {
        println!("setup: rust-src (nightly) — {why}: already installed");
        return Ok(());
    }
    missing(mode, "nightly rust-src")?;
    println!("setup: rust-src (nightly) — {why}: installing");
    // Adds the component to the nightly already here; never updates it.
    process::run(process::command("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        "nightly",
    ]))
}

fn bpf_linker(mode: Mode) -> Result<()> {
    let why = "links the eBPF object";
    let version = process::probe(process::command("bpf-linker").arg("--version"));
    if version
        .as_deref()
        .is_some_and(|v| v.split_whitespace().any(|w| w == BPF_LINKER_VERSION))
    {
        println!("setup: bpf-linker {BPF_LINKER_VERSION} — {why}: already installed");
        return Ok(());
    }
    missing(mode, &format!("bpf-linker {BPF_LINKER_VERSION}"))?;
    println!(
        "setup: bpf-linker {BPF_LINKER_VERSION} — {why}: building against the nightly's own libLLVM 22 \
         (bookworm has no llvm-22-dev)"
    );
    let prefix = llvm_prefix_from_nightly()?;
    let mut install = process::command("cargo");
    install
        .env("LLVM_PREFIX", &prefix)
        .args([
            "install",
            "bpf-linker",
            "--locked",
            "--version",
            BPF_LINKER_VERSION,
        ])
        .args(["--no-default-features", "--features", "llvm-22"]);
    process::run(&mut install)
}

/// `$CARGO_HOME/bpf-linker-llvm22/lib` with `libLLVM.so` pointing at the
/// nightly sysroot's libLLVM: bpf-linker's build looks for that name under
/// LLVM_PREFIX, and the versioned name is what the binary's runpath loads.
fn llvm_prefix_from_nightly() -> Result<PathBuf> {
    let sysroot =
        process::output(process::command("rustc").args(["+nightly", "--print", "sysroot"]))?;
    let lib_dir = PathBuf::from(sysroot.trim()).join("lib");
    let libllvm = fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libLLVM.so.22.") && n.contains("-rust-"))
        })
        .with_context(|| {
            format!(
                "no libLLVM.so.22.*-rust-* in {}: the nightly's LLVM is not 22",
                lib_dir.display()
            )
        })?;
    let prefix = paths::cargo_home().join("bpf-linker-llvm22");
    let link_dir = prefix.join("lib");
    fs::create_dir_all(&link_dir)?;
    let own_name = libllvm.file_name().context("libLLVM has no file name")?;
    for name in [std::ffi::OsStr::new("libLLVM.so"), own_name] {
        let link = link_dir.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&libllvm, &link)
            .with_context(|| format!("linking {} -> {}", link.display(), libllvm.display()))?;
    }
    Ok(prefix)
}

fn debian_packages(mode: Mode) -> Result<()> {
    let why =
        "the VM boots with the host's userland (qemu, udev, busybox, modprobe, netfilter tools)";
    let absent: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            process::probe(process::command("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| s.trim() != "install ok installed")
        })
        .collect();
    if absent.is_empty() {
        println!("setup: debian packages — {why}: all installed");
        return Ok(());
    }
    missing(mode, &format!("debian packages {}", absent.join(" ")))?;
    println!(
        "setup: debian packages — {why}: installing {}",
        absent.join(" ")
    );
    process::run(process::privileged("apt-get").args(["-q", "update"]))?;
    process::run(
        process::privileged("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&absent),
    )
}

fn virtme_ng(mode: Mode) -> Result<()> {
    let why = "boots the test-bed kernels with the host filesystem as root";
    if let Some(version) = process::probe(process::command("vng").arg("--version")) {
        println!(
            "setup: virtme-ng — {why}: already installed ({})",
            version.trim()
        );
        return Ok(());
    }
    missing(mode, "virtme-ng (vng)")?;
    println!("setup: virtme-ng — {why}: pip install virtme-ng");
    // `python3 -m pip` installs for the python3 first on PATH (pyenv's here),
    // the one whose bin directory (or shim) provides `vng`.
    process::run(process::command("python3").args(["-m", "pip", "install", "virtme-ng"]))?;
    // pyenv only exposes new console scripts after a rehash.
    if process::probe(process::command("pyenv").arg("--version")).is_some() {
        process::run(process::command("pyenv").arg("rehash"))?;
    }
    match process::probe(process::command("which").arg("vng")) {
        Some(path) => {
            println!("setup: virtme-ng: vng is {}", path.trim());
            Ok(())
        }
        None => bail!("pip installed virtme-ng but `vng` is not on PATH"),
    }
}
