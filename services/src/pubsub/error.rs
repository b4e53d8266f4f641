//! Errors of publish/subscribe.

use std::io;

use thiserror::Error;

use super::wire::DecodeError;

/// Errors of [`Publisher`](super::Publisher) and
/// [`Subscriber`](super::Subscriber).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A system call failed (on our side).
    #[error("{op} failed: {source}")]
    Io {
        /// The operation (`bind`, `connect`, `sendmsg`, ...).
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Shared memory: a segment could not be made, a received segment
    /// failed its checks, or the peer broke the ring protocol.
    #[error(transparent)]
    Shm(#[from] shmsock_shm::Error),
    /// The peer sent handshake bytes that do not decode.
    #[error("bad handshake message from the peer: {0}")]
    Handshake(#[from] DecodeError),
    /// The peer broke the protocol in a way the decoder cannot see (a
    /// message out of turn, the wrong number of fds, an unknown control
    /// byte).
    #[error("protocol violation by the peer: {0}")]
    Protocol(&'static str),
    /// The publisher refused the subscription (reason byte, see
    /// [`RefuseReason`](super::wire::RefuseReason)).
    #[error("the publisher refused the subscription (reason {reason})")]
    Refused {
        /// The reason byte.
        reason: u8,
    },
    /// The call's deadline passed.
    #[error("timed out")]
    Timeout,
    /// The broker refused or failed a registration or a lookup (a
    /// publisher or subscriber reached by name).
    #[error("broker: {0}")]
    Broker(#[source] Box<crate::error::Error>),
    /// The peer process is gone (its socket closed without an orderly
    /// close): for a subscriber, the publisher died; everything it
    /// published before was delivered.
    #[error("the peer disconnected")]
    Disconnected,
    /// The publisher closed the topic and everything it published has been
    /// read.
    #[error("the publisher closed the topic")]
    Closed,
    /// The publisher disconnected this subscriber: it made no progress for
    /// the publisher's `max_lag` (Block), or broke the protocol.
    #[error("the publisher disconnected this subscriber (too slow or misbehaving)")]
    Evicted,
    /// A message is larger than the ring can carry.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Requested length.
        len: usize,
        /// Largest message.
        max: usize,
    },
    /// The publisher's ring is larger than this subscriber agreed to map
    /// (`SubscriberOptions::max_capacity`).
    #[error("the publisher's ring of {capacity} bytes exceeds this subscriber's limit of {max}")]
    RingTooLarge {
        /// Capacity the publisher announced.
        capacity: u64,
        /// Our limit.
        max: u64,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, source: io::Error) -> Self {
        Error::Io { op, source }
    }
}

/// Result alias of publish/subscribe.
pub type Result<T, E = Error> = std::result::Result<T, E>;
