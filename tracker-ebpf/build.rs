use which::which;

/// Rebuild when bpf-linker changes: the object depends on it but cargo cannot
/// express a dependency on an executable.
fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => println!("cargo:warning=bpf-linker not found in PATH: run `cargo xtask setup`"),
    }
}
