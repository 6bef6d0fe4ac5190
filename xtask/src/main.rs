//! Project tasks: `cargo xtask <setup|build|build-and-run|vm|test|bench>`.

mod bench;
mod build;
mod kernels;
mod paths;
mod process;
mod run;
mod setup;
mod suite;
mod vm;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Build, run and test the conntrack tracker")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the toolchain pieces, Debian packages, virtme-ng and the
    /// test-bed kernels (idempotent).
    Setup,
    /// Release build; prints where the tracker binary is.
    Build,
    /// Build, then run `tracker ARGS` (default `events`) as root, here or in a VM.
    BuildAndRun {
        /// Run inside the test-bed VM instead of on this host.
        #[arg(long)]
        vm: bool,
        /// Kernel line for --vm.
        #[arg(long, default_value = "6.1", requires = "vm")]
        kernel: String,
        #[command(flatten)]
        timeout: Timeout,
        /// Arguments for the tracker.
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Boot test-bed kernels under QEMU (TCG) and run a command in each;
    /// without a command, a smoke check of conntrack in the guest.
    Vm {
        /// 5.10, 6.1, 6.12 or all; comma-separated lists work too.
        #[arg(long, value_delimiter = ',', default_value = "6.1")]
        kernel: Vec<String>,
        #[command(flatten)]
        timeout: Timeout,
        /// Command line to run in the guest as root, from the workspace root
        /// (words are joined and run by bash -c).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Host unit tests, release build, then tests/vm-suite.sh on each kernel.
    Test {
        /// 5.10, 6.1, 6.12 or all; comma-separated lists work too.
        #[arg(long, value_delimiter = ',', default_value = "all")]
        kernel: Vec<String>,
        /// Only the host unit tests.
        #[arg(long)]
        host_only: bool,
        /// Go on with the next kernel after one failed.
        #[arg(long)]
        keep_going: bool,
        /// Seconds before the VM is killed, per kernel (boot included): the
        /// scenarios take minutes under TCG.
        #[arg(long = "timeout", value_name = "SECONDS", default_value_t = 2700)]
        timeout_secs: u64,
        /// Guests run at once. Each is a 2-vCPU TCG guest that keeps about
        /// 1.3 host cores busy: on a two-core machine two at once ran every
        /// scenario 2.6-2.7 times slower (each guest's vCPUs then share one
        /// core), so one at a time is the default; more is for 4+ cores.
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
        vm_jobs: u32,
        /// The scenario script run in each guest, relative to the workspace.
        #[arg(long, default_value = "tests/vm-suite.sh")]
        suite: PathBuf,
    },
    /// Benchmarks against conntrack in the 6.1 VM (eBPF) and on this host
    /// (netlink), plus the userspace replay; writes BENCHMARKS.md.
    Bench {
        /// Kernel line for the VM part.
        #[arg(long, default_value = "6.1")]
        kernel: String,
        /// Kernel line whose hooks are kprobes (no module BTF), measured for
        /// the per-connection cost only; "" skips it.
        #[arg(long, default_value = "5.10")]
        kprobe_kernel: String,
        /// Table sizes for the per-mark counts (space separated; "" = none).
        #[arg(long, default_value = "100000 1000000")]
        counts: String,
        /// Seconds per generator run.
        #[arg(long, default_value_t = 3)]
        seconds: u32,
        /// Seconds before the VM is killed (boot included).
        #[arg(long = "timeout", value_name = "SECONDS", default_value_t = 1200)]
        timeout_secs: u64,
        /// Skip the host (netlink) part.
        #[arg(long)]
        no_host: bool,
        /// Skip the VM (eBPF) part.
        #[arg(long)]
        no_vm: bool,
        /// Where the report goes.
        #[arg(long, default_value = "BENCHMARKS.md")]
        output: PathBuf,
    },
}

#[derive(Args)]
struct Timeout {
    /// Seconds before a VM is killed (boot included).
    #[arg(long = "timeout", value_name = "SECONDS", default_value_t = 600)]
    seconds: u64,
}

impl Timeout {
    fn duration(&self) -> Duration {
        Duration::from_secs(self.seconds)
    }
}

/// Errors as one `error: step: cause: cause` line, without the backtrace
/// anyhow would add under RUST_BACKTRACE=1: the chain already names the
/// step and the failing command.
fn main() -> ExitCode {
    match run(Cli::parse().task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> Result<()> {
    match task {
        Task::Setup => setup::run(),
        Task::Build => {
            setup::build_tools(setup::Mode::Check)?;
            build::release()
        }
        Task::BuildAndRun {
            vm,
            kernel,
            timeout,
            args,
        } => run::build_and_run(vm.then_some(kernel.as_str()), timeout.duration(), &args),
        Task::Vm {
            kernel,
            timeout,
            command,
        } => vm::run_command(&kernels::select(&kernel)?, &command, timeout.duration()),
        Task::Test {
            kernel,
            host_only,
            keep_going,
            timeout_secs,
            vm_jobs,
            suite,
        } => suite::run(
            &kernels::select(&kernel)?,
            host_only,
            keep_going,
            Duration::from_secs(timeout_secs),
            vm_jobs as usize,
            &suite,
        ),
        Task::Bench {
            kernel,
            kprobe_kernel,
            counts,
            seconds,
            timeout_secs,
            no_host,
            no_vm,
            output,
        } => bench::run(&bench::Options {
            kernel,
            kprobe_kernel,
            counts,
            seconds,
            timeout: Duration::from_secs(timeout_secs),
            skip_host: no_host,
            skip_vm: no_vm,
            output: paths::workspace_root().join(output),
        }),
    }
}
