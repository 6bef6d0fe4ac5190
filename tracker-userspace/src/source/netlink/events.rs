//! The ctnetlink event stream: multicast groups NEW/UPDATE/DESTROY.

use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant, SystemTime};

use netlink_packet_core::NetlinkBuffer;
use netlink_sys::Socket;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

use super::decode::{Receipt, decode_event};
use super::socket::{self, RecvRing, align4, classify, netns_inode, open_ctnetlink};
use super::{NetlinkError, groups};
use crate::event::Event;
use crate::model::EventKinds;

/// `next_batch` returns once it has added this many events, leaving the rest
/// in the socket for the next call (bounds latency and memory per batch).
pub const MAX_BATCH: usize = 4096;

/// Default receive buffer (the kernel doubles it): room for ~13 k events of
/// bursts (conntrack -F of a large table) before the kernel starts dropping.
pub const DEFAULT_RCVBUF: usize = 8 << 20;

/// The most a batch waits to gather: the eBPF source's collection period.
const MAX_GATHER: Duration = crate::source::ebpf::COLLECT_EVERY;

/// What one event takes of the receive buffer, which the kernel charges
/// with each skb's true size (the message's buffer and the skb's own
/// bookkeeping): a 2 MiB buffer held 1638 NEW events before it overflowed.
const EVENT_TRUESIZE: usize = 1280;

/// A batch of at least this many events says the stream is steady: the next
/// read gathers. A quieter socket is read as each event comes, since
/// gathering after a lone event would cost a second wakeup, not save one.
const GATHER_FROM: usize = 4;

/// Events per second the gathering leaves room for in a quarter of the
/// receive buffer; a busy gateway makes a few hundred thousand.
const GATHER_RATE: f64 = 1e6;

/// How long a batch may wait to gather after the last one found a steady
/// stream and emptied the socket: as long as a quarter of `rcvbuf` (bytes,
/// as the kernel granted) holds what [`GATHER_RATE`] brings, at most
/// [`MAX_GATHER`]. Zero, no gathering, when that is under a millisecond: a
/// buffer so small overflows in bursts anyway.
fn gather_window(rcvbuf: usize) -> Duration {
    let room = (rcvbuf / EVENT_TRUESIZE / 4) as f64;
    let window = Duration::from_secs_f64(room / GATHER_RATE).min(MAX_GATHER);
    if window < Duration::from_millis(1) {
        Duration::ZERO
    } else {
        window
    }
}

/// When the next read comes without waiting on the socket, after a read
/// that added `added` events, `gathering` whether that read was already one
/// of them: at once after a full batch (events are left behind), after the
/// window `gather` after a steady one, else never.
fn next_gathering(
    gathering: bool,
    gather: Duration,
    drained: Drained,
    added: usize,
) -> Option<Instant> {
    match drained {
        Drained::Full if gathering => Some(Instant::now()),
        Drained::Empty if added >= GATHER_FROM && !gather.is_zero() => {
            Some(Instant::now() + gather)
        }
        _ => None,
    }
}

/// A ctnetlink event subscription in the calling thread's network namespace.
pub struct NetlinkSource {
    // Field order matters: the reactor registration is dropped before the
    // socket closes the fd.
    reactor: Option<AsyncFd<FdHandle>>,
    rx: Receiver,
    /// See [`gather_window`].
    gather: Duration,
    /// Set when the last batch found a steady stream and emptied the socket:
    /// the socket is out of the reactor and the next batch reads at this
    /// instant. Kept across a cancelled call (a scrape in `tracker serve`), so
    /// the window does not start over.
    gathering: Option<Instant>,
}

/// The fd registered with tokio; the socket itself stays owned by `Receiver`.
struct FdHandle(RawFd);

