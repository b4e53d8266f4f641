//! What crosses between a handshake machine and its driver: the datagram
//! received ([`Incoming`]), the message to send ([`Outgoing`]), a failure
//! with its `Reject` ([`Rejection`]), and the result ([`Established`]).

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use shmsock_shm::ring::{Consumer, Fences, Producer};
use shmsock_shm::Segment;

use crate::api::connection::{Connection, Parts};
use crate::error::{Error, ProtocolViolation};
use crate::fdpass::Received;
use crate::options::{Builder, Credentials, WaitStrategy};
use crate::wire::{
    Control, RejectReason, HELLO_ASYMMETRIC_FENCES, MAX_CONTROL_LEN, PROTOCOL_VERSION,
};

/// One datagram received from the peer during the handshake: its bytes and
/// every fd that came with it (owned at once: whatever the machine does not
/// keep is closed when it drops).
pub struct Incoming(pub(super) Received);

impl Incoming {
    /// A datagram received whole: `bytes` as read, `fds` every fd that
    /// arrived with it.
    pub fn new(bytes: &[u8], fds: Vec<OwnedFd>) -> Incoming {
        let msg = Control::decode(bytes).map_err(ProtocolViolation::from);
        Incoming(Received { msg, fds })
    }

    /// A datagram the kernel truncated because the *peer* sent too much:
    /// `MSG_TRUNC`, or `MSG_CTRUNC` with the control buffer full. (A
    /// `MSG_CTRUNC` with room left in the buffer means we could not install
    /// an fd, such as `EMFILE`: that is a local error of the driver, not
    /// something to hand in.)
    pub fn truncated(fds: Vec<OwnedFd>) -> Incoming {
        Incoming(Received {
            msg: Err(ProtocolViolation::ControlTruncated),
            fds,
        })
    }
}

impl From<Received> for Incoming {
    fn from(r: Received) -> Self {
        Incoming(r)
    }
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("msg", &self.0.msg)
            .field("fds", &self.0.fds.len())
            .finish()
    }
}

/// A message for the driver to send: one datagram and its fds (send them
/// in this order with `SCM_RIGHTS`, then drop the `Outgoing`).
pub struct Outgoing {
    msg: Control,
    bytes: [u8; MAX_CONTROL_LEN],
    len: usize,
    /// Our ring (kept alive by the connection as well).
    ring: Option<Arc<Segment>>,
    /// An fd that is ours only until it is sent (the client's back channel).
    give: Option<OwnedFd>,
}

impl Outgoing {
    pub(super) fn new(msg: Control, ring: Option<Arc<Segment>>, give: Option<OwnedFd>) -> Outgoing {
        let mut bytes = [0u8; MAX_CONTROL_LEN];
        let len = msg.encode(&mut bytes);
        Outgoing {
            msg,
            bytes,
            len,
            ring,
            give,
        }
    }

    pub(super) fn reject(reason: RejectReason) -> Outgoing {
        Outgoing::new(
            Control::Reject {
                version: PROTOCOL_VERSION,
                reason,
            },
            None,
            None,
        )
    }

    /// The message.
    pub fn message(&self) -> &Control {
        &self.msg
    }

    /// The encoded datagram.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The fds to pass with it, in order.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let ring = self.ring.as_ref().map(|s| s.fd());
        ring.into_iter()
            .chain(self.give.as_ref().map(|f| f.as_fd()))
            .collect()
    }
}

impl fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outgoing").field("msg", &self.msg).finish()
    }
}

/// A handshake that failed: the error, and the `Reject` to send the peer
/// (best effort) if there is one.
#[derive(Debug)]
pub struct Rejection {
    /// Send this to the peer before closing the socket, if present.
    pub reply: Option<Outgoing>,
    /// What went wrong.
    pub error: Error,
}

impl Rejection {
    pub(super) fn with(reason: RejectReason, error: Error) -> Rejection {
        Rejection {
            reply: Some(Outgoing::reject(reason)),
            error,
        }
    }
}

