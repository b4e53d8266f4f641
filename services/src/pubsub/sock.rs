//! Socket I/O of the services: handshake messages with fds
//! (`SCM_RIGHTS`, `MSG_NOSIGNAL`, `MSG_CMSG_CLOEXEC`), single control
//! bytes, waits with a deadline; `EINTR` retried everywhere. Works on a
//! connected Unix `SOCK_STREAM` or `SOCK_SEQPACKET` socket.
//!
//! As in the transport's `fdpass`, receiving goes through rustix's
//! `RecvAncillaryBuffer`, which turns every received fd into an `OwnedFd`
//! (closed on drop), even from a truncated control buffer. No `unsafe`.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{
    recv, recvmsg, send, sendmsg, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage,
    RecvFlags, ReturnFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix,
    SocketFlags, SocketType,
};

use super::wire::HANDSHAKE_LEN;

/// Most fds one handshake message may bring along (one), plus one so that
/// an extra fd is seen (and closed) rather than silently truncated.
const MAX_RECV_FDS: usize = 2;

/// A handshake message being received: bytes so far and every fd that
/// came with them (owned: closed on drop).
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    pub(crate) buf: [u8; HANDSHAKE_LEN],
    pub(crate) have: usize,
    pub(crate) fds: Vec<OwnedFd>,
}

/// What one receive attempt gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The message is complete.
    Done,
    /// Nothing more now (non-blocking).
    Pending,
    /// The peer closed the socket.
    Eof,
    /// The peer sent more fds than any message carries.
    TooManyFds,
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Connects a Unix `SOCK_STREAM` socket (`CLOEXEC`, left non-blocking) to
/// the listener at `path` by `deadline`; `Ok(None)` on timeout.
///
/// A blocking `connect` to a listener whose accept backlog is full (a
/// publisher that is stopped, hung, or not running its housekeeping)
/// sleeps in the kernel until the listener accepts, with no bound: here
/// the socket is non-blocking, so a full backlog answers `EAGAIN`, which
/// is retried every millisecond until the deadline, as the transport's
/// connect does. A Unix socket's `connect` never answers `EINPROGRESS`: it
/// either queues the connection at once or fails. `EINTR` is retried.
pub(crate) fn connect_stream(
    path: &Path,
    deadline: Option<Instant>,
) -> io::Result<Option<OwnedFd>> {
    let addr = SocketAddrUnix::new(path).map_err(errno)?;
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )
    .map_err(errno)?;
    loop {
        match rustix::net::connect(&sock, &addr) {
            Ok(()) => return Ok(Some(sock)),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => {
                let left = match deadline {
                    None => Duration::from_millis(1),
                    Some(d) => d.saturating_duration_since(Instant::now()),
                };
                if left.is_zero() {
                    return Ok(None);
                }
                std::thread::sleep(left.min(Duration::from_millis(1)));
            }
            Err(e) => return Err(errno(e)),
        }
    }
}

/// Converts a deadline into a poll timeout; `None` if it passed.
fn timeout_left(deadline: Option<Instant>) -> Option<Option<rustix::time::Timespec>> {
    match deadline {
        None => Some(None),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            Some(Some(rustix::time::Timespec {
                tv_sec: left.as_secs() as i64,
                // Round up so that we never wake before the deadline.
                tv_nsec: i64::from(left.subsec_nanos()).max(1),
            }))
        }
    }
}

/// Waits until one of `fds` is readable (or hung up) or `deadline`
/// passes; returns the indices that are ready (empty on timeout).
pub(crate) fn wait_any(
    fds: &[BorrowedFd<'_>],
    deadline: Option<Instant>,
) -> io::Result<Vec<usize>> {
    loop {
        let Some(timeout) = timeout_left(deadline) else {
            return Ok(Vec::new());
        };
        let mut pfds: Vec<PollFd<'_>> = fds.iter().map(|f| PollFd::new(f, PollFlags::IN)).collect();
        match poll(&mut pfds, timeout.as_ref()) {
            Ok(0) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(Vec::new());
                }
            }
            Ok(_) => {
                return Ok(pfds
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !p.revents().is_empty())
                    .map(|(i, _)| i)
                    .collect())
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(errno(e)),
        }
    }
}

/// Which of `fds` are readable (or hung up) right now: one `poll(2)` with
/// a zero timeout.
pub(crate) fn ready_now(fds: &[BorrowedFd<'_>]) -> io::Result<Vec<usize>> {
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    loop {
        let mut pfds: Vec<PollFd<'_>> = fds.iter().map(|f| PollFd::new(f, PollFlags::IN)).collect();
        match poll(&mut pfds, Some(&zero)) {
            Ok(0) => return Ok(Vec::new()),
            Ok(_) => {
                return Ok(pfds
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !p.revents().is_empty())
                    .map(|(i, _)| i)
                    .collect())
            }
            Err(Errno::INTR) => {}
            Err(e) => return Err(errno(e)),
        }
    }
}

