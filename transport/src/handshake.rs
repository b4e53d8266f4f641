//! The handshake: who creates which ring, what crosses the socket, what is
//! checked before anything is shared (see `docs/protocol.md`).
//!
//! Each side creates the ring it writes into and passes its memfd; the
//! client also creates the socket pair for the server→client direction and
//! passes one end. The server checks the client's credentials before it
//! reads anything, and each side attaches the peer's ring only through
//! `shm`'s validating attach.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
use shmsock_shm::ring::{self, segment_size, Consumer, Producer};
use shmsock_shm::{Segment, SegmentOptions};

use crate::connection::{Connection, Parts};
use crate::error::{Error, ProtocolViolation, Result};
use crate::fdpass::{recv_control, send_control, wait_readable, Recv};
use crate::options::{Builder, Credentials};
use crate::wire::{Control, Hello, RejectReason, WireError, PROTOCOL_VERSION};

/// Reads `SO_PEERCRED`.
pub(crate) fn peer_credentials(sock: &OwnedFd) -> Result<Credentials> {
    let c = rustix::net::sockopt::socket_peercred(sock).map_err(|e| Error::io("SO_PEERCRED", e))?;
    Ok(Credentials {
        pid: c.pid.as_raw_nonzero().get(),
        uid: c.uid.as_raw(),
        gid: c.gid.as_raw(),
    })
}

fn protocol(peer: &Credentials, v: impl Into<ProtocolViolation>) -> Error {
    Error::Protocol {
        peer_pid: peer.pid,
        violation: v.into(),
    }
}

/// Receives one handshake message before `deadline`.
fn recv_handshake(
    sock: &OwnedFd,
    deadline: Instant,
    peer: &Credentials,
) -> Result<(Control, Vec<OwnedFd>)> {
    loop {
        match wait_readable(sock.as_fd(), Some(deadline)) {
            Ok(true) => {}
            Ok(false) => return Err(Error::Timeout),
            Err(e) => return Err(Error::io("poll", e)),
        }
        match recv_control(sock.as_fd()).map_err(|e| Error::io("recvmsg", e))? {
            Recv::Empty => continue,
            Recv::Eof => return Err(Error::Disconnected),
            Recv::Msg(m) => {
                match &m.msg {
                    Err(ProtocolViolation::Malformed(WireError::Version(theirs))) => {
                        return Err(Error::VersionMismatch {
                            ours: PROTOCOL_VERSION,
                            theirs: *theirs,
                        })
                    }
                    Err(ProtocolViolation::Malformed(WireError::Magic(found))) => {
                        return Err(protocol(
                            peer,
                            ProtocolViolation::BadMagic { found: *found },
                        ))
                    }
                    _ => {}
                }
                return m.checked().map_err(|v| protocol(peer, v));
            }
        }
    }
}

fn reject(sock: &OwnedFd, reason: RejectReason) {
    // Best effort: the peer may already be gone.
    let _ = send_control(
        sock.as_fd(),
        &Control::Reject {
            version: PROTOCOL_VERSION,
            reason,
        },
        &[],
        true,
    );
}

fn check_capacity(peer: &Credentials, cap: u64, max: u64) -> Result<()> {
    if !cap.is_power_of_two() || !(4096..=max.min(ring::MAX_CAPACITY)).contains(&cap) {
        return Err(protocol(
            peer,
            ProtocolViolation::BadLimit {
                what: "ring capacity",
                value: cap,
            },
        ));
    }
    Ok(())
}

fn check_max_message(peer: &Credentials, v: u64) -> Result<()> {
    if v == 0 || v > i64::MAX as u64 {
        return Err(protocol(
            peer,
            ProtocolViolation::BadLimit {
                what: "max message",
                value: v,
            },
        ));
    }
    Ok(())
}

fn attach_peer_ring(peer: &Credentials, fd: OwnedFd, cap: u64, max: u64) -> Result<Consumer> {
    let seg = Segment::attach(fd, segment_size(cap), segment_size(max))
        .map_err(|e| protocol(peer, ProtocolViolation::BadMemfd(e)))?;
    Consumer::attach(Arc::new(seg)).map_err(|e| match e {
        shmsock_shm::Error::Protocol(v) => protocol(peer, v),
        e => protocol(peer, ProtocolViolation::BadMemfd(e)),
    })
}

