//! `cargo xtask bench`: the tracker against conntrack, side by side in one
//! run, as ratios (absolute rates under TCG mean little; ratios measured in
//! the same guest minutes apart do). Writes BENCHMARKS.md.
//!
//! - tests/bench/bench.sh in the test-bed VM (eBPF source): every section on
//!   the main kernel (6.1, where the hooks can be fexit), then only the
//!   per-connection cost on the kprobe kernel (5.10, no module BTF), then on
//!   this host (where the hooks cannot attach: the netlink source); it prints
//!   `BENCH<TAB>section<TAB>key=value...` lines, parsed into typed rows
//!   (rows.rs) that report.rs lays out.
//! - tracker-userspace/benches/replay.rs on the host: decode + filter +
//!   format alone, single-threaded.

mod report;
mod rows;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::{build, kernels, paths, process, setup, vm};
use rows::Row;

pub struct Options {
    pub kernel: String,
    /// A kernel whose nf_conntrack has no BTF, so the hooks are kprobes:
    /// measured for the per-connection cost only ("" skips it).
    pub kprobe_kernel: String,
    pub counts: String,
    pub seconds: u32,
    pub timeout: Duration,
    pub skip_host: bool,
    pub skip_vm: bool,
    pub output: PathBuf,
}

/// What a run is for: which sections it has and which targets apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The main kernel's VM (eBPF source): every section.
    Main,
    /// The kprobe kernel's VM (eBPF source): the per-connection cost only.
    Kprobe,
    /// This host (netlink source).
    Host,
}

/// One environment's rows (a VM, or the host).
pub struct Run {
    pub title: String,
    pub part: Part,
    pub rows: Vec<Row>,
    pub seconds: f64,
    pub problem: Option<String>,
}

pub struct Replay {
    pub lines: Vec<(String, f64)>,
    pub problem: Option<String>,
}

pub fn run(opts: &Options) -> Result<()> {
    let started = Instant::now();
    // Like `test`: a fresh clone installs what it lacks (idempotent, about
    // a second when everything is there); without the VM part, only the
    // build tools.
    if opts.skip_vm {
        setup::build_tools(setup::Mode::Install)?;
    } else {
        setup::run()?;
    }
    let kernel = if opts.skip_vm {
        None
    } else {
        Some(kernels::installed(&opts.kernel)?)
    };
    let kprobe_kernel = if opts.skip_vm || opts.kprobe_kernel.is_empty() {
        None
    } else {
        Some(kernels::installed(&opts.kprobe_kernel)?)
    };
    // The guest runs target/release/tracker: never relink it under another
    // xtask's running VM.
    let mut waited = vm::wait_until_free();
    build::release()?;
    let tracker = paths::tracker_binary();
    let flowgen = paths::target_dir().join("release").join("flowgen");
    if !flowgen.is_file() {
        bail!("{} was not built", flowgen.display());
    }

    let script = paths::workspace_root().join("tests/bench/bench.sh");
    let env = |source: &str, sections: &str, counts: &str| {
        format!(
            "TRACKER={} FLOWGEN={} BENCH_SOURCE={source} BENCH_SECTIONS={} BENCH_COUNTS={} BENCH_SECONDS={} ",
            process::shell_quote(&tracker.display().to_string()),
            process::shell_quote(&flowgen.display().to_string()),
            process::shell_quote(sections),
            process::shell_quote(counts),
            opts.seconds,
        )
    };

    let mut runs = Vec::new();
    if let Some(kernel) = &kernel {
        let command = format!(
            "{}bash {}",
            env("ebpf", "rate loss cpu counts", &opts.counts),
            process::shell_quote(&script.display().to_string())
        );
        let title = format!(
            "test-bed VM: Debian {} under QEMU TCG, 2 vCPU, 2 GiB, booted with {}; eBPF source",
            kernel.version,
            vm::GUEST_CMDLINE
        );
        let (run, vm_waited) = vm_part(kernel, &command, opts.timeout, title, Part::Main)?;
        runs.push(run);
        waited += vm_waited;
    }
    if let Some(kernel) = &kprobe_kernel {
        // Only what the per-connection cost needs: the nothing-listening
        // UDP rate (the flow time, the median over the table's run and the
        // further pairs), the tracker's own UDP rate beside it, and the
        // tracker's CPU run with BPF stats.
        let command = format!(
            "{}BENCH_RATE_PROTOS=udp BENCH_RATE_LISTENERS='none tracker' BENCH_CPU_LISTENERS=tracker bash {}",
            env("ebpf", "rate cpu", ""),
            process::shell_quote(&script.display().to_string())
        );
        // The hook mode in the title would be a guess: the report shows
        // the one the tracker said it attached.
        let title = format!(
            "test-bed VM: Debian {} under QEMU TCG, 2 vCPU, 2 GiB, booted with {}; eBPF source, per-connection cost only",
            kernel.version,
            vm::GUEST_CMDLINE
        );
        let (run, vm_waited) = vm_part(kernel, &command, opts.timeout, title, Part::Kprobe)?;
        runs.push(run);
        waited += vm_waited;
    }
    if !opts.skip_host {
        let (rows, problem, host_seconds, host_waited) = host_run(&format!(
            "{}bash {}",
            env("netlink", "rate loss cpu", ""),
            process::shell_quote(&script.display().to_string())
        ))?;
        runs.push(Run {
            title: format!(
                "this host: Linux {} (no kprobes, fentry refused); netlink source",
                uname_r()
            ),
            part: Part::Host,
            rows,
            seconds: host_seconds,
            problem,
        });
        waited += host_waited;
    }
    let replay = replay()?;

    let total = started.elapsed().saturating_sub(waited);
    let markdown = report::render(&report::Context {
        runs: &runs,
        replay: &replay,
        machine: machine(),
        command: command_line(),
        total,
        waited,
    });
    fs::write(&opts.output, &markdown)
        .with_context(|| format!("writing {}", opts.output.display()))?;
    println!("{markdown}");
    println!(
        "bench: wrote {} in {:.1} min (plus {:.1} min waiting for another xtask's VM)",
        opts.output.display(),
        total.as_secs_f64() / 60.0,
        waited.as_secs_f64() / 60.0
    );
    let problems: Vec<String> = runs
        .iter()
        .filter_map(|r| r.problem.as_ref().map(|p| format!("{}: {p}", r.title)))
        .chain(replay.problem.clone())
        .collect();
    if !problems.is_empty() {
        bail!("incomplete benchmark: {}", problems.join("; "));
    }
    Ok(())
}