impl AsRawFd for FdHandle {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

struct Receiver {
    socket: Socket,
    ring: RecvRing,
    netns: u32,
    enobufs: u64,
    malformed: u64,
}

#[derive(Clone, Copy)]
enum Drained {
    /// The socket reported EAGAIN: readiness may be cleared.
    Empty,
    /// [`MAX_BATCH`] reached with data possibly left.
    Full,
}

impl NetlinkSource {
    /// Opens the socket and joins the groups of `kinds`. `rcvbuf` is the
    /// receive buffer in bytes ([`DEFAULT_RCVBUF`] is a good start; 0 keeps
    /// the system default). Needs CAP_NET_ADMIN. Events come from the netns
    /// of the calling thread only. Callable outside a Tokio runtime; the
    /// socket is registered with the runtime on the first `next_batch`.
    pub fn open(kinds: EventKinds, rcvbuf: usize) -> Result<Self, NetlinkError> {
        if kinds.is_empty() {
            return Err(NetlinkError::NoKinds);
        }
        let socket = open_ctnetlink(rcvbuf)?;
        for group in groups(kinds) {
            socket
                .add_membership(group)
                .map_err(|e| classify("joining a conntrack multicast group", e))?;
        }
        socket
            .set_non_blocking(true)
            .map_err(|e| classify("making the socket non-blocking", e))?;
        let gather = gather_window(socket::rcvbuf_of(&socket));
        Ok(Self {
            gather,
            gathering: None,
            reactor: None,
            rx: Receiver {
                socket,
                ring: RecvRing::new(),
                netns: netns_inode(),
                enobufs: 0,
                malformed: 0,
            },
        })
    }

    /// Waits until events are available, then appends everything the socket
    /// holds (up to [`MAX_BATCH`]) to `out`. Also returns when only a buffer
    /// overrun happened, so the caller can report the loss promptly.
    ///
    /// Under a steady stream the socket is empty a moment after each read,
    /// and waiting on it again would wake the reader (a context switch) every
    /// few events: the kernel delivers each event as a datagram of its own
    /// and wakes the socket's waiters for each. So once a batch of at least
    /// [`GATHER_FROM`] events emptied the socket, the socket leaves the
    /// reactor and the next batch waits [`gather_window`] (a few ms, which the
    /// receive buffer absorbs), then reads what gathered; only a read that
    /// finds nothing puts the socket back, so on a quiet socket an event is
    /// read as it comes. Cancel-safe: events stay in the socket until a read.
    pub async fn next_batch(&mut self, out: &mut Vec<Event>) -> Result<(), NetlinkError> {
        let (len0, overruns0) = (out.len(), self.rx.enobufs);
        while let Some(at) = self.gathering {
            tokio::time::sleep_until(at.into()).await;
            let drained = self.rx.drain(out)?;
            self.gathering = next_gathering(true, self.gather, drained, out.len() - len0);
            if out.len() > len0 || self.rx.enobufs > overruns0 {
                return Ok(());
            }
        }
        let reactor = match &mut self.reactor {
            Some(r) => &*r,
            slot @ None => {
                let fd = FdHandle(self.rx.socket.as_raw_fd());
                // SAFETY: the fd belongs to `self.rx.socket`, which is only
                // closed after `self.reactor` is dropped (field order).
                let r = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
                    .map_err(|e| classify("registering with the tokio reactor", e.into()))?;
                &*slot.insert(r)
            }
        };
        loop {
            let mut guard = reactor
                .readable()
                .await
                .map_err(|e| classify("waiting for events", e))?;
            let drained = self.rx.drain(out)?;
            if let Drained::Empty = drained {
                guard.clear_ready();
            }
            if out.len() > len0 || self.rx.enobufs > overruns0 {
                self.gathering = next_gathering(false, self.gather, drained, out.len() - len0);
                if self.gathering.is_some() {
                    drop(guard);
                    // Out of the reactor, arriving events wake nobody.
                    self.reactor = None;
                }
                return Ok(());
            }
        }
    }

