//! The services layer's error type.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::wire::{Refusal, WireError};

/// Errors of the broker, its clients, and request/response.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A shmsock connection failed (handshake, send, receive).
    #[error(transparent)]
    Transport(#[from] shmsock_transport::Error),
    /// A system call failed.
    #[error("{op}{} failed: {source}", path.as_ref().map(|p| format!(" on {}", p.display())).unwrap_or_default())]
    Io {
        /// The operation.
        op: &'static str,
        /// The socket path involved, if any.
        path: Option<PathBuf>,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The broker refused the request.
    #[error("broker refused: {0}")]
    Refused(Refusal),
    /// The peer (the broker, or an rpc peer) sent a malformed message.
    #[error("malformed message from peer: {0}")]
    Protocol(#[from] WireError),
    /// A service name failed validation.
    #[error("invalid service name: {0}")]
    BadName(&'static str),
    /// The call's timeout passed.
    #[error("timed out")]
    Timeout,
    /// The peer (the broker, an rpc peer) hung up.
    #[error("peer disconnected")]
    Disconnected,
    /// The rpc server answered the request with an error.
    #[error("remote error: {0}")]
    Remote(String),
    /// A limit of this side was reached (outstanding requests, clients).
    #[error("limit reached: {0}")]
    Limit(&'static str),
    /// Encoding or decoding a typed message failed.
    #[error("typed message: {0}")]
    Codec(String),
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
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

    /// Whether this is a timeout (ours or the transport's).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::Timeout | Error::Transport(shmsock_transport::Error::Timeout)
        )
    }

    /// Whether the peer hung up (ours or the transport's).
    pub fn is_disconnected(&self) -> bool {
        matches!(
            self,
            Error::Disconnected | Error::Transport(shmsock_transport::Error::Disconnected)
        )
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<shmsock_transport::socket_path::PathError> for Error {
    fn from(e: shmsock_transport::socket_path::PathError) -> Self {
        Error::Io {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}
