//! Error mapping: how a socket errno or a ring error becomes an [`Error`].
//! One place, so the blocking API, the non-blocking core and the async
//! wrappers blame the same party for the same failure: the peer's lies
//! become [`Error::Protocol`], its departure [`Error::Disconnected`], our
//! own failures [`Error::Io`] / [`Error::Shm`].

use rustix::io::Errno;

use crate::error::{Error, ProtocolViolation};

/// Maps a socket error on a connected socket: the peer's death shows as
/// `EPIPE`/`ECONNRESET`.
pub(crate) fn sock_err(op: &'static str, e: Errno) -> Error {
    match e {
        Errno::PIPE | Errno::CONNRESET | Errno::NOTCONN => Error::Disconnected,
        e => Error::io(op, e),
    }
}

/// Maps a ring error on the sending side.
pub(crate) fn send_ring_err(peer_pid: Option<i32>, e: shmsock_shm::Error) -> Error {
    match e {
        shmsock_shm::Error::RecordTooLarge { len, max } => Error::MessageTooLarge {
            len: len as u64,
            max: max as u64,
        },
        e => ring_err(peer_pid, e),
    }
}

/// Maps a ring error: the peer's violations become [`Error::Protocol`].
pub(crate) fn ring_err(peer_pid: Option<i32>, e: shmsock_shm::Error) -> Error {
    match e {
        // The producer closed its ring and everything was read.
        shmsock_shm::Error::Closed => Error::Disconnected,
        shmsock_shm::Error::Protocol(v) => Error::Protocol {
            peer_pid,
            violation: v.into(),
        },
        shmsock_shm::Error::Poisoned => Error::Protocol {
            peer_pid,
            violation: ProtocolViolation::Poisoned,
        },
        e => Error::Shm(e),
    }
}

/// A violation by the peer `peer_pid`.
pub(crate) fn protocol(peer_pid: Option<i32>, violation: ProtocolViolation) -> Error {
    Error::Protocol {
        peer_pid,
        violation,
    }
}
