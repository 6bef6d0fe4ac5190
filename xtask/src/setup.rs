//! `cargo xtask setup`: everything the build and the VM test bed need,
//! installed once. Each step says what it checks and why, and skips what is
//! already there, so running it again is cheap.

use std::fs;
use std::path::{Path, PathBuf};

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

/// Debian packages for `tracker serve` and its unit: prometheus (the server
/// and promtool, to scrape and check /metrics) and systemd (systemd-analyze
/// verifies packaging/tracker.service). Installed without starting services.
const SERVICE_PACKAGES: [&str; 2] = ["prometheus", "systemd"];

/// Debian's hook that maintainer scripts ask before starting a service
/// (invoke-rc.d for init scripts, deb-systemd-invoke for systemd units).
const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";

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

/// What checks the service and its metrics: prometheus, systemd-analyze.
fn service_tools(mode: Mode) -> Result<()> {
    step("service packages", || service_packages(mode))
}

pub fn run() -> Result<()> {
    let started = std::time::Instant::now();
    build_tools(Mode::Install)?;
    vm_tools(Mode::Install)?;
    service_tools(Mode::Install)?;
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
    let absent = not_installed(&DEBIAN_PACKAGES);
    if absent.is_empty() {
        println!("setup: debian packages — {why}: all installed");
        return Ok(());
    }
    missing(mode, &format!("debian packages {}", absent.join(" ")))?;
    println!(
        "setup: debian packages — {why}: installing {}",
        absent.join(" ")
    );
    apt_install(&absent)
}

fn service_packages(mode: Mode) -> Result<()> {
    let why = "prometheus and promtool scrape and check `tracker serve`'s /metrics, \
               systemd-analyze verifies packaging/tracker.service";
    let absent = not_installed(&SERVICE_PACKAGES);
    if absent.is_empty() {
        println!("setup: service packages — {why}: all installed");
        return Ok(());
    }
    missing(mode, &format!("debian packages {}", absent.join(" ")))?;
    println!(
        "setup: service packages — {why}: installing {} without starting services",
        absent.join(" ")
    );
    without_service_starts(|| apt_install(&absent))?;
    if absent.contains(&"prometheus") {
        // Its postinst enables prometheus.service (listening on :9090 on
        // every address) for the next boot; only the binaries are wanted
        // here. `systemctl disable` works without a running systemd and
        // disables the SysV script too (deb-systemd-helper refuses to run
        // outside dpkg).
        println!(
            "setup: service packages: disabling prometheus.service (only the binaries are used)"
        );
        process::run(process::privileged("systemctl").args(["disable", "prometheus.service"]))?;
    }
    Ok(())
}

/// Those of `packages` dpkg does not list as installed.
fn not_installed<'a>(packages: &[&'a str]) -> Vec<&'a str> {
    packages
        .iter()
        .copied()
        .filter(|p| {
            process::probe(process::command("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| s.trim() != "install ok installed")
        })
        .collect()
}

fn apt_install(packages: &[&str]) -> Result<()> {
    process::run(process::privileged("apt-get").args(["-q", "update"]))?;
    process::run(
        process::privileged("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages),
    )
}

/// Runs `f` while policy-rc.d forbids starting services (exit 101): the one
/// thing both invoke-rc.d and deb-systemd-invoke obey. RUNLEVEL=1 would not
/// do: only invoke-rc.d reads the runlevel, and on a host run by systemd the
/// postinst starts units through deb-systemd-invoke. A policy-rc.d that
/// already forbids (as in Docker images) is left alone; another one is moved
/// aside and put back afterwards, whatever `f` did.
fn without_service_starts(f: impl FnOnce() -> Result<()>) -> Result<()> {
    let forbids = process::command(POLICY_RC_D)
        .args(["prometheus.service", "start"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.code() == Some(101));
    let saved = format!("{POLICY_RC_D}.xtask-saved");
    if forbids {
        println!("setup: {POLICY_RC_D} already forbids starting services");
        if Path::new(&saved).exists() {
            println!(
                "setup: warning: {saved} is left from an interrupted run: it is the \
                 policy-rc.d that was there before"
            );
        }
        return f();
    }
    let existing = Path::new(POLICY_RC_D).exists();
    if existing {
        process::run(process::privileged("mv").args([POLICY_RC_D, &saved]))?;
    }
    let script = paths::target_dir().join("policy-rc.d");
    let installed = fs::create_dir_all(paths::target_dir())
        .and_then(|()| {
            fs::write(
                &script,
                "#!/bin/sh\n# cargo xtask setup: no service starts while it installs packages.\nexit 101\n",
            )
        })
        .context("writing a policy-rc.d")
        .and_then(|()| {
            process::run(
                process::privileged("install")
                    .args(["-m", "0755"])
                    .arg(&script)
                    .arg(POLICY_RC_D),
            )
        });
    let result = installed.and_then(|()| {
        println!("setup: {POLICY_RC_D} forbids starting services during the install");
        f()
    });
    let restored = if existing {
        process::run(process::privileged("mv").args([&saved, POLICY_RC_D]))
    } else {
        process::run(process::privileged("rm").args(["-f", POLICY_RC_D]))
    };
    match (result, restored) {
        (Ok(()), restored) => restored,
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(r)) => Err(e.context(format!("and putting {POLICY_RC_D} back failed: {r:#}"))),
    }
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
