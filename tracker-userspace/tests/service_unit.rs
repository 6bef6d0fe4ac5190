//! packaging/tracker.service against `systemd-analyze verify`: anything it
//! reports (an unknown key, a bad value, a command that is not executable)
//! fails the test, warnings included. It needs systemd-analyze (Debian:
//! package systemd, which `cargo xtask setup` installs); where it is missing,
//! `cargo xtask test` leaves this test out and counts it as skipped, and a
//! plain `cargo test` fails saying what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The start of the unit's ExecStart= line: the installed binary.
const INSTALLED_EXEC_START: &str = "ExecStart=/usr/local/bin/tracker ";

fn on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    let Some(analyze) = on_path("systemd-analyze") else {
        panic!(
            "cannot run: systemd-analyze is not installed (Debian: package systemd; \
             `cargo xtask setup` installs it)"
        );
    };
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate sits in the workspace")
        .join("packaging/tracker.service");
    let unit = std::fs::read_to_string(&shipped)
        .unwrap_or_else(|e| panic!("reading {}: {e}", shipped.display()));

    // verify checks that ExecStart='s program exists and is executable, and
    // /usr/local/bin/tracker is not installed where the tests run (or is
    // another build). So the copy verified here differs from the shipped
    // unit in that path only: it runs the tracker cargo built for this test.
    let exec_starts: Vec<&str> = unit
        .lines()
        .filter(|l| l.starts_with("ExecStart="))
        .collect();
    assert_eq!(
        exec_starts.len(),
        1,
        "the unit has one ExecStart= line: {exec_starts:?}"
    );
    assert!(
        exec_starts[0].starts_with(INSTALLED_EXEC_START),
        "ExecStart= runs /usr/local/bin/tracker, as the README installs it: {}",
        exec_starts[0]
    );
    let built = env!("CARGO_BIN_EXE_tracker");
    assert!(
        !built.contains(char::is_whitespace),
        "the built tracker's path has a space, which the unit's command line would split: {built}"
    );
    let copy = unit.replacen(INSTALLED_EXEC_START, &format!("ExecStart={built} "), 1);

    // The file name is the unit name verify reports and checks.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("service-unit");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tracker.service");
    std::fs::write(&path, copy).unwrap();

    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", analyze.display()));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "systemd-analyze verify {} ({}; the shipped unit is {}):\n{report}",
        path.display(),
        out.status,
        shipped.display()
    );
}