fn create_own_ring(opts: &Builder) -> Result<(Arc<Segment>, Producer)> {
    let seg = ring::create_segment(
        c"shmsock-ring",
        opts.ring_capacity,
        SegmentOptions::default(),
    )
    .map_err(Error::Shm)?;
    let seg = Arc::new(seg);
    let prod = Producer::attach(seg.clone()).map_err(Error::Shm)?;
    Ok((seg, prod))
}

fn unix_socket() -> Result<OwnedFd> {
    rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::io("socket", e))
}

pub(crate) fn socket_addr(path: &Path) -> Result<rustix::net::SocketAddrUnix> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let r = match bytes.strip_prefix(b"@") {
        Some(name) => rustix::net::SocketAddrUnix::new_abstract_name(name),
        None => rustix::net::SocketAddrUnix::new(path),
    };
    r.map_err(|e| Error::io_path("socket address", path, e))
}

/// Client side: connect, send `Hello`, take `Welcome`.
pub(crate) fn connect(path: &Path, opts: &Builder) -> Result<Connection> {
    opts.validate()?;
    let deadline = Instant::now() + opts.handshake_timeout;
    let sock = unix_socket()?;
    let addr = socket_addr(path)?;
    // Non-blocking connect, retried until the handshake deadline: a full
    // accept backlog answers EAGAIN instead of blocking without bound.
    let flags = rustix::fs::fcntl_getfl(&sock).map_err(|e| Error::io("fcntl", e))?;
    rustix::fs::fcntl_setfl(&sock, flags | rustix::fs::OFlags::NONBLOCK)
        .map_err(|e| Error::io("fcntl", e))?;
    loop {
        match rustix::net::connect(&sock, &addr) {
            Ok(()) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::AGAIN) if Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(rustix::io::Errno::AGAIN) => return Err(Error::Timeout),
            Err(e) => return Err(Error::io_path("connect", path, e)),
        }
    }
    rustix::fs::fcntl_setfl(&sock, flags).map_err(|e| Error::io("fcntl", e))?;
    client_handshake(sock, path, deadline, opts)
}

/// Client side of the handshake on a connected socket.
pub(crate) fn client_handshake(
    sock: OwnedFd,
    path: &Path,
    deadline: Instant,
    opts: &Builder,
) -> Result<Connection> {
    let peer = peer_credentials(&sock)?;
    if !opts.policy.allows(&peer) {
        return Err(Error::CredentialsRefused {
            pid: peer.pid,
            uid: peer.uid,
            gid: peer.gid,
        });
    }
    let (seg, prod) = create_own_ring(opts)?;
    let (back_ours, back_theirs) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Error::io("socketpair", e))?;
    let hello = Control::Hello(Hello {
        ring_capacity: opts.ring_capacity,
        max_message: opts.max_message,
    });
    send_control(
        sock.as_fd(),
        &hello,
        &[seg.fd(), back_theirs.as_fd()],
        false,
    )
    .map_err(|e| match e {
        rustix::io::Errno::PIPE | rustix::io::Errno::CONNRESET => Error::Disconnected,
        e => Error::io_path("sendmsg(hello)", path, e),
    })?;
    drop(back_theirs);
    let (msg, mut fds) = recv_handshake(&sock, deadline, &peer)?;
    let w = match msg {
        Control::Welcome(w) => w,
        Control::Reject { version, reason } => {
            if version != PROTOCOL_VERSION || reason == RejectReason::Version {
                return Err(Error::VersionMismatch {
                    ours: PROTOCOL_VERSION,
                    theirs: version,
                });
            }
            return Err(Error::Rejected(reason));
        }
        other => {
            return Err(protocol(
                &peer,
                ProtocolViolation::Unexpected {
                    kind: other.kind() as u8,
                    context: "in place of Welcome",
                },
            ))
        }
    };
    check_capacity(&peer, w.ring_capacity, opts.max_peer_ring)?;
    check_max_message(&peer, w.max_message)?;
    let fd = fds.pop().ok_or_else(|| {
        protocol(
            &peer,
            ProtocolViolation::FdCount {
                kind: crate::wire::Kind::Welcome as u8,
                expected: 1,
                got: 0,
            },
        )
    })?;
    let cons = attach_peer_ring(&peer, fd, w.ring_capacity, opts.max_peer_ring)?;
    Ok(Connection::from_parts(Parts {
        prod,
        tx_sock: sock,
        cons,
        rx_sock: back_ours,
        peer,
        peer_max_message: w.max_message,
        max_message: opts.max_message,
        wait: opts.wait,
        timeout: opts.timeout,
    }))
}

