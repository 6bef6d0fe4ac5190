//! `cargo xtask build-and-run`: build, then run the tracker here or in a VM.

use std::time::Duration;

use anyhow::{Result, bail};

use crate::{build, kernels, paths, process, setup, vm};

pub fn build_and_run(kernel: Option<&str>, timeout: Duration, args: &[String]) -> Result<()> {
    // A fresh machine needs nothing but this command: install what is missing.
    setup::run()?;
    let kernel = kernel.map(kernels::installed).transpose()?;
    build::release()?;

    let default_args = ["events".to_string()];
    let args = if args.is_empty() {
        &default_args[..]
    } else {
        args
    };
    let binary = paths::tracker_binary();
    match kernel {
        None => {
            // Loading eBPF programs needs root.
            let mut tracker = process::privileged(&binary.display().to_string());
            process::run(tracker.args(args))
        }
        Some(kernel) => {
            let command: Vec<String> = std::iter::once(binary.display().to_string())
                .chain(args.iter().cloned())
                .map(|w| process::shell_quote(&w))
                .collect();
            let run = vm::boot_and_run(&kernel, &command.join(" "), timeout)?;
            vm::report(&run);
            if !run.succeeded() {
                bail!("tracker failed in the {} VM", kernel.id);
            }
            Ok(())
        }
    }
}