    /// Appends what the socket holds now, without waiting: at exit, the
    /// events of the last gathering window. Reads as many batches as the
    /// receive buffer can hold, so a stream that outpaces the reader still
    /// ends.
    pub fn pending(&mut self, out: &mut Vec<Event>) -> Result<(), NetlinkError> {
        let rounds = socket::rcvbuf_of(&self.rx.socket) / EVENT_TRUESIZE / MAX_BATCH + 1;
        for _ in 0..rounds {
            if let Drained::Empty = self.rx.drain(out)? {
                break;
            }
        }
        Ok(())
    }

    /// How many times the kernel reported ENOBUFS: the receive buffer
    /// overflowed and events were dropped. Counts overruns, not events — how
    /// many events each overrun lost is not known.
    pub fn enobufs(&self) -> u64 {
        self.rx.enobufs
    }
}

// Diagnostics for callers that report them.
#[allow(dead_code)]
impl NetlinkSource {
    /// Messages that could not be decoded (or were truncated) and were
    /// skipped.
    pub fn malformed(&self) -> u64 {
        self.rx.malformed
    }

    /// Inode of the network namespace the events come from.
    pub fn netns(&self) -> u32 {
        self.rx.netns
    }

    /// The receive buffer the kernel granted (it doubles the request).
    pub fn rcvbuf(&self) -> usize {
        socket::rcvbuf_of(&self.rx.socket)
    }
}

impl Receiver {
    fn drain(&mut self, out: &mut Vec<Event>) -> Result<Drained, NetlinkError> {
        let start = out.len();
        loop {
            match self.ring.recv(self.socket.as_raw_fd()) {
                Ok(0) => return Ok(Drained::Empty),
                Ok(n) => {
                    let rx = Receipt {
                        time: SystemTime::now(),
                        netns: self.netns,
                    };
                    for i in 0..n {
                        let (datagram, truncated) = self.ring.datagram(i);
                        if truncated {
                            self.malformed += 1;
                            continue;
                        }
                        self.malformed += decode_datagram(datagram, &rx, out);
                    }
                    if out.len() - start >= MAX_BATCH {
                        return Ok(Drained::Full);
                    }
                }
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) => return Ok(Drained::Empty),
                    Some(libc::ENOBUFS) => self.enobufs += 1,
                    Some(libc::EINTR) => {}
                    _ => return Err(classify("receiving events", e)),
                },
            }
        }
    }
}

/// Decodes every netlink message of one datagram into `out`; returns how
/// many could not be decoded.
pub fn decode_datagram(datagram: &[u8], rx: &Receipt, out: &mut Vec<Event>) -> u64 {
    let mut bad = 0;
    let mut off = 0;
    while off < datagram.len() {
        let rest = &datagram[off..];
        let Ok(buf) = NetlinkBuffer::new_checked(rest) else {
            return bad + 1;
        };
        let len = buf.length() as usize;
        match decode_event(&rest[..len], rx) {
            Ok(Some(event)) => out.push(event),
            Ok(None) => {}
            Err(e) => {
                log::debug!("skipping a ctnetlink message: {e}");
                bad += 1;
            }
        }
        off += align4(len);
    }
    bad
}

#[cfg(test)]
mod gather_tests {
    use super::*;

    #[test]
    fn the_gathering_window_follows_the_receive_buffer() {
        // The default request, 8 MiB, which the kernel doubles: a quarter of
        // its 13 107 events is what 1 M events/s bring in 3.3 ms.
        assert_eq!(gather_window(16 << 20), Duration::from_micros(3276));
        // A request of the kernel's usual default (rmem_default, 212992),
        // doubled: 83 events, under a millisecond at that rate: no gathering.
        assert_eq!(gather_window(425_984), Duration::ZERO);
        // A huge buffer still waits no longer than the eBPF source collects.
        assert_eq!(gather_window(1 << 30), MAX_GATHER);
    }
}
