//! The ctnetlink event stream: multicast groups NEW/UPDATE/DESTROY.

use std::os::fd::{AsRawFd, RawFd};
use std::time::SystemTime;

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

/// Default receive buffer: room for ~20 k events of bursts (conntrack -F of
/// a large table) before the kernel starts dropping.
pub const DEFAULT_RCVBUF: usize = 8 << 20;

/// A ctnetlink event subscription in the calling thread's network namespace.
pub struct NetlinkSource {
    // Field order matters: the reactor registration is dropped before the
    // socket closes the fd.
    reactor: Option<AsyncFd<FdHandle>>,
    rx: Receiver,
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
        Ok(Self {
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
    pub async fn next_batch(&mut self, out: &mut Vec<Event>) -> Result<(), NetlinkError> {
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
        let (len0, overruns0) = (out.len(), self.rx.enobufs);
        loop {
            let mut guard = reactor
                .readable()
                .await
                .map_err(|e| classify("waiting for events", e))?;
            if let Drained::Empty = self.rx.drain(out)? {
                guard.clear_ready();
            }
            if out.len() > len0 || self.rx.enobufs > overruns0 {
                return Ok(());
            }
        }
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
