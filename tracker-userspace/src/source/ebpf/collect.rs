//! The reader's collection timer: a kernel timer (timerfd) that fires every
//! `period` and that the runtime watches like the ring's own fd.
//!
//! The hooks do not wake the reader for each record (emit.rs in
//! tracker-ebpf), so it collects on a timer, 100 times a second even when
//! nothing happens. A `tokio::time::sleep` armed anew for each collection
//! cost a spurious wakeup each time: a timer earlier than the one the
//! runtime last slept towards makes it interrupt its own next wait (an
//! eventfd write, then an epoll_wait that returns at once; `reregister` in
//! tokio's time driver). A periodic timerfd is armed once: a collection is
//! one epoll_wait that returns when it fires and one read that clears it.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
    timerfd_settime,
};
use tokio::io::{Interest, unix::AsyncFd};

pub struct CollectTimer {
    fd: AsyncFd<OwnedFd>,
}

impl CollectTimer {
    /// A timer that first fires one `period` from now, then every `period`.
    pub fn every(period: Duration) -> io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        let interval = Timespec {
            tv_sec: period.as_secs() as _,
            tv_nsec: period.subsec_nanos() as _,
        };
        let spec = Itimerspec {
            it_interval: interval,
            it_value: interval,
        };
        timerfd_settime(&fd, TimerfdTimerFlags::empty(), &spec)?;
        // SAFETY: the AsyncFd owns the timer's fd, which stays open and
        // unchanged for as long as it is registered.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }?;
        Ok(CollectTimer { fd })
    }

    /// Waits until the timer has fired since the last call. Cancel-safe: a
    /// firing not yet read stays pending for the next call.
    pub async fn fired(&self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            // The count of firings since the last read; one read resets it.
            let mut count = [0u8; 8];
            match rustix::io::read(guard.get_inner(), &mut count) {
                Ok(_) => {
                    guard.clear_ready();
                    return Ok(());
                }
                Err(rustix::io::Errno::AGAIN) => guard.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_once_per_period_and_not_before() {
        let started = std::time::Instant::now();
        let timer = CollectTimer::every(Duration::from_millis(20)).unwrap();
        timer.fired().await.unwrap();
        let first = started.elapsed();
        timer.fired().await.unwrap();
        let second = started.elapsed();
        assert!(first >= Duration::from_millis(20), "{first:?}");
        assert!(second >= Duration::from_millis(40), "{second:?}");
    }
}
