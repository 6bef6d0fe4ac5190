//! Booting a test-bed kernel under QEMU (TCG) with virtme-ng and running one
//! command in it, with a deadline, a console log and an exit status we can
//! trust.
//!
//! The guest command is wrapped so it prints `XTASK-VM-START <uptime>` first
//! (boot time) and `XTASK-VM-EXIT=<status>` last: vng's own exit status is
//! only meaningful with udev on the host, and a panic or hang prints no
//! sentinel at all, so success needs both.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::kernels::{self, Kernel};
use crate::{paths, process, setup};

/// What the test-bed guests' kernels are booted with (why: at the `--append`
/// below); the bench's report names it, since it moves absolute rates.
pub const GUEST_CMDLINE: &str = "init_on_alloc=0 mitigations=off tsc=reliable";

const START_MARK: &str = "XTASK-VM-START";
const EXIT_MARK: &str = "XTASK-VM-EXIT=";

/// What `cargo xtask vm` runs without a command: is conntrack usable here?
const SMOKE: &str = "set -e; echo \"kernel: $(uname -r)\"; \
                     modprobe nf_conntrack; modprobe nf_conntrack_netlink; \
                     n=$(conntrack -C); echo \"conntrack -C: $n\"";

/// Host variables the scenario scripts read (tests/README.md). vng gives
/// the guest command only TERM from the host environment, so these are
/// exported explicitly when set.
const FORWARDED_ENV: [&str; 7] = [
    "SCENARIOS",
    "SCEN_TIMEOUT",
    "TRACKER_READY_TIMEOUT",
    "BURST_FLOWS",
    "BURST_RATE",
    "PYTHON",
    "RUST_LOG",
];

/// How much of the console to show when a guest fails.
const TAIL_LINES: usize = 40;

/// One finished (or abandoned) guest run.
pub struct GuestRun {
    pub kernel: Kernel,
    /// Host time from starting vng until the guest command began.
    pub boot: Option<Duration>,
    /// Guest uptime when the command began: the kernel's and init's share.
    pub guest_uptime: Option<f64>,
    pub total: Duration,
    /// The status the guest command printed, if it got that far.
    pub guest_status: Option<i32>,
    pub vng_status: Option<ExitStatus>,
    pub timed_out: bool,
    /// The guest command's stdout (vng keeps it apart from the console).
    pub stdout: Vec<String>,
    pub console: PathBuf,
}

impl GuestRun {
    pub fn succeeded(&self) -> bool {
        !self.timed_out
            && self.guest_status == Some(0)
            && self.vng_status.is_some_and(|s| s.success())
    }

    /// Why it failed, in a few words.
    pub fn failure(&self) -> Option<String> {
        if self.timed_out {
            let phase = if self.boot.is_some() {
                "command"
            } else {
                "boot"
            };
            return Some(format!(
                "timed out during {phase} after {:.0} s",
                self.total.as_secs_f64()
            ));
        }
        match (self.boot, self.guest_status, self.vng_status) {
            (None, _, status) => Some(format!(
                "guest never started the command (vng: {})",
                show(status)
            )),
            (_, None, status) => Some(format!(
                "no {EXIT_MARK} sentinel: the guest died before the command finished (vng: {})",
                show(status)
            )),
            (_, Some(0), Some(s)) if !s.success() => {
                Some(format!("command exited 0 but vng reported {s}"))
            }
            (_, Some(0), _) => None,
            (_, Some(code), _) => Some(format!("command exited {code}")),
        }
    }

    pub fn timing(&self) -> String {
        let boot = self
            .boot
            .map_or("-".into(), |b| format!("{:.1} s", b.as_secs_f64()));
        let uptime = self
            .guest_uptime
            .map_or("-".into(), |u| format!("{u:.1} s"));
        format!(
            "boot {boot} (guest uptime at start {uptime}), total {:.1} s",
            self.total.as_secs_f64()
        )
    }

    /// Prints the end of the console log, where panics and hangs show.
    pub fn show_console_tail(&self) {
        let text = fs::read_to_string(&self.console).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(TAIL_LINES);
        eprintln!(
            "--- last {} lines of {}",
            lines.len() - from,
            self.console.display()
        );
        for line in &lines[from..] {
            eprintln!("{line}");
        }
        eprintln!("---");
    }
}

