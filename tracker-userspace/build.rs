use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// Builds tracker-ebpf for bpfel-unknown-none with the nightly toolchain and
/// leaves the object in OUT_DIR, where main embeds it.
fn main() -> anyhow::Result<()> {
    // With AYA_BUILD_SKIP=1 (host-only work on userspace code) aya-build does
    // nothing; leave an empty object so the crate still compiles. Loading it
    // fails at run time with a clear message.
    println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
    if std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("tracker");
        if !out.exists() {
            std::fs::write(&out, [])?;
        }
        return Ok(());
    }
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "tracker-ebpf")
        .ok_or_else(|| anyhow!("tracker-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
