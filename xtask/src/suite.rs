//! `cargo xtask test`: host unit tests, the release build, then the
//! scenarios of tests/vm-suite.sh on this machine's kernel (no VM; where the
//! hooks cannot attach this checks the netlink fallback) and on each
//! test-bed kernel.
//!
//! Contract with the suite script: it prints
//! `RESULT<TAB>scenario<TAB>pass|fail|skip<TAB>seconds<TAB>reason` per
//! scenario (and appends the same lines to $RESULTS_DIR/results.tsv), and
//! `SUITE-DONE` when it got to the end.

use std::collections::VecDeque;
use std::fmt;
use std::fs;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::kernels::{self, Kernel};
use crate::vm::{self, GuestRun};
use crate::{build, paths, process, setup};

const DONE_MARK: &str = "SUITE-DONE";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    Pass,
    Fail,
    Skip,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        })
    }
}

#[derive(Debug, PartialEq)]
struct ScenarioResult {
    scenario: String,
    verdict: Verdict,
    seconds: String,
    reason: String,
}

#[derive(Default, Clone, Copy)]
struct Counts {
    passed: usize,
    failed: usize,
    skipped: usize,
}

impl Counts {
    fn of(results: &[ScenarioResult]) -> Self {
        let n = |v| results.iter().filter(|r| r.verdict == v).count();
        Counts {
            passed: n(Verdict::Pass),
            failed: n(Verdict::Fail),
            skipped: n(Verdict::Skip),
        }
    }

    fn add(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// What happened on one kernel.
struct KernelOutcome {
    id: String,
    version: String,
    results: Vec<ScenarioResult>,
    timing: String,
    /// Boot failure, timeout, missing SUITE-DONE, bad exit status.
    problems: Vec<String>,
}

pub fn run(
    ids: &[&str],
    host_only: bool,
    keep_going: bool,
    timeout: Duration,
    vm_jobs: usize,
    suite: &Path,
) -> Result<()> {
    let suite = paths::workspace_root().join(suite);
    if !host_only && !suite.is_file() {
        bail!("{} not found: nothing to run in the VMs", suite.display());
    }
    // Everything the tests need, installed when missing (idempotent, about a
    // second when all is there): a fresh machine needs nothing else.
    setup::run()?;
    // Fail before the long build when a kernel is missing.
    let kernels: Vec<Kernel> = if host_only {
        Vec::new()
    } else {
        ids.iter()
            .map(|id| kernels::installed(id))
            .collect::<Result<_>>()?
    };
    // The release build first: the unit tests then run in the same profile
    // and reuse every compiled crate and the eBPF object, where a debug
    // build would compile all of them a second time.
    build::release()?;
    let host_ok = host_tests()?;
    if !host_ok && (host_only || !keep_going) {
        bail!("host unit tests failed");
    }
    if host_only {
        return Ok(());
    }

    let mut outcomes = Vec::new();
    // The host's own kernel first: where the eBPF hooks cannot attach (this
    // dev/CI kernel), the same scenarios check the ctnetlink fallback.
    let host = run_on_host(&suite)?;
    let host_failed = !host.problems.is_empty() || Counts::of(&host.results).failed > 0;
    print_kernel(&host);
    outcomes.push(host);
    if host_failed && !keep_going {
        println!("stopping after the host run (use --keep-going to go on)");
    }
    if !host_failed || keep_going {
        outcomes.extend(run_guests(
            &kernels,
            suite.as_path(),
            timeout,
            vm_jobs,
            keep_going,
        )?);
    }

    println!();
    let mut total = Counts::default();
    for o in &outcomes {
        let counts = Counts::of(&o.results);
        total.add(counts);
        let problems = if o.problems.is_empty() {
            String::new()
        } else {
            format!(" — {}", o.problems.join("; "))
        };
        println!("kernel {:<5} {:<24} {counts}{problems}", o.id, o.version);
    }
    if !host_ok {
        println!("host unit tests: FAILED");
    }
    println!("{total}");
    let broken = outcomes.iter().filter(|o| !o.problems.is_empty()).count();
    if total.failed > 0 || broken > 0 || !host_ok || outcomes.len() < kernels.len() + 1 {
        bail!(
            "{} scenario(s) failed, {broken} kernel run(s) broken{}",
            total.failed,
            if host_ok {
                ""
            } else {
                ", host unit tests failed"
            }
        );
    }
    Ok(())
}

/// Tests that need what this host may not allow, left out even as root:
/// fentry/fexit programs need BPF trampolines, which the dev/CI kernel
/// refuses (the test beds attach them in the VM scenarios).
const HOST_CANNOT_RUN: &[&str] = &["trampoline_programs_pass_the_host_verifier"];

/// A host test that runs a tool this machine may lack: where the tool is not
/// on PATH the test is left out, with the reason printed, and counted as
/// skipped (run on its own it fails, saying what is missing).
struct NeedsTool {
    test: &'static str,
    tool: &'static str,
    package: &'static str,
}

const NEEDS_TOOL: &[NeedsTool] = &[NeedsTool {
    test: "unit_file_passes_systemd_analyze_verify",
    tool: "systemd-analyze",
    package: "systemd",
}];

/// `cargo test` of the default members (tracker-ebpf is not one: it only
/// builds for the BPF target). Tests that need root are `#[ignore]`d; as
/// root they run too. Compiler progress streams through; from the test
/// output only the summary lines are shown, all of it on failure.
fn host_tests() -> Result<bool> {
    // SAFETY: no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    println!(
        "test: host unit tests (cargo test --release{})",
        if root {
            ", with the tests that need root"
        } else {
            "; not root: tests that need root are skipped"
        }
    );
    let mut libtest = Vec::new();
    if root {
        libtest.push("--include-ignored");
        for name in HOST_CANNOT_RUN {
            libtest.extend(["--skip", name]);
        }
    }
    for need in NEEDS_TOOL {
        if process::probe(process::command("which").arg(need.tool)).is_none() {
            println!(
                "test: skipping {}: {} is not installed (Debian package {})",
                need.test, need.tool, need.package
            );
            libtest.extend(["--skip", need.test]);
        }
    }
    let mut cargo = process::command("cargo");
    cargo
        .current_dir(paths::workspace_root())
        .args(["test", "--release"]);
    if !libtest.is_empty() {
        cargo.arg("--").args(&libtest);
    }
    let (status, stdout) = process::captured(&mut cargo)?;
    let summaries: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("test result:"))
        .collect();
    if status.success() {
        for line in &summaries {
            println!("  {line}");
        }
    } else {
        print!("{stdout}");
    }
    let counts = host_counts(&summaries);
    let verdict = if status.success() { "ok" } else { "FAILED" };
    println!(
        "test: host unit tests {verdict}: {counts} in {} test binaries",
        summaries.len()
    );
    Ok(status.success())
}

