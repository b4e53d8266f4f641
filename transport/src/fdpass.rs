//! Control-message I/O on a `SOCK_SEQPACKET` Unix socket: send with fds
//! (`SCM_RIGHTS`, `MSG_NOSIGNAL`), receive with `MSG_CMSG_CLOEXEC`, detect
//! `MSG_TRUNC`/`MSG_CTRUNC`, wait with a deadline, retry on `EINTR`.
//!
//! Receiving uses rustix's `recvmsg` rather than nix's: nix refuses to
//! iterate a truncated control buffer (`MSG_CTRUNC`), which would leave the
//! fds that did arrive open and unowned; rustix's `RecvAncillaryBuffer`
//! turns every fd in the buffer into an `OwnedFd`, truncated or not, and
//! closes any we do not take when it drops. No `unsafe` here.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Instant;

use rustix::event::{poll, PollFd, PollFlags};
use rustix::io::Errno;
use rustix::net::{
    recvmsg, sendmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags,
};

use crate::error::ProtocolViolation;
use crate::wire::{Control, MAX_CONTROL_LEN, MAX_FDS};

/// Bytes read per datagram: more than any message of this version, so that
/// a longer message from a newer peer is still read whole (and reported by
/// version), and anything longer still is detected with `MSG_TRUNC`.
const RECV_BUF: usize = 256;
/// Fds the control buffer has room for: the most any message carries plus
/// slack, so that a peer sending a few too many is told apart from one
/// sending far too many (`MSG_CTRUNC` with the buffer full). Either way all
/// are closed. `MSG_CTRUNC` with fewer fds than this is our own failure to
/// install them (see [`recv_control`]).
const RECV_FDS: usize = MAX_FDS + 2;

/// Sends `msg` with `fds`. `Ok(false)` if the socket buffer is full and
/// `nonblocking` was asked.
pub(crate) fn send_control(
    sock: BorrowedFd<'_>,
    msg: &Control,
    fds: &[BorrowedFd<'_>],
    nonblocking: bool,
) -> Result<bool, Errno> {
    let mut bytes = [0u8; MAX_CONTROL_LEN];
    let n = msg.encode(&mut bytes);
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut flags = SendFlags::NOSIGNAL;
    if nonblocking {
        flags |= SendFlags::DONTWAIT;
    }
    loop {
        let r = if fds.is_empty() {
            // No ancillary data (every wake-up): plain send(2).
            rustix::net::send(sock, &bytes[..n], flags)
        } else {
            let mut cmsg = SendAncillaryBuffer::new(&mut space);
            if !cmsg.push(SendAncillaryMessage::ScmRights(fds)) {
                return Err(Errno::NOBUFS);
            }
            sendmsg(sock, &[IoSlice::new(&bytes[..n])], &mut cmsg, flags)
        };
        match r {
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) if nonblocking => return Ok(false),
            Err(e) => return Err(e),
        }
    }
}

/// One received datagram: its decoded message (or why it could not be
/// decoded) and every fd that came with it.
pub(crate) struct Received {
    pub(crate) msg: Result<Control, ProtocolViolation>,
    pub(crate) fds: Vec<OwnedFd>,
}

impl Received {
    /// The message, checked to carry exactly the fds its kind carries.
    /// On error every fd is closed (dropped).
    pub(crate) fn checked(self) -> Result<(Control, Vec<OwnedFd>), ProtocolViolation> {
        let msg = self.msg?;
        let expected = msg.kind().fds();
        if self.fds.len() != expected {
            return Err(ProtocolViolation::FdCount {
                kind: msg.kind() as u8,
                expected,
                got: self.fds.len(),
            });
        }
        Ok((msg, self.fds))
    }
}

/// Outcome of one receive attempt.
pub(crate) enum Recv {
    /// A datagram arrived.
    Msg(Received),
    /// Orderly shutdown or reset by the peer.
    Eof,
    /// Nothing there (non-blocking).
    Empty,
}

/// Receives one datagram, non-blocking.
///
/// `MSG_CTRUNC` with our control buffer full means the peer sent more fds
/// than any message carries (its violation, [`ProtocolViolation::ControlTruncated`]);
/// with room left it means we could not install them (`EMFILE`, reported
/// as `Err(Errno::MFILE)`).
pub(crate) fn recv_control(sock: BorrowedFd<'_>) -> Result<Recv, Errno> {
    recv_control_with(sock, false)
}

