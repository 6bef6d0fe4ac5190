//! Facts about the running kernel that turn a record's raw values into what
//! `conntrack -E` shows there: its tick rate, its release (which fields
//! ctnetlink sends), and the offset from the boot clock the programs stamp
//! to the wall clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which fields ctnetlink puts into events on the running kernel, so the
/// decoded event carries exactly what `conntrack -E` would print.
#[derive(Clone, Copy, Debug)]
pub struct KernelProfile {
    /// Kernel tick rate, for jiffies → seconds.
    pub hz: u32,
    /// DESTROY events carry the remaining timeout when non-zero, and TCP
    /// protocol info (5.15+; 5.10 sends neither).
    pub destroy_has_timeout: bool,
}

impl KernelProfile {
    /// Profile of the running kernel.
    pub fn running() -> Self {
        Self {
            hz: tick_rate(),
            destroy_has_timeout: kernel_release_at_least(5, 15),
        }
    }
}

/// `CLOCK_MONOTONIC_COARSE` advances once per tick, so its resolution is
/// 1/HZ — the kernel's tick rate without reading its config.
fn tick_rate() -> u32 {
    let mut res = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    let rc = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) };
    if rc == 0 && res.tv_sec == 0 && res.tv_nsec > 0 {
        (1_000_000_000 / res.tv_nsec) as u32
    } else {
        250
    }
}

/// Whether the running kernel's release is at least `major.minor`.
pub fn kernel_release_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    version_at_least(&release, major, minor)
}

fn version_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

/// Converts `CLOCK_BOOTTIME` nanoseconds (what the programs stamp) into
/// wall-clock time.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    /// Wall clock minus boot clock, in ns.
    pub(crate) offset_ns: i128,
}

impl Clock {
    pub fn now() -> Self {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
        let boot = ts.tv_sec as i128 * 1_000_000_000 + ts.tv_nsec as i128;
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        Self {
            offset_ns: wall - boot,
        }
    }

    pub fn wall(&self, boot_ns: u64) -> SystemTime {
        let ns = (boot_ns as i128 + self.offset_ns).max(0) as u64;
        UNIX_EPOCH + Duration::from_nanos(ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_compare() {
        assert!(version_at_least("6.1.0-40-amd64", 5, 15));
        assert!(!version_at_least("5.10.0-35-amd64", 5, 15));
        assert!(version_at_least("5.15.0", 5, 15));
    }

    #[test]
    fn tick_rate_is_a_kernel_hz() {
        assert!(
            [100, 250, 300, 1000].contains(&tick_rate()),
            "{}",
            tick_rate()
        );
    }
}