/// Sums libtest's summary lines. A test that did not run, whether ignored
/// or left out by name, counts as skipped.
fn host_counts(summaries: &[&str]) -> Counts {
    let mut sums = Counts::default();
    for line in summaries {
        let words: Vec<&str> = line.split_whitespace().collect();
        for pair in words.windows(2) {
            let slot = match pair[1].trim_end_matches([';', ',']) {
                "passed" => &mut sums.passed,
                "failed" => &mut sums.failed,
                "ignored" | "filtered" => &mut sums.skipped,
                _ => continue,
            };
            *slot += pair[0].parse::<usize>().unwrap_or(0);
        }
    }
    sums
}

/// The suite in a guest per kernel, `jobs` guests at a time, newest kernel
/// first. Each outcome is printed when its guest ends; they are
/// returned in `kernels` order. After a failure no further guest starts
/// unless `keep_going`; the ones running finish.
fn run_guests(
    kernels: &[Kernel],
    suite: &Path,
    timeout: Duration,
    jobs: usize,
    keep_going: bool,
) -> Result<Vec<KernelOutcome>> {
    let queue = Mutex::new((0..kernels.len()).rev().collect::<VecDeque<_>>());
    let stop = AtomicBool::new(false);
    let done: Mutex<Vec<(usize, Result<KernelOutcome>)>> = Mutex::new(Vec::new());
    thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, kernels.len().max(1)) {
            scope.spawn(|| {
                loop {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Some(i) = queue.lock().unwrap().pop_front() else {
                        break;
                    };
                    let outcome = run_on(&kernels[i], suite, timeout);
                    let failed = match &outcome {
                        Ok(o) => {
                            print_kernel(o);
                            !o.problems.is_empty() || Counts::of(&o.results).failed > 0
                        }
                        Err(_) => true,
                    };
                    if failed && !keep_going {
                        stop.store(true, Ordering::SeqCst);
                    }
                    done.lock().unwrap().push((i, outcome));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap();
    done.sort_by_key(|(i, _)| *i);
    let ran: Vec<usize> = done.iter().map(|(i, _)| *i).collect();
    let not_run: Vec<&str> = (0..kernels.len())
        .filter(|i| !ran.contains(i))
        .map(|i| kernels[i].id.as_str())
        .collect();
    if !not_run.is_empty() {
        println!(
            "stopping after a failure (use --keep-going to go on); not run: {}",
            not_run.join(", ")
        );
    }
    done.into_iter().map(|(_, o)| o).collect()
}

fn run_on(kernel: &Kernel, suite: &Path, timeout: Duration) -> Result<KernelOutcome> {
    // Fresh every run so a stale results.tsv is never read as this run's.
    let results_dir = paths::vm_dir().join(&kernel.id).join("results");
    let _ = fs::remove_dir_all(&results_dir);
    fs::create_dir_all(&results_dir)
        .with_context(|| format!("creating {}", results_dir.display()))?;

    // SUITE_STAGE: the suite may copy hot files into guest RAM (vm-suite.sh).
    let command = format!(
        "SUITE_STAGE=1 TRACKER={} RESULTS_DIR={} bash {}",
        process::shell_quote(&paths::tracker_binary().display().to_string()),
        process::shell_quote(&results_dir.display().to_string()),
        process::shell_quote(&suite.display().to_string()),
    );
    let run = vm::boot_and_run(kernel, &command, timeout)?;
    Ok(judge(kernel, &run, &results_dir))
}

/// The suite on this machine's kernel, without a VM. Results go to
/// target/vm/host/results like a guest's.
fn run_on_host(suite: &Path) -> Result<KernelOutcome> {
    let results_dir = paths::vm_dir().join("host").join("results");
    let _ = fs::remove_dir_all(&results_dir);
    fs::create_dir_all(&results_dir)
        .with_context(|| format!("creating {}", results_dir.display()))?;
    let version = fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    println!("test host ({version}): running {} here", suite.display());
    let started = std::time::Instant::now();
    let (status, stdout) = process::captured(
        process::command("bash")
            .arg(suite)
            .current_dir(paths::workspace_root())
            .env("TRACKER", paths::tracker_binary())
            .env("RESULTS_DIR", &results_dir),
    )?;
    for line in stdout.lines() {
        println!("[host] {line}");
    }
    let results = parse_results(stdout.lines());
    let done = stdout.lines().any(|l| l.trim() == DONE_MARK);
    let mut problems = Vec::new();
    // A suite killed by a signal has no exit code: count it as a failure.
    let status = Some(status.code().unwrap_or(-1));
    suite_problems(&mut problems, &results, done, status);
    Ok(KernelOutcome {
        id: "host".into(),
        version,
        results,
        timing: format!("no VM, total {:.1} s", started.elapsed().as_secs_f64()),
        problems,
    })
}

fn judge(kernel: &Kernel, run: &GuestRun, results_dir: &Path) -> KernelOutcome {
    let mut problems = Vec::new();
    let mut results = parse_results(run.stdout.iter().map(String::as_str));
    // The stdout channel is the primary source; the file is the fallback
    // when the console lost them.
    if results.is_empty() {
        let tsv = results_dir.join("results.tsv");
        if let Ok(text) = fs::read_to_string(&tsv) {
            results = parse_results(text.lines());
            if !results.is_empty() {
                println!("test {}: results taken from {}", kernel.id, tsv.display());
            }
        }
    }
    let done = run.stdout.iter().any(|l| l.trim() == DONE_MARK);
    if run.timed_out || run.boot.is_none() || run.guest_status.is_none() {
        problems.push(run.failure().unwrap_or_else(|| "guest failed".into()));
    } else {
        suite_problems(&mut problems, &results, done, run.guest_status);
    }
    if !problems.is_empty() {
        run.show_console_tail();
    }
    KernelOutcome {
        id: kernel.id.clone(),
        version: kernel.version.clone(),
        results,
        timing: run.timing(),
        problems,
    }
}

/// What is wrong with a suite run besides failed scenarios: it stopped early,
/// its exit status disagrees with its results, or it ran nothing.
fn suite_problems(
    problems: &mut Vec<String>,
    results: &[ScenarioResult],
    done: bool,
    status: Option<i32>,
) {
    if !done {
        problems.push(format!("{DONE_MARK} missing: the suite stopped early"));
    }
    if let Some(code) = status.filter(|&c| c != 0)
        && Counts::of(results).failed == 0
    {
        problems.push(format!("suite exited {code} without a failed scenario"));
    }
    if results.is_empty() && problems.is_empty() {
        problems.push("the suite reported no scenario".into());
    }
}

fn parse_results<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<ScenarioResult> {
    lines
        .filter_map(|line| {
            let mut fields = line
                .trim_end_matches('\r')
                .strip_prefix("RESULT\t")?
                .split('\t');
            let scenario = fields.next()?.to_string();
            let status = fields.next().unwrap_or("");
            let seconds = fields.next().unwrap_or("");
            // `date +%s.%N` arithmetic has nine decimals; the table shows two.
            let seconds = seconds
                .parse::<f64>()
                .map_or(seconds.to_string(), |s| format!("{s:.2}"));
            let mut reason = fields.collect::<Vec<_>>().join(" ");
            let verdict = match status {
                "pass" => Verdict::Pass,
                "skip" => Verdict::Skip,
                "fail" => Verdict::Fail,
                other => {
                    // Never count an unreadable verdict as a pass.
                    reason = format!("unknown status `{other}` {reason}");
                    Verdict::Fail
                }
            };
            Some(ScenarioResult {
                scenario,
                verdict,
                seconds,
                reason: reason.trim().to_string(),
            })
        })
        .collect()
}

fn print_kernel(o: &KernelOutcome) {
    // One block, not interleaved with another guest's lines.
    let _whole = std::io::stdout().lock();
    println!("\nkernel {} ({}): {}", o.id, o.version, o.timing);
    let width = o
        .results
        .iter()
        .map(|r| r.scenario.len())
        .max()
        .unwrap_or(8)
        .max(8);
    println!(
        "  {:<width$}  {:<40}  {:>8}",
        "scenario", "result", "seconds"
    );
    for r in &o.results {
        let result = if r.reason.is_empty() {
            r.verdict.to_string()
        } else {
            format!("{} ({})", r.verdict, r.reason)
        };
        println!("  {:<width$}  {:<40}  {:>8}", r.scenario, result, r.seconds);
    }
    for p in &o.problems {
        println!("  problem: {p}");
    }
    println!("  {}: {}", o.id, Counts::of(&o.results));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_parsed_and_unknown_verdicts_fail() {
        let out = "noise\nRESULT\tnew-tcp\tpass\t1.5\t\n\
                   RESULT\tfentry\tskip\t0\tno BTF for nf_conntrack\r\n\
                   RESULT\todd\tmaybe\t2\t\nSUITE-DONE\n";
        let results = parse_results(out.lines());
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].verdict, Verdict::Pass);
        assert_eq!(results[1].reason, "no BTF for nf_conntrack");
        assert_eq!(results[2].verdict, Verdict::Fail);
        let counts = Counts::of(&results);
        assert_eq!(counts.to_string(), "1 passed, 1 failed, 1 skipped");
    }

    /// `--skip` takes a substring: a renamed test would silently run again
    /// (or another one be left out), so each name must be a test function.
    #[test]
    fn tests_left_out_by_name_exist() {
        fn sources(dir: &Path, out: &mut String) {
            for entry in fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() && path.file_name().is_some_and(|n| n != "target") {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push_str(&fs::read_to_string(&path).unwrap());
                }
            }
        }
        let mut all = String::new();
        sources(&paths::workspace_root(), &mut all);
        let names = HOST_CANNOT_RUN
            .iter()
            .copied()
            .chain(NEEDS_TOOL.iter().map(|n| n.test));
        for name in names {
            assert_eq!(
                all.matches(&format!("fn {name}()")).count(),
                1,
                "{name} is one test function of the workspace"
            );
        }
    }

    #[test]
    fn libtest_summaries_are_summed() {
        let lines = [
            "test result: ok. 91 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; finished in 2.58s",
            "test result: FAILED. 4 passed; 1 failed; 0 ignored; 0 measured; 1 filtered out",
        ];
        assert_eq!(
            host_counts(&lines).to_string(),
            "95 passed, 1 failed, 3 skipped"
        );
    }
}