/// Waits until `fd` is writable or `deadline` passes (`false`).
fn wait_writable(fd: BorrowedFd<'_>, deadline: Option<Instant>) -> io::Result<bool> {
    loop {
        let Some(timeout) = timeout_left(deadline) else {
            return Ok(false);
        };
        let mut pfds = [PollFd::new(&fd, PollFlags::OUT)];
        match poll(&mut pfds, timeout.as_ref()) {
            Ok(0) => {}
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => {}
            Err(e) => return Err(errno(e)),
        }
    }
}

/// Sends `bytes` with `fds` attached (to the first byte), whole, by
/// `deadline`. Non-blocking sends plus `poll`, so a socket in either mode
/// works. `Ok(false)` on timeout.
pub(crate) fn send_msg(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
    deadline: Option<Instant>,
) -> io::Result<bool> {
    let flags = SendFlags::NOSIGNAL | SendFlags::DONTWAIT;
    let mut sent = 0;
    while sent < bytes.len() {
        let r = if sent == 0 && !fds.is_empty() {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut cmsg = SendAncillaryBuffer::new(&mut space);
            if !cmsg.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(io::Error::from_raw_os_error(libc_enobufs()));
            }
            sendmsg(sock, &[IoSlice::new(bytes)], &mut cmsg, flags)
        } else {
            send(sock, &bytes[sent..], flags)
        };
        match r {
            Ok(n) => sent += n,
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => {
                if !wait_writable(sock, deadline)? {
                    return Ok(false);
                }
            }
            Err(e) => return Err(errno(e)),
        }
    }
    Ok(true)
}

fn libc_enobufs() -> i32 {
    Errno::NOBUFS.raw_os_error()
}

/// Sends one control byte without blocking. `Ok(false)` if the socket
/// buffer is full (a wake-up byte is then already queued, so nothing is
/// lost); an error if the peer is gone.
pub(crate) fn send_byte(sock: BorrowedFd<'_>, byte: u8) -> io::Result<bool> {
    loop {
        match send(sock, &[byte], SendFlags::NOSIGNAL | SendFlags::DONTWAIT) {
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return Ok(false),
            Err(e) => return Err(errno(e)),
        }
    }
}

/// Reads the rest of a handshake message into `inbox` without blocking,
/// never past its end (the next message stays queued).
pub(crate) fn recv_some(sock: BorrowedFd<'_>, inbox: &mut Inbox) -> io::Result<Progress> {
    while inbox.have < HANDSHAKE_LEN {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_RECV_FDS))];
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let r = recvmsg(
            sock,
            &mut [IoSliceMut::new(&mut inbox.buf[inbox.have..])],
            &mut cmsg,
            RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT,
        );
        let r = match r {
            Ok(r) => r,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(Progress::Pending),
            Err(Errno::CONNRESET) => return Ok(Progress::Eof),
            Err(e) => return Err(errno(e)),
        };
        // Own every fd first, so that every path below closes them.
        for m in cmsg.drain() {
            if let RecvAncillaryMessage::ScmRights(it) = m {
                inbox.fds.extend(it);
            }
        }
        if r.flags.contains(ReturnFlags::CTRUNC) || inbox.fds.len() > 1 {
            return Ok(Progress::TooManyFds);
        }
        if r.bytes == 0 {
            return Ok(Progress::Eof);
        }
        inbox.have += r.bytes.min(HANDSHAKE_LEN - inbox.have);
    }
    Ok(Progress::Done)
}

/// Reads a whole handshake message by `deadline`. `Ok(None)` on timeout.
pub(crate) fn recv_msg(
    sock: BorrowedFd<'_>,
    inbox: &mut Inbox,
    deadline: Option<Instant>,
) -> io::Result<Option<Progress>> {
    loop {
        match recv_some(sock, inbox)? {
            Progress::Pending => {
                if wait_any(&[sock], deadline)?.is_empty() {
                    return Ok(None);
                }
            }
            p => return Ok(Some(p)),
        }
    }
}

/// Reads the control bytes waiting on a socket without blocking, into
/// `buf`. `Ok(None)` on end of stream; `Ok(Some(0))` if nothing is there.
pub(crate) fn recv_bytes(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match recv(sock, &mut *buf, RecvFlags::DONTWAIT) {
            Ok((0, _)) => return Ok(None),
            Ok((n, _)) => return Ok(Some(n)),
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN) => return Ok(Some(0)),
            Err(Errno::CONNRESET) => return Ok(None),
            Err(e) => return Err(errno(e)),
        }
    }
}
