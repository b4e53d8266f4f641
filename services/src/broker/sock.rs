//! Unix `SOCK_SEQPACKET` plumbing of the broker protocol: connect with a
//! deadline, send a datagram with at most one fd (`SCM_RIGHTS`,
//! `MSG_NOSIGNAL`), receive with `MSG_CMSG_CLOEXEC` so that every fd that
//! arrives becomes an `OwnedFd` at once (closed on every error path), and
//! detect truncation. Built on rustix; no `unsafe`.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{
    recvmsg, sendmsg, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags,
    ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags,
    SocketType,
};

use crate::error::{Error, Result};
use crate::wire::{Peer, MAX_BROKER_MSG};

/// Fds the receive buffer has room for: one more than any message carries,
/// so that "too many" is seen (and all of them closed).
const RECV_FDS: usize = 2;

pub(crate) fn socket_addr(path: &Path) -> Result<SocketAddrUnix> {
    Ok(shmsock_transport::socket_path::socket_addr(path)?)
}

pub(crate) fn seqpacket(flags: SocketFlags) -> Result<OwnedFd> {
    rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | flags,
        None,
    )
    .map_err(|e| Error::io("socket", e))
}

/// A connected seqpacket socket pair (both ends CLOEXEC, blocking).
pub(crate) fn pair() -> Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::io("socketpair", e))
}

/// Connects a non-blocking seqpacket socket to `path`, retrying a full
/// backlog (`EAGAIN`) until `deadline`.
pub(crate) fn connect(path: &Path, deadline: Option<Instant>) -> Result<OwnedFd> {
    let sock = seqpacket(SocketFlags::NONBLOCK)?;
    let addr = socket_addr(path)?;
    loop {
        match rustix::net::connect(&sock, &addr) {
            Ok(()) => return Ok(sock),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) if deadline.is_none_or(|d| Instant::now() < d) => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(Errno::AGAIN) => return Err(Error::Timeout),
            Err(e) => return Err(Error::io_path("connect", path, e)),
        }
    }
}

/// Sends one datagram with at most one fd, never blocking. `Ok(false)` if
/// the peer's queue is full.
pub(crate) fn send(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> Result<bool, Errno> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let flags = SendFlags::NOSIGNAL | SendFlags::DONTWAIT;
    loop {
        let r = match fd {
            None => rustix::net::send(sock, bytes, flags),
            Some(fd) => {
                let fds = [fd];
                let mut cmsg = SendAncillaryBuffer::new(&mut space);
                if !cmsg.push(SendAncillaryMessage::ScmRights(&fds)) {
                    return Err(Errno::NOBUFS);
                }
                sendmsg(sock, &[IoSlice::new(bytes)], &mut cmsg, flags)
            }
        };
        match r {
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// Sends one datagram, waiting for room until `deadline`.
pub(crate) fn send_until(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
    deadline: Option<Instant>,
) -> Result<()> {
    loop {
        match send(sock, bytes, fd) {
            Ok(true) => return Ok(()),
            Ok(false) => {
                if !wait(sock, PollFlags::OUT, deadline)? {
                    return Err(Error::Timeout);
                }
            }
            Err(Errno::PIPE | Errno::CONNRESET) => return Err(Error::Disconnected),
            Err(e) => return Err(Error::io("sendmsg", e)),
        }
    }
}

/// One received datagram.
pub(crate) struct Datagram {
    pub(crate) bytes: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
    /// The datagram or its fds did not fit (`MSG_TRUNC`, or `MSG_CTRUNC`
    /// with the fd buffer full: more fds than any message carries).
    pub(crate) truncated: bool,
    /// `MSG_CTRUNC` with room left in the fd buffer: the kernel could not
    /// install an fd in our table (`EMFILE`, `ENFILE`). Our failure, not
    /// the sender's; the fds that did arrive are closed.
    pub(crate) local_failure: bool,
}

pub(crate) enum Recv {
    Msg(Datagram),
    Eof,
    Empty,
}

/// Receives one datagram without blocking.
pub(crate) fn recv(sock: BorrowedFd<'_>) -> Result<Recv, Errno> {
    let mut bytes = [0u8; MAX_BROKER_MSG];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(RECV_FDS))];
    loop {
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let r = recvmsg(
            sock,
            &mut [IoSliceMut::new(&mut bytes)],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
        );
        let r = match r {
            Ok(r) => r,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(Recv::Empty),
            Err(Errno::CONNRESET) => return Ok(Recv::Eof),
            Err(e) => return Err(e),
        };
        // Own every fd first: every path below closes what it does not keep.
        let mut fds = Vec::new();
        for m in cmsg.drain() {
            if let RecvAncillaryMessage::ScmRights(it) = m {
                fds.extend(it);
            }
        }
        let ctrunc = r.flags.contains(ReturnFlags::CTRUNC);
        let local_failure = ctrunc && fds.len() < RECV_FDS;
        let truncated = r.flags.contains(ReturnFlags::TRUNC)
            || (ctrunc && !local_failure)
            || r.bytes > MAX_BROKER_MSG;
        if r.bytes == 0 && fds.is_empty() && !truncated && !local_failure {
            return Ok(Recv::Eof);
        }
        let n = r.bytes.min(MAX_BROKER_MSG);
        return Ok(Recv::Msg(Datagram {
            bytes: bytes[..n].to_vec(),
            fds,
            truncated,
            local_failure,
        }));
    }
}

/// Waits for `events` on `sock` until `deadline`; `Ok(false)` on timeout.
pub(crate) fn wait(
    sock: BorrowedFd<'_>,
    events: PollFlags,
    deadline: Option<Instant>,
) -> Result<bool> {
    loop {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                Some(timespec(left))
            }
        };
        let mut fds = [PollFd::new(&sock, events)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => continue,
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(Error::io("poll", e)),
        }
    }
}

pub(crate) fn timespec(d: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// `SO_PEERCRED` of a connected socket.
pub(crate) fn peer(sock: impl AsFd) -> Result<Peer> {
    // nix, not rustix: rustix's `UCred` holds a non-zero `Pid`, but the
    // kernel reports pid 0 for a peer in a PID namespace we cannot see.
    let c = nix::sys::socket::getsockopt(&sock, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| Error::io("getsockopt(SO_PEERCRED)", e))?;
    Ok(Peer {
        pid: u32::try_from(c.pid()).unwrap_or(0),
        uid: c.uid(),
        gid: c.gid(),
    })
}

/// Whether `fd` is a Unix `SOCK_SEQPACKET` socket.
pub(crate) fn is_seqpacket(fd: impl AsFd) -> bool {
    let domain = rustix::net::sockopt::socket_domain(&fd);
    let ty = rustix::net::sockopt::socket_type(&fd);
    matches!(
        (domain, ty),
        (Ok(AddressFamily::UNIX), Ok(SocketType::SEQPACKET))
    )
}

pub(crate) fn deadline_after(t: Duration) -> Option<Instant> {
    Instant::now().checked_add(t)
}
