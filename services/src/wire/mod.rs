//! Every byte format of the services: the broker protocol ([`broker`]),
//! the rpc header ([`rpc`]) and the publish/subscribe handshake
//! ([`pubsub`], which lives with its module). Byte by byte in
//! `docs/services.md`.
//!
//! Decoding never trusts a length: every field is checked against the
//! message's real size and the protocol's limits, reserved bytes must be
//! zero, and names are validated ([`crate::Name`]) before anything else
//! looks at them.

pub mod broker;
pub mod rpc;
/// The publish/subscribe handshake and control bytes.
pub use crate::pubsub::wire as pubsub;

pub use broker::{
    BrokerMsg, LookupPolicy, Peer, Refusal, BROKER_HEADER, BROKER_VERSION, MAX_BROKER_MSG,
};
pub use rpc::{rpc_flags, RpcHeader, RPC_HEADER};

use thiserror::Error;

/// Why a broker message or an rpc header could not be decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than its kind requires.
    #[error("message too short: {len} bytes, need {need}")]
    Short {
        /// Bytes received.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Longer than its kind's fields (trailing bytes).
    #[error("message has {0} trailing bytes")]
    Trailing(usize),
    /// Longer than [`MAX_BROKER_MSG`] (the receive was truncated).
    #[error("message longer than {MAX_BROKER_MSG} bytes")]
    Oversized,
    /// Unknown version byte.
    #[error("unknown protocol version {0}")]
    Version(u8),
    /// Unknown kind byte (or a kind not allowed in this direction).
    #[error("unknown or misdirected message kind {0:#04x}")]
    Kind(u8),
    /// A reserved field was not zero.
    #[error("reserved field not zero")]
    Reserved,
    /// A name failed validation.
    #[error("bad name: {0}")]
    Name(&'static str),
    /// Unknown policy kind.
    #[error("unknown lookup policy {0}")]
    LookupPolicy(u8),
    /// Unknown refusal code.
    #[error("unknown refusal code {0}")]
    Code(u16),
    /// The message carried the wrong number of fds (all were closed).
    #[error("message kind {kind:#04x} carried {got} fds, expected {expected}")]
    FdCount {
        /// Kind byte.
        kind: u8,
        /// Fds the kind carries.
        expected: usize,
        /// Fds received.
        got: usize,
    },
    /// An rpc reply to a request id that is not outstanding.
    #[error("reply to unknown request id {0}")]
    UnknownId(u64),
    /// Unknown flag bits in an rpc header.
    #[error("unknown rpc flags {0:#06x}")]
    Flags(u16),
}
