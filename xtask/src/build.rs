//! `cargo xtask build`: the release build of the workspace's default members.

use anyhow::Result;

use crate::{paths, process};

/// Builds the release binaries; tracker-userspace's build.rs builds the eBPF
/// object on the way (nightly + bpf-linker, hence PATH with ~/.cargo/bin).
pub fn release() -> Result<()> {
    process::run(
        process::command("cargo")
            .current_dir(paths::workspace_root())
            .args(["build", "--release"]),
    )?;
    println!("build: {}", paths::tracker_binary().display());
    Ok(())
}
