//! The ctnetlink socket: opening with clear errors, the receive buffer, the
//! availability probe, and batched non-blocking receive.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_REQUEST, NetlinkBuffer, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::conntrack::ConntrackMessage;
use netlink_packet_netfilter::{NetfilterHeader, NetfilterMessage, NetfilterProtoFamily};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER};

use super::NetlinkError;
use super::attrs::IPCTNL_MSG_CT_GET_STATS;

/// Opens a bound `NETLINK_NETFILTER` socket with a receive buffer of
/// `rcvbuf` bytes (0 keeps the system default) and checks that ctnetlink
/// answers, so that a missing module or privilege fails here with a clear
/// error instead of as a silent socket.
pub fn open_ctnetlink(rcvbuf: usize) -> Result<Socket, NetlinkError> {
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(|e| classify("socket", e))?;
    socket.bind_auto().map_err(|e| classify("bind", e))?;
    if rcvbuf > 0 {
        set_rcvbuf(&socket, rcvbuf)?;
    }
    probe(&socket)?;
    Ok(socket)
}

/// `SO_RCVBUFFORCE` ignores `net.core.rmem_max` but needs CAP_NET_ADMIN;
/// `SO_RCVBUF` is capped by rmem_max. The kernel doubles either value.
fn set_rcvbuf(socket: &Socket, size: usize) -> Result<(), NetlinkError> {
    let size = libc::c_int::try_from(size / 2 * 2).unwrap_or(libc::c_int::MAX / 2);
    let set = |opt| {
        // SAFETY: valid fd, pointer to a c_int and its size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&raw const size).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    };
    set(libc::SO_RCVBUFFORCE)
        .or_else(|_| set(libc::SO_RCVBUF))
        .map_err(|e| classify("setting the receive buffer", e))
}

/// The socket's receive buffer as the kernel accounts it (twice the request).
pub fn rcvbuf_of(socket: &Socket) -> usize {
    socket.get_rx_buf_sz().unwrap_or(0)
}

/// Asks ctnetlink for its statistics (`IPCTNL_MSG_CT_GET_STATS`) and waits
/// for the acknowledgement. nfnetlink answers EPERM without CAP_NET_ADMIN and
/// EINVAL/EOPNOTSUPP when the ctnetlink subsystem is not registered.
fn probe(socket: &Socket) -> Result<(), NetlinkError> {
    let request = NetfilterMessage::new(
        NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0),
        ConntrackMessage::Other {
            message_type: IPCTNL_MSG_CT_GET_STATS,
            attributes: Vec::new(),
        },
    );
    send_request(socket, request, NLM_F_REQUEST | NLM_F_ACK, 1)?;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = recv_blocking(socket, &mut buf).map_err(|e| classify("probing ctnetlink", e))?;
        let mut off = 0;
        while off < n {
            let rest = &buf[off..n];
            let len = NetlinkBuffer::new_checked(rest)
                .map_err(|e| NetlinkError::Malformed(e.to_string()))?
                .length() as usize;
            if let Ok(msg) = NetlinkMessage::<NetfilterMessage>::deserialize(&rest[..len])
                && let NetlinkPayload::Error(err) = msg.payload
            {
                return match err.code {
                    None => Ok(()),
                    Some(code) => Err(classify_errno("probing ctnetlink", -code.get())),
                };
            }
            off += align4(len);
        }
    }
}

pub fn send_request(
    socket: &Socket,
    request: NetfilterMessage,
    flags: u16,
    seq: u32,
) -> Result<(), NetlinkError> {
    let mut msg = NetlinkMessage::from(request);
    msg.header.flags = flags;
    msg.header.sequence_number = seq;
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket
        .send(&buf, 0)
        .map_err(|e| classify("sending a ctnetlink request", e))?;
    Ok(())
}

/// One datagram into `buf`, retrying on EINTR.
pub fn recv_blocking(socket: &Socket, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: valid fd, buffer pointer and length.
        let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

pub const fn align4(len: usize) -> usize {
    (len + 3) & !3
}

/// Inode of the calling thread's network namespace (`thread-self`, not
/// `self`: a thread may have entered another netns with `unshare`/`setns`).
pub fn netns_inode() -> u32 {
    ["/proc/thread-self/ns/net", "/proc/self/ns/net"]
        .iter()
        .find_map(|p| std::fs::metadata(p).ok())
        .map_or(0, |m| m.ino() as u32)
}

/// Maps errors of socket calls: privilege and a missing netlink family get
/// their own variants, the rest keeps the operation for context.
pub fn classify(op: &'static str, e: io::Error) -> NetlinkError {
    match e.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => NetlinkError::PermissionDenied,
        Some(libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT) => NetlinkError::Unavailable,
        _ => NetlinkError::Io { op, source: e },
    }
}

/// Maps an error ctnetlink answered to a request (a positive errno).
/// nfnetlink answers EINVAL for a subsystem that is not registered.
pub fn classify_errno(op: &'static str, errno: i32) -> NetlinkError {
    match errno {
        libc::EINVAL | libc::EOPNOTSUPP => NetlinkError::Unavailable,
        _ => classify(op, io::Error::from_raw_os_error(errno)),
    }
}

/// Datagrams fetched per `recvmmsg` call.
pub const RING_SLOTS: usize = 64;
/// One ctnetlink event is a few hundred bytes (more with helper, labels,
/// secctx); 8 KiB leaves room for anything the kernel builds in one skb.
pub const RING_SLOT_SIZE: usize = 8192;

/// Receive buffers for `recvmmsg`. The `mmsghdr`s hold raw pointers, so they
/// are rebuilt on the stack per call instead of stored (keeps this `Send`).
pub struct RecvRing {
    data: Vec<u8>,
    lens: Vec<u32>,
    truncated: Vec<bool>,
}

impl RecvRing {
    pub fn new() -> Self {
        Self {
            data: vec![0u8; RING_SLOTS * RING_SLOT_SIZE],
            lens: vec![0; RING_SLOTS],
            truncated: vec![false; RING_SLOTS],
        }
    }

    /// Receives up to [`RING_SLOTS`] datagrams without blocking.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        // SAFETY: all-zero iovec/mmsghdr are valid values (null pointers,
        // zero lengths); they are filled in below before use.
        let mut iovs: [libc::iovec; RING_SLOTS] = unsafe { std::mem::zeroed() };
        let mut hdrs: [libc::mmsghdr; RING_SLOTS] = unsafe { std::mem::zeroed() };
        let base = self.data.as_mut_ptr();
        for (i, (iov, hdr)) in iovs.iter_mut().zip(hdrs.iter_mut()).enumerate() {
            // SAFETY: i * RING_SLOT_SIZE < data.len().
            iov.iov_base = unsafe { base.add(i * RING_SLOT_SIZE) }.cast();
            iov.iov_len = RING_SLOT_SIZE;
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every header points at its own iovec over `data`, all
        // alive for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                RING_SLOTS as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (i, hdr) in hdrs.iter().take(n).enumerate() {
            self.lens[i] = hdr.msg_len;
            self.truncated[i] = hdr.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        }
        Ok(n)
    }

    /// Datagram `i` of the last `recv`, and whether it was truncated.
    pub fn datagram(&self, i: usize) -> (&[u8], bool) {
        let start = i * RING_SLOT_SIZE;
        let len = (self.lens[i] as usize).min(RING_SLOT_SIZE);
        (&self.data[start..start + len], self.truncated[i])
    }
}