/// Why a server-side handshake produced no connection.
pub(crate) enum Accept {
    /// The client hung up before sending anything: not worth an error.
    HungUp,
    /// The handshake failed.
    Failed(Error),
}

impl From<Error> for Accept {
    fn from(e: Error) -> Self {
        Accept::Failed(e)
    }
}

/// Server side: check credentials, take `Hello`, send `Welcome`.
pub(crate) fn accept(sock: OwnedFd, opts: &Builder) -> Result<Connection, Accept> {
    let deadline = Instant::now() + opts.handshake_timeout;
    let peer = peer_credentials(&sock)?;
    if !opts.policy.allows(&peer) {
        reject(&sock, RejectReason::Credentials);
        return Err(Error::CredentialsRefused {
            pid: peer.pid,
            uid: peer.uid,
            gid: peer.gid,
        }
        .into());
    }
    let (msg, mut fds) = match recv_handshake(&sock, deadline, &peer) {
        Ok(m) => m,
        Err(Error::Disconnected) => return Err(Accept::HungUp),
        Err(e) => {
            reject(
                &sock,
                if matches!(e, Error::VersionMismatch { .. }) {
                    RejectReason::Version
                } else {
                    RejectReason::Malformed
                },
            );
            return Err(e.into());
        }
    };
    let h = match msg {
        Control::Hello(h) => h,
        other => {
            reject(&sock, RejectReason::Malformed);
            return Err(protocol(
                &peer,
                ProtocolViolation::Unexpected {
                    kind: other.kind() as u8,
                    context: "in place of Hello",
                },
            )
            .into());
        }
    };
    let limits = check_capacity(&peer, h.ring_capacity, opts.max_peer_ring)
        .and_then(|()| check_max_message(&peer, h.max_message));
    if let Err(e) = limits {
        reject(&sock, RejectReason::Limits);
        return Err(e.into());
    }
    // fds: [client ring memfd, back-channel socket] (count checked).
    let (Some(back), Some(ring_fd)) = (fds.pop(), fds.pop()) else {
        return Err(protocol(&peer, ProtocolViolation::BadBackChannel).into());
    };
    let is_seqpacket = rustix::net::sockopt::socket_type(&back).ok() == Some(SocketType::SEQPACKET)
        && rustix::net::sockopt::socket_domain(&back).ok() == Some(AddressFamily::UNIX);
    if !is_seqpacket {
        reject(&sock, RejectReason::Malformed);
        return Err(protocol(&peer, ProtocolViolation::BadBackChannel).into());
    }
    let cons = match attach_peer_ring(&peer, ring_fd, h.ring_capacity, opts.max_peer_ring) {
        Ok(c) => c,
        Err(e) => {
            reject(&sock, RejectReason::Malformed);
            return Err(e.into());
        }
    };
    let (seg, prod) = create_own_ring(opts)?;
    let welcome = Control::Welcome(Hello {
        ring_capacity: opts.ring_capacity,
        max_message: opts.max_message,
    });
    send_control(sock.as_fd(), &welcome, &[seg.fd()], false).map_err(|e| match e {
        rustix::io::Errno::PIPE | rustix::io::Errno::CONNRESET => Error::Disconnected,
        e => Error::io("sendmsg(welcome)", e),
    })?;
    Ok(Connection::from_parts(Parts {
        prod,
        tx_sock: back,
        cons,
        rx_sock: sock,
        peer,
        peer_max_message: h.max_message,
        max_message: opts.max_message,
        wait: opts.wait,
        timeout: opts.timeout,
    }))
}
