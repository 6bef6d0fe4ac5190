//! Where things live: the workspace, its target directory, the VM test bed.

use std::path::PathBuf;

/// The workspace root: xtask sits one level below it.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

pub fn target_dir() -> PathBuf {
    workspace_root().join("target")
}

/// Everything the VM test bed downloads or writes: apt state, kernels, logs.
pub fn vm_dir() -> PathBuf {
    target_dir().join("vm")
}

pub fn tracker_binary() -> PathBuf {
    target_dir().join("release").join("tracker")
}

/// `$CARGO_HOME`, or `~/.cargo` like cargo itself.
pub fn cargo_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return PathBuf::from(home);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cargo")
}