impl From<Error> for Rejection {
    fn from(error: Error) -> Self {
        Rejection { reply: None, error }
    }
}

/// A completed handshake, waiting for its socket to become a
/// [`Connection`].
pub struct Established {
    pub(super) prod: Producer,
    pub(super) cons: Consumer,
    /// The back channel: the server's sending socket, the client's
    /// receiving one.
    pub(super) back: OwnedFd,
    pub(super) peer: Credentials,
    pub(super) peer_max_message: u64,
    /// The fences both sides agreed on.
    pub(super) fences: Fences,
    pub(super) local: Local,
    /// Which end the handshake socket becomes.
    pub(super) server: bool,
}

impl Established {
    /// The peer's credentials.
    pub fn peer_credentials(&self) -> Credentials {
        self.peer
    }

    /// The connection, over `sock`: the socket the handshake ran on. (For
    /// the server, send the `Welcome` first.)
    pub fn into_connection(self, sock: OwnedFd) -> Connection {
        let (tx_sock, rx_sock) = if self.server {
            (self.back, sock)
        } else {
            (sock, self.back)
        };
        let (mut prod, mut cons) = (self.prod, self.cons);
        prod.set_fences(self.fences);
        cons.set_fences(self.fences);
        Connection::from_parts(Parts {
            prod,
            tx_sock,
            cons,
            rx_sock,
            peer: self.peer,
            peer_max_message: self.peer_max_message,
            max_message: self.local.max_message,
            wait: self.local.wait,
            timeout: self.local.timeout,
            futex: self.local.futex,
            fragment_size: self.local.fragment_size,
            pipeline_threshold: self.local.pipeline_threshold,
        })
    }
}

impl fmt::Debug for Established {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Established")
            .field("peer", &self.peer)
            .field("server", &self.server)
            .finish()
    }
}

/// What the machines keep of the options.
#[derive(Debug, Clone, Copy)]
pub(super) struct Local {
    pub(super) max_peer_ring: u64,
    pub(super) max_message: u64,
    pub(super) wait: WaitStrategy,
    pub(super) timeout: Option<Duration>,
    pub(super) futex: bool,
    /// Asymmetric fences wanted and this process registered for
    /// `MEMBARRIER_CMD_GLOBAL_EXPEDITED`.
    pub(super) membarrier: bool,
    pub(super) prefault: bool,
    /// [`Builder::fragment_size`] (0: a quarter of the ring).
    pub(super) fragment_size: usize,
    /// [`Builder::pipeline_threshold`].
    pub(super) pipeline_threshold: usize,
}

impl Local {
    pub(super) fn of(opts: &Builder) -> Local {
        Local {
            max_peer_ring: opts.max_peer_ring,
            max_message: opts.max_message,
            wait: opts.wait,
            timeout: opts.timeout,
            futex: opts.futex_wakeups,
            // Registered once per process, at the first connect or accept
            // that wants it. Not for `Block`, which parks on every wait: a
            // membarrier per park costs far more than the fences it saves
            // (docs/performance.md, "Wake-ups and fences").
            membarrier: opts.asymmetric_fences
                && opts.wait != WaitStrategy::Block
                && shmsock_shm::membarrier::register(),
            prefault: opts.prefault,
            fragment_size: opts.fragment_size,
            pipeline_threshold: opts.pipeline_threshold,
        }
    }

    /// The flags of our `Hello`/`Welcome`.
    pub(super) fn hello_flags(&self) -> u32 {
        if self.membarrier {
            HELLO_ASYMMETRIC_FENCES
        } else {
            0
        }
    }

    /// The fences of a connection whose peer sent `peer_flags`: asymmetric
    /// only if both sides registered.
    pub(super) fn fences_with(&self, peer_flags: u32) -> Fences {
        if self.membarrier && peer_flags & HELLO_ASYMMETRIC_FENCES != 0 {
            Fences::Asymmetric
        } else {
            Fences::Symmetric
        }
    }
}
