//! Running external commands with errors that name the command.

use std::ffi::OsString;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result, bail};

use crate::paths;

/// A `Command` whose PATH starts with `$CARGO_HOME/bin`: bpf-linker and the
/// rustup proxies live there, and CI shells do not always have it.
pub fn command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("PATH", path_with_cargo_bin());
    cmd
}

/// Like `command`, but through `sudo -E` when we are not root: for the few
/// steps that change the system (apt-get install, /lib/modules, depmod).
pub fn privileged(program: &str) -> Command {
    if is_root() {
        return command(program);
    }
    let mut cmd = command("sudo");
    cmd.args(["-E", program]);
    cmd
}

pub fn path_with_cargo_bin() -> OsString {
    let cargo_bin = paths::cargo_home().join("bin");
    let current = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<_> = std::env::split_paths(&current).collect();
    if !dirs.contains(&cargo_bin) {
        dirs.insert(0, cargo_bin);
    }
    std::env::join_paths(dirs).unwrap_or(current)
}

/// Effective uid 0, read from /proc so we need no libc binding.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// The command as one would type it, for messages.
pub fn display(cmd: &Command) -> String {
    let mut words = vec![cmd.get_program().to_string_lossy().into_owned()];
    words.extend(cmd.get_args().map(|a| shell_quote(&a.to_string_lossy())));
    let envs: Vec<String> = cmd
        .get_envs()
        .filter(|(k, _)| *k != "PATH")
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    if envs.is_empty() {
        words.join(" ")
    } else {
        format!("{} {}", envs.join(" "), words.join(" "))
    }
}

/// Runs with inherited stdio; fails naming the command.
pub fn run(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs and returns stdout; on failure the error carries stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = display(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !out.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs with no stdin and stderr passed through; returns the exit status
/// and stdout, whatever the status (the caller judges it).
pub fn captured(cmd: &mut Command) -> Result<(std::process::ExitStatus, String)> {
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start `{}`", display(cmd)))?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// Stdout of a probe command, or None when it is missing or fails:
/// for "is this installed?" checks, where failure just means "no".
pub fn probe(cmd: &mut Command) -> Option<String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Quotes a word for a POSIX shell (the guest command line goes through one).
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
