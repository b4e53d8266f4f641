//! The handshake of both sides as state machines with no socket I/O: the
//! driver receives a datagram, hands it in as an [`Incoming`], and sends
//! whatever [`Outgoing`] comes back. The machines create and check shared
//! memory (that is local work), but never read, write or wait on a socket,
//! so any event loop can drive them.
//!
//! Client: [`ClientHandshake::start`] gives the `Hello` to send;
//! [`ClientHandshake::on_message`] takes the server's answer.
//! Server: [`ServerHandshake::new`] applies the credentials policy before
//! anything is read; [`ServerHandshake::on_message`] takes the `Hello` and
//! gives the `Welcome` (or a [`Rejection`] with the `Reject` to send).
//! Either side ends with an [`Established`] that becomes a
//! [`Connection`](crate::Connection) once given the handshake socket.
//!
//! # Examples
//! A server driving one handshake by hand (the [`Listener`](crate::Listener)
//! does this for many clients at once):
//! ```no_run
//! use shmsock_transport::handshake::{Incoming, ServerHandshake};
//! use shmsock_transport::{Builder, Credentials};
//! # fn recv(_: &std::os::fd::OwnedFd) -> Incoming { unimplemented!() }
//! # fn send(_: &std::os::fd::OwnedFd, _: &shmsock_transport::handshake::Outgoing) {}
//! # fn creds(_: &std::os::fd::OwnedFd) -> Credentials { unimplemented!() }
//! # fn run(sock: std::os::fd::OwnedFd) -> Result<(), shmsock_transport::Error> {
//! let opts = Builder::new();
//! let hs = ServerHandshake::new(&opts, creds(&sock)).map_err(|r| {
//!     if let Some(reply) = &r.reply { send(&sock, reply) }
//!     r.error
//! })?;
//! match hs.on_message(recv(&sock)) {
//!     Ok((welcome, est)) => {
//!         send(&sock, &welcome);
//!         let _conn = est.into_connection(sock);
//!     }
//!     Err(r) => {
//!         if let Some(reply) = &r.reply { send(&sock, reply) }
//!         return Err(r.error);
//!     }
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use rustix::net::{socketpair, AddressFamily, SocketFlags, SocketType};
use shmsock_shm::ring::{self, segment_size, Consumer, Producer, RingMemory};
use shmsock_shm::{Segment, SegmentOptions};

use crate::error::{Error, ProtocolViolation, Result};
use crate::fdpass::Received;

use super::exchange::Local;
pub use super::exchange::{Established, Incoming, Outgoing, Rejection};
use crate::options::{Builder, Credentials};
use crate::wire::{Control, Hello, Kind, RejectReason, WireError, PROTOCOL_VERSION};

fn protocol(peer: &Credentials, v: impl Into<ProtocolViolation>) -> Error {
    Error::Protocol {
        peer_pid: peer.pid,
        violation: v.into(),
    }
}

/// The message of a received datagram, checked for its fd count; version
/// and magic errors reported as such.
fn checked(peer: &Credentials, m: Received) -> Result<(Control, Vec<OwnedFd>)> {
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
    m.checked().map_err(|v| protocol(peer, v))
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

/// Checks the peer's segment (seals, size, backing) and maps it read-only.
fn map_peer_segment(
    peer: &Credentials,
    fd: OwnedFd,
    cap: u64,
    max: u64,
    prefault: bool,
) -> Result<Arc<dyn RingMemory>> {
    let seg = Segment::attach_read_only_with(fd, segment_size(cap), segment_size(max), prefault)
        .map_err(|e| protocol(peer, ProtocolViolation::BadMemfd(e)))?;
    Ok(Arc::new(seg))
}

/// Attaches both rings across the two segments: our producer keeps its
/// header and data in `ours` and reads the peer's consumer words from
/// `theirs`; our consumer reads the peer's ring from `theirs` and keeps its
/// cursor words in `ours`. Each side writes only its own segment.
fn attach_rings(
    peer: &Credentials,
    theirs: Arc<dyn RingMemory>,
    ours: &Arc<Segment>,
    prod: Producer,
) -> Result<(Producer, Consumer)> {
    let ring_err = |e| match e {
        shmsock_shm::Error::Protocol(v) => protocol(peer, v),
        e => protocol(peer, ProtocolViolation::BadMemfd(e)),
    };
    let cons = Consumer::attach(theirs.clone(), ours.clone()).map_err(ring_err)?;
    let prod = prod.with_consumer_words(theirs).map_err(ring_err)?;
    Ok((prod, cons))
}

fn create_own_ring(capacity: u64, prefault: bool) -> Result<(Arc<Segment>, Producer)> {
    let opts = SegmentOptions {
        populate: prefault,
        ..SegmentOptions::default()
    };
    ring::create_segment(c"shmsock-ring", capacity, opts).map_err(Error::Shm)
}

/// The client side, waiting for the server's `Welcome`.
pub struct ClientHandshake {
    local: Local,
    peer: Credentials,
    seg: Arc<Segment>,
    prod: Producer,
    back_ours: OwnedFd,
}

impl fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandshake")
            .field("peer", &self.peer)
            .finish()
    }
}

