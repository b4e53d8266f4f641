//! The transport's error type.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// What a peer did that broke the protocol.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProtocolViolation {
    /// The peer wrote an invalid value into a shared ring.
    #[error("ring: {0}")]
    Ring(#[from] shmsock_shm::Violation),
    /// A memfd the peer passed failed its checks (not a memfd, missing
    /// seals, wrong size, over the limit).
    #[error("bad memfd from peer: {0}")]
    BadMemfd(#[source] shmsock_shm::Error),
    /// The peer passed something other than a Unix seqpacket socket where
    /// the back channel was due.
    #[error("back-channel fd is not a Unix seqpacket socket")]
    BadBackChannel,
    /// A control message could not be decoded.
    #[error("malformed control message: {0}")]
    Malformed(#[from] crate::wire::WireError),
    /// A control message arrived where the protocol does not allow it.
    #[error("unexpected control message {kind} ({context})")]
    Unexpected {
        /// Kind byte received.
        kind: u8,
        /// Where it arrived.
        context: &'static str,
    },
    /// A control message carried the wrong number of fds.
    #[error("control message {kind} carried {got} fds, expected {expected}")]
    FdCount {
        /// Kind byte received.
        kind: u8,
        /// Number of fds the kind carries.
        expected: usize,
        /// Number received (all of them were closed).
        got: usize,
    },
    /// The kernel truncated the fds of a control message (`MSG_CTRUNC`): the
    /// peer sent more than any message carries. Every fd that arrived was
    /// closed.
    #[error("control message fds truncated (MSG_CTRUNC)")]
    ControlTruncated,
    /// A control message exceeded the largest size the protocol defines.
    #[error("control message truncated: longer than {max} bytes")]
    Oversized {
        /// Largest defined control message.
        max: usize,
    },
    /// The peer's handshake carried the wrong magic number.
    #[error("handshake magic {found:#018x} is not shmsock's")]
    BadMagic {
        /// Magic received.
        found: u64,
    },
    /// A value in the handshake is out of the allowed range.
    #[error("handshake value out of range: {what} = {value}")]
    BadLimit {
        /// Which value.
        what: &'static str,
        /// Value received.
        value: u64,
    },
    /// A message larger than one ring record was fragmented wrongly (bad
    /// record order, a length that does not add up, over our limit).
    #[error("fragmented message: {0}")]
    Fragment(&'static str),
    /// An earlier violation poisoned the ring; the connection is unusable.
    #[error("ring poisoned by an earlier violation")]
    Poisoned,
}

/// Errors of shmsock connections and listeners.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer closed the connection or died. Everything it committed
    /// before was delivered first.
    #[error("peer disconnected")]
    Disconnected,
    /// The call's timeout expired.
    #[error("timed out")]
    Timeout,
    /// The sender abandoned the message being read piece by piece
    /// ([`crate::MessageReader`]) before its end: its `send` timed out, or
    /// it dropped its [`crate::MessageWriter`]. The pieces already read are
    /// all there is of it; the connection is fine.
    #[error("the sender abandoned the message before its end")]
    Abandoned,
    /// The peer broke the protocol; the connection must be dropped.
    #[error("protocol violation by peer ({}): {violation}", Pid(*peer_pid))]
    Protocol {
        /// Process id of the peer (from `SO_PEERCRED`; `None` if it lives in
        /// a PID namespace we cannot see).
        peer_pid: Option<i32>,
        /// What it did.
        violation: ProtocolViolation,
    },
    /// The two sides speak different protocol versions.
    #[error("protocol version mismatch: we speak {ours}, peer speaks {theirs}")]
    VersionMismatch {
        /// Our version.
        ours: u32,
        /// The peer's version.
        theirs: u32,
    },
    /// The peer refused the handshake.
    #[error("handshake rejected by peer: {0}")]
    Rejected(crate::wire::RejectReason),
    /// The peer's credentials do not satisfy the configured policy.
    #[error("peer credentials refused by policy: {}, uid {uid}, gid {gid}", Pid(*pid))]
    CredentialsRefused {
        /// Peer process id (`None` if not visible from our PID namespace).
        pid: Option<i32>,
        /// Peer user id.
        uid: u32,
        /// Peer group id.
        gid: u32,
    },
    /// A message exceeds what the receiver accepts (or what `reserve` can
    /// place in the ring).
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// Message length.
        len: u64,
        /// Limit.
        max: u64,
    },
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// A system call failed.
    #[error("{op}{} failed: {source}", path.as_ref().map(|p| format!(" on {}", p.display())).unwrap_or_default())]
    Io {
        /// The operation (`connect`, `bind`, `sendmsg`, ...).
        op: &'static str,
        /// The socket path involved, if any.
        path: Option<PathBuf>,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Creating or mapping our own shared memory failed.
    #[error("shared memory: {0}")]
    Shm(#[source] shmsock_shm::Error),
}

impl Error {
    pub(crate) fn io(op: &'static str, source: impl Into<io::Error>) -> Self {
        Error::Io {
            op,
            path: None,
            source: source.into(),
        }
    }

    pub(crate) fn io_path(
        op: &'static str,
        path: &std::path::Path,
        source: impl Into<io::Error>,
    ) -> Self {
        Error::Io {
            op,
            path: Some(path.to_owned()),
            source: source.into(),
        }
    }

    /// Whether this is [`Error::Disconnected`].
    pub fn is_disconnected(&self) -> bool {
        matches!(self, Error::Disconnected)
    }

    /// Whether this is [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout)
    }
}

/// Shows a peer's pid, or that it has none in our PID namespace.
struct Pid(Option<i32>);

impl std::fmt::Display for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(p) => write!(f, "pid {p}"),
            None => f.write_str("pid unknown: another PID namespace"),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::socket_path::PathError> for Error {
    fn from(e: crate::socket_path::PathError) -> Self {
        Error::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}