fn show(status: Option<ExitStatus>) -> String {
    status.map_or("killed".into(), |s| s.to_string())
}

/// `cargo xtask vm`: the command (or the smoke check) on each kernel.
pub fn run_command(ids: &[&str], command: &[String], timeout: Duration) -> Result<()> {
    let command = if command.is_empty() {
        SMOKE.to_string()
    } else {
        command.join(" ")
    };
    setup::vm_tools(setup::Mode::Check)?;
    let mut runs = Vec::new();
    for id in ids {
        let kernel = kernels::installed(id)?;
        let run = boot_and_run(&kernel, &command, timeout)?;
        report(&run);
        runs.push(run);
    }
    if runs.len() > 1 {
        println!(
            "\n{:<6} {:<24} {:>8} {:>14} {:>8}  result",
            "kernel", "version", "boot", "guest uptime", "total"
        );
        for r in &runs {
            println!(
                "{:<6} {:<24} {:>8} {:>14} {:>8}  {}",
                r.kernel.id,
                r.kernel.version,
                r.boot
                    .map_or("-".into(), |b| format!("{:.1} s", b.as_secs_f64())),
                r.guest_uptime.map_or("-".into(), |u| format!("{u:.1} s")),
                format!("{:.1} s", r.total.as_secs_f64()),
                r.failure().unwrap_or_else(|| "ok".into()),
            );
        }
    }
    let failed: Vec<_> = runs
        .iter()
        .filter(|r| !r.succeeded())
        .map(|r| r.kernel.id.as_str())
        .collect();
    if !failed.is_empty() {
        bail!("guest command failed on {}", failed.join(", "));
    }
    Ok(())
}

/// One line per run; on failure the console's tail too.
pub fn report(run: &GuestRun) {
    match run.failure() {
        None => println!(
            "vm {} ({}): ok, {}",
            run.kernel.id,
            run.kernel.version,
            run.timing()
        ),
        Some(why) => {
            println!(
                "vm {} ({}): FAILED: {why}; {}",
                run.kernel.id,
                run.kernel.version,
                run.timing()
            );
            run.show_console_tail();
        }
    }
}