impl ClientHandshake {
    /// Starts the client side with a server of credentials `peer` (from
    /// `SO_PEERCRED`): applies our credentials policy, creates our ring and
    /// the back channel, and returns the `Hello` to send.
    ///
    /// # Errors
    /// [`Error::Config`], [`Error::CredentialsRefused`] (send nothing; close
    /// the socket), [`Error::Shm`] or [`Error::Io`] if our own resources
    /// fail.
    pub fn start(opts: &Builder, peer: Credentials) -> Result<(ClientHandshake, Outgoing)> {
        opts.validate()?;
        if !opts.policy.allows(&peer) {
            return Err(Error::CredentialsRefused {
                pid: peer.pid,
                uid: peer.uid,
                gid: peer.gid,
            });
        }
        let (seg, prod) = create_own_ring(opts.ring_capacity, opts.prefault)?;
        let (back_ours, back_theirs) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .map_err(|e| Error::io("socketpair", e))?;
        let hello = Outgoing::new(
            Control::Hello(Hello {
                ring_capacity: opts.ring_capacity,
                max_message: opts.max_message,
            }),
            Some(seg.clone()),
            Some(back_theirs),
        );
        let hs = ClientHandshake {
            local: Local::of(opts),
            peer,
            seg,
            prod,
            back_ours,
        };
        Ok((hs, hello))
    }

    /// Takes the server's answer.
    ///
    /// # Errors
    /// [`Error::Rejected`], [`Error::VersionMismatch`], [`Error::Protocol`]
    /// (the client never answers a bad `Welcome`: close the socket).
    pub fn on_message(self, msg: Incoming) -> Result<Established> {
        let peer = self.peer;
        let (msg, mut fds) = checked(&peer, msg.0)?;
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
        check_capacity(&peer, w.ring_capacity, self.local.max_peer_ring)?;
        check_max_message(&peer, w.max_message)?;
        let fd = fds.pop().ok_or_else(|| {
            protocol(
                &peer,
                ProtocolViolation::FdCount {
                    kind: Kind::Welcome as u8,
                    expected: 1,
                    got: 0,
                },
            )
        })?;
        let theirs = map_peer_segment(
            &peer,
            fd,
            w.ring_capacity,
            self.local.max_peer_ring,
            self.local.prefault,
        )?;
        let (prod, cons) = attach_rings(&peer, theirs, &self.seg, self.prod)?;
        Ok(Established {
            prod,
            cons,
            back: self.back_ours,
            peer,
            peer_max_message: w.max_message,
            local: self.local,
            server: false,
        })
    }
}

/// The server side, waiting for the client's `Hello`.
pub struct ServerHandshake {
    local: Local,
    ring_capacity: u64,
    peer: Credentials,
}

impl fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandshake")
            .field("peer", &self.peer)
            .finish()
    }
}