/// bench.sh in a VM of `kernel`. Returns the run and the time spent
/// waiting for the VM lock (not part of the run).
fn vm_part(
    kernel: &kernels::Kernel,
    command: &str,
    timeout: Duration,
    title: String,
    part: Part,
) -> Result<(Run, Duration)> {
    let t = Instant::now();
    let guest = vm::boot_and_run(kernel, command, timeout)?;
    vm::report(&guest);
    let run = Run {
        title,
        part,
        rows: guest.stdout.iter().filter_map(|l| Row::parse(l)).collect(),
        seconds: guest.total.as_secs_f64(),
        problem: guest.failure(),
    };
    Ok((run, t.elapsed().saturating_sub(guest.total)))
}

/// The script on this host, as root, holding the VM lock so that no TCG
/// guest competes for the two cores while rates are measured.
/// Returns the rows, a problem, the seconds it ran and the time it waited.
fn host_run(command: &str) -> Result<(Vec<Row>, Option<String>, f64, Duration)> {
    if !process::is_root() {
        let why = Some("not root: host part skipped".into());
        return Ok((Vec::new(), why, 0.0, Duration::ZERO));
    }
    let t = Instant::now();
    let _lock = vm::VmLock::acquire()?;
    let waited = t.elapsed();
    let t = Instant::now();
    println!("bench: host part: {command}");
    let mut child = process::command("bash")
        .current_dir(paths::workspace_root())
        .args(["-c", command])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting tests/bench/bench.sh on the host")?;
    let mut rows = Vec::new();
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            println!("[host] {line}");
            rows.extend(Row::parse(&line));
        }
    }
    let status = child.wait()?;
    let problem = (!status.success()).then(|| format!("host bench.sh: {status}"));
    Ok((rows, problem, t.elapsed().as_secs_f64(), waited))
}

/// `cargo bench` of replay.rs in its own target directory: a bench build
/// also links the package's binaries, and target/release/tracker may be in
/// use by a guest.
fn replay() -> Result<Replay> {
    let mut cmd = process::command("cargo");
    cmd.current_dir(paths::workspace_root())
        .args(["bench", "-p", "tracker-userspace", "--bench", "replay"])
        .arg("--target-dir")
        .arg(paths::target_dir().join("bench"))
        .args(["--", "2"])
        .stderr(Stdio::inherit());
    println!("bench: {}", process::display(&cmd));
    let out = match process::output(&mut cmd) {
        Ok(out) => out,
        Err(e) => {
            return Ok(Replay {
                lines: Vec::new(),
                problem: Some(format!("replay: {e:#}")),
            });
        }
    };
    let lines = out
        .lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("replay\t")?.split('\t');
            let mode = f.next()?.to_string();
            let rate = f.find_map(|kv| kv.strip_prefix("events_per_s="))?;
            Some((mode, rate.parse().ok()?))
        })
        .collect::<Vec<_>>();
    for (mode, rate) in &lines {
        println!("replay: {mode}: {rate:.0} events/s");
    }
    let problem = lines
        .is_empty()
        .then(|| "replay printed no results".to_string());
    Ok(Replay { lines, problem })
}

fn uname_r() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|x| x.1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_string();
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let mem = fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or("?".into(), |kib| format!("{:.1} GiB", kib / 1048576.0));
    format!("{model}, {cpus} CPUs, {mem} RAM; Linux {}", uname_r())
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("cargo xtask {}", args.join(" "))
}