/// Boots `kernel`, runs `command` (a shell command line) as root in the
/// guest from the workspace root, and waits at most `timeout`.
pub fn boot_and_run(kernel: &Kernel, command: &str, timeout: Duration) -> Result<GuestRun> {
    let log_dir = paths::vm_dir().join(&kernel.id);
    fs::create_dir_all(&log_dir)?;
    let _lock = VmLock::acquire()?;
    let console_path = log_dir.join("console.log");
    let mut console = File::create(&console_path)
        .with_context(|| format!("creating {}", console_path.display()))?;

    let exports: String = FORWARDED_ENV
        .iter()
        .filter_map(|name| Some((name, std::env::var(name).ok()?)))
        .map(|(name, value)| format!("export {name}={}; ", process::shell_quote(&value)))
        .collect();
    let wrapped = format!(
        "{exports}echo {START_MARK} $(cut -d' ' -f1 /proc/uptime); bash -c {}; s=$?; echo {EXIT_MARK}$s; exit $s",
        process::shell_quote(command)
    );
    let target = paths::target_dir();
    let mut vng = process::command("vng");
    vng.current_dir(paths::workspace_root())
        .arg("--run")
        .arg(kernel.vmlinuz())
        // KVM hangs Debian kernels on this nested host: always TCG.
        .args(["--disable-kvm", "--cpus", "2", "--memory", "2G"])
        .arg("--rwdir")
        .arg(&target)
        // vng tries virtiofsd first and falls back to 9p after ~3 s per
        // share here (the installed virtiofsd rejects its options): go
        // straight to 9p.
        .arg("--force-9p")
        // On 5.10 every 9p request allocates two message buffers of the full
        // msize (512 KiB; net/9p/client.c, p9_fcall_init) and Debian kernels
        // zero each allocation (init_on_alloc=1). Under TCG that memset made
        // an exec on 5.10 take ~0.45 s instead of ~0.05 s and its suite three
        // times slower. Nothing under test depends on zeroed allocations.
        // mitigations=off: TCG's CPU model leaves only the Spectre v1/v2
        // mitigations on, whose retpolines cost every indirect call about 5 %
        // of a scenario's time here; the programs run as root, for whom the
        // verifier's speculation checks are off either way.
        // tsc=reliable: under TCG the kernel's boot-time TSC check fails
        // ("Marking TSC unstable due to TSCs unsynchronized") and the guest
        // reads its clock from the emulated HPET, where every read is a
        // device access of QEMU's. In the 6.1 guest that read, one per
        // record, took about 2.6 of the NEW hook's 6.4 µs (median of six
        // runs with and without it), and all hooks of one connection fell
        // from 10.4 to 7.3 µs with the TSC: a cost no host pays, since the
        // hosts this runs on read the TSC.
        .args(["--append", GUEST_CMDLINE])
        // Kernel messages go to vng's stderr, i.e. into console.log, where a
        // panic or oops can be read after the fact.
        .arg("--verbose")
        .arg("--exec")
        .arg(&wrapped);
    writeln!(console, "# {}", process::display(&vng))?;
    println!(
        "vm {}: booting {} (timeout {} s, console in {})",
        kernel.id,
        kernel.version,
        timeout.as_secs(),
        console_path.display()
    );

    let started = Instant::now();
    let mut child = vng
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{}`", process::display(&vng)))?;
    let lines = forward_lines(&mut child);

    let mut run = GuestRun {
        kernel: kernel.clone(),
        boot: None,
        guest_uptime: None,
        total: Duration::ZERO,
        guest_status: None,
        vng_status: None,
        timed_out: false,
        stdout: Vec::new(),
        console: console_path,
    };
    let deadline = started + timeout;
    let mut grace_until = None;
    loop {
        let now = Instant::now();
        if now >= deadline && !run.timed_out {
            run.timed_out = true;
            writeln!(
                console,
                "# xtask: timeout after {} s, killing vng and qemu",
                timeout.as_secs()
            )?;
            kill_tree(child.id());
            // Pipes close once qemu is gone; do not wait forever on a straggler.
            grace_until = Some(now + Duration::from_secs(10));
        }
        let wait_until = grace_until.unwrap_or(deadline);
        let step = wait_until
            .saturating_duration_since(now)
            .min(Duration::from_secs(1));
        match lines.recv_timeout(step) {
            Ok((stream, line)) => {
                writeln!(console, "{line}")?;
                if stream == Stream::Stdout {
                    on_stdout_line(&mut run, &line, started);
                } else if run.boot.is_some() && !looks_like_printk(&line) {
                    // The guest command's stderr. Boot chatter and kernel
                    // messages stay in the log (shown on failure).
                    eprintln!("[{}] {line}", kernel.id);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if grace_until.is_some_and(|g| Instant::now() >= g) {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    run.vng_status = if run.timed_out {
        // Already SIGKILLed; reap it.
        let _ = child.kill();
        let _ = child.wait();
        None
    } else {
        Some(child.wait()?)
    };
    run.total = started.elapsed();
    Ok(run)
}

fn on_stdout_line(run: &mut GuestRun, line: &str, started: Instant) {
    if let Some(uptime) = line.strip_prefix(START_MARK) {
        run.boot = Some(started.elapsed());
        run.guest_uptime = uptime.trim().parse().ok();
    } else if let Some(status) = line.strip_prefix(EXIT_MARK) {
        run.guest_status = status.trim().parse().ok();
    } else {
        println!("[{}] {line}", run.kernel.id);
        run.stdout.push(line.to_string());
    }
}

/// `[    1.234567] ...`: a kernel console line (printk's `[%5lu.%06lu]`).
fn looks_like_printk(line: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    line.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(stamp, _)| stamp.trim().split_once('.'))
        .is_some_and(|(secs, micros)| digits(secs) && micros.len() == 6 && digits(micros))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// Reads both pipes on their own threads and hands over whole lines, so
/// the caller can apply the deadline while waiting.
fn forward_lines(child: &mut Child) -> mpsc::Receiver<(Stream, String)> {
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        spawn_reader(out, Stream::Stdout, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        spawn_reader(err, Stream::Stderr, tx);
    }
    rx
}

fn spawn_reader(
    pipe: impl Read + Send + 'static,
    stream: Stream,
    tx: mpsc::Sender<(Stream, String)>,
) {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut buf = Vec::new();
        // Bytes, not read_line: a guest may print invalid UTF-8.
        while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']).to_string();
            if tx.send((stream, line)).is_err() {
                break;
            }
            buf.clear();
        }
    });
}

/// SIGKILLs `root`'s descendants, then `root`. vng forks qemu (which may
/// fork helpers), so killing vng alone would leave the guest running; the
/// children go first so vng can still reap them. /proc is scanned because
/// this kernel has no /proc/<pid>/task/<tid>/children.
fn kill_tree(root: u32) {
    let parents: Vec<(u32, u32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| Some((pid, parent_of(pid)?)))
        .collect();
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    let signal = |pids: &[u32]| {
        if !pids.is_empty() {
            let mut kill = process::command("kill");
            kill.arg("-KILL").args(pids.iter().map(u32::to_string));
            let _ = process::probe(&mut kill);
        }
    };
    signal(&tree[1..]);
    thread::sleep(Duration::from_millis(500));
    signal(&tree[..1]);
}

/// One VM at a time across xtask processes: two TCG guests on two cores
/// would each run at half speed (spurious timeouts, skewed boot times) and
/// would write the same console.log. Held from boot to exit; the bench also
/// holds it while it measures on the host.
pub struct VmLock {
    path: PathBuf,
}

fn lock_path() -> PathBuf {
    paths::vm_dir().join("lock")
}

/// The pid in the lock file, when that process is alive.
fn lock_holder() -> Option<String> {
    let holder = fs::read_to_string(lock_path()).ok()?;
    let holder = holder.trim().to_string();
    (!holder.is_empty() && Path::new("/proc").join(&holder).exists()).then_some(holder)
}

/// Waits, without taking it, until no other xtask holds the lock (its guest
/// may be running target/release/tracker, which a build would replace).
/// Returns how long it waited.
pub fn wait_until_free() -> Duration {
    let t = std::time::Instant::now();
    let mut said = false;
    while let Some(holder) = lock_holder() {
        if !said {
            println!("vm: waiting for another xtask's VM to finish (pid {holder})");
            said = true;
        }
        thread::sleep(Duration::from_secs(2));
    }
    t.elapsed()
}

/// Guests this process runs now: the lock file is taken by the first and
/// removed after the last, so a suite can boot several guests at once.
static GUESTS_HERE: Mutex<usize> = Mutex::new(0);

impl VmLock {
    pub fn acquire() -> Result<Self> {
        let mut here = GUESTS_HERE.lock().unwrap();
        if *here == 0 {
            Self::take_file()?;
        }
        *here += 1;
        Ok(Self { path: lock_path() })
    }

    fn take_file() -> Result<()> {
        let path = lock_path();
        fs::create_dir_all(paths::vm_dir())?;
        let mut said = false;
        loop {
            match fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    writeln!(file, "{}", std::process::id())?;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    match lock_holder() {
                        // A holder that died without cleaning up (SIGKILL).
                        None => {
                            let _ = fs::remove_file(&path);
                            continue;
                        }
                        Some(holder) if !said => {
                            println!(
                                "vm: waiting for another xtask's VM to finish (pid {holder}, {})",
                                path.display()
                            );
                            said = true;
                        }
                        Some(_) => {}
                    }
                    thread::sleep(Duration::from_secs(1));
                }
                Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
    }
}

impl Drop for VmLock {
    fn drop(&mut self) {
        let mut here = GUESTS_HERE.lock().unwrap();
        *here -= 1;
        if *here == 0 {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The ppid field of /proc/<pid>/stat (after the parenthesised comm, which
/// may itself contain spaces and parentheses).
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printk_lines_are_recognised() {
        assert!(looks_like_printk(
            "[    0.103519] Unknown kernel command line"
        ));
        assert!(!looks_like_printk("[6.1] RESULT"));
        assert!(!looks_like_printk("diff: something"));
    }

    #[test]
    fn parent_of_self_is_our_parent() {
        let me = std::process::id();
        assert!(parent_of(me).is_some_and(|pp| pp != me));
    }
}