impl ServerHandshake {
    /// Starts the server side with a client of credentials `peer` (from
    /// `SO_PEERCRED`), applying the credentials policy before anything is
    /// read.
    ///
    /// # Errors
    /// [`Error::Config`]; [`Error::CredentialsRefused`] with a
    /// `Reject(Credentials)` to send.
    // Once per connection and moved once: its size does not matter.
    #[allow(clippy::result_large_err)]
    pub fn new(opts: &Builder, peer: Credentials) -> Result<ServerHandshake, Rejection> {
        opts.validate()?;
        if !opts.policy.allows(&peer) {
            return Err(Rejection::with(
                RejectReason::Credentials,
                Error::CredentialsRefused {
                    pid: peer.pid,
                    uid: peer.uid,
                    gid: peer.gid,
                },
            ));
        }
        Ok(ServerHandshake {
            local: Local::of(opts),
            ring_capacity: opts.ring_capacity,
            peer,
        })
    }

    /// The client's credentials.
    pub fn peer_credentials(&self) -> Credentials {
        self.peer
    }

    /// Takes the client's `Hello`; gives the `Welcome` to send and the
    /// established connection.
    ///
    /// # Errors
    /// [`Error::VersionMismatch`], [`Error::Protocol`] (the client's fault),
    /// or [`Error::Shm`]/[`Error::Io`] (ours), each with the `Reject` to
    /// send.
    // Once per connection and moved once: its size does not matter.
    #[allow(clippy::result_large_err)]
    pub fn on_message(self, msg: Incoming) -> Result<(Outgoing, Established), Rejection> {
        let peer = self.peer;
        let (msg, mut fds) = checked(&peer, msg.0).map_err(|e| {
            let reason = if matches!(e, Error::VersionMismatch { .. }) {
                RejectReason::Version
            } else {
                RejectReason::Malformed
            };
            Rejection::with(reason, e)
        })?;
        let h = match msg {
            Control::Hello(h) => h,
            other => {
                return Err(Rejection::with(
                    RejectReason::Malformed,
                    protocol(
                        &peer,
                        ProtocolViolation::Unexpected {
                            kind: other.kind() as u8,
                            context: "in place of Hello",
                        },
                    ),
                ))
            }
        };
        check_capacity(&peer, h.ring_capacity, self.local.max_peer_ring)
            .and_then(|()| check_max_message(&peer, h.max_message))
            .map_err(|e| Rejection::with(RejectReason::Limits, e))?;
        // fds: [client ring memfd, back-channel socket] (count checked).
        let malformed = |e| Rejection::with(RejectReason::Malformed, e);
        let (Some(back), Some(ring_fd)) = (fds.pop(), fds.pop()) else {
            return Err(malformed(protocol(
                &peer,
                ProtocolViolation::BadBackChannel,
            )));
        };
        let is_seqpacket = rustix::net::sockopt::socket_type(&back).ok()
            == Some(SocketType::SEQPACKET)
            && rustix::net::sockopt::socket_domain(&back).ok() == Some(AddressFamily::UNIX);
        if !is_seqpacket {
            return Err(malformed(protocol(
                &peer,
                ProtocolViolation::BadBackChannel,
            )));
        }
        // The client's segment is checked before we spend memory on ours.
        let theirs = map_peer_segment(
            &peer,
            ring_fd,
            h.ring_capacity,
            self.local.max_peer_ring,
            self.local.prefault,
        )
        .map_err(malformed)?;
        // Our own failure: tell the client it is not its fault.
        let (seg, prod) = create_own_ring(self.ring_capacity, self.local.prefault)
            .map_err(|e| Rejection::with(RejectReason::Resources, e))?;
        let (prod, cons) = attach_rings(&peer, theirs, &seg, prod).map_err(malformed)?;
        let welcome = Outgoing::new(
            Control::Welcome(Hello {
                ring_capacity: self.ring_capacity,
                max_message: self.local.max_message,
            }),
            Some(seg),
            None,
        );
        let est = Established {
            prod,
            cons,
            back,
            peer,
            peer_max_message: h.max_message,
            local: self.local,
            server: true,
        };
        Ok((welcome, est))
    }

    /// The handshake deadline passed: `Error::Timeout`, with a
    /// `Reject(Malformed)` to send.
    pub fn expire(self) -> Rejection {
        Rejection::with(RejectReason::Malformed, Error::Timeout)
    }