/// Receives one datagram; with `blocking`, sleeps in `recvmsg` until one
/// arrives (one syscall instead of `poll` + `recvmsg`).
pub(crate) fn recv_control_with(sock: BorrowedFd<'_>, blocking: bool) -> Result<Recv, Errno> {
    let flags = if blocking {
        RecvFlags::CMSG_CLOEXEC
    } else {
        RecvFlags::CMSG_CLOEXEC | RecvFlags::DONTWAIT
    };
    let mut bytes = [0u8; RECV_BUF];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(RECV_FDS))];
    let mut resets = 0;
    loop {
        let mut cmsg = RecvAncillaryBuffer::new(&mut space);
        let r = recvmsg(sock, &mut [IoSliceMut::new(&mut bytes)], &mut cmsg, flags);
        let r = match r {
            Ok(r) => r,
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => return Ok(Recv::Empty),
            // A peer that dies with unread data in its own queue leaves us a
            // pending ECONNRESET, which the kernel reports *before* the
            // datagrams still queued for us (and then clears). Those may hold
            // a large message's fd whose announcement is already in the ring:
            // keep reading; the real end shows as a 0-byte read.
            Err(Errno::CONNRESET) if resets == 0 => {
                resets += 1;
                continue;
            }
            Err(Errno::CONNRESET) => return Ok(Recv::Eof),
            Err(e) => return Err(e),
        };
        // Take ownership of every fd first, so that every error path
        // below closes them.
        let mut fds = Vec::new();
        for m in cmsg.drain() {
            if let RecvAncillaryMessage::ScmRights(it) = m {
                fds.extend(it);
            }
        }
        if r.bytes == 0 && fds.is_empty() && !r.flags.contains(ReturnFlags::TRUNC) {
            // A zero-length datagram is never sent by shmsock; on a seqpacket
            // socket a 0-byte read means EOF.
            return Ok(Recv::Eof);
        }
        if r.flags.contains(ReturnFlags::CTRUNC) && fds.len() < RECV_FDS {
            // The buffer had room, so the kernel did not truncate for lack
            // of space: it could not install an fd in our table (EMFILE,
            // ENFILE, or a security module said no). That is our failure,
            // not the peer's; the datagram is lost, the fds that did arrive
            // are closed here.
            return Err(Errno::MFILE);
        }
        let msg = if r.flags.contains(ReturnFlags::CTRUNC) {
            Err(ProtocolViolation::ControlTruncated)
        } else if r.flags.contains(ReturnFlags::TRUNC) || r.bytes > RECV_BUF {
            Err(ProtocolViolation::Oversized { max: RECV_BUF })
        } else {
            Control::decode(&bytes[..r.bytes]).map_err(ProtocolViolation::from)
        };
        return Ok(Recv::Msg(Received { msg, fds }));
    }
}

/// Waits until `sock` is readable (or hung up) or `deadline` passes.
/// Returns `false` on timeout. `EINTR` restarts the wait with the time left.
pub(crate) fn wait_readable(
    sock: BorrowedFd<'_>,
    deadline: Option<Instant>,
) -> Result<bool, Errno> {
    wait_for(sock, PollFlags::IN, deadline)
}

fn wait_for(
    sock: BorrowedFd<'_>,
    events: PollFlags,
    deadline: Option<Instant>,
) -> Result<bool, Errno> {
    loop {
        let timeout = match deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                Some(rustix::time::Timespec {
                    tv_sec: left.as_secs() as i64,
                    // Round up so that we never wake before the deadline.
                    tv_nsec: i64::from(left.subsec_nanos()).max(1),
                })
            }
        };
        let mut fds = [PollFd::new(&sock, events)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(false);
                }
            }
            Ok(_) => return Ok(true),
            Err(Errno::INTR) => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
    use std::os::fd::AsFd;

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap()
    }

    /// Regression: a peer that dies with unread data in its queue makes the
    /// kernel report ECONNRESET before the datagrams it sent us; they must
    /// still be read (they may carry a large message's fd).
    #[test]
    fn data_queued_before_a_reset_is_still_received() {
        let (ours, theirs) = pair();
        // Something the peer never reads...
        send_control(ours.as_fd(), &Control::WakeSpace, &[], true).unwrap();
        // ...and a message it sends us, with an fd, before it dies.
        let (extra, _keep) = pair();
        send_control(
            theirs.as_fd(),
            &Control::Large { seq: 0, len: 1 },
            &[extra.as_fd()],
            true,
        )
        .unwrap();
        drop(extra);
        drop(theirs);
        match recv_control(ours.as_fd()).unwrap() {
            Recv::Msg(m) => {
                let (msg, fds) = m.checked().unwrap();
                assert_eq!(msg, Control::Large { seq: 0, len: 1 });
                assert_eq!(fds.len(), 1);
            }
            Recv::Eof => panic!("reported EOF before the queued message"),
            Recv::Empty => panic!("empty"),
        }
        assert!(matches!(recv_control(ours.as_fd()).unwrap(), Recv::Eof));
    }

    #[test]
    fn truncated_fds_are_reported_and_closed() {
        let (ours, theirs) = pair();
        let pipes: Vec<_> = (0..8).map(|_| rustix::pipe::pipe().unwrap()).collect();
        let fds: Vec<BorrowedFd<'_>> = pipes.iter().map(|(r, _)| r.as_fd()).collect();
        // send_control's buffer holds MAX_FDS; send the datagram by hand.
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(8))];
        let mut cmsg = SendAncillaryBuffer::new(&mut space);
        assert!(cmsg.push(SendAncillaryMessage::ScmRights(&fds)));
        let mut bytes = [0u8; MAX_CONTROL_LEN];
        let n = Control::WakeData.encode(&mut bytes);
        sendmsg(
            &theirs,
            &[IoSlice::new(&bytes[..n])],
            &mut cmsg,
            SendFlags::NOSIGNAL,
        )
        .unwrap();
        match recv_control(ours.as_fd()).unwrap() {
            Recv::Msg(m) => {
                assert!(matches!(m.msg, Err(ProtocolViolation::ControlTruncated)));
                // Every fd that did arrive is owned (and closed on drop).
                assert!(m.fds.len() < 8, "some fds were dropped by the kernel");
            }
            _ => panic!("no message"),
        }
    }
}