    /// We failed locally while receiving (such as `EMFILE`): `error`, with a
    /// `Reject(Resources)` that does not blame the client.
    pub fn local_failure(self, error: Error) -> Rejection {
        Rejection::with(RejectReason::Resources, error)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // test code
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            pid: None,
            uid: rustix::process::geteuid().as_raw(),
            gid: 0,
        }
    }

    /// What a driver would receive for `out`: its bytes and copies of its fds.
    fn deliver(out: &Outgoing) -> Incoming {
        let fds = out
            .fds()
            .iter()
            .map(|f| f.try_clone_to_owned().unwrap())
            .collect();
        Incoming::new(out.bytes(), fds)
    }

    fn reply_reason(r: &Rejection) -> Option<RejectReason> {
        match r.reply.as_ref().map(|o| *o.message()) {
            Some(Control::Reject { reason, .. }) => Some(reason),
            _ => None,
        }
    }

    #[test]
    fn both_sides_complete_without_a_socket() {
        let opts = Builder::new().ring_capacity(1 << 12);
        let (client, hello) = ClientHandshake::start(&opts, creds()).unwrap();
        assert_eq!(hello.fds().len(), 2);
        let server = ServerHandshake::new(&opts, creds()).unwrap();
        let (welcome, s_est) = server.on_message(deliver(&hello)).unwrap();
        drop(hello);
        let c_est = client.on_message(deliver(&welcome)).unwrap();
        // The handshake socket only now: a pair stands in for accept/connect.
        let (a, b) = socketpair(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let mut c = c_est.into_connection(a);
        let mut s = s_est.into_connection(b);
        c.send(b"ping").unwrap();
        assert_eq!(s.recv().unwrap().to_vec(), b"ping");
        s.send(b"pong").unwrap();
        assert_eq!(c.recv().unwrap().to_vec(), b"pong");
    }

    #[test]
    fn server_rejections_carry_the_right_reason() {
        let opts = Builder::new();
        // Policy first, before anything is read.
        let refuse = opts
            .clone()
            .credentials(crate::CredentialsPolicy::Uid(u32::MAX));
        let r = ServerHandshake::new(&refuse, creds()).unwrap_err();
        assert_eq!(reply_reason(&r), Some(RejectReason::Credentials));
        assert!(matches!(
            r.error,
            Error::CredentialsRefused { pid: None, .. }
        ));
        // Garbage.
        let s = ServerHandshake::new(&opts, creds()).unwrap();
        let r = s
            .on_message(Incoming::new(b"GET /", Vec::new()))
            .unwrap_err();
        assert_eq!(reply_reason(&r), Some(RejectReason::Malformed));
        assert!(matches!(r.error, Error::Protocol { peer_pid: None, .. }));
        // Another version.
        let (_c, hello) = ClientHandshake::start(&opts, creds()).unwrap();
        let mut bytes = hello.bytes().to_vec();
        bytes[4] = (crate::wire::PROTOCOL_VERSION + 1) as u8;
        let s = ServerHandshake::new(&opts, creds()).unwrap();
        let r = s.on_message(Incoming::new(&bytes, Vec::new())).unwrap_err();
        assert_eq!(reply_reason(&r), Some(RejectReason::Version));
        // Too many fds for the buffer (the peer's fault).
        let s = ServerHandshake::new(&opts, creds()).unwrap();
        let r = s.on_message(Incoming::truncated(Vec::new())).unwrap_err();
        assert_eq!(reply_reason(&r), Some(RejectReason::Malformed));
        // Our own failure and a timeout.
        let s = ServerHandshake::new(&opts, creds()).unwrap();
        let r = s.local_failure(Error::io("recvmsg", rustix::io::Errno::MFILE));
        assert_eq!(reply_reason(&r), Some(RejectReason::Resources));
        let s = ServerHandshake::new(&opts, creds()).unwrap();
        let r = s.expire();
        assert_eq!(reply_reason(&r), Some(RejectReason::Malformed));
        assert!(r.error.is_timeout());
    }

    #[test]
    fn client_reports_a_resources_reject_as_such() {
        let opts = Builder::new();
        let (c, _hello) = ClientHandshake::start(&opts, creds()).unwrap();
        let r = Outgoing::reject(RejectReason::Resources);
        assert_eq!(&r.bytes()[16..20], &5u32.to_le_bytes());
        let e = c.on_message(deliver(&r)).unwrap_err();
        assert!(
            matches!(e, Error::Rejected(RejectReason::Resources)),
            "{e:?}"
        );
    }
}
